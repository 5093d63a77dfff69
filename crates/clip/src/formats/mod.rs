//! Checkpoint formats mapped onto the model's one layout (see [`crate::model`]): Hugging Face directories
//! ([`hf`]: configs and weights already in that layout), OpenAI's `.pt` files ([`openai`]) and open_clip
//! checkpoints ([`open_clip`]), whose OpenAI names are translated by one key map ([`keymap`]), and architecture
//! inference from tensor shapes ([`infer`]).

pub(crate) mod hf;
pub(crate) mod infer;
pub(crate) mod keymap;
pub(crate) mod open_clip;
pub(crate) mod openai;
