//! CLIP's towers as candle modules, numerically mirroring transformers' `modeling_clip.py` (5.23): a ViT image
//! tower, a causal text tower, projections and the logit scale. Architecture comes from [`config`] data.

pub mod clip;
pub mod config;
pub mod layers;
pub mod resnet;
pub mod text;
pub mod vision;

pub use self::clip::{l2_normalize, ClipModel, VisionTower};
pub use self::config::{
    Activation, ClipConfig, ModelArch, Precision, ResNetConfig, TextConfig, VisionConfig,
    VisionTowerConfig,
};
pub use self::resnet::ModifiedResNet;
pub use self::text::TextTransformer;
pub use self::vision::VisionTransformer;
