//! The model's architecture as data, one type whatever the checkpoint format (transformers' `CLIPConfig`,
//! OpenAI's shapes, open_clip's `model_configs/*.json` all become a [`ClipConfig`]): every architectural choice
//! the forward pass makes is read from here.

use serde::{Deserialize, Serialize};

/// The MLP non-linearity. CLIP checkpoints differ here (OpenAI: QuickGELU, most LAION ones: erf GELU), so it is
/// always read from the checkpoint's config, never assumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Activation {
    /// `x * sigmoid(1.702 x)` (transformers `quick_gelu`, OpenAI's `QuickGELU`).
    #[serde(rename = "quick_gelu")]
    QuickGelu,
    /// Exact GELU with erf (transformers `gelu`, PyTorch `nn.GELU()`).
    #[serde(rename = "gelu")]
    Gelu,
    /// tanh-approximated GELU (transformers `gelu_new` / `gelu_pytorch_tanh` / `gelu_fast`).
    #[serde(rename = "gelu_pytorch_tanh", alias = "gelu_new", alias = "gelu_fast")]
    GeluTanh,
}

impl Activation {
    /// Maps a transformers `hidden_act` string (the `ACT2FN` key) to an activation; `None` for ones CLIP never uses.
    pub fn from_hf_name(name: &str) -> Option<Self> {
        match name {
            "quick_gelu" => Some(Self::QuickGelu),
            // `gelu_python` is the same erf formula written in Python.
            "gelu" | "gelu_python" => Some(Self::Gelu),
            // All three are 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), written differently.
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Some(Self::GeluTanh),
            _ => None,
        }
    }
}

/// ViT image tower (transformers `CLIPVisionConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisionConfig {
    /// Input side length in pixels (square images).
    pub image_size: usize,
    pub patch_size: usize,
    /// Transformer width (`hidden_size`).
    pub width: usize,
    /// Number of encoder layers (`num_hidden_layers`).
    pub layers: usize,
    /// Attention heads (`num_attention_heads`).
    pub heads: usize,
    pub intermediate_size: usize,
    pub activation: Activation,
    pub layer_norm_eps: f64,
}

impl VisionConfig {
    /// Patches per side; a remainder of the image that does not fill a patch is ignored, as a strided conv does.
    pub fn grid_size(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Tokens in the sequence: one per patch plus the class token.
    pub fn num_positions(&self) -> usize {
        self.grid_size() * self.grid_size() + 1
    }
}

/// OpenAI's ModifiedResNet image tower (clip `model.py` `ModifiedResNet`, open_clip `vision_cfg.layers` as a list).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResNetConfig {
    /// Input side length in pixels (the attention pool sees `image_size / 32` squared positions).
    pub image_size: usize,
    /// Bottleneck blocks in each of the four stages.
    pub layers: [usize; 4],
    /// Stem width (64 for RN50); stage `i` has `width * 2^i` planes and the pool works on `width * 32` channels.
    pub width: usize,
    /// Attention-pool heads (OpenAI: `width * 32 / 64`).
    pub heads: usize,
    /// Output of the attention pool's `c_proj`: the shared embedding size.
    pub output_dim: usize,
}

impl ResNetConfig {
    /// Channels entering the attention pool.
    pub fn embed_dim(&self) -> usize {
        self.width * 32
    }

    /// Feature-map side at the attention pool.
    pub fn grid_size(&self) -> usize {
        self.image_size / 32
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.width == 0 || self.heads == 0 || self.output_dim == 0 || self.grid_size() == 0 {
            return Err(
                "resnet width, heads, output_dim and image_size / 32 must be positive".into(),
            );
        }
        if !self.embed_dim().is_multiple_of(self.heads) {
            return Err(format!(
                "resnet attention pool width {} is not a multiple of {} heads",
                self.embed_dim(),
                self.heads
            ));
        }
        if self.layers.contains(&0) {
            return Err("every resnet stage needs at least one block".into());
        }
        Ok(())
    }
}

/// Which image tower a model has (OpenAI released both kinds; open_clip's `vision_cfg.layers` picks between them):
/// an architecture variant is an enum, never a string.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VisionTowerConfig {
    Vit(VisionConfig),
    ResNet(ResNetConfig),
}

impl VisionTowerConfig {
    pub fn image_size(&self) -> usize {
        match self {
            Self::Vit(c) => c.image_size,
            Self::ResNet(c) => c.image_size,
        }
    }
}

/// How the text tower picks the position whose state becomes the text's embedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextPooling {
    /// The first occurrence of this token id (the end-of-text token; position 0 if absent), as transformers'
    /// `CLIPTextModel` pools with a current config.
    FirstEos(u32),
    /// The first maximum id: OpenAI's and open_clip's `text.argmax(dim=-1)`, and transformers' rule for configs
    /// written before its PR #24773 (those say `eos_token_id: 2`). With CLIP's vocabulary the end-of-text id is
    /// the largest, so both rules pool at the same place on real text.
    Argmax,
}

