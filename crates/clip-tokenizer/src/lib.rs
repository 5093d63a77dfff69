//! OpenAI CLIP's tokenizer, id for id identical to `clip.tokenize` of clip-anytorch 2.6.0
//! (clip/simple_tokenizer.py and clip/clip.py), including its text cleaning: ftfy 6.3.1's
//! `fix_text`, Python's `html.unescape` (twice), whitespace collapsing and Python's
//! `str.lower()`.
//!
//! ```
//! use clip_tokenizer::{Tokenizer, DEFAULT_CONTEXT_LENGTH};
//! let tok = Tokenizer::openai();
//! assert_eq!(tok.encode("a photo of a dog."), [320, 1125, 539, 320, 1929, 269]);
//! let row = tok.tokenize("a photo of a dog.", DEFAULT_CONTEXT_LENGTH, false).unwrap();
//! assert_eq!(&row[..3], &[49406, 320, 1125]);
//! assert_eq!(row.len(), 77);
//! ```

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::missing_safety_doc)]
// Modules in layer order (tests/layers.rs): each uses only those above it.
mod generated;
mod bytes_unicode;
mod error;
mod python_str;
mod nfc;
mod html_unescape;
mod hf_normalize;
mod ftfy;
mod clean;
mod pretokenize;
mod vocab_files;
mod bpe;
mod tokenizer;
#[cfg(test)]
mod reference_steps;

pub use clean::clean_text;
pub use error::TokenizerError;
pub use hf_normalize::{hf_normalize, TextCleaning};
pub use tokenizer::{Tokenizer, DEFAULT_CONTEXT_LENGTH, MAX_CONTEXT_LENGTH};
