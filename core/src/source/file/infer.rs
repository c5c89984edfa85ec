//! Schema inference from the first rows of a file source.
//!
//! A column is `Int64` if its non-empty sampled values are integers, else `Float64` if they
//! are numbers, `Boolean` if they are `true`/`false`, else `Utf8` (also when it has no
//! non-empty value at all). One odd value does not re-type a column: up to 1 in
//! [`OUTLIER_SHARE`] of a column's non-empty values (rounded down, so none below 100 values)
//! may disagree with its type, and the rows holding them become dead letters when read, like
//! the same values further down the file. The rows that will be dead letters (an outlier in
//! any column) are then left out and the types decided again from the rest, so a rejected row
//! never shapes the schema. Inferred columns are nullable. CSV names come from the header (or
//! are `column_1..n` without one); JSON names in the order keys first appear. Sampled records
//! that are malformed (wrong field count, not one JSON object, a duplicate key, trailing
//! bytes, over the length limit) are skipped here; reading rejects them later.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde::de::{Deserializer, MapAccess, Visitor};

use super::csv::CsvDecoder;
use super::decode::parse_bool;
use super::reader::{LineReader, Next, ReadPos, ReaderConfig, Root};
use super::FileSourceOptions;
use crate::error::{Error, Result};

/// At most one in this many of a column's sampled non-empty values may disagree with the
/// type the others give it.
pub(crate) const OUTLIER_SHARE: usize = 100;

/// What one sampled value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Empty,
    Int,
    Float,
    Bool,
    Str,
}

impl Kind {
    /// Whether a column inferred as `self` takes a value of kind `value` when read.
    fn accepts(self, value: Kind) -> bool {
        use Kind::*;
        match (self, value) {
            (_, Empty) | (Empty | Str, _) => true,
            (Float, Int) => true,
            (a, b) => a == b,
        }
    }

    fn of_text(raw: &[u8]) -> Kind {
        let t = raw.trim_ascii();
        if t.is_empty() {
            Kind::Empty
        } else if lexical_core::parse::<i64>(t).is_ok() {
            Kind::Int
        } else if lexical_core::parse::<f64>(t).is_ok() {
            Kind::Float
        } else if parse_bool(t).is_some() {
            Kind::Bool
        } else {
            Kind::Str
        }
    }

    fn of_json(v: &serde_json::Value) -> Kind {
        match v {
            serde_json::Value::Null => Kind::Empty,
            serde_json::Value::Bool(_) => Kind::Bool,
            serde_json::Value::Number(n) if n.is_i64() => Kind::Int,
            serde_json::Value::Number(_) => Kind::Float,
            _ => Kind::Str,
        }
    }

    fn data_type(self) -> DataType {
        match self {
            Kind::Int => DataType::Int64,
            Kind::Float => DataType::Float64,
            Kind::Bool => DataType::Boolean,
            Kind::Empty | Kind::Str => DataType::Utf8,
        }
    }
}

/// The sampled rows: per row, the kind of each value present, by column index.
#[derive(Debug, Default)]
struct Sample {
    names: Vec<String>,
    rows: Vec<Vec<(usize, Kind)>>,
}

impl Sample {
    /// The kind of each column from the rows `keep` lets through; see the module docs.
    fn decide(&self, keep: impl Fn(&[(usize, Kind)]) -> bool) -> Vec<Kind> {
        // per column: ints, floats, bools, strings
        let mut counts = vec![[0usize; 4]; self.names.len()];
        for row in self.rows.iter().filter(|r| keep(r)) {
            for &(i, k) in row {
                match k {
                    Kind::Int => counts[i][0] += 1,
                    Kind::Float => counts[i][1] += 1,
                    Kind::Bool => counts[i][2] += 1,
                    Kind::Str => counts[i][3] += 1,
                    Kind::Empty => {}
                }
            }
        }
        counts
            .iter()
            .map(|&[int, float, boolean, text]| {
                let n = int + float + boolean + text;
                let enough = n - n / OUTLIER_SHARE;
                if n == 0 {
                    Kind::Empty
                } else if int + float >= enough {
                    if float > 0 {
                        Kind::Float
                    } else {
                        Kind::Int
                    }
                } else if boolean >= enough {
                    Kind::Bool
                } else {
                    Kind::Str
                }
            })
            .collect()
    }

