//! A classifier over CLIP image features: one weight row per class, either a zero-shot classifier built from
//! class names and prompt templates (open_clip's `build_zero_shot_classifier`, OpenAI's "Prompt Engineering
//! for ImageNet" notebook: embed every template, L2-normalise each, average, normalise again; scores are
//! `logit_scale x cosine`), or a linear probe (`W x + b` on raw features, scikit-learn's `LogisticRegression`
//! decision function). Saved and loaded by `classifier_file`.

use std::collections::BTreeMap;

use candle_core::{Device, Tensor};

use crate::bundle::{normalize_rows, softmax};
use crate::error::{ClipError, Result};
use crate::zeroshot::identity::ModelIdentity;
use crate::zeroshot::prompts::{check_templates, fill};
use crate::Clip;

/// Texts sent to the text tower per progress step when building (the tower itself batches them further).
const TEXTS_PER_STEP: usize = 256;

/// How a classifier turns image features into class scores.
#[derive(Clone, Debug, PartialEq)]
pub enum Head {
    /// `logit_scale x <x / |x|, w_c>`: class rows are unit vectors in the joint embedding space.
    ZeroShot { logit_scale: f32 },
    /// `<x, w_c> + b_c` on the raw image features: a trained linear probe.
    Linear { bias: Vec<f32> },
}

#[derive(Clone, Debug)]
pub struct Classifier {
    pub class_names: Vec<String>,
    /// The prompt templates a zero-shot classifier was built from (empty for a linear probe).
    pub templates: Vec<String>,
    /// `[classes][embed_dim]`.
    pub weights: Vec<Vec<f32>>,
    pub head: Head,
    /// The model whose embedding space the weights live in (`None` until computed or loaded).
    pub model: Option<ModelIdentity>,
    /// Free-form facts saved with the classifier (e.g. the probe's regularisation strength).
    pub info: BTreeMap<String, String>,
}

/// open_clip's ensembling for one class: normalise each template's embedding, average, normalise again.
/// `features` holds `per_class` consecutive rows per class.
pub fn ensemble(features: &[Vec<f32>], per_class: usize) -> Vec<Vec<f32>> {
    let mut classes = Vec::with_capacity(features.len() / per_class.max(1));
    for group in features.chunks(per_class.max(1)) {
        let mut normed = group.to_vec();
        normalize_rows(&mut normed);
        let dim = normed.first().map_or(0, Vec::len);
        let mut mean = vec![0f32; dim];
        for row in &normed {
            for (m, v) in mean.iter_mut().zip(row) {
                *m += v;
            }
        }
        mean.iter_mut().for_each(|m| *m /= normed.len() as f32);
        classes.push(mean);
    }
    normalize_rows(&mut classes);
    classes
}

impl Classifier {
    /// Builds a zero-shot classifier: every class name in every template, embedded by `clip`'s text tower in
    /// batches and ensembled per class. `on_progress(done, total)` counts classes.
    pub fn zero_shot<S: AsRef<str>, T: AsRef<str>>(
        clip: &Clip,
        class_names: &[S],
        templates: &[T],
        mut on_progress: impl FnMut(usize, usize),
    ) -> Result<Self> {
        if class_names.is_empty() {
            return Err(ClipError::InvalidInput("no class names".into()));
        }
        check_templates(templates)?;
        let per_step = (TEXTS_PER_STEP / templates.len()).max(1);
        let mut weights = Vec::with_capacity(class_names.len());
        for chunk in class_names.chunks(per_step) {
            let texts: Vec<String> = chunk
                .iter()
                .flat_map(|c| templates.iter().map(move |t| fill(t.as_ref(), c.as_ref())))
                .collect();
            let features = clip.encode_texts(&texts, false)?;
            weights.extend(ensemble(&features, templates.len()));
            on_progress(weights.len(), class_names.len());
        }
        Ok(Self {
            class_names: class_names.iter().map(|c| c.as_ref().to_string()).collect(),
            templates: templates.iter().map(|t| t.as_ref().to_string()).collect(),
            weights,
            head: Head::ZeroShot {
                logit_scale: clip.model().logit_scale(),
            },
            model: None,
            info: BTreeMap::new(),
        })
    }

    /// Plain prompts as classes (OpenAI's README: each label text is its own classifier row).
    pub fn from_prompts<S: AsRef<str>>(clip: &Clip, prompts: &[S]) -> Result<Self> {
        Self::zero_shot(clip, prompts, &["{}"], |_, _| {})
    }

    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    pub fn embed_dim(&self) -> usize {
        self.weights.first().map_or(0, Vec::len)
    }

