//! Text handling that every model shares: normalisation and sparse n-gram features. Later, PII
//! detection and masking live here too. Nothing in this module reads files or knows about labels.

pub mod features;
pub mod normalize;
pub mod pii;

pub use features::{FeatureSpec, Scratch, SparseVec, Vectorizer, Vocabulary};
pub use normalize::normalize;
