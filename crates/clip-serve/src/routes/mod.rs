//! One module per group of routes.

pub mod embeddings;
pub mod immich;
pub mod ops;
pub mod search;
pub mod zeroshot;
