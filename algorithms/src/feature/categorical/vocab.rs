//! Per-column category counts and the value → index map derived from them, shared by the
//! [`StringIndexer`](super::StringIndexer) and the [`OneHotEncoder`](super::OneHotEncoder).
//!
//! The counts are the whole statistic: the index map is a pure function of the counts and the
//! rules, so updating online, fitting in one batch and merging partitions give the same map.

use std::collections::HashMap;

use arrow::array::{Array, StringArray};

use crate::error::{Error, Result};

/// How categories are ordered into indices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StringOrder {
    /// Most frequent first; ties by value, ascending (byte order). The default.
    #[default]
    FrequencyDesc,
    /// By value, ascending (byte order).
    AlphabetAsc,
}

/// What happens to a value that is not in the vocabulary (never seen, or rarer than
/// `min_frequency`, or beyond `max_categories`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unseen {
    /// An [`Error::InvalidValue`] naming the column and row. The default.
    #[default]
    Error,
    /// No output for the value: a null index (indexer), no entry (one-hot). Rows are never
    /// dropped, so labels stay aligned with features.
    Skip,
    /// The reserved bucket index: `max_categories` when set, else the vocabulary size.
    Bucket,
}

/// The vocabulary rules of one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct VocabRules {
    pub min_frequency: u64,
    pub max_categories: Option<u32>,
    pub order: StringOrder,
}

/// One column's counts and the index map derived from them.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Vocabulary {
    counts: HashMap<String, u64>,
    index: HashMap<String, u32>,
    labels: Vec<String>,
}

impl Vocabulary {
    /// Counts the non-null values of `values` (call [`rebuild`](Self::rebuild) afterwards).
    pub fn count(&mut self, values: &StringArray) {
        for v in values.iter().flatten() {
            match self.counts.get_mut(v) {
                Some(c) => *c += 1,
                None => {
                    self.counts.insert(v.to_owned(), 1);
                }
            }
        }
    }

    /// Adds the counts of `other` (call [`rebuild`](Self::rebuild) afterwards).
    pub fn merge(&mut self, other: &Vocabulary) {
        for (v, &n) in &other.counts {
            *self.counts.entry(v.clone()).or_insert(0) += n;
        }
    }

    /// Recomputes the index map from the counts.
    pub fn rebuild(&mut self, rules: &VocabRules) {
        let mut kept: Vec<(&String, u64)> = self
            .counts
            .iter()
            .filter(|(_, &n)| n >= rules.min_frequency)
            .map(|(v, &n)| (v, n))
            .collect();
        match rules.order {
            StringOrder::FrequencyDesc => {
                kept.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)))
            }
            StringOrder::AlphabetAsc => kept.sort_unstable_by(|a, b| a.0.cmp(b.0)),
        }
        if let Some(max) = rules.max_categories {
            kept.truncate(max as usize);
        }
        self.labels = kept.into_iter().map(|(v, _)| v.clone()).collect();
        self.index = self
            .labels
            .iter()
            .enumerate()
            .map(|(i, v)| (v.clone(), i as u32))
            .collect();
    }

    /// The index of `value`, if it is in the vocabulary.
    #[inline]
    pub fn get(&self, value: &str) -> Option<u32> {
        self.index.get(value).copied()
    }

    /// The values in index order.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The count of `value` seen so far.
    pub fn count_of(&self, value: &str) -> u64 {
        self.counts.get(value).copied().unwrap_or(0)
    }

    /// The reserved bucket's index under [`Unseen::Bucket`].
    pub fn bucket(&self, rules: &VocabRules) -> u32 {
        rules.max_categories.unwrap_or(self.labels.len() as u32)
    }

    /// The number of one-hot slots of this column: the vocabulary (or `max_categories`, which
    /// fixes the width while the vocabulary grows), plus the bucket under [`Unseen::Bucket`].
    pub fn width(&self, rules: &VocabRules, unseen: Unseen) -> u32 {
        self.bucket(rules) + u32::from(unseen == Unseen::Bucket)
    }

    /// The counts sorted by value, as saved.
    pub fn saved(&self) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = self.counts.iter().map(|(k, &n)| (k.clone(), n)).collect();
        v.sort_unstable();
        v
    }

    /// A vocabulary from saved counts, refusing repeated values and zero counts.
    pub fn from_saved(saved: Vec<(String, u64)>, rules: &VocabRules) -> Result<Self> {
        let mut counts = HashMap::with_capacity(saved.len());
        for (v, n) in saved {
            if n == 0 {
                return Err(Error::param("counts", format!("value `{v}` has count 0")));
            }
            if counts.insert(v.clone(), n).is_some() {
                return Err(Error::param(
                    "counts",
                    format!("value `{v}` is listed twice"),
                ));
            }
        }
        let mut vocab = Vocabulary {
            counts,
            ..Default::default()
        };
        vocab.rebuild(rules);
        Ok(vocab)
    }

    /// Resolves row `row` of `values` to an index under `unseen`; `None` for null and skipped
    /// values. `step` and `column` name the error of [`Unseen::Error`].
    #[inline]
    pub fn resolve(
        &self,
        values: &StringArray,
        row: usize,
        rules: &VocabRules,
        unseen: Unseen,
        step: &str,
        column: &str,
    ) -> Result<Option<u32>> {
        if values.is_null(row) {
            return Ok(None);
        }
        let v = values.value(row);
        match (self.get(v), unseen) {
            (Some(i), _) => Ok(Some(i)),
            (None, Unseen::Skip) => Ok(None),
            (None, Unseen::Bucket) => Ok(Some(self.bucket(rules))),
            (None, Unseen::Error) => Err(Error::InvalidValue {
                step: step.into(),
                column: column.into(),
                row,
                message: format!("unseen value `{v}`"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(min_frequency: u64, max_categories: Option<u32>, order: StringOrder) -> VocabRules {
        VocabRules {
            min_frequency,
            max_categories,
            order,
        }
    }

    #[test]
    fn orders_by_frequency_then_value_and_drops_rare() {
        let mut v = Vocabulary::default();
        v.count(&StringArray::from(vec![
            Some("b"),
            Some("a"),
            None,
            Some("c"),
            Some("b"),
            Some("a"),
            Some("d"),
            Some(""),
            Some(""),
        ]));
        v.rebuild(&rules(1, None, StringOrder::FrequencyDesc));
        assert_eq!(v.labels(), ["", "a", "b", "c", "d"]);
        v.rebuild(&rules(2, None, StringOrder::FrequencyDesc));
        assert_eq!(v.labels(), ["", "a", "b"]);
        v.rebuild(&rules(1, Some(2), StringOrder::AlphabetAsc));
        assert_eq!(v.labels(), ["", "a"]);
        assert_eq!(v.bucket(&rules(1, Some(2), StringOrder::AlphabetAsc)), 2);
        assert_eq!(v.count_of("b"), 2);
        assert_eq!(v.count_of("zzz"), 0);
    }

    #[test]
    fn saved_counts_round_trip_and_refuse_corruption() {
        let r = rules(1, None, StringOrder::FrequencyDesc);
        let mut v = Vocabulary::default();
        v.count(&StringArray::from(vec!["x", "y", "x"]));
        v.rebuild(&r);
        let back = Vocabulary::from_saved(v.saved(), &r).unwrap();
        assert_eq!(back, v);
        assert!(Vocabulary::from_saved(vec![("x".into(), 0)], &r).is_err());
        assert!(Vocabulary::from_saved(vec![("x".into(), 1), ("x".into(), 2)], &r).is_err());
    }
}
