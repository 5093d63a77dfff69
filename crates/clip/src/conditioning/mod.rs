//! Stable Diffusion text conditioning: positive and negative prompts, classifier-free guidance, images per prompt,
//! clip-skip and SDXL's pooled embedding, numerically identical to diffusers 0.42.1's
//! `StableDiffusionPipeline.encode_prompt` (SD 1.x / 2.x) and `StableDiffusionXLPipeline.encode_prompt`.
//!
//! [`TextConditioner::get_text_conditioning`]`(text, n_images, cfg_weight, negative_text)` follows the shape of
//! the `getTextConditioning` of MLX's stable_diffusion example: the negative prompt is encoded only when
//! `cfg_weight > 1`, each prompt's rows are repeated `n_images` times, and both halves come back in one batch.
//!
//! **Batch order.** With guidance the batch is `2 * n_images` rows. [`BatchOrder::PositiveFirst`] (the default,
//! MLX's order: `eps_text, eps_neg = split(2)`) gives `[positive x n, negative x n]`;
//! [`BatchOrder::NegativeFirst`] gives `[negative x n, positive x n]`, which is what diffusers' pipelines feed
//! the UNet (`torch.cat([negative_prompt_embeds, prompt_embeds])`, then `noise_pred_uncond, noise_pred_text =
//! noise_pred.chunk(2)`). `encode_prompt` itself returns the two halves separately; [`Conditioning::positive`]
//! and [`Conditioning::negative`] do the same here.
//!
//! **Rules that differ by model** ([`Preset`]):
//! - SD1: last hidden state after the final LayerNorm, rows padded with `<|endoftext|>` to 77; clip-skip `k`
//!   takes `hidden_states[-(k+1)]` and applies the final LayerNorm.
//! - SD2: the same code path in diffusers, on OpenCLIP ViT-H/14's text tower cut to 23 of its 24 layers (erf
//!   GELU), padded with id 0 (`"!"`). Single files store all 24 layers; the last one is not used.
//! - SDXL: `hidden_states[-2]` (no final LayerNorm) of both encoders concatenated (768 + 1280 = 2048), clip-skip
//!   `k` takes `hidden_states[-(k+2)]`; pooled = the second encoder's projected end-of-text embedding. With
//!   guidance, no negative prompt (`None`) and `force_zeros_for_empty_prompt` (the SDXL pipeline default, read
//!   from `model_index.json`), the negative conditioning and pooled rows are zeros. An explicit empty negative
//!   prompt `Some("")` is encoded, as in diffusers.
//!
//! Clip-skip counts as diffusers does: `clip_skip = 1` is the penultimate layer (what AUTOMATIC1111 and ComfyUI
//! call "CLIP skip 2"). diffusers applies clip-skip to the positive prompt only: the negative prompt always uses the default hidden
//! state (`last_hidden_state`, or `hidden_states[-2]` for SDXL). This module does the same.
//!
//! [`Padding::Longest`] reproduces MLX's variant instead of diffusers': rows padded with id 0 to the longest of
//! the prompts encoded together, tokenized without transformers' special-token splitting (see [`prompt`]).
//! MLX does not truncate (a prompt over 77 tokens fails there); here it is truncated as in diffusers.

pub mod encoder;
pub mod preset;
pub mod prompt;
pub mod source;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, D};

use crate::error::{ClipError, Result};

pub use self::encoder::SdTextEncoder;
pub use self::preset::{EncoderRule, HiddenOutput, PadToken, Preset, SingleFileLayout};
pub use self::prompt::{Padding, PromptIds, PromptTokenizer};

/// Order of the positive and negative halves of a guided batch (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BatchOrder {
    /// `[positive x n_images, negative x n_images]` (MLX).
    #[default]
    PositiveFirst,
    /// `[negative x n_images, positive x n_images]` (the batch diffusers' pipelines give the UNet).
    NegativeFirst,
}

impl BatchOrder {
    pub fn name(self) -> &'static str {
        match self {
            BatchOrder::PositiveFirst => "positive_first",
            BatchOrder::NegativeFirst => "negative_first",
        }
    }
}

/// Per-call settings besides the prompts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConditioningSettings {
    /// diffusers' `clip_skip`: `None` (or 0) uses the preset's default hidden state.
    pub clip_skip: Option<usize>,
    pub padding: Padding,
    pub order: BatchOrder,
}

