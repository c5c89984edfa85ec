//! `eddy gen ctr`: writes the deterministic synthetic click stream of
//! [`eddy_core::datagen::ctr`] as CSV, JSON lines or Parquet, to a file or (`--out -`) to
//! standard output; or, with `--out kafka://HOST:PORT/TOPIC[?partitions=N]`, one message per
//! row (JSON, or a CSV record with `format=csv`) to a Kafka topic, created with N partitions
//! when missing, paced at `--rate` rows/s when given.
//!
//! `eddy gen nexmark --events N --out DIR`: the first N events of the Nexmark generator
//! ([`eddy_core::nexmark`]) as CSV files, a directory per kind (person, auction, bid) in parts
//! in event-time order, with a checksummed manifest ([`eddy_core::nexmark::files`]): what
//! `eddy bench nexmark --data DIR` and the Flink peer (`peers/nexmark/nexmark_flink.py`) read.
//!
//! `eddy gen replay FILE --out kafka://…`: replays an existing CSV, JSON-lines or Parquet file
//! into a topic, one JSON message per row in file order, paced at `--rate` rows/s when given.
//! The file is read by the file sources (their decoders, inference and dead letters) and
//! written by the Kafka sink (its row encoding and [`KafkaWriter`], at-least-once: every
//! message acknowledged before it exits); malformed records are dead letters, counted.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use eddy_core::datagen::ctr::{CtrChunk, CtrGenerator, CHUNK_ROWS, DEFAULT_SEED};
use eddy_core::datagen::format::write_g6;
use eddy_core::nexmark::{write_csv, NexmarkConfig, NexmarkGenerator, DEFAULT_PART_EVENTS};
use eddy_core::operator::TaskInfo;
use eddy_core::sink::kafka::{KafkaSink, KafkaSinkOptions, KafkaWriter, DEFAULT_FLUSH_TIMEOUT};
use eddy_core::sink::Sink;
use eddy_core::source::file::{CsvOptions, CsvSource, JsonLinesOptions, JsonLinesSource};
use eddy_core::source::kafka::{KafkaFormat, KafkaUri};
use eddy_core::source::parquet::{ParquetSource, ParquetSourceOptions};
use eddy_core::source::{DeadLetterSink, ErrorPolicy, Source, SourceContext, SourcePoll};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::io::DataFormat;
use super::progress;

/// Data generators.
#[derive(Debug, Subcommand)]
pub enum GenCommand {
    /// A synthetic click stream: `label`, numeric `f0..f4`, categorical `c0..c9` (optionally `ts`).
    Ctr(CtrArgs),
    /// Replays a CSV / JSON-lines / Parquet file into a Kafka topic, one message per row.
    Replay(ReplayArgs),
    /// Nexmark events (person, auction, bid) as CSV files, a directory per kind.
    Nexmark(NexmarkArgs),
}

/// Arguments of `eddy gen nexmark`.
#[derive(Debug, Args)]
pub struct NexmarkArgs {
    /// Events (people, auctions and bids together: 1 : 3 : 46).
    #[arg(long)]
    pub events: u64,
    /// Output directory: `person/`, `auction/`, `bid/` (each empty or absent) and `nexmark.json`.
    #[arg(long)]
    pub out: PathBuf,
    /// Generator seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Events per second of event time (timestamps only: they do not depend on write speed).
    #[arg(long, default_value_t = NexmarkConfig::default().rate)]
    pub rate: u64,
    /// Events per part file (every kind is cut at the same events).
    #[arg(long, default_value_t = DEFAULT_PART_EVENTS)]
    pub part_events: u64,
}

/// Arguments of `eddy gen replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The file to replay (format from the extension, else CSV with a header).
    pub file: PathBuf,
    /// The topic: `kafka://HOST:PORT/TOPIC[?partitions=N&key=COLUMN]` (created with N
    /// partitions when missing; keyed by COLUMN when given).
    #[arg(long)]
    pub out: PathBuf,
    /// Rows per second: the rows are paced to this rate instead of produced as fast as the
    /// broker takes them.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Input format, when the extension does not say.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Write malformed records here (JSON lines) instead of only counting them.
    #[arg(long)]
    pub dead_letter: Option<PathBuf>,
    /// What a malformed record does: `dead-letter` (default) or `fail`.
    #[arg(long, default_value = "dead-letter")]
    pub on_error: ErrorPolicy,
}

