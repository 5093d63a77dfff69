//! CLIP in Rust: OpenAI's CLIP (tokenizer, preprocessing, image and text towers) loaded from real checkpoints,
//! with outputs that match the reference implementations.
//!
//! ```no_run
//! let clip = clip::Clip::load("openai/clip-vit-base-patch32", &clip::LoadOptions::default())?;
//! let probs = clip.classify_paths(&["puppy.png".into()], &["a puppy", "a girl"])?;
//! # Ok::<(), clip::ClipError>(())
//! ```
//!
//! # Layers
//!
//! Modules are layered; a module uses only modules of its own layer's earlier entries or of lower layers, never
//! a later one (`tests/layers.rs` checks every `use` against this list and rejects any cycle):
//!
//! 0. `error`, `limits`, `threads`, `priority`, `json`, `npy`, `shards` — leaves
//! 1. `kernels` — packed-weight GEMMs, attention, norms, activations; `Precision`
//! 2. `weights` — tensor stores: safetensors, PyTorch zip archives, the restricted unpickler
//! 3. `model` — one config type, nn layers, the ViT / ModifiedResNet / text towers, `ClipModel`
//! 4. `formats` — Hugging Face, OpenAI and open_clip layouts: key maps and shape inference
//! 5. `registry` — published models as data
//! 6. `hub` — downloads and caches
//! 7. `bundle` — [`Clip`]: model + tokenizer + preprocessing, what `clip.load` returns
//! 8. `conditioning`, `zeroshot`, `train`, `bench` — capabilities over the bundle
//! 9. `fuzz` — entry points of the fuzz suite (feature `fuzz`)

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::missing_safety_doc)]
// Layer 0
mod error;
mod json;
pub mod limits;
pub mod npy;
pub mod shards;
mod priority;
pub mod threads;
// Layer 1
mod kernels;
// Layer 2
mod weights;
// Layer 3
mod model;
// Layer 4
mod formats;
// Layer 5
pub mod registry;
// Layer 6
pub mod hub;
// Layer 7
mod bundle;
// Layer 8
pub mod conditioning;
pub mod zeroshot;
pub mod train;
pub mod bench;
// Layer 9
#[cfg(test)]
mod test_util;
#[cfg(feature = "fuzz")]
#[doc(hidden)]
pub mod fuzz;

pub use bundle::{normalize_rows, softmax, Clip, LoadOptions, ModelSource, DEFAULT_MODEL};
pub use clip_io as io;
pub use clip_preprocess as preprocess;
pub use clip_tokenizer as tokenizer;
pub use error::{ClipError, Result};
pub use kernels::Precision;
pub use model::{
    l2_normalize, Activation, ClipConfig, ClipModel, ResNetConfig, TextConfig, TextPooling,
    VisionConfig, VisionTowerConfig,
};