/// How to load a conditioner.
#[derive(Debug, Clone, Default)]
pub struct ConditionerOptions {
    /// For single-file checkpoints: a diffusers directory whose `text_encoder*/config.json`, `tokenizer*/` and
    /// `model_index.json` describe the encoders (diffusers' `from_single_file(config=...)`). Without it the
    /// architecture is read from tensor shapes and OpenAI's built-in vocabulary is used.
    pub config_dir: Option<PathBuf>,
    /// Overrides the pipeline's `force_zeros_for_empty_prompt` (default: `model_index.json`, else `true` for
    /// SDXL and `false` for SD1/SD2).
    pub force_zeros_for_empty_prompt: Option<bool>,
    /// Settings [`TextConditioner::get_text_conditioning`] uses.
    pub settings: ConditioningSettings,
}

/// Which prompt a truncation happened in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptRole {
    Positive,
    Negative,
}

/// A prompt cut to the tokenizer's maximum length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncation {
    pub prompt: PromptRole,
    /// Text tokens dropped (the ones diffusers' warning prints).
    pub dropped: usize,
    /// Tokens per row (start and end tokens included).
    pub max_length: usize,
}

/// One full request.
#[derive(Debug, Clone, Copy)]
pub struct ConditioningRequest<'a> {
    pub prompt: &'a str,
    /// `None`: no negative prompt (encoded as `""`, or zeros for SDXL with `force_zeros_for_empty_prompt`).
    pub negative: Option<&'a str>,
    pub n_images: usize,
    /// Guidance scale; the negative half exists only when it is above 1.
    pub cfg_weight: f64,
    pub settings: ConditioningSettings,
}

/// The conditioning of one request.
#[derive(Debug, Clone)]
pub struct Conditioning {
    /// `[B, L, D]` f32, `B = n_images`, or `2 * n_images` with guidance, halves in `order`.
    pub conditioning: Tensor,
    /// SDXL: `[B, P]` f32, rows in the same order.
    pub pooled: Option<Tensor>,
    /// Token ids `[prompts, L]` (u32) of the first tokenizer: the positive prompt, then the negative one when it
    /// was encoded (not when zeros stand for it).
    pub tokens: Tensor,
    /// SDXL: the same for the second tokenizer (its padding differs).
    pub tokens_2: Option<Tensor>,
    pub n_images: usize,
    /// Whether the batch holds a negative half.
    pub guidance: bool,
    pub order: BatchOrder,
    pub truncations: Vec<Truncation>,
}

impl Conditioning {
    fn half(&self, t: &Tensor, positive: bool) -> Result<Option<Tensor>> {
        let n = self.n_images;
        if !self.guidance {
            return Ok(positive.then(|| t.clone()));
        }
        let first = positive == (self.order == BatchOrder::PositiveFirst);
        Ok(Some(t.narrow(0, if first { 0 } else { n }, n)?))
    }

    /// diffusers' `prompt_embeds`: the positive rows `[n_images, L, D]`.
    pub fn positive(&self) -> Result<Tensor> {
        self.half(&self.conditioning, true)?
            .ok_or_else(|| ClipError::InvalidInput("no positive rows".into()))
    }

    /// diffusers' `negative_prompt_embeds` `[n_images, L, D]`; `None` without guidance.
    pub fn negative(&self) -> Result<Option<Tensor>> {
        self.half(&self.conditioning, false)
    }

    /// diffusers' `pooled_prompt_embeds` (SDXL).
    pub fn positive_pooled(&self) -> Result<Option<Tensor>> {
        match &self.pooled {
            Some(p) => self.half(p, true),
            None => Ok(None),
        }
    }

    /// diffusers' `negative_pooled_prompt_embeds` (SDXL, with guidance).
    pub fn negative_pooled(&self) -> Result<Option<Tensor>> {
        match &self.pooled {
            Some(p) => self.half(p, false),
            None => Ok(None),
        }
    }

