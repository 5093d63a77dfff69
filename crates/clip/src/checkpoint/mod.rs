//! Checkpoint readers: a strict named-tensor store ([`store`]) and the Hugging Face layout ([`hf`]).

pub mod hf;
pub mod store;

pub use store::{TensorStore, Weights};
