//! Schema inference from the first rows of a file source.
//!
//! A column is `Int64` if every non-empty sampled value is an integer, else `Float64` if every
//! one is a number, `Boolean` if every one is `true`/`false`, else `Utf8` (also when it has no
//! non-empty value at all). Inferred columns are nullable. CSV names come from the header (or
//! are `column_1..n` without one); JSON names in the order keys first appear. Sampled rows
//! that are malformed are skipped here; reading rejects them later.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde::de::{Deserializer, MapAccess, Visitor};

use super::csv::CsvDecoder;
use super::decode::parse_bool;
use super::reader::{LineReader, Next, ReadPos, ReaderConfig, Root};
use super::FileSourceOptions;
use crate::error::{Error, Result};

/// What the sampled values of a column allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Empty,
    Int,
    Float,
    Bool,
    Str,
}

impl Kind {
    fn merge(self, other: Kind) -> Kind {
        use Kind::*;
        match (self, other) {
            (Empty, k) | (k, Empty) => k,
            (a, b) if a == b => a,
            (Int, Float) | (Float, Int) => Float,
            _ => Str,
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

fn schema_of(names: Vec<String>, kinds: &[Kind]) -> SchemaRef {
    let fields: Vec<Field> = names
        .into_iter()
        .zip(kinds)
        .map(|(n, k)| Field::new(n, k.data_type(), true))
        .collect();
    Arc::new(Schema::new(fields))
}

/// Infers the schema of `opts` from its first `infer_rows` rows.
pub(crate) fn infer_schema(opts: &FileSourceOptions) -> Result<SchemaRef> {
    let path = opts.path();
    let cfg = ReaderConfig {
        root: Root::new(path),
        follow: opts.follow(),
        quote: opts.quote(),
        chunk_size: 64 * 1024,
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
            let mut names: Option<Vec<String>> = None;
            let mut kinds: Vec<Kind> = Vec::new();
            let mut rows = 0;
            while rows < csv.infer_rows {
                let Next::Record(rec) = reader.next()? else {
                    break;
                };
                if rec.bytes.is_empty() || (csv.header && rec.first_in_file && names.is_some()) {
                    continue;
                }
                let (data, spans) = decoder.split(rec.bytes);
                if names.is_none() {
                    let width = spans.len();
                    kinds = vec![Kind::Empty; width];
                    names = Some(if csv.header {
                        spans
                            .iter()
                            .enumerate()
                            .map(|(i, &(s, e))| match &data[s..e] {
                                [] => format!("column_{}", i + 1),
                                n => String::from_utf8_lossy(n).into_owned(),
                            })
                            .collect()
                    } else {
                        (1..=width).map(|i| format!("column_{i}")).collect()
                    });
                    if csv.header {
                        continue;
                    }
                }
                if spans.len() != kinds.len() {
                    continue;
                }
                for (k, &(s, e)) in kinds.iter_mut().zip(spans) {
                    *k = k.merge(Kind::of_text(&data[s..e]));
                }
                rows += 1;
            }
            let names = names.ok_or_else(empty)?;
            Ok(schema_of(names, &kinds))
        }
        FileSourceOptions::JsonLines(json) => {
            let mut names: Vec<String> = Vec::new();
            let mut kinds: Vec<Kind> = Vec::new();
            let mut rows = 0;
            while rows < json.infer_rows {
                let Next::Record(rec) = reader.next()? else {
                    break;
                };
                let mut de = serde_json::Deserializer::from_slice(rec.bytes);
                let Ok(pairs) = de.deserialize_map(Pairs) else {
                    continue;
                };
                for (name, value) in pairs {
                    let kind = Kind::of_json(&value);
                    match names.iter().position(|n| *n == name) {
                        Some(i) => kinds[i] = kinds[i].merge(kind),
                        None => {
                            names.push(name);
                            kinds.push(kind);
                        }
                    }
                }
                rows += 1;
            }
            if names.is_empty() {
                return Err(empty());
            }
            Ok(schema_of(names, &kinds))
        }
    }
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
