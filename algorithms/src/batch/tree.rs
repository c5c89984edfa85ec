//! [`DecisionTree`]: a CART classification tree fitted by linfa-trees, kept as a flat list of
//! nodes whose leaves carry class probabilities.

use linfa::traits::Fit;
use linfa::DatasetBase;
use linfa_trees::TreeNode;
use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

use super::data::{
    check_dim, check_examples, dense_records, fit_failed, invalid, sample_weights, value_at,
};
use crate::error::{Error, Result};
use crate::features::{Examples, Features};
use crate::learner::{BatchLearner, Predictor, Task};
use crate::transform::Params;

const NAME: &str = "decision-tree";

/// Labels are class indices below this (`2^16`).
pub const MAX_CLASSES: usize = 1 << 16;

/// The impurity a split must reduce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SplitQuality {
    /// Gini impurity (the default).
    #[default]
    Gini,
    /// Entropy (information gain).
    Entropy,
}

/// Parameters of [`DecisionTree`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct DecisionTreeParams {
    /// The impurity measure. Default `gini`.
    pub split_quality: SplitQuality,
    /// Maximum depth, `>= 1`; none grows until the other limits stop it. Default none.
    pub max_depth: Option<usize>,
    /// A node is split only if its rows weigh at least this (with unit weights: the minimum
    /// number of samples to split). Finite and `>= 0`. Default 2.
    pub min_weight_split: f32,
    /// Each child of a split must weigh at least this (with unit weights: the minimum number of
    /// samples in a leaf). Finite and `>= 0`. Default 1.
    pub min_weight_leaf: f32,
    /// A split must decrease the impurity by at least this; finite and `>= f64::EPSILON`.
    /// Default `1e-5`.
    pub min_impurity_decrease: f64,
}

impl Default for DecisionTreeParams {
    fn default() -> Self {
        DecisionTreeParams {
            split_quality: SplitQuality::Gini,
            max_depth: None,
            min_weight_split: 2.0,
            min_weight_leaf: 1.0,
            min_impurity_decrease: 1e-5,
        }
    }
}

impl Params for DecisionTreeParams {
    type Valid = DecisionTree;

    fn check(&self) -> Result<DecisionTree> {
        if self.max_depth == Some(0) {
            return Err(Error::param(format!("{NAME}.max-depth"), "must be >= 1"));
        }
        for (field, v) in [
            ("min-weight-split", self.min_weight_split),
            ("min-weight-leaf", self.min_weight_leaf),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(Error::param(
                    format!("{NAME}.{field}"),
                    format!("{v} is not a finite number >= 0"),
                ));
            }
        }
        let d = self.min_impurity_decrease;
        if !d.is_finite() || d < f64::EPSILON {
            return Err(Error::param(
                format!("{NAME}.min-impurity-decrease"),
                format!("{d} is not a finite number >= {}", f64::EPSILON),
            ));
        }
        Ok(DecisionTree(*self))
    }
}

/// A classification tree on bounded data: the checked [`DecisionTreeParams`].
///
/// Labels are class indices `0..classes` (integers below [`MAX_CLASSES`]); the model has
/// `max(largest label + 1, 2)` classes. Sample weights are honoured (in split quality, the
/// weight limits and the leaf probabilities).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecisionTree(DecisionTreeParams);

impl DecisionTree {
    /// The parameters.
    pub fn params(&self) -> &DecisionTreeParams {
        &self.0
    }
}

impl BatchLearner for DecisionTree {
    type Model = DecisionTreeModel;