    /// Samples one CSV record split into `spans` of `data` (skipped unless it has as many
    /// fields as there are names).
    fn push_csv(&mut self, data: &[u8], spans: &[(usize, usize)]) {
        if spans.len() != self.names.len() {
            return;
        }
        let row = spans
            .iter()
            .enumerate()
            .map(|(i, &(s, e))| (i, Kind::of_text(&data[s..e])))
            .collect();
        self.rows.push(row);
    }

    /// Samples one JSON-lines record; names first seen here are appended. Blank and malformed
    /// records are skipped: exactly what reading accepts is one object, nothing after it, no
    /// key twice.
    fn push_json(&mut self, bytes: &[u8]) {
        if bytes.trim_ascii().is_empty() {
            return;
        }
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let Ok(pairs) = de.deserialize_map(Pairs).and_then(|p| de.end().map(|()| p)) else {
            return;
        };
        let mut row: Vec<(usize, Kind)> = Vec::with_capacity(pairs.len());
        let mut duplicate = false;
        for (name, value) in pairs {
            let i = match self.names.iter().position(|n| *n == name) {
                Some(i) => i,
                None => {
                    self.names.push(name);
                    self.names.len() - 1
                }
            };
            duplicate |= row.iter().any(|&(j, _)| j == i);
            row.push((i, Kind::of_json(&value)));
        }
        if !duplicate {
            self.rows.push(row);
        }
    }

    /// The schema: types decided once, then again without the rows that will be rejected.
    fn schema(&self) -> SchemaRef {
        let first = self.decide(|_| true);
        let kinds = self.decide(|row| row.iter().all(|&(i, k)| first[i].accepts(k)));
        schema_of(&self.names, &kinds)
    }
}

fn schema_of(names: &[String], kinds: &[Kind]) -> SchemaRef {
    let fields: Vec<Field> = names
        .iter()
        .zip(kinds)
        .map(|(n, k)| Field::new(n, k.data_type(), true))
        .collect();
    Arc::new(Schema::new(fields))
}

/// Infers the schema of `opts` from its first `infer_rows` rows.
pub(crate) fn infer_schema(opts: &FileSourceOptions) -> Result<SchemaRef> {
    let path = opts.path();
    if super::source::is_stream(path) {
        return Err(Error::schema(
            format!("file source {}", path.display()),
            "it is a FIFO, pipe or device, not a regular file: it can be read only once, so \
             its schema cannot be inferred first; give the schema explicitly",
        ));
    }
    let cfg = ReaderConfig {
        root: Root::new(path),
        follow: opts.follow(),
        csv: opts.csv_bytes(),
        chunk_size: 64 * 1024,
        max_record: opts.max_record_bytes(),
        assign: None,
    };
    let mut reader = LineReader::new(cfg, ReadPos::default(), None);
    let empty = || {
        Error::schema(
            format!("file source {}", path.display()),
            "no rows to infer a schema from: give the schema explicitly",
        )
    };
    match opts {
        FileSourceOptions::Csv(csv) => {
            let mut decoder = CsvDecoder::new(csv.delimiter, csv.quote);
            let mut sample = Sample::default();
            let mut named = false;
            while sample.rows.len() < csv.infer_rows {
                let rec = match reader.next()? {
                    Next::Record(rec) => rec,
                    Next::Malformed(..) => continue,
                    Next::Idle | Next::End => break,
                };
                if rec.bytes.is_empty() || (csv.header && rec.first_in_file && named) {
                    continue;
                }
                let (data, spans) = decoder.split(rec.bytes);
                if !named {
                    named = true;
                    sample.names = if csv.header {
                        spans
                            .iter()
                            .enumerate()
                            .map(|(i, &(s, e))| match &data[s..e] {
                                [] => format!("column_{}", i + 1),
                                n => String::from_utf8_lossy(n).into_owned(),
                            })
                            .collect()
                    } else {
                        (1..=spans.len()).map(|i| format!("column_{i}")).collect()
                    };
                    if csv.header {
                        continue;
                    }
                }
                sample.push_csv(data, spans);
            }
            if !named {
                return Err(empty());
            }
            Ok(sample.schema())
        }
        FileSourceOptions::JsonLines(json) => {
            let mut sample = Sample::default();
            while sample.rows.len() < json.infer_rows {
                let rec = match reader.next()? {
                    Next::Record(rec) => rec,
                    Next::Malformed(..) => continue,
                    Next::Idle | Next::End => break,
                };
                sample.push_json(rec.bytes);
            }
            if sample.names.is_empty() {
                return Err(empty());
            }
            Ok(sample.schema())
        }
    }
}

