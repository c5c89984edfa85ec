//! Key columns as comparable bytes (Arrow's row format), hashed once per batch with
//! [`keys::hash_rows`](crate::keys::hash_rows). Encoding reuses one buffer, so a batch costs no
//! allocation per row; stored keys decode back into Arrow columns for output, and save into (and
//! load from) a typed, JSON-friendly form for snapshots.

use std::str::FromStr;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, StringArray, UInt64Array,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, FieldRef, Float64Type, Int64Type, Schema, UInt64Type};
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, RowParser, Rows, SortField};

use crate::error::{Error, Result};
use crate::keys::hash_rows;

/// Encodes the key columns of batches.
#[derive(Debug)]
pub(crate) struct KeyCodec {
    names: Vec<String>,
    indices: Vec<usize>,
    fields: Vec<FieldRef>,
    converter: RowConverter,
    parser: RowParser,
    rows: Rows,
    hashes: Vec<u64>,
    columns: Vec<ArrayRef>,
}

fn supported(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Boolean
            | DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
            | DataType::Float32
            | DataType::Float64
    )
}

impl KeyCodec {
    /// A codec for `fields` (the key columns, in key order).
    fn from_fields(names: Vec<String>, fields: Vec<FieldRef>, operator: &str) -> Result<Self> {
        for f in &fields {
            if !supported(f.data_type()) {
                return Err(Error::schema(
                    operator,
                    format!(
                        "key column `{}` has type {}, which cannot be a key",
                        f.name(),
                        f.data_type()
                    ),
                ));
            }
        }
        let converter = RowConverter::new(
            fields
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect(),
        )?;
        let parser = converter.parser();
        let rows = converter.empty_rows(0, 0);
        Ok(KeyCodec {
            indices: Vec::new(),
            names,
            fields,
            converter,
            parser,
            rows,
            hashes: Vec::new(),
            columns: Vec::new(),
        })
    }

    /// A codec for the columns `names` of `schema`.
    pub(crate) fn new(names: &[String], schema: &Schema, operator: &str) -> Result<Self> {
        if names.is_empty() {
            return Err(Error::config(
                format!("{operator}.key"),
                "a keyed stream needs at least one key column",
            ));
        }
        let mut fields = Vec::with_capacity(names.len());
        for n in names {
            let i = schema.index_of(n).map_err(|_| {
                Error::schema(operator, format!("key column `{n}` is not in the stream"))
            })?;
            let f = schema.field(i);
            fields.push(Arc::new(Field::new(n, f.data_type().clone(), true)));
        }
        let mut codec = Self::from_fields(names.to_vec(), fields, operator)?;
        codec.bind(schema, operator)?;
        Ok(codec)
    }

    /// Points the codec at the key columns of `schema`, which must have the key types the
    /// codec was made for.
    pub(crate) fn bind(&mut self, schema: &Schema, operator: &str) -> Result<()> {
        let mut indices = Vec::with_capacity(self.names.len());
        for (n, f) in self.names.iter().zip(&self.fields) {
            let i = schema.index_of(n).map_err(|_| {
                Error::schema(operator, format!("key column `{n}` is not in the stream"))
            })?;
            if schema.field(i).data_type() != f.data_type() {
                return Err(Error::schema(
                    operator,
                    format!(
                        "key column `{n}` changed type from {} to {}",
                        f.data_type(),
                        schema.field(i).data_type()
                    ),
                ));
            }
            indices.push(i);
        }
        self.indices = indices;
        Ok(())
    }

    /// The key fields, for output schemas (nullable).
    pub(crate) fn fields(&self) -> &[FieldRef] {
        &self.fields
    }

    /// Hashes and encodes the keys of `batch`; read them with [`hash`](Self::hash) and
    /// [`key`](Self::key).
    pub(crate) fn encode(&mut self, batch: &RecordBatch) -> Result<()> {
        self.columns.clear();
        self.columns
            .extend(self.indices.iter().map(|&i| batch.column(i).clone()));
        hash_rows(&self.columns, &mut self.hashes)?;
        self.rows.clear();
        self.converter.append(&mut self.rows, &self.columns)?;
        self.columns.clear();
        Ok(())
    }

