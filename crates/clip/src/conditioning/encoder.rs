//! One Stable Diffusion text encoder with its tokenizer: the hidden state diffusers' `encode_prompt` takes from
//! it (`last_hidden_state`, `hidden_states[-(k+1)]` + `final_layer_norm`, or `hidden_states[-(k+2)]`) and, for
//! SDXL's second encoder, `CLIPTextModelWithProjection.text_embeds` (the projected end-of-text state).

use candle_core::{Device, Tensor};

use crate::conditioning::preset::{EncoderRule, HiddenOutput};
use crate::conditioning::prompt::PromptTokenizer;
use crate::error::{ClipError, Result};
use crate::model::nn::Linear;
use crate::model::text::TextTransformer;
use crate::model::TextConfig;

/// A loaded text encoder, its tokenizer and the rule for reading its output.
#[derive(Debug, Clone)]
pub struct SdTextEncoder {
    rule: EncoderRule,
    tokenizer: PromptTokenizer,
    tower: TextTransformer,
    /// `text_projection` (`[projection_dim, width]` as a bias-free linear layer) of the pooled encoder.
    projection: Option<Linear>,
}

impl SdTextEncoder {
    pub(crate) fn new(
        rule: EncoderRule,
        tokenizer: PromptTokenizer,
        tower: TextTransformer,
        projection: Option<Linear>,
    ) -> Self {
        Self {
            rule,
            tokenizer,
            tower,
            projection,
        }
    }

    pub fn rule(&self) -> &EncoderRule {
        &self.rule
    }

    pub fn tokenizer(&self) -> &PromptTokenizer {
        &self.tokenizer
    }

    /// The text tower's architecture.
    pub fn config(&self) -> &TextConfig {
        self.tower.config()
    }

    /// Width of the conditioning this encoder contributes.
    pub fn width(&self) -> usize {
        self.tower.config().width
    }

    /// Width of the pooled output, for the pooled encoder.
    pub fn pooled_width(&self) -> Option<usize> {
        self.projection.as_ref().map(Linear::out_dim)
    }

    /// The largest clip-skip this encoder accepts: diffusers indexes `hidden_states` (embeddings output plus one
    /// entry per layer), so `-(k+1)` / `-(k+2)` must stay within it.
    pub fn max_clip_skip(&self) -> usize {
        let layers = self.tower.config().layers;
        match self.rule.output {
            HiddenOutput::FinalNorm => layers,
            HiddenOutput::Penultimate => layers.saturating_sub(1),
        }
    }

    /// Checks the rows are valid input (ids inside the vocabulary, length within the context) and returns
    /// them as a `[batch, len]` tensor.
    fn ids(&self, rows: &[Vec<u32>], device: &Device) -> Result<Tensor> {
        let len = rows.first().map_or(0, Vec::len);
        let flat: Vec<u32> = rows.iter().flatten().copied().collect();
        let ids = Tensor::from_vec(flat, (rows.len(), len), device)?;
        self.tower.check_input(&ids)?;
        Ok(ids)
    }

    /// The conditioning rows `[batch, len, width]` for token rows of one length, `clip_skip` layers from the
    /// end as the rule reads it.
    pub fn hidden(&self, rows: &[Vec<u32>], clip_skip: usize, device: &Device) -> Result<Tensor> {
        self.ids(rows, device)?;
        let layers = self.tower.config().layers;
        if clip_skip > self.max_clip_skip() {
            return Err(ClipError::InvalidInput(format!(
                "clip skip {clip_skip} is too large: the {} has {layers} layers (at most {})",
                self.rule.encoder_dir,
                self.max_clip_skip()
            )));
        }
        match self.rule.output {
            HiddenOutput::FinalNorm => {
                let x = self.tower.encode_rows(rows, Some(layers - clip_skip))?;
                self.tower.final_layer_norm().forward(&x)
            }
            HiddenOutput::Penultimate => self.tower.encode_rows(rows, Some(layers - 1 - clip_skip)),
        }
    }

    /// `text_embeds` `[batch, projection_dim]`: the final-LayerNorm state at each row's pooled position
    /// (`eos_token_id` rule of the config), projected. `None` for encoders without a projection.
    pub fn pooled(&self, rows: &[Vec<u32>], device: &Device) -> Result<Option<Tensor>> {
        let Some(projection) = &self.projection else {
            return Ok(None);
        };
        let ids = self.ids(rows, device)?;
        let pooled = self.tower.forward(&ids)?;
        Ok(Some(projection.forward(&pooled)?))
    }
}
