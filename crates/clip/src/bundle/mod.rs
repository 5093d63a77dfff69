//! What `clip.load` gives a Python user: a model with the tokenizer and preprocessing that belong to it, found
//! from one model string ([`source`]), and batched `encode_*` / logits / zero-shot helpers ([`clip`]).

pub(crate) mod clip;
pub(crate) mod source;

pub use self::clip::{normalize_rows, softmax, Clip, LoadOptions, DEFAULT_MODEL};
pub use self::source::ModelSource;