/// Causal text transformer (transformers `CLIPTextConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextConfig {
    pub vocab_size: usize,
    /// Maximum number of tokens (`max_position_embeddings`, 77 for OpenAI's models).
    pub context_length: usize,
    pub width: usize,
    pub layers: usize,
    pub heads: usize,
    pub intermediate_size: usize,
    pub activation: Activation,
    pub layer_norm_eps: f64,
    pub pooling: TextPooling,
}

/// A whole dual-encoder CLIP model, whichever format it came from (transformers `CLIPConfig`, OpenAI's
/// `build_model` shapes, open_clip's `model_configs/*.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipConfig {
    pub vision: VisionTowerConfig,
    pub text: TextConfig,
    /// Shared embedding size both towers map to (`projection_dim`, open_clip's `embed_dim`).
    pub projection_dim: usize,
    /// Initial value of the stored `logit_scale` (a log); informative only, the checkpoint holds the real one.
    pub logit_scale_init: f32,
}

impl ClipConfig {
    /// Checks the invariants the forward pass relies on and the size limits; `Err` names the offending field.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let t = &self.text;
        let mut positive = vec![
            ("text_config.vocab_size", t.vocab_size),
            ("text_config.max_position_embeddings", t.context_length),
            ("text_config.hidden_size", t.width),
            ("text_config.num_attention_heads", t.heads),
            ("text_config.intermediate_size", t.intermediate_size),
            ("projection_dim", self.projection_dim),
        ];
        match &self.vision {
            VisionTowerConfig::Vit(v) => {
                positive.extend([
                    ("vision_config.image_size", v.image_size),
                    ("vision_config.patch_size", v.patch_size),
                    ("vision_config.hidden_size", v.width),
                    ("vision_config.num_attention_heads", v.heads),
                    ("vision_config.intermediate_size", v.intermediate_size),
                ]);
            }
            VisionTowerConfig::ResNet(r) => {
                r.validate()?;
                if r.output_dim != self.projection_dim {
                    return Err(format!(
                        "resnet output_dim {} differs from the embedding size {}",
                        r.output_dim, self.projection_dim
                    ));
                }
            }
        }
        for (name, value) in positive {
            if value == 0 {
                return Err(format!("{name} must be positive"));
            }
        }
        let image_size = self.vision.image_size();
        if image_size > clip_preprocess::MAX_SIZE as usize {
            return Err(format!(
                "vision_config.image_size {image_size} is larger than the limit of {} pixels",
                clip_preprocess::MAX_SIZE
            ));
        }
        if t.context_length > clip_tokenizer::MAX_CONTEXT_LENGTH {
            return Err(format!(
                "text_config.max_position_embeddings {} is larger than the limit of {} tokens",
                t.context_length,
                clip_tokenizer::MAX_CONTEXT_LENGTH
            ));
        }
        let mut towers = vec![("text", t.width, t.heads, t.layer_norm_eps)];
        if let VisionTowerConfig::Vit(v) = &self.vision {
            if v.patch_size > v.image_size {
                return Err(format!(
                    "vision_config.patch_size {} is larger than image_size {}",
                    v.patch_size, v.image_size
                ));
            }
            towers.push(("vision", v.width, v.heads, v.layer_norm_eps));
        }
        for (tower, width, heads, eps) in towers {
            if width % heads != 0 {
                return Err(format!(
                    "{tower}_config.hidden_size {width} is not a multiple of num_attention_heads {heads}"
                ));
            }
            if !(eps.is_finite() && eps >= 0.0) {
                return Err(format!(
                    "{tower}_config.layer_norm_eps {eps} is not a finite non-negative number"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_names() {
        assert_eq!(
            Activation::from_hf_name("quick_gelu"),
            Some(Activation::QuickGelu)
        );
        assert_eq!(Activation::from_hf_name("gelu"), Some(Activation::Gelu));
        assert_eq!(
            Activation::from_hf_name("gelu_new"),
            Some(Activation::GeluTanh)
        );
        assert_eq!(
            Activation::from_hf_name("gelu_pytorch_tanh"),
            Some(Activation::GeluTanh)
        );
        assert_eq!(Activation::from_hf_name("relu"), None);
        let a: Activation = serde_json::from_str("\"gelu_new\"").unwrap();
        assert_eq!(a, Activation::GeluTanh);
        assert_eq!(
            serde_json::to_string(&Activation::QuickGelu).unwrap(),
            "\"quick_gelu\""
        );
    }
}