    /// Writes `conditioning` and `pooled` (f32), `tokens` and `tokens_2` (i64) to a safetensors file, with
    /// metadata `preset`, `order`, `n_images` and `guidance` so that a reader can split the batch.
    pub fn save_safetensors(&self, path: &Path, preset: Preset) -> Result<()> {
        let mut tensors: Vec<(&str, Tensor)> =
            vec![("conditioning", self.conditioning.to_dtype(DType::F32)?)];
        if let Some(p) = &self.pooled {
            tensors.push(("pooled", p.to_dtype(DType::F32)?));
        }
        tensors.push(("tokens", self.tokens.to_dtype(DType::I64)?));
        if let Some(t) = &self.tokens_2 {
            tensors.push(("tokens_2", t.to_dtype(DType::I64)?));
        }
        let mut bytes = Vec::with_capacity(tensors.len());
        for (name, t) in &tensors {
            let data: Vec<u8> = match t.dtype() {
                DType::F32 => t
                    .flatten_all()?
                    .to_vec1::<f32>()?
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
                _ => t
                    .flatten_all()?
                    .to_vec1::<i64>()?
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
            };
            let dtype = if t.dtype() == DType::F32 {
                safetensors::Dtype::F32
            } else {
                safetensors::Dtype::I64
            };
            bytes.push((*name, dtype, t.dims().to_vec(), data));
        }
        let views = bytes
            .iter()
            .map(|(name, dtype, shape, data)| {
                safetensors::tensor::TensorView::new(*dtype, shape.clone(), data)
                    .map(|v| (name.to_string(), v))
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| {
                ClipError::InvalidInput(format!("cannot serialise the conditioning: {e}"))
            })?;
        let metadata = HashMap::from([
            ("preset".to_string(), preset.name().to_string()),
            ("order".to_string(), self.order.name().to_string()),
            ("n_images".to_string(), self.n_images.to_string()),
            ("guidance".to_string(), self.guidance.to_string()),
        ]);
        let bytes = safetensors::tensor::serialize(views, Some(metadata)).map_err(|e| {
            ClipError::InvalidInput(format!("cannot serialise the conditioning: {e}"))
        })?;
        Ok(clip_io::write_output(path, &bytes)?)
    }
}

/// The text encoders of one Stable Diffusion model and the rules for turning prompts into conditioning.
/// Immutable after loading: share it behind an `Arc`.
#[derive(Debug, Clone)]
pub struct TextConditioner {
    preset: Preset,
    encoders: Vec<SdTextEncoder>,
    force_zeros_for_empty_prompt: bool,
    settings: ConditioningSettings,
    device: Device,
}

impl TextConditioner {
    /// Loads the text encoders of `path` (a diffusers directory or a `.safetensors` single file) for `preset`.
    pub fn load(preset: Preset, path: &Path, options: &ConditionerOptions) -> Result<Self> {
        let device = Device::Cpu;
        let loaded = source::load(
            preset,
            path,
            options.config_dir.as_deref(),
            options.force_zeros_for_empty_prompt,
        )?;
        Ok(Self {
            preset,
            encoders: loaded.encoders,
            force_zeros_for_empty_prompt: loaded.force_zeros_for_empty_prompt,
            settings: options.settings,
            device,
        })
    }

    pub fn preset(&self) -> Preset {
        self.preset
    }

    pub fn encoders(&self) -> &[SdTextEncoder] {
        &self.encoders
    }

    pub fn force_zeros_for_empty_prompt(&self) -> bool {
        self.force_zeros_for_empty_prompt
    }

    pub fn settings(&self) -> ConditioningSettings {
        self.settings
    }

    /// Width of the conditioning (the encoders' widths summed).
    pub fn width(&self) -> usize {
        self.encoders.iter().map(SdTextEncoder::width).sum()
    }

    /// `getTextConditioning`: the prompt's conditioning repeated `n_images` times, plus as many rows of the
    /// negative prompt when `cfg_weight > 1`, with the settings given at load time.
    pub fn get_text_conditioning(
        &self,
        text: &str,
        n_images: usize,
        cfg_weight: f64,
        negative_text: Option<&str>,
    ) -> Result<Conditioning> {
        self.condition(&ConditioningRequest {
            prompt: text,
            negative: negative_text,
            n_images,
            cfg_weight,
            settings: self.settings,
        })
    }

