//! The per-model rules of Stable Diffusion's text conditioning, as data. They mirror what diffusers 0.42.1's
//! pipelines do (`StableDiffusionPipeline.encode_prompt` for SD 1.x and 2.x, `StableDiffusionXLPipeline.
//! encode_prompt` for SDXL) and where each model family keeps its text encoders in an original single-file
//! checkpoint (`diffusers.loaders.single_file_utils`).

use std::fmt;
use std::str::FromStr;

use crate::model::config::Activation;

/// A Stable Diffusion model family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Preset {
    /// SD 1.x: OpenAI's ViT-L/14 text tower; the last hidden state after the final LayerNorm; prompts padded
    /// with end-of-text to 77.
    Sd1,
    /// SD 2.x: OpenCLIP ViT-H/14's text tower without its last layer (23 of 24, erf GELU) and the final
    /// LayerNorm; prompts padded with id 0 (`"!"`).
    Sd2,
    /// SDXL: the penultimate hidden states of ViT-L/14 and OpenCLIP bigG/14 (no final LayerNorm) concatenated
    /// (768 + 1280 = 2048 wide); pooled = bigG's projected end-of-text embedding.
    Sdxl,
}

impl Preset {
    pub const ALL: [Preset; 3] = [Preset::Sd1, Preset::Sd2, Preset::Sdxl];

    pub fn name(self) -> &'static str {
        match self {
            Preset::Sd1 => "sd1",
            Preset::Sd2 => "sd2",
            Preset::Sdxl => "sdxl",
        }
    }

    /// The rules of each text encoder, in concatenation order.
    pub fn encoders(self) -> &'static [EncoderRule] {
        match self {
            Preset::Sd1 => &SD1,
            Preset::Sd2 => &SD2,
            Preset::Sdxl => &SDXL,
        }
    }

    /// The diffusers pipeline class (`model_index.json` `_class_name`) of this family.
    pub fn pipeline_class(self) -> &'static str {
        match self {
            Preset::Sd1 | Preset::Sd2 => "StableDiffusionPipeline",
            Preset::Sdxl => "StableDiffusionXLPipeline",
        }
    }

    /// `force_zeros_for_empty_prompt` when `model_index.json` does not say: SDXL's pipeline default is `True`;
    /// the SD pipeline has no such setting.
    pub fn default_force_zeros(self) -> bool {
        matches!(self, Preset::Sdxl)
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Preset {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "sd1" | "sd1.5" | "sd15" => Ok(Preset::Sd1),
            "sd2" | "sd2.1" | "sd21" => Ok(Preset::Sd2),
            "sdxl" => Ok(Preset::Sdxl),
            other => Err(format!(
                "unknown preset {other:?}: expected sd1, sd2 or sdxl"
            )),
        }
    }
}

/// Which hidden state of a text encoder becomes the conditioning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HiddenOutput {
    /// `last_hidden_state` (all layers, then the final LayerNorm). With clip-skip `k`: `hidden_states[-(k+1)]`
    /// (the output of layer `L - k`), then the final LayerNorm, as `StableDiffusionPipeline.encode_prompt`.
    FinalNorm,
    /// `hidden_states[-2]` (the output of layer `L - 1`) without the final LayerNorm; with clip-skip `k`:
    /// `hidden_states[-(k+2)]`, as `StableDiffusionXLPipeline.encode_prompt`.
    Penultimate,
}

/// Where an original (non-diffusers) single-file checkpoint keeps a text encoder, and in which layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SingleFileLayout {
    /// A transformers `CLIPTextModel` state dict under the first of these prefixes present
    /// (`...transformer.text_model.*`; very early files lack the `text_model.` level).
    Transformers(&'static [&'static str]),
    /// An OpenAI / open_clip text tower (`token_embedding`, `positional_embedding`, `transformer.resblocks.N`,
    /// `ln_final`, `text_projection`) under this prefix.
    OpenClip(&'static str),
}

/// One text encoder of a preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncoderRule {
    /// diffusers sub-directories of the encoder and its tokenizer.
    pub encoder_dir: &'static str,
    pub tokenizer_dir: &'static str,
    pub output: HiddenOutput,
    /// Padding token when the tokenizer files do not name one: `<|endoftext|>` (OpenAI's tokenizer, SD1) or
    /// `"!"`, id 0 (open_clip's tokenizer, SD2 and SDXL's second encoder).
    pub default_pad: PadToken,
    /// MLP activation of the published weights, for single files read without a config.
    pub activation: Activation,
    pub single_file: SingleFileLayout,
    /// Layers a single file stores beyond the ones used: 1 for SD2 (the conditioning is the penultimate layer of
    /// OpenCLIP ViT-H, which diffusers' converter drops as `SD_2_TEXT_ENCODER_KEYS_TO_IGNORE`).
    pub unused_last_layers: usize,
    /// Whether this encoder's projected end-of-text embedding is the pooled output (SDXL's second encoder).
    pub pooled: bool,
}

/// A padding token named by its vocabulary entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PadToken {
    EndOfText,
    /// `"!"`: the first entry of CLIP's byte-level vocabulary, id 0.
    Exclamation,
}

impl PadToken {
    pub fn content(self) -> &'static str {
        match self {
            PadToken::EndOfText => "<|endoftext|>",
            PadToken::Exclamation => "!",
        }
    }
}

const SD1: [EncoderRule; 1] = [EncoderRule {
    encoder_dir: "text_encoder",
    tokenizer_dir: "tokenizer",
    output: HiddenOutput::FinalNorm,
    default_pad: PadToken::EndOfText,
    activation: Activation::QuickGelu,
    single_file: SingleFileLayout::Transformers(&[
        "cond_stage_model.transformer.text_model",
        "cond_stage_model.transformer",
    ]),
    unused_last_layers: 0,
    pooled: false,
}];

const SD2: [EncoderRule; 1] = [EncoderRule {
    encoder_dir: "text_encoder",
    tokenizer_dir: "tokenizer",
    output: HiddenOutput::FinalNorm,
    default_pad: PadToken::Exclamation,
    activation: Activation::Gelu,
    single_file: SingleFileLayout::OpenClip("cond_stage_model.model"),
    unused_last_layers: 1,
    pooled: false,
}];

const SDXL: [EncoderRule; 2] = [
    EncoderRule {
        encoder_dir: "text_encoder",
        tokenizer_dir: "tokenizer",
        output: HiddenOutput::Penultimate,
        default_pad: PadToken::EndOfText,
        activation: Activation::QuickGelu,
        single_file: SingleFileLayout::Transformers(&[
            "conditioner.embedders.0.transformer.text_model",
            "conditioner.embedders.0.transformer",
        ]),
        unused_last_layers: 0,
        pooled: false,
    },
    EncoderRule {
        encoder_dir: "text_encoder_2",
        tokenizer_dir: "tokenizer_2",
        output: HiddenOutput::Penultimate,
        default_pad: PadToken::Exclamation,
        activation: Activation::Gelu,
        single_file: SingleFileLayout::OpenClip("conditioner.embedders.1.model"),
        unused_last_layers: 0,
        pooled: true,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in Preset::ALL {
            assert_eq!(p.name().parse::<Preset>().unwrap(), p);
        }
        assert!("sd3".parse::<Preset>().is_err());
        assert_eq!(Preset::Sdxl.encoders().len(), 2);
        assert!(Preset::Sdxl.encoders()[1].pooled);
    }
}
