//! Online learners: every one implements [`OnlineLearner`](crate::learner::OnlineLearner)
//! (learn a batch with per-example semantics, progressive `predict_learn`) and serde (for
//! snapshots), and passes [`check_online_learner`](crate::conformance::check_online_learner).
//!
//! ## Modules
//! | module | learners |
//! |---|---|
//! | [`linear`] | FTRL-Proximal logistic regression, SGD linear / logistic regression (any [`Rule`](crate::optim::Rule)), the logistic [`GradientModel`](crate::learner::GradientModel) |
//! | [`softmax`] | multinomial logistic regression |
//! | [`passive_aggressive`] | passive-aggressive classifier and regressor |
//! | [`naive_bayes`] | naive Bayes |
//! | [`fm`] | factorization machines |
//! | [`kmeans`] | streaming k-means with half-life decay |

pub mod fm;
pub mod kmeans;
pub mod linear;
pub mod naive_bayes;
pub mod passive_aggressive;
pub mod softmax;
