//! Reading a spec's sources as record batches, on the calling (blocking) thread: files through
//! eddy-core's file sources, `ctr` rows from eddy-core's generator, hybrids as history then live.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use eddy_core::datagen::ctr::CtrGenerator;
use eddy_core::source::file::{CsvOptions, CsvSource, JsonLinesOptions, JsonLinesSource};
use eddy_core::source::parquet::{ParquetSource, ParquetSourceOptions};
use eddy_core::source::{Source, SourceContext, SourcePoll};

use crate::error::{Error, Result};
use crate::spec::{FileFormat, SourceSpec, Workflow};

enum Part {
    Ctr {
        generator: Arc<CtrGenerator>,
        next: u64,
        end: u64,
        batch_rows: usize,
        rows_per_second: Option<f64>,
    },
    Source {
        source: Box<dyn Source>,
        ctx: SourceContext,
        opened: bool,
    },
}

/// The click generators of a run by seed, shared by every reader: building one and
/// generating its 50 000-row chunks is the expensive part, and the generator keeps its last
/// chunk.
pub(crate) type Generators = Arc<Mutex<BTreeMap<u64, Arc<CtrGenerator>>>>;

pub(crate) fn generator(generators: &Generators, seed: u64) -> Arc<CtrGenerator> {
    let mut g = generators.lock().unwrap_or_else(|p| p.into_inner());
    g.entry(seed)
        .or_insert_with(|| Arc::new(CtrGenerator::new(seed, false)))
        .clone()
}

/// The batches of one source, in order.
pub(crate) struct SourceReader {
    parts: VecDeque<Part>,
    started: Option<(Instant, u64)>,
    stop: Arc<AtomicBool>,
}

/// A short description of a source, for lineage.
pub(crate) fn describe(wf: &Workflow, name: &str) -> String {
    match wf.sources.get(name) {
        Some(SourceSpec::File { path, .. }) => format!("{name}: {}", path.display()),
        Some(SourceSpec::Ctr {
            seed, offset, rows, ..
        }) => {
            format!("{name}: ctr seed {seed} rows {offset}..{}", offset + rows)
        }
        Some(SourceSpec::Hybrid { history, live }) => format!("{name}: {history} then {live}"),
        None => name.to_string(),
    }
}

impl SourceReader {
    /// Opens source `name` of `wf`; `stop` ends a paced stream early.
    pub(crate) fn open(
        wf: &Workflow,
        name: &str,
        stop: Arc<AtomicBool>,
        generators: &Generators,
    ) -> Result<Self> {
        let mut parts = VecDeque::new();
        let spec = wf
            .sources
            .get(name)
            .ok_or_else(|| Error::InvalidArgument(format!("no source `{name}`")))?;
        match spec {
            SourceSpec::Hybrid { history, live } => {
                for n in [history, live] {
                    let inner = wf
                        .sources
                        .get(n)
                        .ok_or_else(|| Error::InvalidArgument(format!("no source `{n}`")))?;
                    parts.push_back(part(n, inner, generators)?);
                }
            }
            other => parts.push_back(part(name, other, generators)?),
        }
        Ok(SourceReader {
            parts,
            started: None,
            stop,
        })
    }

    /// The next batch, or `None` at the end.
    pub(crate) fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        let batch = self.next_unpaced()?;
        if let (
            Some(b),
            Some(Part::Ctr {
                rows_per_second: Some(rate),
                ..
            }),
        ) = (&batch, self.parts.front())
        {
            let rate = *rate;
            let (t0, done) = self.started.get_or_insert((Instant::now(), 0));
            *done += b.num_rows() as u64;
            let due = Duration::from_secs_f64(*done as f64 / rate);
            let t0 = *t0;
            while t0.elapsed() < due && !self.stop.load(Ordering::Relaxed) {
                std::thread::sleep((due - t0.elapsed()).min(Duration::from_millis(50)));
            }
        }
        Ok(batch)
    }

    fn next_unpaced(&mut self) -> Result<Option<RecordBatch>> {
        loop {
            let Some(front) = self.parts.front_mut() else {
                return Ok(None);
            };
            match front {
                Part::Ctr {
                    generator,
                    next,
                    end,
                    batch_rows,
                    ..
                } => {
                    if *next >= *end {
                        self.parts.pop_front();
                        self.started = None;
                        continue;
                    }
                    let len = (*end - *next).min(*batch_rows as u64) as usize;
                    let batch = generator.batch(*next, len)?;
                    *next += len as u64;
                    return Ok(Some(batch));
                }
                Part::Source {
                    source,
                    ctx,
                    opened,
                } => {
                    if !*opened {
                        source.open(ctx)?;
                        *opened = true;
                    }
                    match source.poll_next(ctx)? {
                        SourcePoll::Batch(b) => return Ok(Some(b)),
                        SourcePoll::Watermark(_) => {}
                        SourcePoll::Idle => std::thread::sleep(Duration::from_millis(10)),
                        SourcePoll::End => {
                            self.parts.pop_front();
                        }
                    }
                }
            }
        }
    }
}

fn part(name: &str, spec: &SourceSpec, generators: &Generators) -> Result<Part> {
    Ok(match spec {
        SourceSpec::Ctr {
            seed,
            offset,
            rows,
            batch_rows,
            rows_per_second,
        } => Part::Ctr {
            generator: generator(generators, *seed),
            next: *offset,
            end: offset + rows,
            batch_rows: *batch_rows,
            rows_per_second: *rows_per_second,
        },
        SourceSpec::File {
            path,
            format,
            batch_rows,
            ..
        } => {
            let format = FileFormat::of(path, *format);
            let source: Box<dyn Source> = match format {
                FileFormat::Csv => Box::new(CsvSource::new(CsvOptions::new(path))?),
                FileFormat::Jsonl => Box::new(JsonLinesSource::new(JsonLinesOptions::new(path))?),
                FileFormat::Parquet => {
                    Box::new(ParquetSource::new(ParquetSourceOptions::new(path))?)
                }
            };
            let mut ctx = SourceContext::standalone(name);
            ctx.bounds.max_rows = *batch_rows;
            Part::Source {
                source,
                ctx,
                opened: false,
            }
        }
        SourceSpec::Hybrid { .. } => {
            return Err(Error::InvalidArgument(format!(
                "source `{name}`: a hybrid inside a hybrid"
            )))
        }
    })
}
