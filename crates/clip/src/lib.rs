//! CLIP in Rust: OpenAI's CLIP (tokenizer, preprocessing, image and text towers) loaded from real checkpoints,
//! with outputs that match the reference implementations.
//!
//! ```no_run
//! let clip = clip::Clip::load("openai/clip-vit-base-patch32", &clip::LoadOptions::default())?;
//! let probs = clip.classify_paths(&["puppy.png".into()], &["a puppy", "a girl"])?;
//! # Ok::<(), clip::ClipError>(())
//! ```

pub mod bench;
pub mod checkpoint;
pub mod conditioning;
pub mod error;
#[cfg(feature = "fuzz")]
#[doc(hidden)]
pub mod fuzz;
pub mod hub;
mod json;
pub mod kernels;
pub mod limits;
pub mod loader;
pub mod model;
pub mod npy;
pub mod pretrained;
pub mod priority;
pub mod source;
pub mod zeroshot;

pub use clip_io as io;
pub use clip_preprocess as preprocess;
pub use clip_tokenizer as tokenizer;
pub use error::{ClipError, Result};
pub use loader::{Clip, LoadOptions};
