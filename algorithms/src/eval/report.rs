//! What evaluation produces: [`MetricValues`] by name, the run's [`Report`] (the one-line JSON
//! `eddy learn` prints, key for key like the peers' records) and per-window [`WindowReport`]s.

use std::fmt::{self, Write as _};

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Metric values by name, in report order. Serializes as a JSON object; NaN (an undefined
/// metric) is written as `null` and read back as NaN.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricValues(Vec<(String, f64)>);

impl MetricValues {
    /// Appends a value.
    pub fn push(&mut self, name: impl Into<String>, value: f64) {
        self.0.push((name.into(), value));
    }

    /// The value named `name`.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.0.iter().find(|(n, _)| n == name).map(|&(_, v)| v)
    }

    /// `(name, value)` pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, f64)> + '_ {
        self.0.iter().map(|(n, v)| (n.as_str(), *v))
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for MetricValues {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (name, v) in &self.0 {
            map.serialize_entry(name, &Some(*v).filter(|v| v.is_finite()))?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for MetricValues {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MetricValues;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of metric names to numbers or null")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<MetricValues, A::Error> {
                let mut out = MetricValues::default();
                while let Some((k, v)) = a.next_entry::<String, Option<f64>>()? {
                    out.push(k, v.unwrap_or(f64::NAN));
                }
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

/// The result of an evaluation run: rows, wall-clock seconds, throughput and the metrics by
/// name (cumulative ones, then tail ones such as `auc_tail90`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Rows predicted and learned.
    pub rows: u64,
    /// Wall-clock seconds of the run.
    pub seconds: f64,
    /// `rows / seconds`; `None` when no time was measured.
    pub rows_per_s: Option<f64>,
    /// Metric values by name.
    #[serde(flatten)]
    pub metrics: MetricValues,
}

impl Report {
    /// A report of `rows` rows in `seconds`, computing the throughput.
    pub fn new(rows: u64, seconds: f64, metrics: MetricValues) -> Self {
        Report {
            rows,
            seconds,
            rows_per_s: (seconds > 0.0).then(|| rows as f64 / seconds),
            metrics,
        }
    }

    /// The metric named `name`.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.metrics.get(name)
    }

    /// Rounded as the peers round their records: seconds to 4 decimals, rows/s to 1, metrics
    /// to 6.
    pub fn rounded(&self) -> Report {
        Report {
            rows: self.rows,
            seconds: round(self.seconds, 4),
            rows_per_s: self.rows_per_s.map(|r| round(r, 1)),
            metrics: MetricValues(
                self.metrics
                    .iter()
                    .map(|(n, v)| (n.to_owned(), round(v, 6)))
                    .collect(),
            ),
        }
    }

    /// The one-line JSON `eddy learn` prints, rounded like the peers:
    /// `{"rows":…,"seconds":…,"rows_per_s":…,"logloss":…,"auc":…,"accuracy":…}`.
    pub fn to_json_line(&self) -> String {
        self.rounded().to_string()
    }
}

impl fmt::Display for Report {
    /// Unrounded one-line JSON, keys in report order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut o = JsonLine::default();
        o.int("rows", self.rows);
        o.num("seconds", self.seconds);
        o.num("rows_per_s", self.rows_per_s.unwrap_or(f64::NAN));
        o.values("", &self.metrics);
        f.write_str(&o.finish())
    }
}

/// The metrics of one window of the stream, and the cumulative metrics at its end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowReport {
    /// 0-based window number.
    pub index: u64,
    /// First row of the window (0-based, counting predicted rows).
    pub start_row: u64,
    /// One past the last row of the window.
    pub end_row: u64,
    /// Seconds since the run started, at the window's end.
    pub seconds: f64,
    /// The metrics over the window's rows only.
    pub window: MetricValues,
    /// The metrics over every row up to `end_row`.
    pub cumulative: MetricValues,
}

impl WindowReport {
    /// One flat JSON line, metrics rounded to 6 decimals:
    /// `{"window":i,"start_row":…,"end_row":…,"seconds":…,"auc":…,"cum_auc":…}` (window
    /// metrics by name, cumulative ones prefixed `cum_`).
    pub fn to_json_line(&self) -> String {
        let mut o = JsonLine::default();
        o.int("window", self.index);
        o.int("start_row", self.start_row);
        o.int("end_row", self.end_row);
        o.num("seconds", round(self.seconds, 4));
        let r = |v: &MetricValues| {
            MetricValues(v.iter().map(|(n, x)| (n.to_owned(), round(x, 6))).collect())
        };
        o.values("", &r(&self.window));
        o.values("cum_", &r(&self.cumulative));
        o.finish()
    }
}

/// Rounds to `digits` decimals; non-finite values pass through.
fn round(x: f64, digits: i32) -> f64 {
    if !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(digits);
    let r = (x * scale).round() / scale;
    if r.is_finite() {
        r
    } else {
        x
    }
}

/// A one-line JSON object built by hand: it cannot fail, and keeps keys in order.
#[derive(Default)]
struct JsonLine(String);

impl JsonLine {
    fn key(&mut self, prefix: &str, name: &str) {
        self.0.push(if self.0.is_empty() { '{' } else { ',' });
        self.0.push('"');
        for c in prefix.chars().chain(name.chars()) {
            match c {
                '"' => self.0.push_str("\\\""),
                '\\' => self.0.push_str("\\\\"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(self.0, "\\u{:04x}", c as u32);
                }
                c => self.0.push(c),
            }
        }
        self.0.push_str("\":");
    }

    fn num_prefixed(&mut self, prefix: &str, name: &str, v: f64) {
        self.key(prefix, name);
        if v.is_finite() {
            // `Display` for f64 is the shortest round-trip form, never an exponent: valid JSON.
            let _ = write!(self.0, "{v}");
        } else {
            self.0.push_str("null");
        }
    }

    fn int(&mut self, name: &str, v: u64) {
        self.key("", name);
        let _ = write!(self.0, "{v}");
    }

    fn num(&mut self, name: &str, v: f64) {
        self.num_prefixed("", name, v);
    }

    fn values(&mut self, prefix: &str, values: &MetricValues) {
        for (n, v) in values.iter() {
            self.num_prefixed(prefix, n, v);
        }
    }

    fn finish(mut self) -> String {
        if self.0.is_empty() {
            self.0.push('{');
        }
        self.0.push('}');
        self.0
    }
}
