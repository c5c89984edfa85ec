use super::*;
use crate::message::Epoch;
use crate::state::ChunkedBlob;

fn ctx(epoch: u64, durable: u64, full: bool) -> WriteContext {
    WriteContext {
        epoch: Epoch(epoch),
        durable: Epoch(durable),
        full,
    }
}

fn write<const W: usize>(s: &TableSnapshot<W>, c: &WriteContext) -> (Vec<u8>, usize) {
    let mut w = BlobWriter::new(c.full, b"", 0);
    let n = s.write(c, &mut w);
    (w.finish(), n)
}

/// The chunks of `blob` with every reference resolved from `segments` (epoch → segment data).
fn resolve<'a>(blob: &ChunkedBlob<'a>, segments: &'a [(u64, Vec<u8>)]) -> Vec<ChunkEntry<'a>> {
    blob.chunks
        .iter()
        .map(|c| match c.bytes {
            Some(_) => *c,
            None => {
                let data = segments
                    .iter()
                    .find(|(e, _)| *e == c.at.epoch)
                    .map(|(_, d)| d.as_slice())
                    .unwrap_or_default();
                let at = c.at.offset as usize;
                ChunkEntry {
                    bytes: data.get(at..at + c.len as usize),
                    ..*c
                }
            }
        })
        .collect()
}

#[test]
fn a_snapshot_keeps_its_values_while_the_table_changes() -> Result<()> {
    let mut t = ChunkedTable::<2>::new(10, 4);
    t.set(1, [1, 2]);
    let snap = t.snapshot();
    t.set(1, [9, 9]);
    t.set(9, [5, 5]);
    let (bytes, n) = write(&snap, &ctx(1, 0, false));
    assert_eq!(n, 3);
    let blob = ChunkedBlob::parse(&bytes, "t")?;
    let back = ChunkedTable::<2>::restore(10, 4, &blob.chunks, "t")?;
    assert_eq!(back.get(1), [1, 2]);
    assert_eq!(back.get(9), [0, 0]);
    assert_eq!(t.get(1), [9, 9]);
    Ok(())
}

#[test]
fn snapshots_across_pages_keep_their_values_at_both_levels() -> Result<()> {
    // three pages; two snapshots held at once; writes to shared pages and shared chunks
    let chunks = 2 * PAGE_CHUNKS + 3;
    let mut t = ChunkedTable::<1>::new(chunks * 2, 2);
    assert_eq!(t.page_count(), 3);
    let mut model = vec![0u32; t.len()];
    let mut held = Vec::new();
    for (round, step) in [(1u32, 1usize), (2, 3), (3, 5)] {
        for i in (0..t.len()).step_by(step) {
            t.set(i, [i as u32 * 10 + round]);
            model[i] = i as u32 * 10 + round;
        }
        if round < 3 {
            held.push((t.snapshot(), model.clone()));
        }
    }
    for (round, (snap, want)) in held.iter().enumerate() {
        let (bytes, n) = write(snap, &ctx(round as u64 + 1, 0, false));
        assert_eq!(
            n, chunks,
            "round {round}: nothing durable, every chunk inline"
        );
        let blob = ChunkedBlob::parse(&bytes, "t")?;
        let back = ChunkedTable::<1>::restore(t.len(), 2, &blob.chunks, "t")?;
        for (i, w) in want.iter().enumerate() {
            assert_eq!(back.get(i), [*w], "snapshot {round}, slot {i}");
        }
    }
    for (i, w) in model.iter().enumerate() {
        assert_eq!(t.get(i), [*w], "live slot {i}");
    }
    Ok(())
}

#[test]
fn only_chunks_written_since_a_durable_snapshot_are_written_again() -> Result<()> {
    let mut t = ChunkedTable::<2>::new(16, 4);
    let (_, n) = write(&t.snapshot(), &ctx(1, 0, false));
    assert_eq!(n, 4);
    t.set(5, [1, 1]);
    // checkpoint 1 not known complete: everything is written again
    assert_eq!(write(&t.snapshot(), &ctx(2, 0, false)).1, 4);
    t.set(6, [1, 1]);
    assert_eq!(write(&t.snapshot(), &ctx(3, 2, false)).1, 1);
    assert_eq!(write(&t.snapshot(), &ctx(4, 3, false)).1, 0);
    assert_eq!(write(&t.snapshot(), &ctx(5, 4, true)).1, 4);
    Ok(())
}

#[test]
fn references_point_at_the_bytes_an_earlier_segment_holds() -> Result<()> {
    let len = 3 * PAGE_CHUNKS * 4;
    let mut t = ChunkedTable::<1>::new(len, 4);
    let mut segments = Vec::new();
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    for epoch in 1..=6u64 {
        for _ in 0..40 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            t.set(rng as usize % len, [rng as u32]);
        }
        let (bytes, n) = write(&t.snapshot(), &ctx(epoch, epoch - 1, false));
        let blob = ChunkedBlob::parse(&bytes, "t")?;
        assert!(epoch == 1 || n <= 40, "epoch {epoch}: {n} chunks inline");
        let data: Vec<u8> = blob.inline_bytes().flatten().copied().collect();
        segments.push((epoch, data));
        let back = ChunkedTable::<1>::restore(len, 4, &resolve(&blob, &segments), "t")?;
        assert!(back == t, "epoch {epoch}: the restored table differs");
    }
    Ok(())
}

#[test]
fn a_restored_table_is_unsealed() -> Result<()> {
    let mut t = ChunkedTable::<1>::new(16, 4);
    t.set(2, [3]);
    let (bytes, _) = write(&t.snapshot(), &ctx(1, 0, false));
    let blob = ChunkedBlob::parse(&bytes, "t")?;
    let mut back = ChunkedTable::<1>::restore(16, 4, &blob.chunks, "t")?;
    assert_eq!(write(&back.snapshot(), &ctx(2, 1, false)).1, 4);
    assert_eq!(write(&back.snapshot(), &ctx(3, 2, false)).1, 0);
    Ok(())
}

#[test]
fn restore_refuses_a_wrong_shape() {
    let mut t = ChunkedTable::<2>::new(8, 4);
    let (bytes, _) = write(&t.snapshot(), &ctx(1, 0, false));
    let blob = ChunkedBlob::parse(&bytes, "t").ok();
    let chunks = blob.map(|b| b.chunks).unwrap_or_default();
    let e = ChunkedTable::<2>::restore(12, 4, &chunks, "t").err();
    assert!(e.is_some_and(|e| e.to_string().contains("2 chunks")));
}