/// Output formats of `eddy gen`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated values with a header row.
    Csv,
    /// One JSON object per line.
    Jsonl,
    /// Apache Parquet (snappy).
    Parquet,
}

/// Arguments of `eddy gen ctr`.
#[derive(Debug, Args)]
pub struct CtrArgs {
    /// Number of rows.
    #[arg(long)]
    pub rows: u64,
    /// Seed of the hidden model and the stream.
    #[arg(long, default_value_t = DEFAULT_SEED)]
    pub seed: u64,
    /// Output format (default: from the file extension, else csv).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Output file; `-` writes to standard output; `kafka://HOST:PORT/TOPIC[?partitions=N]`
    /// produces one message per row to the topic (created with N partitions when missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Rows per second (Kafka output only): the rows are paced to this rate instead of
    /// produced as fast as the broker takes them.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Also print the hidden model's own logloss and AUC on the stream (a JSON line on stdout;
    /// not with `--out -`).
    #[arg(long)]
    pub oracle: bool,
    /// Add an event-time column `ts` (ms; 1 ms apart, out of order by up to 500 ms).
    #[arg(long)]
    pub event_time: bool,
}

/// Runs `eddy gen …`.
pub fn run(cmd: GenCommand) -> anyhow::Result<()> {
    match cmd {
        GenCommand::Ctr(args) => ctr(args),
        GenCommand::Replay(args) => replay(args),
        GenCommand::Nexmark(args) => nexmark(args),
    }
}

fn format_of(args: &CtrArgs) -> Format {
    if let Some(address) = super::io::kafka_address(&args.out) {
        let csv = KafkaUri::parse(address).is_ok_and(|u| u.format == KafkaFormat::Csv);
        return args
            .format
            .unwrap_or(if csv { Format::Csv } else { Format::Jsonl });
    }
    args.format
        .unwrap_or_else(|| match args.out.extension().and_then(|e| e.to_str()) {
            Some("jsonl") | Some("json") => Format::Jsonl,
            Some("parquet") => Format::Parquet,
            _ => Format::Csv,
        })
}

/// Whether `out` names standard output.
fn is_stdout(out: &Path) -> bool {
    out.as_os_str() == "-"
}

/// Where the rows go: the file `out` (its directory created) or standard output.
fn open_out(out: &Path) -> anyhow::Result<Box<dyn Write + Send>> {
    if is_stdout(out) {
        return Ok(Box::new(std::io::stdout()));
    }
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let file = File::create(out).with_context(|| format!("creating {}", out.display()))?;
    Ok(Box::new(file))
}