    fn fit(&self, examples: &Examples) -> Result<DecisionTreeModel> {
        check_examples(NAME, examples)?;
        let mut targets = Array1::zeros(examples.len());
        for (row, (&y, t)) in examples.labels.iter().zip(targets.iter_mut()).enumerate() {
            if y < 0.0 || y.fract() != 0.0 || y as usize >= MAX_CLASSES {
                let message = format!("label {y} is not a class index in 0..{MAX_CLASSES}");
                return Err(invalid(NAME, "label", row, message));
            }
            *t = y as usize;
        }
        let classes = targets.iter().max().map_or(2, |&m| (m + 1).max(2));
        let weights = sample_weights(NAME, examples)?;
        let records = dense_records(NAME, &examples.features)?;
        let p = &self.0;
        let quality = match p.split_quality {
            SplitQuality::Gini => linfa_trees::SplitQuality::Gini,
            SplitQuality::Entropy => linfa_trees::SplitQuality::Entropy,
        };
        let params = linfa_trees::DecisionTree::<f64, usize>::params()
            .split_quality(quality)
            .max_depth(p.max_depth)
            .min_weight_split(p.min_weight_split)
            .min_weight_leaf(p.min_weight_leaf)
            .min_impurity_decrease(p.min_impurity_decrease);
        let mut dataset = DatasetBase::new(records, targets);
        if let Some(w) = &weights {
            dataset = dataset.with_weights(w.mapv(|v| v as f32));
        }
        let fitted = params.fit(&dataset).map_err(|e| fit_failed(NAME, e))?;
        let mut nodes = Vec::new();
        flatten(fitted.root_node(), &mut nodes)?;
        let (records, targets) = (dataset.records(), dataset.targets());
        Ok(with_leaf_probabilities(
            nodes,
            classes,
            records,
            targets,
            weights.as_ref(),
        ))
    }
}

/// One node of a fitted tree; children come after their parent. Externally tagged
/// (`{"split": {…}}`), because model files are bincode, which cannot read internally tagged
/// enums.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Node {
    /// Rows with `x[feature] < threshold` go to `left`, the others to `right`.
    Split {
        feature: usize,
        threshold: f64,
        left: usize,
        right: usize,
    },
    /// A leaf: the predicted class and the weighted class frequencies of its training rows.
    Leaf {
        class: usize,
        probabilities: Vec<f32>,
    },
}

/// Appends `node`'s subtree to `nodes` in pre-order; returns the index of `node`.
fn flatten(node: &TreeNode<f64, usize>, nodes: &mut Vec<Node>) -> Result<usize> {
    let at = nodes.len();
    if let Some(class) = node.prediction() {
        // Probabilities are filled in by `with_leaf_probabilities`.
        nodes.push(Node::Leaf {
            class,
            probabilities: Vec::new(),
        });
        return Ok(at);
    }
    let (feature, threshold, _) = node.split();
    nodes.push(Node::Split {
        feature,
        threshold,
        left: 0,
        right: 0,
    });
    let children = node.children();
    let (Some(Some(l)), Some(Some(r))) = (children.first().copied(), children.get(1).copied())
    else {
        return Err(fit_failed(NAME, "a split node without two children"));
    };
    let left = flatten(l, nodes)?;
    let right = flatten(r, nodes)?;
    nodes[at] = Node::Split {
        feature,
        threshold,
        left,
        right,
    };
    Ok(at)
}

/// The index of the leaf `x` falls into (values of `x` looked up by `value`).
fn leaf_of(nodes: &[Node], value: impl Fn(usize) -> f64) -> usize {
    let mut at = 0;
    while let Node::Split {
        feature,
        threshold,
        left,
        right,
    } = &nodes[at]
    {
        at = if value(*feature) < *threshold {
            *left
        } else {
            *right
        };
    }
    at
}

/// Routes the training rows through the tree and sets each leaf's class frequencies; its class
/// becomes the most frequent one (ties: the lowest index). A leaf that got no weight keeps
/// linfa's class with probability 1.
fn with_leaf_probabilities(
    mut nodes: Vec<Node>,
    classes: usize,
    records: &Array2<f64>,
    targets: &Array1<usize>,
    weights: Option<&Array1<f64>>,
) -> DecisionTreeModel {
    let mut counts: Vec<Option<Vec<f64>>> = vec![None; nodes.len()];
    for (i, (x, &y)) in records.rows().into_iter().zip(targets).enumerate() {
        let leaf = leaf_of(&nodes, |j| x[j]);
        let c = counts[leaf].get_or_insert_with(|| vec![0.0; classes]);
        c[y] += weights.map_or(1.0, |w| w[i]);
    }
    for (node, count) in nodes.iter_mut().zip(counts) {
        if let Node::Leaf {
            class,
            probabilities,
        } = node
        {
            let total: f64 = count.as_ref().map_or(0.0, |c| c.iter().sum());
            *probabilities = vec![0.0; classes];
            match count {
                Some(c) if total > 0.0 => {
                    *class = argmax(&c);
                    for (p, n) in probabilities.iter_mut().zip(&c) {
                        *p = (n / total) as f32;
                    }
                }
                _ => probabilities[*class] = 1.0,
            }
        }
    }
    DecisionTreeModel {
        nodes,
        classes,
        dim: records.ncols(),
    }
}

