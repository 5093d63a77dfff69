//! Evaluation during training, as open_clip's `evaluate`: retrieval metrics over a held-out image-caption set
//! (`get_clip_metrics`: for each image the rank of its caption among all captions, and the reverse; mean and
//! median rank, recall at 1/5/10) and `clip_val_loss` (the CLIP loss over batches of the training batch size,
//! the last one kept even if smaller, averaged per sample).

use std::collections::BTreeMap;

use candle_core::{Device, Tensor};
use clip_preprocess::PreprocessConfig;
use clip_tokenizer::Tokenizer;

use crate::error::Result;
use crate::model::{l2_normalize, ClipModel};
use crate::threads::parallel_map;
use crate::train::batches::tokenize_caption;
use crate::train::data::DataSet;
use crate::train::loss::{contrastive_loss, LossKind};

/// Images encoded per forward pass.
const CHUNK: usize = 32;

/// open_clip's validation metrics, by its names (`image_to_text_R@1`, `clip_val_loss`, ...), and the number of
/// pairs evaluated (`num_samples`).
pub type Metrics = BTreeMap<String, f64>;

/// Raw image and text features of the readable pairs of a data set.
pub(crate) struct EncodedPairs {
    pub images: Vec<Vec<f32>>,
    pub texts: Vec<Vec<f32>>,
    /// Pairs left out because their image failed: `(label, reason)`.
    pub failed: Vec<(String, String)>,
}

/// Encodes every readable pair of `data`.
pub(crate) fn encode_pairs(
    model: &ClipModel,
    data: &DataSet,
    tokenizer: &Tokenizer,
    preprocess: &PreprocessConfig,
) -> Result<EncodedPairs> {
    let context = model.config().text.context_length;
    let size = preprocess.size as usize;
    let mut images = Vec::new();
    let mut texts = Vec::new();
    let mut failed = Vec::new();
    let indices: Vec<usize> = (0..data.len()).collect();
    for chunk in indices.chunks(CHUNK) {
        let decoded = parallel_map(chunk, |&i| -> Result<Vec<f32>> {
            let sample = &data.samples[i];
            let image = clip_preprocess::decode(&sample.image.read()?)?;
            Ok(clip_preprocess::preprocess_image(&image, preprocess)?)
        });
        let mut pixels = Vec::new();
        let mut ids = Vec::new();
        for (&i, result) in chunk.iter().zip(decoded) {
            match result {
                Ok(p) => {
                    pixels.extend(p);
                    ids.extend(tokenize_caption(tokenizer, &data.samples[i].caption, context)?.0);
                }
                Err(e) => failed.push((data.samples[i].image.label(), e.to_string())),
            }
        }
        let n = ids.len() / context;
        if n == 0 {
            continue;
        }
        let pixels = Tensor::from_vec(pixels, (n, 3, size, size), &Device::Cpu)?;
        let ids = Tensor::from_vec(ids, (n, context), &Device::Cpu)?;
        images.extend(model.encode_image(&pixels)?.to_vec2::<f32>()?);
        texts.extend(model.encode_text(&ids)?.to_vec2::<f32>()?);
    }
    Ok(EncodedPairs {
        images,
        texts,
        failed,
    })
}

/// `get_clip_metrics` and `clip_val_loss` of raw features at temperature `logit_scale` (`exp(t)`).
pub(crate) fn retrieval_metrics(
    images: &[Vec<f32>],
    texts: &[Vec<f32>],
    logit_scale: f64,
    batch_size: usize,
) -> Result<Metrics> {
    let n = images.len();
    let mut metrics = Metrics::new();
    metrics.insert("num_samples".into(), n as f64);
    if n == 0 {
        return Ok(metrics);
    }
    let to_tensor = |rows: &[Vec<f32>]| -> Result<Tensor> {
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        Ok(Tensor::from_vec(
            flat,
            (rows.len(), rows[0].len()),
            &Device::Cpu,
        )?)
    };
    let unit_images = l2_normalize(&to_tensor(images)?)?.to_vec2::<f32>()?;
    let unit_texts = l2_normalize(&to_tensor(texts)?)?.to_vec2::<f32>()?;
    let logits: Vec<Vec<f64>> = unit_images
        .iter()
        .map(|i| {
            unit_texts
                .iter()
                .map(|t| {
                    logit_scale
                        * i.iter()
                            .zip(t)
                            .map(|(a, b)| f64::from(*a) * f64::from(*b))
                            .sum::<f64>()
                })
                .collect()
        })
        .collect();
    for (name, per_row) in [
        ("image_to_text", logits.clone()),
        (
            "text_to_image",
            (0..n)
                .map(|j| (0..n).map(|i| logits[i][j]).collect())
                .collect(),
        ),
    ] {
        // The 0-based rank of the matching item: how many score higher.
        let mut ranks: Vec<usize> = per_row
            .iter()
            .enumerate()
            .map(|(i, row): (usize, &Vec<f64>)| row.iter().filter(|&&v| v > row[i]).count())
            .collect();
        let mean = ranks.iter().sum::<usize>() as f64 / n as f64;
        ranks.sort_unstable();
        // np.median, then floor, then + 1.
        let median = if n % 2 == 1 {
            ranks[n / 2] as f64
        } else {
            (ranks[n / 2 - 1] + ranks[n / 2]) as f64 / 2.0
        };
        metrics.insert(format!("{name}_mean_rank"), mean + 1.0);
        metrics.insert(format!("{name}_median_rank"), median.floor() + 1.0);
        for k in [1usize, 5, 10] {
            let hits = ranks.iter().filter(|&&r| r < k).count();
            metrics.insert(format!("{name}_R@{k}"), hits as f64 / n as f64);
        }
    }
    let mut total = 0.0;
    for start in (0..n).step_by(batch_size.max(1)) {
        let end = (start + batch_size.max(1)).min(n);
        let lg = contrastive_loss(
            LossKind::Clip,
            &to_tensor(&images[start..end])?,
            &to_tensor(&texts[start..end])?,
            logit_scale.ln(),
            0.0,
        )?;
        total += lg.loss * (end - start) as f64;
    }
    metrics.insert("clip_val_loss".into(), total / n as f64);
    Ok(metrics)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_and_recalls() {
        // Image 0 matches text 0 best; image 1 prefers text 0 (rank 1); image 2 matches.
        let images = vec![
            vec![1.0, 0.0, 0.0],
            vec![1.0, 0.9, 0.0],
            vec![0.0, 0.0, 1.0],
        ];
        let texts = vec![
            vec![1.0, 0.0, 0.0],
            vec![0.0, 1.0, 0.0],
            vec![0.0, 0.0, 1.0],
        ];
        let m = retrieval_metrics(&images, &texts, 10.0, 2).unwrap();
        assert_eq!(m["image_to_text_R@1"], 2.0 / 3.0);
        assert_eq!(m["image_to_text_R@5"], 1.0);
        assert_eq!(m["image_to_text_mean_rank"], 1.0 + 1.0 / 3.0);
        assert_eq!(m["image_to_text_median_rank"], 1.0);
        assert_eq!(m["text_to_image_R@1"], 1.0);
        assert_eq!(m["num_samples"], 3.0);
        assert!(m["clip_val_loss"] > 0.0);
    }
}
