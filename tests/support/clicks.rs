//! The topic the worker-process tests train: generated CTR rows (seed 7) as JSON messages over
//! 4 partitions of unequal sizes, so a worker that reads another's partitions, or re-reads its
//! own from the start, ends with the wrong count.

#![allow(dead_code)]

use eddy_core::datagen::ctr::CtrGenerator;

/// Rows in the topic.
pub const ROWS: u64 = 60_000;
/// Row `i` goes to partition `LAYOUT[i % 5]`: partitions 0 and 2 (worker 0) hold 2/5 of the
/// rows, 1 and 3 (worker 1) 3/5.
pub const LAYOUT: [i32; 5] = [0, 1, 2, 3, 3];
/// The rows of each worker's partitions.
pub const WORKER_ROWS: [u64; 2] = [ROWS / 5 * 2, ROWS / 5 * 3];

/// `rows` generated CTR rows (seed 7), one JSON object each: the rows `eddy gen ctr` makes.
pub fn clicks(rows: u64) -> Vec<Vec<u8>> {
    let g = CtrGenerator::new(7, false);
    let mut buf = Vec::new();
    let mut writer = arrow::json::LineDelimitedWriter::new(&mut buf);
    for start in (0..rows).step_by(10_000) {
        let len = (rows - start).min(10_000) as usize;
        writer.write(&g.batch(start, len).unwrap()).unwrap();
    }
    writer.finish().unwrap();
    let lines: Vec<Vec<u8>> = buf
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    assert_eq!(lines.len() as u64, rows);
    lines
}
