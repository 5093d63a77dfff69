//! Linear probes as in OpenAI's README ("Linear-probe evaluation"): logistic regression on `encode_image`
//! features, with the regularisation strength C swept on a validation split (the CLIP paper sweeps
//! 10^-6 ..= 10^6) and the model refitted on the whole training set with the best C. The result is saved as a
//! [`Classifier`] with a linear head, usable wherever a zero-shot classifier is.

use std::collections::BTreeMap;

use crate::error::{ClipError, Result};
use crate::zeroshot::classifier::{Classifier, Head};
use crate::zeroshot::logistic::{log_loss, LogisticRegression};

/// OpenAI README's fixed C, used when the training set is too small to hold out a validation split.
pub const README_C: f64 = 0.316;

#[derive(Clone, Debug)]
pub struct ProbeOptions {
    /// Candidate C values, tried in order.
    pub cs: Vec<f64>,
    /// L-BFGS iterations per fit (the README uses 1000).
    pub max_iter: usize,
}

impl Default for ProbeOptions {
    /// C = 10^k for k in -6..=6 in half-decade steps.
    fn default() -> Self {
        Self {
            cs: (-12..=12).map(|k| 10f64.powf(f64::from(k) / 2.0)).collect(),
            max_iter: 1000,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct SweepPoint {
    pub c: f64,
    pub val_accuracy: f64,
    pub val_log_loss: f64,
}

#[derive(Clone, Debug)]
pub struct Probe {
    pub sweep: Vec<SweepPoint>,
    pub best_c: f64,
    pub model: LogisticRegression,
    pub train_accuracy: f64,
}

/// The validation split: in each class (samples in dataset order) with at least two samples, the last
/// `max(1, n / 4)` go to validation. Returns `(fit, validation)` sample indices, both ascending.
pub fn validation_split(labels: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let classes = labels.iter().copied().max().map_or(0, |m| m + 1);
    let (mut fit, mut val) = (Vec::new(), Vec::new());
    for c in 0..classes {
        let idx: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == c).collect();
        let n_val = if idx.len() >= 2 {
            (idx.len() / 4).max(1)
        } else {
            0
        };
        fit.extend_from_slice(&idx[..idx.len() - n_val]);
        val.extend_from_slice(&idx[idx.len() - n_val..]);
    }
    fit.sort_unstable();
    val.sort_unstable();
    (fit, val)
}

fn pick<T: Clone>(items: &[T], indices: &[usize]) -> Vec<T> {
    indices.iter().map(|&i| items[i].clone()).collect()
}

/// Fraction of `predicted` equal to `labels`.
pub fn accuracy(predicted: &[usize], labels: &[usize]) -> f64 {
    if labels.is_empty() {
        return 0.0;
    }
    predicted.iter().zip(labels).filter(|(p, l)| p == l).count() as f64 / labels.len() as f64
}

/// Sweeps C on the validation split (best accuracy, ties broken by the lower validation log-loss), then
/// refits on all of `features`. `on_progress(done, total)` counts fits.
pub fn fit_probe(
    features: &[Vec<f32>],
    labels: &[usize],
    num_classes: usize,
    options: &ProbeOptions,
    mut on_progress: impl FnMut(usize, usize),
) -> Result<Probe> {
    if features.is_empty() {
        return Err(ClipError::InvalidInput(
            "no training images to fit a probe on".into(),
        ));
    }
    if options.cs.is_empty() {
        return Err(ClipError::InvalidInput("no C values to sweep".into()));
    }
    let (fit_idx, val_idx) = validation_split(labels);
    let total = options.cs.len() + 1;
    let mut sweep = Vec::new();
    if !val_idx.is_empty() && !fit_idx.is_empty() {
        let (fit_x, fit_y) = (pick(features, &fit_idx), pick(labels, &fit_idx));
        let (val_x, val_y) = (pick(features, &val_idx), pick(labels, &val_idx));
        for (i, &c) in options.cs.iter().enumerate() {
            let model = LogisticRegression::fit(&fit_x, &fit_y, num_classes, c, options.max_iter)?;
            sweep.push(SweepPoint {
                c,
                val_accuracy: accuracy(&model.predict(&val_x), &val_y),
                val_log_loss: log_loss(&model.predict_proba(&val_x), &val_y),
            });
            on_progress(i + 1, total);
        }
    }
    let best_c = sweep
        .iter()
        .min_by(|a, b| {
            b.val_accuracy
                .total_cmp(&a.val_accuracy)
                .then(a.val_log_loss.total_cmp(&b.val_log_loss))
        })
        .map_or(README_C, |p| p.c);
    let model = LogisticRegression::fit(features, labels, num_classes, best_c, options.max_iter)?;
    on_progress(total, total);
    let train_accuracy = accuracy(&model.predict(features), labels);
    Ok(Probe {
        sweep,
        best_c,
        model,
        train_accuracy,
    })
}

impl Probe {
    /// The probe as a classifier with a linear head over raw image features.
    pub fn to_classifier(&self, class_names: &[String]) -> Classifier {
        let mut info = BTreeMap::new();
        info.insert("probe_C".to_string(), format!("{:e}", self.best_c));
        info.insert(
            "probe_train_accuracy".to_string(),
            format!("{}", self.train_accuracy),
        );
        Classifier {
            class_names: class_names.to_vec(),
            templates: Vec::new(),
            weights: self
                .model
                .weights
                .iter()
                .map(|row| row.iter().map(|&v| v as f32).collect())
                .collect(),
            head: Head::Linear {
                bias: self.model.bias.iter().map(|&v| v as f32).collect(),
            },
            model: None,
            info,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_holds_out_a_quarter_of_each_class() {
        let labels = vec![0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2];
        let (fit, val) = validation_split(&labels);
        assert_eq!(val, vec![6, 7, 9]);
        assert_eq!(fit, vec![0, 1, 2, 3, 4, 5, 8, 10]);
    }
}
