//! Zero-shot classification done as the CLIP paper does it, and what users reach for next:
//! prompt templates and class lists as data ([`prompts`]), ensembled classifiers ([`classifier`], open_clip's
//! `build_zero_shot_classifier`), classifiers saved with the identity of their model ([`classifier_file`],
//! [`identity`]), datasets in ImageFolder or CSV form ([`dataset`]), accuracy reports ([`eval`]) and linear
//! probes ([`probe`], [`logistic`]: scikit-learn's `LogisticRegression` as in OpenAI's README).

pub mod classifier;
pub mod classifier_file;
pub mod dataset;
pub mod eval;
pub mod identity;
pub mod logistic;
pub mod probe;
pub mod prompts;

pub use classifier::{top_k, Classifier, Head};
pub use dataset::{Dataset, Encoded, Sample};
pub use eval::{evaluate, EvalReport};
pub use identity::ModelIdentity;
pub use probe::{fit_probe, Probe, ProbeOptions};