    /// A codec of the same key columns, with its own scratch space: a frozen snapshot decodes
    /// its keys with it off the data path.
    pub(crate) fn copy_for_saving(&self) -> Result<Self> {
        KeyCodec::from_fields(self.names.clone(), self.fields.clone(), "snapshot")
    }

    /// The key hash of `row` of the last encoded batch.
    #[inline]
    pub(crate) fn hash(&self, row: usize) -> u64 {
        self.hashes[row]
    }

    /// The key bytes of `row` of the last encoded batch.
    #[inline]
    pub(crate) fn key(&self, row: usize) -> &[u8] {
        self.rows.row(row).data()
    }

    /// Key columns from stored key bytes (which this codec, or one loaded from its save, made).
    pub(crate) fn decode<'a>(
        &self,
        keys: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Vec<ArrayRef>> {
        Ok(self
            .converter
            .convert_rows(keys.into_iter().map(|k| self.parser.parse(k)))?)
    }

    /// The hashes of stored keys (as [`hash_rows`] computes them for their rows).
    pub(crate) fn hash_stored(&self, keys: &[Vec<u8>]) -> Result<Vec<u64>> {
        let mut hashes = Vec::with_capacity(keys.len());
        if !keys.is_empty() {
            let columns = self.decode(keys.iter().map(Vec::as_slice))?;
            hash_rows(&columns, &mut hashes)?;
        }
        Ok(hashes)
    }

    /// Saves stored keys in a typed, self-describing form.
    pub(crate) fn save<'a>(&self, keys: impl IntoIterator<Item = &'a [u8]>) -> Result<SavedKeys> {
        let columns = self.decode(keys)?;
        let mut saved = Vec::with_capacity(columns.len());
        for c in &columns {
            saved.push(match c.data_type() {
                DataType::Utf8 | DataType::LargeUtf8 => {
                    let s = cast(c, &DataType::Utf8)?;
                    SavedColumn::Str(
                        s.as_string::<i32>()
                            .iter()
                            .map(|v| v.map(str::to_string))
                            .collect(),
                    )
                }
                DataType::Boolean => SavedColumn::Bool(c.as_boolean().iter().collect()),
                DataType::Float32 | DataType::Float64 => {
                    let f = cast(c, &DataType::Float64)?;
                    SavedColumn::F64(
                        f.as_primitive::<Float64Type>()
                            .iter()
                            .map(|v| v.map(f64::to_bits))
                            .collect(),
                    )
                }
                DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
                    let u = cast(c, &DataType::UInt64)?;
                    SavedColumn::U64(u.as_primitive::<UInt64Type>().iter().collect())
                }
                _ => {
                    let i = cast(c, &DataType::Int64)?;
                    SavedColumn::I64(i.as_primitive::<Int64Type>().iter().collect())
                }
            });
        }
        Ok(SavedKeys {
            names: self.names.clone(),
            types: self
                .fields
                .iter()
                .map(|f| f.data_type().to_string())
                .collect(),
            columns: saved,
        })
    }

    /// [`load`](Self::load) for a restored key group whose `values` (windows, sessions: `what`)
    /// pair with its keys one to one, refusing a group whose keys and values differ in number.
    pub(crate) fn load_paired(
        saved: &SavedKeys,
        operator: &str,
        values: usize,
        what: &str,
    ) -> Result<(KeyCodec, Vec<Vec<u8>>)> {
        let (codec, keys) = Self::load(saved, operator)?;
        if keys.len() != values {
            return Err(Error::config(
                format!("{operator}.state"),
                format!("keys and {what} differ in number"),
            ));
        }
        Ok((codec, keys))
    }

    /// A codec and the key bytes of every saved key, in order.
    pub(crate) fn load(saved: &SavedKeys, operator: &str) -> Result<(KeyCodec, Vec<Vec<u8>>)> {
        let bad = |m: String| Error::config(format!("{operator}.state"), m);
        if saved.types.len() != saved.names.len() || saved.columns.len() != saved.names.len() {
            return Err(bad("key columns, names and types differ in number".into()));
        }
        let mut fields = Vec::new();
        let mut arrays: Vec<ArrayRef> = Vec::new();
        for ((name, t), col) in saved.names.iter().zip(&saved.types).zip(&saved.columns) {
            let t = DataType::from_str(t).map_err(|e| bad(format!("key type `{t}`: {e}")))?;
            let base: ArrayRef = match col {
                SavedColumn::I64(v) => Arc::new(Int64Array::from(v.clone())),
                SavedColumn::U64(v) => Arc::new(UInt64Array::from(v.clone())),
                SavedColumn::F64(v) => Arc::new(Float64Array::from(
                    v.iter().map(|b| b.map(f64::from_bits)).collect::<Vec<_>>(),
                )),
                SavedColumn::Bool(v) => Arc::new(BooleanArray::from(v.clone())),
                SavedColumn::Str(v) => Arc::new(StringArray::from(v.clone())),
            };
            arrays.push(cast(&base, &t)?);
            fields.push(Arc::new(Field::new(name, t, true)));
        }
        let n = arrays.first().map_or(0, |a| a.len());
        if arrays.iter().any(|a| a.len() != n) {
            return Err(bad("key columns differ in length".into()));
        }
        let mut codec = KeyCodec::from_fields(saved.names.clone(), fields, operator)?;
        let rows = codec.converter.convert_columns(&arrays)?;
        let keys = rows.iter().map(|r| r.data().to_vec()).collect();
        codec.indices = Vec::new(); // bound to a schema by the first batch
        codec.rows = codec.converter.empty_rows(0, 0);
        Ok((codec, keys))
    }
}

