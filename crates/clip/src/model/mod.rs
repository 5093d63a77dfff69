//! CLIP's towers as candle modules, numerically mirroring transformers' `modeling_clip.py` (5.23) and OpenAI's
//! `model.py`: a ViT or ModifiedResNet image tower, a causal text tower, projections and the logit scale. The
//! architecture comes from [`config`] data.
//!
//! Every format is mapped onto one layout before the model reads it (see `formats`), transformers'
//! `CLIPModel` state dict:
//!
//! | names | part |
//! |---|---|
//! | `vision_model.embeddings.{class_embedding, patch_embedding.weight, position_embedding.weight}` | ViT embeddings |
//! | `vision_model.{pre_layrnorm, post_layernorm}` | ViT layer norms |
//! | `{vision,text}_model.encoder.layers.N.{layer_norm1, self_attn.{q,k,v,out}_proj, layer_norm2, mlp.fc1, mlp.fc2}` | transformer blocks |
//! | `vision_model.{conv1..3, bn1..3, layer1..4.N.*, attnpool.*}` | ModifiedResNet (OpenAI's names; transformers has none) |
//! | `visual_projection.weight` `[embed, width]` | ViT projection |
//! | `text_model.embeddings.{token_embedding, position_embedding}.weight`, `text_model.final_layer_norm` | text tower |
//! | `text_projection.weight` `[embed, width]`, `logit_scale` | projection, temperature (a log) |

pub(crate) mod clip;
pub(crate) mod config;
pub(crate) mod layout;
pub(crate) mod nn;
pub(crate) mod params;
pub(crate) mod resnet;
pub(crate) mod text;
pub(crate) mod vision;

pub use self::clip::{l2_normalize, ClipModel};
pub use self::config::{
    Activation, ClipConfig, ResNetConfig, TextConfig, TextPooling, VisionConfig, VisionTowerConfig,
};
