//! `clip bench --train`: training throughput, as `scripts/bench/train_compare.py` measures PyTorch's: one
//! batch of synthetic pixels and typical captions, full optimizer steps (forward, `ClipLoss`, backward, AdamW)
//! timed after a warm-up step, the median step reported with the process's peak memory.

use std::time::Instant;

use candle_core::{Device, Tensor};
use serde::Serialize;

use super::{peak_rss_bytes, synthetic_pixels};
use crate::error::{ClipError, Result};
use crate::kernels::Precision;
use crate::model::clip::Trainable;
use crate::train::learner::{Learner, Recipe, StepBatch};
use crate::train::loss::LossKind;
use crate::train::optim::{AdamW, AdamWConfig};
use crate::train::options::ModelInit;
use crate::train::start::load_start;
use crate::LoadOptions;

#[derive(Clone, Debug)]
pub struct TrainBenchOptions {
    pub batch: usize,
    /// Timed steps (the median is reported).
    pub steps: usize,
    pub warmup: usize,
    pub lock_image: bool,
    pub lock_text: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct TrainBenchReport {
    pub model: String,
    pub dtype: String,
    pub machine: super::Machine,
    pub batch: usize,
    pub threads: usize,
    pub load_seconds: f64,
    /// Median seconds per optimizer step.
    pub step_seconds: f64,
    pub samples_per_second: f64,
    /// Every step's loss (warm-up included), to see that the steps train.
    pub losses: Vec<f64>,
    pub peak_rss_bytes: Option<u64>,
}

/// Loads `spec` for training and times `options.steps` optimizer steps at batch `options.batch`.
pub fn run_train(
    spec: &str,
    load: &LoadOptions,
    options: &TrainBenchOptions,
) -> Result<TrainBenchReport> {
    if options.steps == 0 || options.batch < 2 {
        return Err(ClipError::InvalidInput(
            "a training benchmark needs at least one timed step and a batch of at least 2".into(),
        ));
    }
    if load.precision == Precision::Int8 {
        return Err(ClipError::InvalidInput(
            "training runs in f32 or bf16".into(),
        ));
    }
    if let Some(n) = load.threads {
        crate::threads::set(n).map_err(ClipError::InvalidInput)?;
    }
    let start = Instant::now();
    let model = ModelInit::Load(spec.to_string());
    let begin = load_start(&model, &load.hub, load.vocab.as_deref(), 0)?;
    let size = begin.preprocess.size as usize;
    let context = begin.config.text.context_length;
    let recipe = Recipe {
        precision: load.precision,
        trainable: Trainable {
            vision: !options.lock_image,
            text: !options.lock_text,
        },
        loss: LossKind::Clip,
        adamw: AdamWConfig::OPEN_CLIP,
        grad_clip_norm: None,
    };
    let mut learner = Learner::new(begin.config, begin.params, AdamW::default(), recipe)?;
    let load_seconds = start.elapsed().as_secs_f64();
    let b = options.batch;
    let pixels = Tensor::from_vec(
        synthetic_pixels(b * 3 * size * size),
        (b, 3, size, size),
        &Device::Cpu,
    )?;
    let captions: Vec<String> = (0..b)
        .map(|i| {
            format!(
                "a photo of {} small dogs playing on a red couch in the living room",
                i + 2
            )
        })
        .collect();
    let ids = begin.tokenizer.tokenize_batch(&captions, context, true)?;
    let ids = Tensor::from_vec(ids.concat(), (b, context), &Device::Cpu)?;
    let batch = [StepBatch {
        pixels: Some(pixels),
        image_features: None,
        ids,
    }];
    let mut losses = Vec::new();
    let mut times = Vec::new();
    for i in 0..options.warmup + options.steps {
        let t = Instant::now();
        // A small constant rate: the steps should train, not diverge.
        let result = learner.step(&batch, 1e-5)?;
        if i >= options.warmup {
            times.push(t.elapsed().as_secs_f64());
        }
        losses.push(result.loss);
    }
    times.sort_by(f64::total_cmp);
    let step_seconds = times[times.len() / 2];
    Ok(TrainBenchReport {
        model: spec.to_string(),
        dtype: load.precision.to_string(),
        machine: super::Machine::for_precision(load.precision),
        batch: b,
        threads: crate::threads::count(),
        load_seconds,
        step_seconds,
        samples_per_second: b as f64 / step_seconds,
        losses,
        peak_rss_bytes: peak_rss_bytes(),
    })
}