    /// Checks the shapes hang together (after loading a file, say).
    pub fn validate(&self) -> Result<()> {
        let dim = self.embed_dim();
        if self.weights.is_empty() || dim == 0 {
            return Err(ClipError::InvalidInput(
                "a classifier needs at least one class".into(),
            ));
        }
        if self.weights.len() != self.class_names.len()
            || self.weights.iter().any(|w| w.len() != dim)
        {
            return Err(ClipError::InvalidInput(format!(
                "classifier has {} class names but weights of {} rows (each must have {dim} values)",
                self.class_names.len(),
                self.weights.len()
            )));
        }
        if let Head::Linear { bias } = &self.head {
            if bias.len() != self.weights.len() {
                return Err(ClipError::InvalidInput(format!(
                    "classifier bias has {} values for {} classes",
                    bias.len(),
                    self.weights.len()
                )));
            }
        }
        Ok(())
    }

    /// Records the model the classifier belongs to (hashing its weights).
    pub fn bind_to(&mut self, clip: &Clip) -> Result<()> {
        self.model = Some(ModelIdentity::of(clip)?);
        Ok(())
    }

    /// Refuses to score with a model other than the one the classifier was made with.
    pub fn check_model(&self, identity: &ModelIdentity) -> Result<()> {
        match &self.model {
            Some(own) if own.sha256 == identity.sha256 => Ok(()),
            Some(own) => Err(ClipError::ModelMismatch {
                expected: format!("{} (sha256 {})", own.name, short(&own.sha256)),
                found: format!("{} (sha256 {})", identity.name, short(&identity.sha256)),
            }),
            None => Err(ClipError::InvalidInput(
                "the classifier does not record which model made it".into(),
            )),
        }
    }

    /// Class scores, one row per image feature (raw `encode_image` output).
    pub fn logits(&self, image_features: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
        if image_features.is_empty() {
            return Ok(Vec::new());
        }
        let dim = self.embed_dim();
        if let Some(bad) = image_features.iter().find(|f| f.len() != dim) {
            return Err(ClipError::InvalidInput(format!(
                "image features have {} values but the classifier expects {dim}",
                bad.len()
            )));
        }
        let mut inputs = image_features.to_vec();
        if matches!(self.head, Head::ZeroShot { .. }) {
            normalize_rows(&mut inputs);
        }
        let to_tensor = |rows: &[Vec<f32>]| -> Result<Tensor> {
            let flat: Vec<f32> = rows.iter().flatten().copied().collect();
            Ok(Tensor::from_vec(flat, (rows.len(), dim), &Device::Cpu)?)
        };
        let scores = to_tensor(&inputs)?.matmul(&to_tensor(&self.weights)?.t()?)?;
        let mut rows = scores.to_vec2::<f32>()?;
        for row in &mut rows {
            match &self.head {
                Head::ZeroShot { logit_scale } => row.iter_mut().for_each(|v| *v *= logit_scale),
                Head::Linear { bias } => row.iter_mut().zip(bias).for_each(|(v, b)| *v += b),
            }
        }
        Ok(rows)
    }

    /// Softmax over [`Self::logits`].
    pub fn probabilities(&self, image_features: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
        Ok(self
            .logits(image_features)?
            .iter()
            .map(|r| softmax(r))
            .collect())
    }
}

/// Indices of the `k` largest values, largest first (ties keep the lower index first).
pub fn top_k(scores: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order.truncate(k);
    order
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ensemble_normalises_averages_and_normalises() {
        let rows = vec![
            vec![2.0, 0.0],
            vec![0.0, 5.0],
            vec![3.0, 4.0],
            vec![3.0, 4.0],
        ];
        let out = ensemble(&rows, 2);
        let s = std::f32::consts::FRAC_1_SQRT_2;
        assert!((out[0][0] - s).abs() < 1e-7 && (out[0][1] - s).abs() < 1e-7);
        assert_eq!(out[1], vec![0.6, 0.8]);
    }

    #[test]
    fn top_k_orders_by_score() {
        assert_eq!(top_k(&[0.1, 0.5, 0.3, 0.5], 3), vec![1, 3, 2]);
        assert_eq!(top_k(&[0.1], 5), vec![0]);
    }
}