/// The index of the largest value (the first on ties).
fn argmax(v: &[f64]) -> usize {
    v.iter()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |best, (i, &x)| {
            if x > best.1 {
                (i, x)
            } else {
                best
            }
        })
        .0
}

/// A fitted [`DecisionTree`]: `predict` gives the class index of the row's leaf;
/// `predict_scores` gives the leaf's weighted class frequencies among its training rows, one per
/// class. Works on dense or sparse features of the training dimension.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawTree", rename_all = "kebab-case")]
pub struct DecisionTreeModel {
    nodes: Vec<Node>,
    classes: usize,
    dim: usize,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawTree {
    nodes: Vec<Node>,
    classes: usize,
    dim: usize,
}

impl TryFrom<RawTree> for DecisionTreeModel {
    type Error = Error;

    /// Checks that the nodes form a tree: each child after its parent and in range, each
    /// feature below `dim`, each leaf with `classes` probabilities and a class below `classes`.
    fn try_from(raw: RawTree) -> Result<Self> {
        let bad = |i: usize, what: &str| Error::Shape(format!("{NAME} model: node {i} {what}"));
        if raw.nodes.is_empty() {
            return Err(Error::Shape(format!("{NAME} model: no nodes")));
        }
        for (i, node) in raw.nodes.iter().enumerate() {
            match node {
                Node::Split {
                    feature,
                    threshold,
                    left,
                    right,
                } => {
                    if *feature >= raw.dim || threshold.is_nan() {
                        return Err(bad(i, "has a feature out of range or a NaN threshold"));
                    }
                    if [left, right]
                        .iter()
                        .any(|&&c| c <= i || c >= raw.nodes.len())
                    {
                        return Err(bad(i, "has a child out of order"));
                    }
                }
                Node::Leaf {
                    class,
                    probabilities,
                } => {
                    if *class >= raw.classes || probabilities.len() != raw.classes {
                        return Err(bad(i, "does not match the number of classes"));
                    }
                }
            }
        }
        Ok(DecisionTreeModel {
            nodes: raw.nodes,
            classes: raw.classes,
            dim: raw.dim,
        })
    }
}

impl DecisionTreeModel {
    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// The leaf node of row `r` of `x`.
    fn leaf(&self, x: &Features, r: usize) -> (usize, &[f32]) {
        let row = x.row(r);
        match &self.nodes[leaf_of(&self.nodes, |j| value_at(&row, j))] {
            Node::Leaf {
                class,
                probabilities,
            } => (*class, probabilities),
            // `leaf_of` only stops at a leaf.
            Node::Split { .. } => (0, &[]),
        }
    }
}

impl Predictor for DecisionTreeModel {
    fn task(&self) -> Task {
        Task::Multiclass {
            classes: self.classes,
        }
    }

    fn predict(&self, x: &Features, out: &mut Vec<f32>) -> Result<()> {
        check_dim(NAME, x, self.dim as u64)?;
        out.clear();
        out.extend((0..x.rows()).map(|r| self.leaf(x, r).0 as f32));
        Ok(())
    }

    fn predict_scores(&self, x: &Features, out: &mut Vec<f32>) -> Result<usize> {
        check_dim(NAME, x, self.dim as u64)?;
        out.clear();
        for r in 0..x.rows() {
            out.extend_from_slice(self.leaf(x, r).1);
        }
        Ok(self.classes)
    }
}