/// Writes the click stream as `args` asks.
pub fn ctr(args: CtrArgs) -> anyhow::Result<()> {
    let format = format_of(&args);
    if args.oracle && is_stdout(&args.out) {
        anyhow::bail!(
            "--oracle prints a JSON line on stdout, which --out - already writes rows to"
        );
    }
    let generator = Arc::new(CtrGenerator::new(args.seed, args.event_time));
    if let Some(address) = super::io::kafka_address(&args.out) {
        return ctr_to_kafka(&args, &generator, KafkaUri::parse(address)?, format);
    }
    if args.rate.is_some() {
        anyhow::bail!("--rate paces rows to a Kafka topic; it needs --out kafka://…");
    }
    let file = open_out(&args.out)?;
    let bar = progress::bar(args.rows, "rows");
    let mut oracle = args.oracle.then(Vec::new);
    let mut positives = 0u64;
    let mut each_chunk = |f: &mut dyn FnMut(&CtrChunk, usize) -> anyhow::Result<()>| {
        let chunks = args.rows.div_ceil(CHUNK_ROWS as u64);
        for c in 0..chunks {
            let chunk = generator.chunk(c);
            let len = (args.rows - c * CHUNK_ROWS as u64).min(CHUNK_ROWS as u64) as usize;
            positives += chunk.labels[..len].iter().sum::<i64>() as u64;
            if let Some(o) = oracle.as_mut() {
                o.extend(
                    chunk.probability[..len]
                        .iter()
                        .zip(&chunk.labels[..len])
                        .map(|(&p, &y)| (p, y == 1)),
                );
            }
            f(&chunk, len)?;
            bar.inc(len as u64);
        }
        anyhow::Ok(())
    };
    match format {
        Format::Csv => {
            let mut w = BufWriter::with_capacity(1 << 20, file);
            let mut header = String::from("label,f0,f1,f2,f3,f4,c0,c1,c2,c3,c4,c5,c6,c7,c8,c9");
            if args.event_time {
                header.push_str(",ts");
            }
            writeln!(w, "{header}")?;
            let mut line = String::with_capacity(256);
            each_chunk(&mut |chunk, len| {
                for i in 0..len {
                    line.clear();
                    row_csv(&mut line, chunk, i, args.event_time);
                    w.write_all(line.as_bytes())?;
                }
                Ok(())
            })?;
            w.flush()?;
        }
        Format::Jsonl => {
            let mut w = BufWriter::with_capacity(1 << 20, file);
            let mut line = String::with_capacity(320);
            each_chunk(&mut |chunk, len| {
                for i in 0..len {
                    line.clear();
                    row_json(&mut line, chunk, i, args.event_time);
                    w.write_all(line.as_bytes())?;
                }
                Ok(())
            })?;
            w.flush()?;
        }
        Format::Parquet => {
            let props = WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .build();
            let mut w = ArrowWriter::try_new(file, generator.schema(), Some(props))?;
            let mut start = 0u64;
            each_chunk(&mut |_, len| {
                w.write(&generator.batch(start, len)?)?;
                start += len as u64;
                Ok(())
            })?;
            w.close()?;
        }
    }
    bar.finish_and_clear();
    let to = if is_stdout(&args.out) {
        "standard output".to_string()
    } else {
        args.out.display().to_string()
    };
    eprintln!(
        "wrote {} rows (click rate {:.4}) to {to}",
        args.rows,
        positives as f64 / args.rows.max(1) as f64,
    );
    if let Some(scored) = oracle {
        let (logloss, auc) = logloss_auc(scored);
        println!(
            "{}",
            serde_json::json!({
                "rows": args.rows,
                "ctr": positives as f64 / args.rows.max(1) as f64,
                "oracle_logloss": logloss,
                "oracle_auc": auc,
            })
        );
    }
    Ok(())
}

/// Writes the Nexmark events as `args` asks; prints the manifest as one JSON line.
pub fn nexmark(args: NexmarkArgs) -> anyhow::Result<()> {
    if args.rate == 0 {
        anyhow::bail!("--rate 0: events per second of event time, at least 1");
    }
    let generator = NexmarkGenerator::new(NexmarkConfig {
        seed: args.seed,
        rate: args.rate,
        ..NexmarkConfig::default()
    });
    let start = Instant::now();
    let manifest = write_csv(&generator, args.events, args.part_events, &args.out)
        .with_context(|| format!("writing Nexmark events to {}", args.out.display()))?;
    eprintln!(
        "wrote {} Nexmark events to {} in {:.1} s",
        manifest.events,
        args.out.display(),
        start.elapsed().as_secs_f64()
    );
    println!("{}", serde_json::to_string(&manifest)?);
    Ok(())
}

/// Sleeps so that row `sent` goes out no earlier than `sent / rate` seconds after `start`.
#[derive(Debug, Clone, Copy)]
struct Pacer {
    start: Instant,
    rate: f64,
}

impl Pacer {
    fn new(rate: Option<f64>) -> anyhow::Result<Option<Self>> {
        match rate {
            None => Ok(None),
            Some(r) if r.is_finite() && r > 0.0 => Ok(Some(Pacer {
                start: Instant::now(),
                rate: r,
            })),
            Some(r) => anyhow::bail!("--rate {r}: rows per second, more than 0"),
        }
    }

    fn wait(&self, sent: u64) {
        let due = self.start + Duration::from_secs_f64(sent as f64 / self.rate);
        if let Some(ahead) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(ahead);
        }
    }
}