    /// The conditioning of one request.
    pub fn condition(&self, request: &ConditioningRequest) -> Result<Conditioning> {
        let n = request.n_images;
        if n == 0 {
            return Err(ClipError::InvalidInput(
                "n_images must be at least 1".into(),
            ));
        }
        crate::limits::check_count("n_images", n, crate::limits::MAX_N_IMAGES)?;
        if !request.cfg_weight.is_finite() {
            return Err(ClipError::InvalidInput(format!(
                "guidance scale {} is not a finite number",
                request.cfg_weight
            )));
        }
        let settings = request.settings;
        let clip_skip = settings.clip_skip.unwrap_or(0);
        let guidance = request.cfg_weight > 1.0;
        let zero_negative =
            guidance && request.negative.is_none() && self.force_zeros_for_empty_prompt;
        let encode_negative = guidance && !zero_negative;

        let mut positive_parts = Vec::new();
        let mut negative_parts = Vec::new();
        let mut token_tensors = Vec::new();
        let mut truncations = Vec::new();
        let mut pooled = None;
        let mut length = None;
        for (i, enc) in self.encoders.iter().enumerate() {
            let tok = enc.tokenizer();
            let mut prompts = vec![(
                PromptRole::Positive,
                tok.ids(request.prompt, settings.padding),
            )];
            if encode_negative {
                let negative = request.negative.unwrap_or("");
                prompts.push((PromptRole::Negative, tok.ids(negative, settings.padding)));
            }
            if i == 0 {
                for (role, p) in &prompts {
                    if p.dropped > 0 {
                        truncations.push(Truncation {
                            prompt: *role,
                            dropped: p.dropped,
                            max_length: tok.max_length(),
                        });
                    }
                }
            }
            let ids: Vec<PromptIds> = prompts.into_iter().map(|(_, p)| p).collect();
            let rows = tok.pad(&ids, settings.padding);
            let len = rows[0].len();
            let first = *length.get_or_insert(len);
            if first != len {
                return Err(ClipError::InvalidInput(format!(
                    "the tokenizers give rows of different lengths ({first} and {len}); the conditioning cannot be concatenated"
                )));
            }
            if clip_skip == 0 || !encode_negative {
                let h = enc.hidden(&rows, clip_skip, &self.device)?;
                positive_parts.push(h.narrow(0, 0, 1)?);
                if encode_negative {
                    negative_parts.push(h.narrow(0, 1, 1)?);
                }
            } else {
                positive_parts.push(enc.hidden(&rows[..1], clip_skip, &self.device)?);
                negative_parts.push(enc.hidden(&rows[1..], 0, &self.device)?);
            }
            if let Some(p) = enc.pooled(&rows, &self.device)? {
                pooled = Some(p);
            }
            let flat: Vec<u32> = rows.iter().flatten().copied().collect();
            token_tensors.push(Tensor::from_vec(flat, (rows.len(), len), &self.device)?);
        }

        let positive = Tensor::cat(&positive_parts, D::Minus1)?;
        let negative = if encode_negative {
            Some(Tensor::cat(&negative_parts, D::Minus1)?)
        } else if zero_negative {
            Some(positive.zeros_like()?)
        } else {
            None
        };
        let (pos_pooled, neg_pooled) = match &pooled {
            Some(p) => {
                let pos = p.narrow(0, 0, 1)?;
                let neg = if encode_negative {
                    Some(p.narrow(0, 1, 1)?)
                } else if zero_negative {
                    Some(pos.zeros_like()?)
                } else {
                    None
                };
                (Some(pos), neg)
            }
            None => (None, None),
        };
        let conditioning = assemble(&positive, negative.as_ref(), n, settings.order)?;
        let pooled = match pos_pooled {
            Some(pos) => Some(assemble(&pos, neg_pooled.as_ref(), n, settings.order)?),
            None => None,
        };
        let mut token_tensors = token_tensors.into_iter();
        let tokens = token_tensors
            .next()
            .ok_or_else(|| ClipError::InvalidInput("the model has no text encoder".into()))?;
        Ok(Conditioning {
            conditioning,
            pooled,
            tokens,
            tokens_2: token_tensors.next(),
            n_images: n,
            guidance,
            order: settings.order,
            truncations,
        })
    }
}

/// `[first x n, second x n]` in `order` from one-row tensors (`torch.repeat` + `view` of `encode_prompt`).
fn assemble(
    positive: &Tensor,
    negative: Option<&Tensor>,
    n: usize,
    order: BatchOrder,
) -> Result<Tensor> {
    let repeat = |t: &Tensor| -> Result<Tensor> {
        let copies = vec![t.clone(); n];
        Ok(Tensor::cat(&copies, 0)?)
    };
    let pos = repeat(positive)?;
    let Some(negative) = negative else {
        return Ok(pos);
    };
    let neg = repeat(negative)?;
    let halves = match order {
        BatchOrder::PositiveFirst => [pos, neg],
        BatchOrder::NegativeFirst => [neg, pos],
    };
    Ok(Tensor::cat(&halves, 0)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditioner_is_send_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<TextConditioner>();
    }

    #[test]
    fn assemble_orders_halves() {
        let dev = Device::Cpu;
        let pos = Tensor::new(&[[1f32]], &dev).unwrap();
        let neg = Tensor::new(&[[2f32]], &dev).unwrap();
        let rows = |t: Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let t = assemble(&pos, Some(&neg), 2, BatchOrder::PositiveFirst).unwrap();
        assert_eq!(rows(t), [1.0, 1.0, 2.0, 2.0]);
        let t = assemble(&pos, Some(&neg), 2, BatchOrder::NegativeFirst).unwrap();
        assert_eq!(rows(t), [2.0, 2.0, 1.0, 1.0]);
        let t = assemble(&pos, None, 3, BatchOrder::NegativeFirst).unwrap();
        assert_eq!(rows(t), [1.0, 1.0, 1.0]);
    }
}
