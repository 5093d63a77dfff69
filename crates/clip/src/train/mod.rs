//! Contrastive training and fine-tuning, step for step as open_clip's `open_clip_train` does it: the towers'
//! own forward passes with backward passes beside them (`model`), `ClipLoss` / `SigLipLoss` ([`loss`]), AdamW
//! with open_clip's weight-decay rule, warmup + cosine schedule and gradient clipping ([`optim`]), CSV and
//! WebDataset data read in a reproducible order ([`data`], [`batches`]), open_clip's augmentation
//! ([`augment`]), resumable checkpoints ([`checkpoint`]), retrieval metrics ([`eval`]), the
//! LiT fast path's feature cache ([`feature_cache`]), export as a Hugging Face model ([`export`]) and WiSE-FT
//! weight interpolation ([`merge`]).
//!
//! ```no_run
//! use clip::train::{train, ModelInit, Length, Silent, TrainOptions};
//! let mut options = TrainOptions::new(ModelInit::Load("openai/clip-vit-base-patch32".into()), "pairs.csv", "out");
//! options.length = Length::Epochs(3);
//! options.lr = 1e-5;
//! let report = train(&options, &mut Silent)?;
//! println!("trained {} steps into {}", report.steps, report.output.display());
//! # Ok::<(), clip::ClipError>(())
//! ```

// Modules in layer order (tests/layers.rs): each uses only those above it.
pub(crate) mod rng;
pub(crate) mod loss;
pub(crate) mod optim;
pub(crate) mod data;
pub(crate) mod augment;
pub(crate) mod batches;
pub(crate) mod init;
pub(crate) mod export;
pub(crate) mod checkpoint;
pub(crate) mod feature_cache;
pub(crate) mod eval;
pub(crate) mod log;
pub(crate) mod learner;
pub(crate) mod options;
pub(crate) mod start;
pub(crate) mod run;
pub(crate) mod merge;

pub use batches::Position;
pub use data::DataFormat;
pub use eval::Metrics;
pub use merge::merge;
pub use optim::cosine_lr;
pub use options::{FeatureCacheMode, Length, ModelInit, Resume, TrainOptions, ZeroShotEval};
pub use run::{train, Silent, StepRecord, TrainObserver, TrainReport};
