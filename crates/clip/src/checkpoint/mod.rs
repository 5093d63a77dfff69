//! Checkpoint readers: a strict named-tensor store ([`store`]), the Hugging Face layout ([`hf`]), OpenAI's layout
//! ([`openai_layout`]) with its `.pt` files ([`openai`], [`torchscript`], [`pickle`]) and open_clip ([`open_clip`]).

pub mod hf;
pub mod open_clip;
pub mod openai;
pub mod openai_layout;
pub mod pickle;
pub mod store;
pub mod torchscript;

pub use store::{TensorStore, Weights};
