//! What `clip train` is asked to do, with open_clip's defaults where it has them.

use std::path::PathBuf;

use crate::hub::HubOptions;
use crate::kernels::Precision;
use crate::train::data::{looks_like_shards, DataFormat};

/// Where the starting weights come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelInit {
    /// Anything inference loads: a Hugging Face directory or id, an OpenAI name or `.pt`, open_clip forms.
    Load(String),
    /// A fresh random model of a built-in open_clip architecture (`ViT-B-32`) or a config JSON file.
    Config(String),
}

/// How long to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Length {
    Steps(u64),
    /// Whole passes over the data: `epochs x (pairs / (batch size x accumulation))` steps.
    Epochs(u64),
}

/// Whether to continue an earlier run in the output folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// Start afresh (an output folder that already holds a run is refused).
    No,
    /// From the latest checkpoint in the output folder (afresh when there is none).
    Latest,
    /// From this checkpoint directory.
    From(PathBuf),
}

/// Where the locked image tower's features are cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeatureCacheMode {
    /// `~/.cache/clip/features` (or `$CLIP_CACHE_DIR/features`).
    Default,
    Dir(PathBuf),
    /// Recompute image features every step.
    Off,
}

/// The zero-shot evaluation run beside validation: a labelled image folder (or `path,label` CSV) and the class
/// names and templates (`clip eval`'s specs: a built-in name, a file, or a comma-separated list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZeroShotEval {
    pub data: PathBuf,
    pub classes: Option<String>,
    pub templates: Option<String>,
}

/// Everything a training run needs.
#[derive(Clone)]
pub struct TrainOptions {
    pub model: ModelInit,
    pub hub: HubOptions,
    /// A tokenizer overriding the model's.
    pub vocab: Option<PathBuf>,
    pub train_data: String,
    pub data_format: DataFormat,
    pub val_data: Option<String>,
    /// Validate every this many steps (and at the end); `None`: only at the end.
    pub val_every: Option<u64>,
    pub zeroshot: Option<ZeroShotEval>,
    pub batch_size: usize,
    pub length: Length,
    pub lr: f64,
    pub weight_decay: f64,
    /// Warmup steps; `None`: a tenth of the steps.
    pub warmup: Option<u64>,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub grad_clip_norm: Option<f64>,
    pub accum_freq: usize,
    pub lock_image: bool,
    pub lock_text: bool,
    /// SigLIP's sigmoid loss instead of CLIP's softmax loss.
    pub siglip: bool,
    pub shuffle: bool,
    /// `None`: augment unless the image tower is locked (its features are then cached instead).
    pub augment: Option<bool>,
    pub seed: u64,
    pub save_every: Option<u64>,
    /// Keep only the latest checkpoint.
    pub delete_previous_checkpoint: bool,
    pub output: PathBuf,
    /// `None`: `OUTPUT/log.jsonl`.
    pub log_json: Option<PathBuf>,
    pub resume: Resume,
    /// The forward pass's arithmetic (parameters and optimizer stay f32): f32 or bf16.
    pub precision: Precision,
    pub feature_cache: FeatureCacheMode,
}

impl TrainOptions {
    /// open_clip's defaults (batch 64, lr 5e-4, weight decay 0.2, betas 0.9 / 0.98, eps 1e-6, shuffled,
    /// augmented, seed 0) for one epoch of `train_data` into `output`.
    pub fn new(
        model: ModelInit,
        train_data: impl Into<String>,
        output: impl Into<PathBuf>,
    ) -> Self {
        let train_data = train_data.into();
        Self {
            model,
            hub: HubOptions::default(),
            vocab: None,
            data_format: DataFormat::auto(&train_data),
            train_data,
            val_data: None,
            val_every: None,
            zeroshot: None,
            batch_size: 64,
            length: Length::Epochs(1),
            lr: 5e-4,
            weight_decay: 0.2,
            warmup: None,
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-6,
            grad_clip_norm: None,
            accum_freq: 1,
            lock_image: false,
            lock_text: false,
            siglip: false,
            shuffle: true,
            augment: None,
            seed: 0,
            save_every: None,
            delete_previous_checkpoint: false,
            output: output.into(),
            log_json: None,
            resume: Resume::No,
            precision: Precision::F32,
            feature_cache: FeatureCacheMode::Default,
        }
    }

    /// Whether images are augmented in this run.
    pub fn augments(&self) -> bool {
        self.augment.unwrap_or(!self.lock_image)
    }
}

impl DataFormat {
    /// open_clip's `--dataset-type auto`: `.tar` names are WebDataset shards, anything else a CSV with its
    /// defaults (tab-separated, columns `filepath` and `title`).
    pub fn auto(spec: &str) -> Self {
        if looks_like_shards(spec) {
            Self::WebDataset
        } else {
            Self::Csv {
                separator: b'\t',
                image_key: "filepath".into(),
                caption_key: "title".into(),
            }
        }
    }
}
