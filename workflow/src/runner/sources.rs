//! A spec's sources as eddy-core [`Source`]s for the training job's dataflow: files through the
//! core file sources (bounded, or followed with `follow = true`), `ctr` rows through the core
//! generator source (paced with `rows-per-second`), Kafka topics through the core Kafka source
//! (partitions split over the source's subtasks, followed by default), hybrids through
//! [`HybridSource`](eddy_core::source::hybrid::HybridSource). Their positions are what the
//! job's checkpoints record, so a restored node seeks instead of skipping rows. A training
//! node's `delayed-labels` source is two of these joined in label mode ([`TrainInput`],
//! [`labels`](crate::labels)).

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use eddy_core::dataflow::{Dataflow, Stream};
use eddy_core::operator::TaskInfo;
use eddy_core::source::file::{CsvOptions, CsvSource, JsonLinesOptions, JsonLinesSource};
use eddy_core::source::hybrid::HybridSource;
use eddy_core::source::parquet::{ParquetSource, ParquetSourceOptions};
use eddy_core::source::{Source, SourceContext, SourceFactory, SourcePoll, SourcePosition};

use super::data::{generator, Generators};
use crate::error::{Error, Result};
use crate::labels::{labelled_stream, DelayedLabels, LabelCounters};
use crate::spec::{DelayedLabelsSpec, FileFormat, SourceSpec, Workflow};

/// A source ready for a dataflow.
pub(crate) struct FlowSource {
    /// Builds the source for each (attempt of the) source task.
    pub factory: SourceFactory,
    /// The schema of its batches.
    pub schema: SchemaRef,
    /// Rows per batch (the live part's, for a hybrid).
    pub batch_rows: usize,
}

/// What a training node reads: one source, or two joined into delayed labels.
pub(crate) enum TrainInput {
    /// A plain source (file, ctr, kafka, hybrid), by name.
    Plain(String, FlowSource),
    /// A `delayed-labels` source: its impressions and clicks (by name) and how they join.
    Labelled {
        impressions: (String, FlowSource),
        clicks: (String, FlowSource),
        spec: DelayedLabelsSpec,
    },
}

impl TrainInput {
    /// Source `name` of `wf`, its files opened (a bad path or header, or a `delayed-labels`
    /// key or time column missing from a side, is reported here, naming the key).
    pub(crate) fn open(wf: &Workflow, name: &str, generators: &Generators) -> Result<Self> {
        let Some(SourceSpec::DelayedLabels(spec)) = wf.sources.get(name) else {
            return Ok(TrainInput::Plain(
                name.into(),
                flow_source(wf, name, generators)?,
            ));
        };
        let impressions = flow_source(wf, &spec.impressions, generators)?;
        let clicks = flow_source(wf, &spec.clicks, generators)?;
        for (side, source) in [(&spec.impressions, &impressions), (&spec.clicks, &clicks)] {
            let columns: Vec<&str> = source
                .schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect();
            for (k, column) in spec
                .key
                .iter()
                .map(|c| ("key", c))
                .chain([("time", &spec.time)])
            {
                if !columns.contains(&column.as_str()) {
                    return Err(Error::InvalidArgument(format!(
                        "sources.{name}.{k}: column `{column}` is not in source `{side}` (its columns: {})",
                        columns.join(", ")
                    )));
                }
            }
        }
        Ok(TrainInput::Labelled {
            impressions: (spec.impressions.clone(), impressions),
            clicks: (spec.clicks.clone(), clicks),
            spec: spec.clone(),
        })
    }

    /// Rows per batch the learner is fed (the impressions' for delayed labels).
    pub(crate) fn batch_rows(&self) -> usize {
        match self {
            TrainInput::Plain(_, s) => s.batch_rows,
            TrainInput::Labelled { impressions, .. } => impressions.1.batch_rows,
        }
    }

