//! `clip condition`: Stable Diffusion text conditioning (diffusers-identical) written to a safetensors file that a
//! diffusion program reads: `conditioning` [B, L, D], `pooled` [B, P] (SDXL), `tokens` / `tokens_2` (int64).

use anyhow::Context;
use clip::conditioning::{
    BatchOrder, ConditionerOptions, ConditioningRequest, ConditioningSettings, Padding, PromptRole,
    TextConditioner,
};

use std::path::PathBuf;

use clap::Args;

use crate::args::GlobalArgs;
use crate::report::{Outcome, UsageError};

use super::print_line;

#[derive(Args, Debug)]
pub struct ConditionArgs {
    /// Model family: sd1, sd2 or sdxl
    #[arg(long, value_name = "P")]
    pub preset: clip::conditioning::Preset,
    /// A diffusers directory (text_encoder/, tokenizer/, ...) or a .safetensors single-file checkpoint
    #[arg(long, short, value_name = "PATH")]
    pub model: PathBuf,
    /// For single files: a diffusers directory whose text_encoder*/config.json and tokenizer*/ describe the
    /// encoders [default: architecture from tensor shapes, OpenAI's vocabulary]
    #[arg(long, value_name = "DIR")]
    pub config: Option<PathBuf>,
    /// The prompt
    #[arg(long, value_name = "TEXT")]
    pub prompt: String,
    /// Negative prompt [default: none: "" for SD1/SD2, zeros for SDXL]
    #[arg(long, value_name = "TEXT")]
    pub negative: Option<String>,
    /// Guidance scale; above 1 the batch holds negative rows too
    #[arg(long, value_name = "W", default_value_t = 7.5)]
    pub cfg: f64,
    /// Images per prompt (rows per half), 1 to 256
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub n_images: usize,
    /// Layers to skip from the end (diffusers' clip_skip; positive prompt only, as diffusers)
    #[arg(long, value_name = "K")]
    pub clip_skip: Option<usize>,
    /// Padding: max (diffusers: to 77 with the tokenizer's pad token) or longest (MLX: id 0 to the longest prompt)
    #[arg(long, value_enum, default_value_t = PadArg::Max)]
    pub pad: PadArg,
    /// Batch order with guidance: positive-first [pos x N, neg x N] or negative-first (diffusers' UNet batch)
    #[arg(long, value_enum, default_value_t = OrderArg::PositiveFirst)]
    pub order: OrderArg,
    /// Zeros for a missing negative prompt (SDXL's force_zeros_for_empty_prompt) [default: model_index.json]
    #[arg(long, value_name = "BOOL")]
    pub force_zeros: Option<bool>,
    /// Safetensors file to write (conditioning, pooled, tokens)
    #[arg(long, value_name = "F.safetensors")]
    pub output: PathBuf,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum PadArg {
    Max,
    Longest,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum OrderArg {
    PositiveFirst,
    NegativeFirst,
}

pub fn run(_global: &GlobalArgs, args: ConditionArgs) -> anyhow::Result<Outcome> {
    if args.n_images == 0 || args.n_images > clip::limits::MAX_N_IMAGES {
        return Err(UsageError(format!(
            "--n-images must be between 1 and {}",
            clip::limits::MAX_N_IMAGES
        ))
        .into());
    }
    if !args.cfg.is_finite() {
        return Err(UsageError(format!("--cfg {} is not a finite number", args.cfg)).into());
    }
    let settings = ConditioningSettings {
        clip_skip: args.clip_skip,
        padding: match args.pad {
            PadArg::Max => Padding::MaxLength,
            PadArg::Longest => Padding::Longest,
        },
        order: match args.order {
            OrderArg::PositiveFirst => BatchOrder::PositiveFirst,
            OrderArg::NegativeFirst => BatchOrder::NegativeFirst,
        },
    };
    let options = ConditionerOptions {
        config_dir: args.config.clone(),
        force_zeros_for_empty_prompt: args.force_zeros,
        settings,
    };
    let conditioner =
        TextConditioner::load(args.preset, &args.model, &options).with_context(|| {
            format!(
                "cannot load the {} text encoders of {}",
                args.preset,
                args.model.display()
            )
        })?;
    let out = conditioner.condition(&ConditioningRequest {
        prompt: &args.prompt,
        negative: args.negative.as_deref(),
        n_images: args.n_images,
        cfg_weight: args.cfg,
        settings,
    })?;
    for t in &out.truncations {
        let which = match t.prompt {
            PromptRole::Positive => "prompt",
            PromptRole::Negative => "negative prompt",
        };
        eprintln!(
            "warning: the {which} is longer than {} tokens: {} token{} dropped",
            t.max_length,
            t.dropped,
            if t.dropped == 1 { " was" } else { "s were" }
        );
    }
    out.save_safetensors(&args.output, args.preset)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    let mut summary = format!(
        "{}: conditioning {:?}",
        args.output.display(),
        out.conditioning.dims()
    );
    if let Some(p) = &out.pooled {
        summary.push_str(&format!(", pooled {:?}", p.dims()));
    }
    if out.guidance {
        summary.push_str(&format!(
            ", {} ({} rows each)",
            out.order.name().replace('_', " "),
            out.n_images
        ));
    }
    print_line(&summary)?;
    Ok(Outcome::Success)
}
