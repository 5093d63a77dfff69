//! Checkpoint formats mapped onto the model's one layout (see [`crate::model`]): Hugging Face directories
//! ([`hf`]: configs and weights already in that layout), OpenAI's `.pt` files ([`openai`]) and open_clip
//! checkpoints ([`open_clip`]), whose OpenAI names are translated by one key map ([`keymap`]), and architecture
//! inference from tensor shapes ([`infer`]).

pub(crate) mod hf;
pub(crate) mod infer;
pub(crate) mod keymap;
pub(crate) mod open_clip;
pub(crate) mod openai;

use crate::error::{ClipError, Result};
use crate::model::{ClipConfig, ClipModel};
use crate::weights::TensorStore;

/// The learned bias of the sigmoid loss, stored beside the model's parameters by `clip train --siglip`.
pub(crate) const LOGIT_BIAS: &str = "logit_bias";

/// Whose names a checkpoint was stored under, for naming a missing tensor as the file would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoredNames {
    /// The model's own layout (Hugging Face).
    Model,
    /// OpenAI's layout, with this image tower.
    OpenAi(keymap::VisionKind),
}

/// A checkpoint opened in the model's layout with its architecture: what [`Opened::build`] makes a model of, and
/// what training reads its parameters from.
pub(crate) struct Opened {
    pub store: TensorStore,
    pub config: ClipConfig,
    pub names: StoredNames,
}

impl Opened {
    /// The model, strictly: every tensor of the checkpoint used, except buffers known to be unused (and the
    /// image tower's, left out unless `image_tower`).
    pub fn build_towers(&self, image_tower: bool) -> Result<ClipModel> {
        let model = ClipModel::load_towers(&self.store.root(), self.config.clone(), image_tower)
            .map_err(|e| self.stored_name(e))?;
        for name in hf::HARMLESS_BUFFERS {
            self.store.skip(name);
        }
        // A SigLIP-trained model's bias (`clip train --siglip`): used in training, not by CLIPModel's logits.
        self.store.skip(LOGIT_BIAS);
        self.store.finish()?;
        Ok(model)
    }

    fn stored_name(&self, error: ClipError) -> ClipError {
        stored_name(self.names, error)
    }
}

/// A missing tensor named as a file stored under `names` would name it.
pub(crate) fn stored_name(names: StoredNames, error: ClipError) -> ClipError {
    match (names, error) {
        (StoredNames::OpenAi(kind), ClipError::MissingTensor { path, name }) => {
            ClipError::MissingTensor {
                name: keymap::model_to_openai(&name, "", Some(kind)).unwrap_or(name),
                path,
            }
        }
        (_, other) => other,
    }
}