/// Produces the click stream to a Kafka topic, one message per row (the JSON line or CSV
/// record `eddy gen` would write to a file, without the newline), waiting for every
/// acknowledgement at the end.
fn ctr_to_kafka(
    args: &CtrArgs,
    generator: &CtrGenerator,
    uri: KafkaUri,
    format: Format,
) -> anyhow::Result<()> {
    if args.oracle {
        anyhow::bail!("--oracle is for file output");
    }
    let csv = match format {
        Format::Jsonl => false,
        Format::Csv => true,
        Format::Parquet => anyhow::bail!("Kafka messages are JSON or CSV, not Parquet"),
    };
    let pacer = Pacer::new(args.rate)?;
    let mut out =
        KafkaWriter::open(&uri, DEFAULT_FLUSH_TIMEOUT).with_context(|| format!("opening {uri}"))?;
    let bar = progress::bar(args.rows, "rows");
    let mut line = String::with_capacity(320);
    let chunks = args.rows.div_ceil(CHUNK_ROWS as u64);
    for c in 0..chunks {
        let chunk = generator.chunk(c);
        let len = (args.rows - c * CHUNK_ROWS as u64).min(CHUNK_ROWS as u64) as usize;
        for i in 0..len {
            if let Some(p) = &pacer {
                p.wait(out.sent());
            }
            line.clear();
            if csv {
                row_csv(&mut line, &chunk, i, args.event_time);
            } else {
                row_json(&mut line, &chunk, i, args.event_time);
            }
            out.send(None, line.trim_end().as_bytes())?;
        }
        out.check()?;
        bar.inc(len as u64);
    }
    out.flush("the end of the rows")?;
    bar.finish_and_clear();
    eprintln!("produced {} rows to {uri}", args.rows);
    Ok(())
}

/// Replays `args.file` into the topic `args.out` (see [the module docs](self)).
pub fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    let Some(address) = super::io::kafka_address(&args.out) else {
        anyhow::bail!(
            "--out {}: eddy gen replay writes to a Kafka topic (kafka://HOST:PORT/TOPIC)",
            args.out.display()
        );
    };
    let uri = KafkaUri::parse(address)?;
    if uri.format == KafkaFormat::Csv {
        anyhow::bail!("{uri}: a replay writes each row as a JSON message; drop format=csv");
    }
    let pacer = Pacer::new(args.rate)?;
    let name = format!("replay {}", args.file.display());
    let mut source = file_source(&args)?;
    let mut ctx = SourceContext::standalone(&name);
    ctx.dead_letters = Arc::new(match &args.dead_letter {
        Some(path) => DeadLetterSink::to_file(path, args.on_error)?,
        None => DeadLetterSink::in_memory(args.on_error),
    });
    let mut sink = KafkaSink::new(KafkaSinkOptions::new(uri.clone()))?;
    sink.open(&TaskInfo::new(&name, 0, 1))
        .with_context(|| format!("opening {uri}"))?;
    source
        .open(&ctx)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let bar = progress::byte_bar(0);
    // paced: slices of at most 10 ms of rows, each sent when it is due
    let slice = args
        .rate
        .map_or(usize::MAX, |r| (r / 100.0).max(1.0) as usize);
    let mut sent = 0u64;
    loop {
        let batch = match source.poll_next(&ctx)? {
            SourcePoll::Batch(b) => b,
            SourcePoll::Idle => {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            SourcePoll::Watermark(_) => continue,
            SourcePoll::End => break,
        };
        let mut at = 0;
        while at < batch.num_rows() {
            let len = slice.min(batch.num_rows() - at);
            if let Some(p) = &pacer {
                p.wait(sent);
            }
            sink.write(&batch.slice(at, len))?;
            (at, sent) = (at + len, sent + len as u64);
        }
        bar.set_length(
            ctx.progress
                .total
                .load(std::sync::atomic::Ordering::Relaxed),
        );
        bar.set_position(ctx.progress.done.load(std::sync::atomic::Ordering::Relaxed));
    }
    sink.close()?;
    ctx.dead_letters.flush()?;
    bar.finish_and_clear();
    eprintln!("replayed {sent} rows of {} to {uri}", args.file.display());
    let malformed = ctx.dead_letters.count();
    if malformed > 0 {
        eprintln!(
            "malformed records: {malformed}{}",
            ctx.dead_letters
                .path()
                .map(|p| format!(" (see {})", p.display()))
                .unwrap_or_default()
        );
    }
    Ok(())
}

