//! Record framing: where one record ends, by the format's own rules. One scanner serves the
//! reader, the byte-range splits and schema inference, so all of them cut the input at the
//! same places.
//!
//! - **Line terminator**: per file, the first line end decides: a lone `\r` (classic Mac
//!   files) makes `\r` the terminator, anything else `\n` (a `\r` before it is trimmed from
//!   the record). See [`detect_terminator`].
//! - **CSV quotes** (RFC 4180): a quote opens a quoted field only at the start of a field (the
//!   record's first byte, or just after a delimiter); inside it, a doubled quote is a literal
//!   quote and terminators belong to the field. A quote anywhere else (`ab"cd`) is an
//!   ordinary byte, exactly as `csv-core` decodes it, so a stray quote cannot swallow the
//!   lines after it.
//! - JSON lines have no quoting at this level: JSON strings cannot hold a raw newline.
//!
//! The scanner is streaming: it can be fed a record in pieces (buffer refills, file chunks)
//! and it allocates nothing.

use memchr::{memchr, memchr2, memchr_iter};

/// Bytes looked at from the start of a file to decide its line terminator.
pub(crate) const DETECT_WINDOW: usize = 64 * 1024;

/// How records are framed: the terminator and, for CSV, the quote and delimiter bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Framing {
    /// `b'\n'` or `b'\r'`.
    pub(crate) term: u8,
    /// `(quote, delimiter)` for CSV; `None` for JSON lines.
    pub(crate) csv: Option<(u8, u8)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    /// Outside quotes; `field_start` says whether the next byte starts a field.
    #[default]
    Plain,
    /// Inside a quoted field.
    Quoted,
    /// Inside a quoted field, just after a quote that may close it or be doubled.
    QuoteInQuoted,
}

/// A streaming record scanner: [`feed`](Scanner::feed) it the bytes of a record in order;
/// it says where the record's terminator is.
#[derive(Debug, Clone)]
pub(crate) struct Scanner {
    framing: Framing,
    state: State,
    field_start: bool,
    /// Terminator bytes seen inside the current record's quoted fields.
    inner: u64,
}

impl Scanner {
    pub(crate) fn new(framing: Framing) -> Self {
        Scanner {
            framing,
            state: State::Plain,
            field_start: true,
            inner: 0,
        }
    }

    /// Forgets the current record: the next byte fed starts a new one.
    pub(crate) fn reset(&mut self) {
        self.state = State::Plain;
        self.field_start = true;
        self.inner = 0;
    }

    /// Whether the record fed so far is inside a quoted field that was never closed.
    pub(crate) fn in_quotes(&self) -> bool {
        self.state == State::Quoted
    }

    /// Lines the current record spans so far, counting its own terminator (when fed) as one.
    pub(crate) fn lines(&self) -> u64 {
        self.inner + 1
    }

    /// Scans the next piece of the current record. Returns the index in `bytes` of the
    /// record's terminator, or `None` when the record goes on past `bytes` (all of it
    /// consumed). After `Some`, [`lines`](Scanner::lines) is the record's line count; call
    /// [`reset`](Scanner::reset) before feeding the next record.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Option<usize> {
        let term = self.framing.term;
        let Some((quote, delim)) = self.framing.csv else {
            return memchr(term, bytes);
        };
        let mut i = 0;
        while i < bytes.len() {
            match self.state {
                State::Plain => {
                    let Some(j) = memchr2(term, quote, &bytes[i..]).map(|j| i + j) else {
                        // i < len: the piece ends inside this plain stretch
                        self.field_start = bytes[bytes.len() - 1] == delim;
                        return None;
                    };
                    if bytes[j] == term {
                        return Some(j);
                    }
                    let at_field_start = if j == i {
                        self.field_start
                    } else {
                        bytes[j - 1] == delim
                    };
                    if at_field_start {
                        self.state = State::Quoted;
                    }
                    self.field_start = false;
                    i = j + 1;
                }
                State::Quoted => match memchr(quote, &bytes[i..]).map(|j| i + j) {
                    Some(j) => {
                        self.inner += memchr_iter(term, &bytes[i..j]).count() as u64;
                        self.state = State::QuoteInQuoted;
                        i = j + 1;
                    }
                    None => {
                        self.inner += memchr_iter(term, &bytes[i..]).count() as u64;
                        return None;
                    }
                },
                State::QuoteInQuoted => {
                    if bytes[i] == quote {
                        // a doubled quote: still inside the field
                        self.state = State::Quoted;
                        i += 1;
                    } else {
                        // the field closed; what follows is plain (`"ab"cd` is `abcd`)
                        self.state = State::Plain;
                        self.field_start = false;
                    }
                }
            }
        }
        None
    }
}

/// The line terminator of a file that starts with `head` (its first bytes; `complete` when
/// that is the whole file): `Some(b'\r')` when the first line end is a lone `\r`, else
/// `Some(b'\n')`; `None` when more bytes are needed to tell.
pub(crate) fn detect_terminator(head: &[u8], complete: bool) -> Option<u8> {
    let window = &head[..head.len().min(DETECT_WINDOW)];
    match memchr2(b'\n', b'\r', window) {
        Some(i) if window[i] == b'\r' => match window.get(i + 1) {
            Some(b'\n') => Some(b'\n'),
            Some(_) => Some(b'\r'),
            None if complete || head.len() > window.len() => Some(b'\n'),
            None => None,
        },
        Some(_) => Some(b'\n'),
        None if complete || head.len() >= DETECT_WINDOW => Some(b'\n'),
        None => None,
    }
}

