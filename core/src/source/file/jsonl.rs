//! JSON lines into columns. Each line is one JSON object, streamed through `serde_json` with a
//! visitor that appends each value straight into its column (keys are looked up without
//! allocating). Unknown keys are ignored; a missing key is a null; nested objects and arrays
//! land in `Utf8` columns as JSON text. Numeric columns also accept numbers written as strings.

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;

use arrow::datatypes::SchemaRef;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::csv::RowError;
use super::decode::{BatchBuilder, ColumnBuilder};

/// Decodes JSON lines into a [`BatchBuilder`].
#[derive(Debug)]
pub(crate) struct JsonDecoder {
    index: HashMap<String, usize>,
    seen: Vec<bool>,
}

impl JsonDecoder {
    pub(crate) fn new(schema: &SchemaRef) -> Self {
        JsonDecoder {
            index: schema
                .fields()
                .iter()
                .enumerate()
                .map(|(i, f)| (f.name().clone(), i))
                .collect(),
            seen: vec![false; schema.fields().len()],
        }
    }

    /// Appends one line as a row. `Ok(false)` for a blank line.
    pub(crate) fn decode(&mut self, rec: &[u8], b: &mut BatchBuilder) -> Result<bool, RowError> {
        if rec.trim_ascii().is_empty() {
            return Ok(false);
        }
        self.seen.iter_mut().for_each(|s| *s = false);
        let column = Cell::new(0usize);
        let mut de = serde_json::Deserializer::from_slice(rec);
        let visitor = RowVisitor {
            b: &mut *b,
            index: &self.index,
            seen: &mut self.seen,
            column: &column,
        };
        let parsed = de.deserialize_map(visitor).and_then(|()| de.end());
        if let Err(e) = parsed {
            b.rollback();
            return Err((column.get(), e.to_string()));
        }
        for (i, seen) in self.seen.iter().enumerate() {
            if !seen {
                if let Err(reason) = b.column(i).push_null() {
                    b.rollback();
                    return Err((i + 1, format!("missing field: {reason}")));
                }
            }
        }
        b.commit_row().map_err(|r| (0, r))?;
        Ok(true)
    }
}

struct RowVisitor<'a> {
    b: &'a mut BatchBuilder,
    index: &'a HashMap<String, usize>,
    seen: &'a mut [bool],
    /// The 1-based column being decoded (0 outside a value), for error reports.
    column: &'a Cell<usize>,
}

impl<'de> Visitor<'de> for RowVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(KeySeed(self.index))? {
            let Some(i) = key else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            self.column.set(i + 1);
            if self.seen[i] {
                return Err(de::Error::custom("duplicate key"));
            }
            map.next_value_seed(ValueSeed(self.b.column(i)))?;
            self.seen[i] = true;
            self.column.set(0);
        }
        Ok(())
    }
}

/// Maps a key to its column without allocating.
struct KeySeed<'a>(&'a HashMap<String, usize>);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<usize>, E> {
        Ok(self.0.get(v).copied())
    }
}

/// Appends one value to its column.
struct ValueSeed<'a>(&'a mut ColumnBuilder);

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

fn done<E: de::Error>(r: Result<(), String>) -> Result<(), E> {
    r.map_err(E::custom)
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        done(self.0.push_null())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        done(self.0.push_bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        done(self.0.push_i64(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        match i64::try_from(v) {
            Ok(v) => done(self.0.push_i64(v)),
            Err(_) => done(self.0.push_f64(v as f64)),
        }
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        done(self.0.push_f64(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        done(self.0.push_text(v.as_bytes()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        let v: serde_json::Value =
            serde::Deserialize::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        nested(self.0, &v)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let v: serde_json::Value =
            serde::Deserialize::deserialize(de::value::MapAccessDeserializer::new(map))?;
        nested(self.0, &v)
    }
}

fn nested<E: de::Error>(col: &mut ColumnBuilder, v: &serde_json::Value) -> Result<(), E> {
    if !col.is_utf8() {
        return Err(E::custom(format!("unexpected nested value {v}")));
    }
    done(col.push_text(v.to_string().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    #[test]
    fn objects_missing_keys_nested_and_errors() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("s", DataType::Utf8, true),
            Field::new("k", DataType::Int32, false),
        ]));
        let mut b = BatchBuilder::new(schema.clone(), 8).unwrap();
        let mut d = JsonDecoder::new(&schema);
        assert!(d
            .decode(br#"{"n": 1, "s": "a", "k": 2, "x": [1]}"#, &mut b)
            .unwrap());
        assert!(d
            .decode(br#"{"k": 3, "s": {"a": [1, 2]}}"#, &mut b)
            .unwrap());
        assert!(d.decode(br#"{"k": "4", "n": null}"#, &mut b).unwrap());
        assert!(!d.decode(b"  ", &mut b).unwrap());
        assert_eq!(d.decode(br#"{"n": 1, "#, &mut b).unwrap_err().0, 0);
        assert_eq!(d.decode(br#"[1, 2]"#, &mut b).unwrap_err().0, 0);
        assert_eq!(d.decode(br#"{"n": "x", "k": 1}"#, &mut b).unwrap_err().0, 1);
        assert_eq!(d.decode(br#"{"n": 1}"#, &mut b).unwrap_err().0, 3);
        assert_eq!(d.decode(br#"{"k": 1} x"#, &mut b).unwrap_err().0, 0);
        assert_eq!(d.decode(br#"{"k": 1, "k": 2}"#, &mut b).unwrap_err().0, 3);
        let batch = b.finish().unwrap();
        assert_eq!(batch.num_rows(), 3);
        let n = batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(n.iter().collect::<Vec<_>>(), vec![Some(1), None, None]);
        assert_eq!(
            batch.column(1).as_string::<i32>().value(1),
            r#"{"a":[1,2]}"#
        );
    }
}