/// The bounded file source of `args.file`, by `--format` or its extension.
fn file_source(args: &ReplayArgs) -> anyhow::Result<Box<dyn Source>> {
    let path = &args.file;
    let format = match args.format {
        Some(Format::Csv) => DataFormat::Csv,
        Some(Format::Jsonl) => DataFormat::Jsonl,
        Some(Format::Parquet) => DataFormat::Parquet,
        None => super::io::format_of(path),
    };
    let reading = || format!("reading {}", path.display());
    Ok(match format {
        DataFormat::Csv => Box::new(CsvSource::new(CsvOptions::new(path)).with_context(reading)?),
        DataFormat::Jsonl => {
            Box::new(JsonLinesSource::new(JsonLinesOptions::new(path)).with_context(reading)?)
        }
        DataFormat::Parquet => {
            Box::new(ParquetSource::new(ParquetSourceOptions::new(path)).with_context(reading)?)
        }
    })
}

fn row_csv(line: &mut String, c: &CtrChunk, i: usize, ts: bool) {
    use std::fmt::Write;
    let _ = write!(line, "{}", c.labels[i]);
    for col in &c.numeric {
        line.push(',');
        write_g6(line, col[i]);
    }
    for col in &c.categorical {
        let _ = write!(line, ",v{}", col[i]);
    }
    if ts {
        let _ = write!(line, ",{}", c.ts[i]);
    }
    line.push('\n');
}

fn row_json(line: &mut String, c: &CtrChunk, i: usize, ts: bool) {
    use std::fmt::Write;
    let _ = write!(line, "{{\"label\":{}", c.labels[i]);
    for (j, col) in c.numeric.iter().enumerate() {
        let _ = write!(line, ",\"f{j}\":");
        write_g6(line, col[i]);
    }
    for (k, col) in c.categorical.iter().enumerate() {
        let _ = write!(line, ",\"c{k}\":\"v{}\"", col[i]);
    }
    if ts {
        let _ = write!(line, ",\"ts\":{}", c.ts[i]);
    }
    line.push_str("}\n");
}

/// Logloss and exact (tie-aware) ROC AUC of probabilities against labels.
fn logloss_auc(mut scored: Vec<(f64, bool)>) -> (f64, f64) {
    let n = scored.len().max(1) as f64;
    let logloss = scored
        .iter()
        .map(|&(p, y)| {
            let p = p.clamp(1e-15, 1.0 - 1e-15);
            if y {
                -p.ln()
            } else {
                -(1.0 - p).ln()
            }
        })
        .sum::<f64>()
        / n;
    scored.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut rank_sum, mut pos, mut i) = (0.0, 0.0, 0);
    while i < scored.len() {
        let mut j = i;
        while j < scored.len() && scored[j].0 == scored[i].0 {
            j += 1;
        }
        let mid_rank = (i + j + 1) as f64 / 2.0; // ranks are 1-based
        for s in &scored[i..j] {
            if s.1 {
                rank_sum += mid_rank;
                pos += 1.0;
            }
        }
        i = j;
    }
    let neg = scored.len() as f64 - pos;
    let auc = if pos == 0.0 || neg == 0.0 {
        0.5
    } else {
        (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg)
    };
    (logloss, auc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_matches_pair_counting() {
        let s = vec![
            (0.1, false),
            (0.4, true),
            (0.35, false),
            (0.8, true),
            (0.4, false),
        ];
        // pairs (pos, neg): (0.4,0.1)=1 (0.4,0.35)=1 (0.4,0.4)=0.5 (0.8,*)=3 → 5.5/6
        let (_, auc) = logloss_auc(s);
        assert!((auc - 5.5 / 6.0).abs() < 1e-12);
    }
}