    /// Adds the input to `flow`: the stream to train on and, for delayed labels, the label
    /// counters.
    pub(crate) fn attach(self, flow: &Dataflow) -> Result<(Stream, Option<Arc<LabelCounters>>)> {
        match self {
            TrainInput::Plain(name, s) => Ok((flow.source_with(&name, s.factory), None)),
            TrainInput::Labelled {
                impressions,
                clicks,
                spec,
            } => {
                let batch_rows = impressions.1.batch_rows;
                let left = flow.source_with(&impressions.0, impressions.1.factory);
                let right = flow.source_with(&clicks.0, clicks.1.factory);
                let (stream, counters) = labelled_stream(
                    &left,
                    &right,
                    &DelayedLabels {
                        key: spec.key,
                        time: spec.time,
                        wait: spec.wait,
                        out_of_orderness: spec.out_of_orderness,
                        parallelism: spec.parallelism as usize,
                        batch_rows,
                    },
                )?;
                Ok((stream, Some(counters)))
            }
        }
    }
}

/// Source `name` of `wf` as a [`FlowSource`].
pub(crate) fn flow_source(
    wf: &Workflow,
    name: &str,
    generators: &Generators,
) -> Result<FlowSource> {
    let spec = wf
        .sources
        .get(name)
        .ok_or_else(|| Error::InvalidArgument(format!("no source `{name}`")))?;
    let SourceSpec::Hybrid { history, live } = spec else {
        return single(name, spec, generators);
    };
    let part = |n: &String| {
        let inner = wf
            .sources
            .get(n)
            .ok_or_else(|| Error::InvalidArgument(format!("no source `{n}`")))?;
        single(n, inner, generators)
    };
    let (h, l) = (part(history)?, part(live)?);
    let factory: SourceFactory = Arc::new(move |task: &TaskInfo| {
        let source = HybridSource::new((h.factory)(task)?, (l.factory)(task)?)?;
        Ok(Box::new(source) as Box<dyn Source>)
    });
    Ok(FlowSource {
        factory,
        schema: l.schema,
        batch_rows: l.batch_rows,
    })
}

/// A file or `ctr` source.
fn single(name: &str, spec: &SourceSpec, generators: &Generators) -> Result<FlowSource> {
    match spec {
        SourceSpec::Ctr {
            seed,
            offset,
            rows,
            batch_rows,
            rows_per_second,
        } => {
            let g = generator(generators, *seed);
            let schema = g.schema();
            let (offset, rows, rate) = (*offset, *rows, *rows_per_second);
            let inner = eddy_core::source::generator::GeneratorSource::new(
                schema.clone(),
                Some(rows),
                Arc::new(move |start, len| g.batch(offset + start, len)),
            );
            let factory: SourceFactory = Arc::new(move |_: &TaskInfo| {
                Ok(Box::new(Paced::new(inner.clone(), rate)) as Box<dyn Source>)
            });
            Ok(FlowSource {
                factory,
                schema,
                batch_rows: *batch_rows,
            })
        }
        SourceSpec::File {
            path,
            format,
            batch_rows,
            follow,
        } => {
            let format = FileFormat::of(path, *format);
            let (factory, schema) = file_factory(path, format, *follow)
                .map_err(|e| Error::InvalidArgument(format!("source `{name}`: {e}")))?;
            Ok(FlowSource {
                factory,
                schema,
                batch_rows: *batch_rows,
            })
        }
        SourceSpec::Kafka { .. } => kafka_source(name, spec, None),
        SourceSpec::Hybrid { .. } => Err(Error::InvalidArgument(format!(
            "source `{name}`: a hybrid inside a hybrid"
        ))),
        SourceSpec::DelayedLabels(_) => Err(Error::InvalidArgument(format!(
            "source `{name}`: a delayed-labels source is a join, not one source: only a \
             training node reads it"
        ))),
    }
}