/// Infers a schema from records held in memory, one record each (message payloads), by the
/// rules above: `csv` gives the delimiter and quote of header-less CSV records (columns
/// `column_1..n`, the field count of the first record), `None` reads JSON objects. `context`
/// names the input in the error for no usable record.
pub(crate) fn infer_from_records<'a>(
    csv: Option<(u8, u8)>,
    records: impl IntoIterator<Item = &'a [u8]>,
    context: &str,
) -> Result<SchemaRef> {
    let mut sample = Sample::default();
    match csv {
        Some((delimiter, quote)) => {
            let mut decoder = CsvDecoder::new(delimiter, quote);
            for rec in records.into_iter().filter(|r| !r.is_empty()) {
                let (data, spans) = decoder.split(rec);
                if sample.names.is_empty() {
                    sample.names = (1..=spans.len()).map(|i| format!("column_{i}")).collect();
                }
                sample.push_csv(data, spans);
            }
        }
        None => records.into_iter().for_each(|r| sample.push_json(r)),
    }
    if sample.names.is_empty() {
        return Err(Error::schema(
            context,
            "no records to infer a schema from: give the schema explicitly",
        ));
    }
    Ok(sample.schema())
}

/// The key/value pairs of a JSON object, in document order.
struct Pairs;

impl<'de> Visitor<'de> for Pairs {
    type Value = Vec<(String, serde_json::Value)>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(k) = map.next_key::<String>()? {
            out.push((k, map.next_value()?));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::file::{CsvOptions, JsonLinesOptions};

    #[test]
    fn csv_types_from_samples() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.csv");
        std::fs::write(&p, "i,f,b,s,e,m\n1,1.5,true,a,,1\n-2,3,FALSE,7,,x\n,,,,,\n").unwrap();
        let s = infer_schema(&CsvOptions::new(&p).into()).unwrap();
        let types: Vec<_> = s.fields().iter().map(|f| f.data_type().clone()).collect();
        use DataType::*;
        assert_eq!(types, [Int64, Float64, Boolean, Utf8, Utf8, Utf8]);
        assert_eq!(s.field(0).name(), "i");
        let mut opts = CsvOptions::new(&p);
        opts.header = false;
        opts.infer_rows = 1;
        let s = infer_schema(&opts.into()).unwrap();
        assert_eq!(s.field(0).name(), "column_1");
        assert_eq!(s.field(0).data_type(), &Utf8);
    }

    #[test]
    fn json_types_in_key_order_and_empty_input_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.jsonl");
        std::fs::write(
            &p,
            "{\"z\":1,\"a\":1.5,\"o\":{}}\n{\"z\":2,\"a\":2,\"b\":true}\n",
        )
        .unwrap();
        let s = infer_schema(&JsonLinesOptions::new(&p).into()).unwrap();
        let names: Vec<_> = s.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["z", "a", "o", "b"]);
        assert_eq!(s.field(0).data_type(), &DataType::Int64);
        assert_eq!(s.field(1).data_type(), &DataType::Float64);
        assert_eq!(s.field(2).data_type(), &DataType::Utf8);
        assert_eq!(s.field(3).data_type(), &DataType::Boolean);
        let e = dir.path().join("empty.jsonl");
        std::fs::write(&e, "").unwrap();
        assert!(infer_schema(&JsonLinesOptions::new(&e).into()).is_err());
    }
}
