//! CSV records into columns. A record without quotes (the common case) is split with `memchr`
//! on the delimiter; a record with quotes goes through `csv-core`, which unquotes fields and
//! keeps delimiters and newlines inside quotes. Buffers are reused: nothing is allocated per
//! row or per field.

use csv_core::{ReadRecordResult, Reader, ReaderBuilder, Terminator};
use memchr::{memchr, memchr_iter};

use super::decode::BatchBuilder;

/// Splits CSV records into fields and appends them to a [`BatchBuilder`].
#[derive(Debug)]
pub(crate) struct CsvDecoder {
    delimiter: u8,
    quote: u8,
    reader: Reader,
    out: Vec<u8>,
    ends: Vec<usize>,
    spans: Vec<(usize, usize)>,
}

/// A record that could not become a row: (1-based column or 0 for the record, reason).
pub(crate) type RowError = (usize, String);

impl CsvDecoder {
    pub(crate) fn new(delimiter: u8, quote: u8) -> Self {
        CsvDecoder {
            delimiter,
            quote,
            reader: ReaderBuilder::new()
                .delimiter(delimiter)
                .quote(quote)
                .terminator(Terminator::Any(b'\n'))
                .build(),
            out: Vec::new(),
            ends: Vec::new(),
            spans: Vec::new(),
        }
    }

    /// The fields of one record (without its terminator): the bytes they live in and their
    /// `(start, end)` spans there.
    pub(crate) fn split<'a>(&'a mut self, rec: &'a [u8]) -> (&'a [u8], &'a [(usize, usize)]) {
        self.spans.clear();
        if memchr(self.quote, rec).is_none() {
            let mut start = 0;
            for i in memchr_iter(self.delimiter, rec) {
                self.spans.push((start, i));
                start = i + 1;
            }
            self.spans.push((start, rec.len()));
            return (rec, &self.spans);
        }
        // Unquoting never grows a field; every field ends at a delimiter or the record's end.
        self.out.resize(rec.len().max(1), 0);
        self.ends
            .resize(memchr_iter(self.delimiter, rec).count() + 2, 0);
        self.reader.reset();
        let (_, _, nout, nend) = self.reader.read_record(rec, &mut self.out, &mut self.ends);
        let (res, _, _, nend2) =
            self.reader
                .read_record(&[], &mut self.out[nout..], &mut self.ends[nend..]);
        let fields = if matches!(res, ReadRecordResult::Record) {
            nend + nend2
        } else {
            nend
        };
        let mut start = 0;
        for &end in &self.ends[..fields] {
            self.spans.push((start, end));
            start = end;
        }
        (&self.out, &self.spans)
    }

    /// Appends one record as a row. `Ok(false)` for a blank line (skipped, as CSV readers do).
    pub(crate) fn decode(&mut self, rec: &[u8], b: &mut BatchBuilder) -> Result<bool, RowError> {
        if rec.is_empty() {
            return Ok(false);
        }
        let width = b.width();
        let (data, spans) = self.split(rec);
        if spans.len() != width {
            return Err((0, format!("expected {width} fields, found {}", spans.len())));
        }
        for (i, &(s, e)) in spans.iter().enumerate() {
            if let Err(reason) = b.column(i).push_text(&data[s..e]) {
                b.rollback();
                return Err((i + 1, reason));
            }
        }
        b.commit_row().map_err(|r| (0, r))?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Float64Array};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn fields(d: &mut CsvDecoder, rec: &[u8]) -> Vec<String> {
        let (data, spans) = d.split(rec);
        spans
            .iter()
            .map(|&(s, e)| String::from_utf8_lossy(&data[s..e]).into_owned())
            .collect()
    }

    #[test]
    fn quoted_fields_keep_delimiters_newlines_and_doubled_quotes() {
        let mut d = CsvDecoder::new(b',', b'"');
        assert_eq!(fields(&mut d, b"a,b,,c"), ["a", "b", "", "c"]);
        assert_eq!(
            fields(&mut d, b"\"x,y\",\"say \"\"hi\"\"\",\"l1\nl2\",\"\""),
            ["x,y", "say \"hi\"", "l1\nl2", ""]
        );
        assert_eq!(fields(&mut d, b"1,\"2\""), ["1", "2"]);
        let mut semi = CsvDecoder::new(b';', b'"');
        assert_eq!(fields(&mut semi, b"a;\"b;c\""), ["a", "b;c"]);
    }

    #[test]
    fn rows_empty_fields_and_errors() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("x", DataType::Float64, true),
            Field::new("s", DataType::Utf8, true),
        ]));
        let mut b = BatchBuilder::new(schema, 8).unwrap();
        let mut d = CsvDecoder::new(b',', b'"');
        assert!(d.decode(b"1.5,a", &mut b).unwrap());
        assert!(d.decode(b",", &mut b).unwrap());
        assert!(!d.decode(b"", &mut b).unwrap());
        assert_eq!(d.decode(b"1,2,3", &mut b).unwrap_err().0, 0);
        assert_eq!(d.decode(b"abc,x", &mut b).unwrap_err().0, 1);
        assert_eq!(d.decode(b"2,\xff", &mut b).unwrap_err().0, 2);
        let batch = b.finish().unwrap();
        assert_eq!(batch.num_rows(), 2);
        let x = batch
            .column(0)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        assert_eq!(x.iter().collect::<Vec<_>>(), vec![Some(1.5), None]);
        assert_eq!(batch.column(1).as_string::<i32>().value(0), "a");
        assert!(batch.column(1).is_null(1));
    }
}