/// A Kafka source (of member `.0` of `.1`: only the partitions `p % .1 == .0`, the share of
/// one worker process of several); connects once now, so a bad address or topic is reported
/// before the job starts.
pub(crate) fn kafka_source(
    name: &str,
    spec: &SourceSpec,
    member: Option<(usize, usize)>,
) -> Result<FlowSource> {
    let SourceSpec::Kafka { uri, batch_rows } = spec else {
        return Err(Error::InvalidArgument(format!(
            "source `{name}` is not a Kafka topic"
        )));
    };
    let mut options = eddy_core::source::kafka::KafkaSourceOptions::new(uri.clone());
    if let Some((index, count)) = member {
        options = options.with_member(index, count);
    }
    let (factory, schema) = eddy_core::source::kafka::KafkaSource::factory(options)
        .map_err(|e| Error::InvalidArgument(format!("source `{name}`: {e}")))?;
    Ok(FlowSource {
        factory,
        schema,
        batch_rows: *batch_rows,
    })
}

/// Opens the file once (a bad path or header is reported before the job starts, and every
/// attempt then reads with the same schema) and returns its factory.
fn file_factory(
    path: &std::path::Path,
    format: FileFormat,
    follow: bool,
) -> eddy_core::Result<(SourceFactory, SchemaRef)> {
    Ok(match format {
        FileFormat::Csv => {
            let options = CsvOptions::new(path).with_follow(follow);
            let schema = CsvSource::new(options.clone())?.schema();
            (
                CsvSource::factory(options.with_schema(schema.clone())),
                schema,
            )
        }
        FileFormat::Jsonl => {
            let options = JsonLinesOptions::new(path).with_follow(follow);
            let schema = JsonLinesSource::new(options.clone())?.schema();
            (
                JsonLinesSource::factory(options.with_schema(schema.clone())),
                schema,
            )
        }
        FileFormat::Parquet => {
            let mut options = ParquetSourceOptions::new(path);
            options.follow = follow;
            let schema = ParquetSource::new(options.clone())?.schema();
            (ParquetSource::factory(options), schema)
        }
    })
}

/// A source delivering at most `rate` rows per second (measured from its first poll; a
/// restored source starts a new measure). Told to stop following, it ends at once: a paced
/// stream is the demo's stand-in for a live one.
struct Paced<S> {
    inner: S,
    rate: Option<f64>,
    started: Option<Instant>,
    delivered: u64,
    stopped: bool,
}

impl<S: Source> Paced<S> {
    fn new(inner: S, rate: Option<f64>) -> Self {
        Paced {
            inner,
            rate,
            started: None,
            delivered: 0,
            stopped: false,
        }
    }
}

impl<S: Source> Source for Paced<S> {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn open(&mut self, ctx: &SourceContext) -> eddy_core::Result<()> {
        self.inner.open(ctx)
    }

    fn poll_next(&mut self, ctx: &SourceContext) -> eddy_core::Result<SourcePoll> {
        if self.stopped {
            return Ok(SourcePoll::End);
        }
        if let Some(rate) = self.rate {
            let started = *self.started.get_or_insert_with(Instant::now);
            let due = Duration::from_secs_f64(self.delivered as f64 / rate);
            if started.elapsed() < due {
                return Ok(SourcePoll::Idle);
            }
        }
        let poll = self.inner.poll_next(ctx)?;
        if let SourcePoll::Batch(b) = &poll {
            self.delivered += b.num_rows() as u64;
        }
        Ok(poll)
    }

    fn position(&self) -> SourcePosition {
        self.inner.position()
    }

    fn seek(&mut self, position: &SourcePosition) -> eddy_core::Result<()> {
        self.started = None;
        self.delivered = 0;
        self.inner.seek(position)
    }

    fn stop_following(&mut self) {
        self.stopped = true;
        self.inner.stop_following();
    }

    fn on_checkpoint_complete(
        &mut self,
        epoch: eddy_core::message::Epoch,
        position: &SourcePosition,
    ) -> eddy_core::Result<()> {
        self.inner.on_checkpoint_complete(epoch, position)
    }
}
