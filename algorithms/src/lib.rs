//! # eddy-algorithms — features, learners, evaluation
//!
//! This crate holds everything that learns: feature operators (scalers, encoders, hashing,
//! crosses, windowed aggregates), online learners (FTRL, SGD family, FM, naive Bayes,
//! streaming k-means), batch learners through linfa, progressive validation and pipelines.
//! It builds on `eddy-core` record batches and never depends on `eddy-ps`: parameter-server
//! training meets it through the `GradientModel` / `UpdateRule` traits.
//!
//! The crate is part of the workspace layout from the start (ARCHITECTURE §1) so that its
//! place in the dependency order is fixed; its modules arrive with the feature-operator and
//! learner issues.
