//! Text handling that every model shares: normalisation, sparse n-gram features, and PII
//! detection and masking (`pii`, with the masking scheme a model is trained under). Nothing in
//! this module reads files or knows about labels; which text is masked how, and when, is the
//! query pipeline's business.

pub mod features;
pub mod lists;
pub mod normalize;
pub mod pii;

pub use features::{FeatureSpec, Scratch, SparseVec, Vectorizer, Vocabulary};
pub use normalize::normalize;