/// Key values in a snapshot: the key names and types, and one typed column per key column.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct SavedKeys {
    names: Vec<String>,
    types: Vec<String>,
    columns: Vec<SavedColumn>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
enum SavedColumn {
    I64(Vec<Option<i64>>),
    U64(Vec<Option<u64>>),
    F64(Vec<Option<u64>>),
    Bool(Vec<Option<bool>>),
    Str(Vec<Option<String>>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Float32Array;

    #[test]
    fn keys_round_trip_through_bytes_and_saves() {
        let batch = RecordBatch::try_from_iter([
            (
                "s",
                Arc::new(StringArray::from(vec![Some("x"), None, Some("x")])) as ArrayRef,
            ),
            (
                "f",
                Arc::new(Float32Array::from(vec![1.5, 2.0, 1.5])) as ArrayRef,
            ),
        ])
        .unwrap();
        let names = vec!["s".to_string(), "f".to_string()];
        let mut codec = KeyCodec::new(&names, &batch.schema(), "w").unwrap();
        codec.encode(&batch).unwrap();
        assert_eq!(codec.key(0), codec.key(2));
        assert_eq!(codec.hash(0), codec.hash(2));
        assert_ne!(codec.key(0), codec.key(1));
        let stored: Vec<Vec<u8>> = (0..3).map(|r| codec.key(r).to_vec()).collect();
        let cols = codec.decode(stored.iter().map(|k| k.as_slice())).unwrap();
        assert_eq!(&cols[0], batch.column(0));
        assert_eq!(&cols[1], batch.column(1));

        let saved = codec.save(stored.iter().map(|k| k.as_slice())).unwrap();
        let json = serde_json::to_string(&saved).unwrap();
        let back: SavedKeys = serde_json::from_str(&json).unwrap();
        let (mut loaded, keys) = KeyCodec::load(&back, "w").unwrap();
        assert_eq!(keys, stored);
        assert!(loaded.indices.is_empty());
        loaded.bind(&batch.schema(), "w").unwrap();
        loaded.encode(&batch).unwrap();
        assert_eq!(loaded.key(1), stored[1].as_slice());
    }

    #[test]
    fn missing_or_unsupported_key_columns_are_named() {
        let batch = RecordBatch::try_from_iter([(
            "l",
            Arc::new(arrow::array::ListArray::new_null(
                Arc::new(Field::new("item", DataType::Int64, true)),
                1,
            )) as ArrayRef,
        )])
        .unwrap();
        let e = KeyCodec::new(&["nope".into()], &batch.schema(), "w").unwrap_err();
        assert!(e.to_string().contains("`nope`"), "{e}");
        let e = KeyCodec::new(&["l".into()], &batch.schema(), "w").unwrap_err();
        assert!(e.to_string().contains("`l`"), "{e}");
    }
}
