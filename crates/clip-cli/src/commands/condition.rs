//! `clip condition`: Stable Diffusion text conditioning (diffusers-identical) written to a safetensors file that a
//! diffusion program reads: `conditioning` [B, L, D], `pooled` [B, P] (SDXL), `tokens` / `tokens_2` (int64).

use anyhow::Context;
use clip::conditioning::{
    BatchOrder, ConditionerOptions, ConditioningRequest, ConditioningSettings, Padding, PromptRole,
    TextConditioner,
};

use crate::args::{ConditionArgs, GlobalArgs, OrderArg, PadArg};
use crate::report::{Outcome, UsageError};

use super::print_line;

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
        device: None,
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