/// What a file that starts with `head` is, when it is a compressed or binary format that
/// must not be read as text (its bytes would become bogus rows and column names).
pub(crate) fn binary_format(head: &[u8]) -> Option<&'static str> {
    const KNOWN: [(&[u8], &str); 6] = [
        (
            b"\x1f\x8b",
            "gzip-compressed: decompress it first (`gunzip -k FILE`)",
        ),
        (
            b"\x28\xb5\x2f\xfd",
            "zstd-compressed: decompress it first (`zstd -d FILE`)",
        ),
        (
            b"\xfd7zXZ\x00",
            "xz-compressed: decompress it first (`xz -dk FILE`)",
        ),
        (
            b"PK\x03\x04",
            "a zip archive: extract it first (`unzip FILE`)",
        ),
        (b"PAR1", "a Parquet file: read it with the Parquet format"),
        (
            b"BZh",
            "bzip2-compressed: decompress it first (`bunzip2 -k FILE`)",
        ),
    ];
    KNOWN.iter().find_map(|(magic, what)| {
        let bzip2_block = |h: &[u8]| h.len() >= 10 && &h[4..10] == b"\x31\x41\x59\x26\x53\x59";
        let matched = head.starts_with(magic) && (*magic != b"BZh" || bzip2_block(head));
        matched.then_some(*what)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv(term: u8) -> Scanner {
        Scanner::new(Framing {
            term,
            csv: Some((b'"', b',')),
        })
    }

    /// The records of `input` fed in pieces of `piece` bytes: (record, lines), plus the
    /// unterminated tail.
    fn records(s: &mut Scanner, input: &[u8], piece: usize) -> (Vec<(String, u64)>, String) {
        let (mut out, mut start, mut at) = (Vec::new(), 0, 0);
        while at < input.len() {
            let end = (at + piece).min(input.len());
            match s.feed(&input[at..end]) {
                Some(j) => {
                    let rec = &input[start..at + j];
                    out.push((String::from_utf8_lossy(rec).into_owned(), s.lines()));
                    s.reset();
                    start = at + j + 1;
                    at = start;
                }
                None => at = end,
            }
        }
        (out, String::from_utf8_lossy(&input[start..]).into_owned())
    }

    #[test]
    fn a_stray_quote_inside_a_field_is_data_and_quoted_fields_keep_newlines() {
        for piece in [1, 2, 3, 5, 100] {
            let mut s = csv(b'\n');
            let input = b"0,2.0,ab\"cd\n1,\"x\ny\",\"q\"\"\n\"\n2,\"a\"b,c\n3,\"open\nnever";
            let (got, tail) = records(&mut s, input, piece);
            let want = [
                ("0,2.0,ab\"cd", 1),
                ("1,\"x\ny\",\"q\"\"\n\"", 3),
                ("2,\"a\"b,c", 1),
            ];
            let want: Vec<_> = want.iter().map(|(r, l)| (r.to_string(), *l)).collect();
            assert_eq!(got, want, "piece {piece}");
            assert_eq!(tail, "3,\"open\nnever");
            assert!(s.in_quotes(), "the last record's quote is never closed");
        }
    }

    #[test]
    fn json_lines_and_cr_terminators() {
        let mut s = Scanner::new(Framing {
            term: b'\n',
            csv: None,
        });
        assert_eq!(s.feed(b"{\"a\":\"\\\"\"}\nx"), Some(10));
        let mut s = csv(b'\r');
        let (got, tail) = records(&mut s, b"a,b\r1,\"x\ry\"\r2,3", 4);
        assert_eq!(got.len(), 2);
        assert_eq!(got[1], ("1,\"x\ry\"".to_string(), 2));
        assert_eq!(tail, "2,3");
    }

    #[test]
    fn compressed_and_binary_heads_are_recognised() {
        assert!(binary_format(b"\x1f\x8b\x08\x00")
            .unwrap()
            .starts_with("gzip"));
        assert!(binary_format(b"\x28\xb5\x2f\xfd\x00")
            .unwrap()
            .starts_with("zstd"));
        assert!(binary_format(b"BZh91AY&SY\x00")
            .unwrap()
            .starts_with("bzip2"));
        assert_eq!(binary_format(b"BZh,label\n1,2\n"), None);
        assert_eq!(binary_format(b"label,f0\n"), None);
        assert_eq!(binary_format(b""), None);
    }

    #[test]
    fn terminator_detection() {
        assert_eq!(detect_terminator(b"a\rb\rc", false), Some(b'\r'));
        assert_eq!(detect_terminator(b"a\r\nb", false), Some(b'\n'));
        assert_eq!(detect_terminator(b"a\nb\rc", false), Some(b'\n'));
        assert_eq!(detect_terminator(b"abc\r", false), None);
        assert_eq!(detect_terminator(b"abc\r", true), Some(b'\n'));
        assert_eq!(detect_terminator(b"abc", false), None);
        assert_eq!(detect_terminator(b"abc", true), Some(b'\n'));
        assert_eq!(
            detect_terminator(&[b'x'; DETECT_WINDOW], false),
            Some(b'\n')
        );
    }
}
