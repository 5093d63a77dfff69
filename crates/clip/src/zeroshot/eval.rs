//! Accuracy of a classifier on a labelled dataset, as open_clip's `zero_shot_eval` / clip_benchmark report it:
//! top-1 and top-5 accuracy (top-k of min(5, classes)), per-class accuracy (recall) and the confusion matrix
//! (rows: true class, columns: predicted class). Unreadable images are kept in the report, not in the counts.

use std::path::PathBuf;

use crate::error::{ClipError, Result};
use crate::zeroshot::classifier::{top_k, Classifier};
use crate::zeroshot::dataset::{csv_field, Dataset};
use crate::Clip;

/// How many top classes count for the "top-5" figure (fewer when there are fewer classes).
pub const TOP_K: usize = 5;
/// Images scored per block.
const LOGIT_BLOCK: usize = 1024;

#[derive(Clone, Debug)]
pub struct Prediction {
    pub path: PathBuf,
    pub label: usize,
    /// The best classes, best first (`min(5, classes)` of them).
    pub top: Vec<usize>,
}

#[derive(Clone, Debug)]
pub struct EvalReport {
    pub classes: Vec<String>,
    /// Samples in the dataset, readable or not.
    pub total: usize,
    pub predictions: Vec<Prediction>,
    pub unreadable: Vec<(PathBuf, String)>,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<usize>>,
    /// The k of the "top-5" figure: `min(5, classes)`.
    pub k: usize,
}

impl EvalReport {
    /// Scores already-computed features (`features[i]` belongs to `dataset.samples[indices[i]]`).
    pub fn from_features(
        classifier: &Classifier,
        dataset: &Dataset,
        features: &[Vec<f32>],
        indices: &[usize],
        unreadable: Vec<(PathBuf, String)>,
    ) -> Result<Self> {
        if dataset.classes != classifier.class_names {
            return Err(ClipError::InvalidInput(
                "the dataset's classes are not the classifier's (relabel it with Dataset::with_class_names)".into(),
            ));
        }
        classifier.validate()?;
        let n = classifier.num_classes();
        let k = TOP_K.min(n);
        if features.len() != indices.len() {
            return Err(ClipError::InvalidInput(format!(
                "{} feature rows for {} sample indices",
                features.len(),
                indices.len()
            )));
        }
        let mut confusion = vec![vec![0usize; n]; n];
        let mut predictions = Vec::with_capacity(indices.len());
        // Scores in blocks, so a 50,000-image x 1,000-class evaluation never holds all logits at once.
        let mut logits = Vec::new();
        for block in features.chunks(LOGIT_BLOCK) {
            logits.extend(
                classifier
                    .logits(block)?
                    .into_iter()
                    .map(|row| top_k(&row, k)),
            );
        }
        for (top, &i) in logits.into_iter().zip(indices) {
            let sample = dataset
                .samples
                .get(i)
                .filter(|s| s.label < n)
                .ok_or_else(|| {
                    ClipError::InvalidInput(format!("sample {i} is not in the dataset"))
                })?;
            confusion[sample.label][top[0]] += 1;
            predictions.push(Prediction {
                path: sample.path.clone(),
                label: sample.label,
                top,
            });
        }
        Ok(Self {
            classes: classifier.class_names.clone(),
            total: dataset.samples.len(),
            predictions,
            unreadable,
            confusion,
            k,
        })
    }

    /// Images that were classified.
    pub fn evaluated(&self) -> usize {
        self.predictions.len()
    }

    fn fraction(&self, hits: usize) -> f64 {
        if self.predictions.is_empty() {
            0.0
        } else {
            hits as f64 / self.predictions.len() as f64
        }
    }

    pub fn top1(&self) -> f64 {
        self.fraction(
            self.predictions
                .iter()
                .filter(|p| p.top[0] == p.label)
                .count(),
        )
    }

    /// Top-`k` accuracy with `k = min(5, classes)`.
    pub fn top5(&self) -> f64 {
        self.fraction(
            self.predictions
                .iter()
                .filter(|p| p.top.contains(&p.label))
                .count(),
        )
    }

    /// `(images, correct)` per class; the accuracy is `None` for a class with no readable images.
    pub fn per_class(&self) -> Vec<(usize, usize, Option<f64>)> {
        self.confusion
            .iter()
            .enumerate()
            .map(|(c, row)| {
                let total: usize = row.iter().sum();
                let correct = row[c];
                (
                    total,
                    correct,
                    (total > 0).then(|| correct as f64 / total as f64),
                )
            })
            .collect()
    }

    /// Mean of the per-class accuracies over classes with images (clip_benchmark's "mean per-class recall").
    pub fn mean_per_class(&self) -> f64 {
        let accs: Vec<f64> = self
            .per_class()
            .into_iter()
            .filter_map(|(_, _, a)| a)
            .collect();
        if accs.is_empty() {
            0.0
        } else {
            accs.iter().sum::<f64>() / accs.len() as f64
        }
    }

    /// The confusion matrix as CSV: a header of predicted classes, one row per true class.
    pub fn confusion_csv(&self) -> String {
        let mut out = String::from("true\\predicted");
        for c in &self.classes {
            out.push(',');
            out.push_str(&csv_field(c));
        }
        out.push('\n');
        for (c, row) in self.classes.iter().zip(&self.confusion) {
            out.push_str(&csv_field(c));
            for v in row {
                out.push_str(&format!(",{v}"));
            }
            out.push('\n');
        }
        out
    }
}

/// Encodes `dataset`'s images and scores them with `classifier`; `on_progress(done, total)` counts images.
pub fn evaluate(
    clip: &Clip,
    classifier: &Classifier,
    dataset: &Dataset,
    on_progress: impl FnMut(usize, usize),
) -> Result<EvalReport> {
    let encoded = dataset.encode(clip, on_progress);
    EvalReport::from_features(
        classifier,
        dataset,
        &encoded.features,
        &encoded.indices,
        encoded.unreadable,
    )
}
