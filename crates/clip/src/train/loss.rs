//! The contrastive losses of open_clip (`open_clip/loss.py`), with their gradients: `ClipLoss` (softmax
//! cross-entropy both ways over `exp(t) · normalise(I) · normalise(T)^T`) and `SigLipLoss` (pairwise sigmoid with
//! a learnable bias). Features come in raw, as the towers output them; the L2 normalisation (`F.normalize`,
//! eps 1e-12) is part of the loss here. Computed in f64.

use candle_core::{Device, Tensor};

use crate::error::{ClipError, Result};

/// Which loss a run trains with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossKind {
    /// open_clip's `ClipLoss`: mean of the image->text and text->image cross-entropies.
    Clip,
    /// open_clip's `SigLipLoss`: `-sum(log sigmoid(z_ij (s x_i.y_j + b))) / batch`, `z` = +1 on the diagonal.
    SigLip,
}

/// A loss value and its gradients.
#[derive(Debug)]
pub struct LossGrad {
    pub loss: f64,
    /// d loss / d raw image features `[B, D]` and text features `[B, D]`.
    pub dimage: Tensor,
    pub dtext: Tensor,
    /// d loss / d t, where the temperature is `exp(t)` (the stored `logit_scale`).
    pub dlog_scale: f64,
    /// d loss / d b (SigLIP's bias).
    pub dbias: f64,
}

/// Rows of `t` as f64.
fn rows(t: &Tensor) -> Result<Vec<Vec<f64>>> {
    Ok(t.to_dtype(candle_core::DType::F64)?.to_vec2::<f64>()?)
}

/// `F.normalize(x, dim=-1)`: each row over `max(||x||, 1e-12)`; returns the rows and their norms.
fn normalise(rows: &[Vec<f64>]) -> (Vec<Vec<f64>>, Vec<f64>) {
    let norms: Vec<f64> = rows
        .iter()
        .map(|r| r.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12))
        .collect();
    let unit = rows
        .iter()
        .zip(&norms)
        .map(|(r, n)| r.iter().map(|v| v / n).collect())
        .collect();
    (unit, norms)
}

/// The gradient of raw rows from the gradient of their normalised rows: `(dy - y (y . dy)) / ||x||`.
fn normalise_backward(unit: &[Vec<f64>], norms: &[f64], dunit: &[Vec<f64>]) -> Vec<Vec<f64>> {
    unit.iter()
        .zip(norms)
        .zip(dunit)
        .map(|((y, n), dy)| {
            let dot: f64 = y.iter().zip(dy).map(|(a, b)| a * b).sum();
            y.iter().zip(dy).map(|(a, b)| (b - a * dot) / n).collect()
        })
        .collect()
}

fn to_tensor(rows: Vec<Vec<f64>>, device: &Device) -> Result<Tensor> {
    let (b, d) = (rows.len(), rows.first().map_or(0, Vec::len));
    let flat: Vec<f32> = rows.into_iter().flatten().map(|v| v as f32).collect();
    Ok(Tensor::from_vec(flat, (b, d), device)?)
}

/// `kind`'s loss of a batch of matching pairs (row `i` of `image` goes with row `i` of `text`) at log-temperature
/// `log_scale` (and bias `bias` for SigLIP), with its gradients.
pub fn contrastive_loss(
    kind: LossKind,
    image: &Tensor,
    text: &Tensor,
    log_scale: f64,
    bias: f64,
) -> Result<LossGrad> {
    let (img, txt) = (rows(image)?, rows(text)?);
    let b = img.len();
    if b == 0 || txt.len() != b || img[0].len() != txt[0].len() {
        return Err(ClipError::InvalidInput(format!(
            "contrastive loss needs image and text features of one shape, got {:?} and {:?}",
            image.dims(),
            text.dims()
        )));
    }
    let scale = log_scale.exp();
    let (ui, ni) = normalise(&img);
    let (ut, nt) = normalise(&txt);
    // cos[i][j] = ui_i . ut_j
    let cos: Vec<Vec<f64>> = ui
        .iter()
        .map(|a| {
            ut.iter()
                .map(|t| a.iter().zip(t).map(|(x, y)| x * y).sum())
                .collect()
        })
        .collect();
    // dlogits[i][j] = d loss / d (scale cos_ij + bias)
    let (loss, dlogits) = match kind {
        LossKind::Clip => {
            let logits: Vec<Vec<f64>> = cos
                .iter()
                .map(|r| r.iter().map(|c| scale * c).collect())
                .collect();
            let mut dl = vec![vec![0f64; b]; b];
            let mut loss = 0.0;
            // Rows: image -> text; columns: text -> image. Each cross-entropy is a mean over the batch, and the
            // two are averaged.
            for i in 0..b {
                let row: Vec<f64> = (0..b).map(|j| logits[i][j]).collect();
                let col: Vec<f64> = (0..b).map(|j| logits[j][i]).collect();
                for (probs, is_row) in [(softmax(&row), true), (softmax(&col), false)] {
                    loss -= probs[i].ln() / (2.0 * b as f64);
                    for j in 0..b {
                        let g = (probs[j] - if j == i { 1.0 } else { 0.0 }) / (2.0 * b as f64);
                        if is_row {
                            dl[i][j] += g;
                        } else {
                            dl[j][i] += g;
                        }
                    }
                }
            }
            (loss, dl)
        }
        LossKind::SigLip => {
            let mut dl = vec![vec![0f64; b]; b];
            let mut loss = 0.0;
            for i in 0..b {
                for j in 0..b {
                    let z = if i == j { 1.0 } else { -1.0 };
                    let logit = scale * cos[i][j] + bias;
                    // -log sigmoid(z l) = softplus(-z l), computed stably.
                    let m = -z * logit;
                    loss += m.max(0.0) + (-m.abs()).exp().ln_1p();
                    // d/dl softplus(-z l) = -z sigmoid(-z l)
                    dl[i][j] = -z * sigmoid(m) / b as f64;
                }
            }
            (loss / b as f64, dl)
        }
    };
    let mut dlog_scale = 0.0;
    let mut dbias = 0.0;
    let mut dui = vec![vec![0f64; ui[0].len()]; b];
    let mut dut = vec![vec![0f64; ut[0].len()]; b];
    for i in 0..b {
        for j in 0..b {
            let g = dlogits[i][j];
            dlog_scale += g * scale * cos[i][j];
            dbias += g;
            for k in 0..ui[0].len() {
                dui[i][k] += g * scale * ut[j][k];
                dut[j][k] += g * scale * ui[i][k];
            }
        }
    }
    let device = image.device();
    Ok(LossGrad {
        loss,
        dimage: to_tensor(normalise_backward(&ui, &ni, &dui), device)?,
        dtext: to_tensor(normalise_backward(&ut, &nt, &dut), device)?,
        dlog_scale,
        dbias,
    })
}

fn softmax(row: &[f64]) -> Vec<f64> {
    let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = row.iter().map(|v| (v - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|e| e / sum).collect()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::relative_error;

    fn features(seed: u64, b: usize, d: usize) -> Tensor {
        let v = crate::test_util::lcg(b * d, seed);
        Tensor::from_vec(v, (b, d), &Device::Cpu).unwrap()
    }

    /// Every gradient against central differences of the loss itself.
    #[test]
    fn gradients_match_finite_differences() {
        let (b, d) = (3, 4);
        let (img, txt) = (features(1, b, d), features(2, b, d));
        for kind in [LossKind::Clip, LossKind::SigLip] {
            let (t, bias) = (2.0, -1.5);
            let g = contrastive_loss(kind, &img, &txt, t, bias).unwrap();
            let loss = |i: &Tensor, x: &Tensor, t: f64, bias: f64| {
                contrastive_loss(kind, i, x, t, bias).unwrap().loss
            };
            let h = 1e-3;
            let fd_t = (loss(&img, &txt, t + h, bias) - loss(&img, &txt, t - h, bias)) / (2.0 * h);
            assert!(
                (fd_t - g.dlog_scale).abs() < 1e-4,
                "{kind:?} dt {fd_t} vs {}",
                g.dlog_scale
            );
            if kind == LossKind::SigLip {
                let fd_b =
                    (loss(&img, &txt, t, bias + h) - loss(&img, &txt, t, bias - h)) / (2.0 * h);
                assert!((fd_b - g.dbias).abs() < 1e-4, "db {fd_b} vs {}", g.dbias);
            }
            // Central differences in f64 (the loss computes in f64).
            let base = img
                .to_dtype(candle_core::DType::F64)
                .unwrap()
                .to_vec2::<f64>()
                .unwrap();
            let grad = g.dimage.to_vec2::<f32>().unwrap();
            for r in 0..b {
                for c in 0..d {
                    let bump = |delta: f64| {
                        let mut m = base.clone();
                        m[r][c] += delta;
                        let t2 = Tensor::new(m, &Device::Cpu).unwrap();
                        loss(&t2, &txt, t, bias)
                    };
                    let fd = (bump(1e-5) - bump(-1e-5)) / 2e-5;
                    assert!(
                        (fd - f64::from(grad[r][c])).abs() < 1e-5 * fd.abs().max(1.0),
                        "{kind:?} ({r},{c}): {fd} vs {}",
                        grad[r][c]
                    );
                }
            }
        }
    }

    /// open_clip's `ClipLoss` and `SigLipLoss` (float64) on fixed features: fixtures/train/losses.safetensors.
    #[test]
    fn losses_on_fixed_features_equal_open_clip() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/train/losses.safetensors");
        let r = candle_core::safetensors::load(path, &Device::Cpu).unwrap();
        let scalar = |k: &str| f64::from(r[k].to_vec1::<f32>().unwrap()[0]);
        for (name, kind) in [("clip", LossKind::Clip), ("siglip", LossKind::SigLip)] {
            let bias = if kind == LossKind::SigLip {
                scalar("siglip.bias")
            } else {
                0.0
            };
            let g = contrastive_loss(
                kind,
                &r["image"],
                &r["text"],
                scalar(&format!("{name}.log_scale")),
                bias,
            )
            .unwrap();
            let close = |got: f64, want: f64, what: &str| {
                assert!(
                    (got - want).abs() <= 1e-5 * want.abs().max(1e-3),
                    "{name} {what}: {got} vs {want}"
                );
            };
            close(g.loss, scalar(&format!("{name}.loss")), "loss");
            close(
                g.dlog_scale,
                scalar(&format!("{name}.dlog_scale")),
                "d log_scale",
            );
            if kind == LossKind::SigLip {
                close(g.dbias, scalar("siglip.dbias"), "d bias");
            }
            for (got, key) in [(&g.dimage, "dimage"), (&g.dtext, "dtext")] {
                let e = relative_error(got, &r[&format!("{name}.{key}")]);
                assert!(e <= 1e-5, "{name} {key}: relative error {e:e}");
            }
        }
    }

    #[test]
    fn clip_loss_of_a_perfect_match_is_small_and_symmetric() {
        let x = features(3, 4, 8);
        let g = contrastive_loss(LossKind::Clip, &x, &x, 100f64.ln(), 0.0).unwrap();
        assert!(g.loss < 0.5, "{}", g.loss);
        let swapped = contrastive_loss(LossKind::Clip, &x, &features(4, 4, 8), 1.0, 0.0).unwrap();
        let back = contrastive_loss(LossKind::Clip, &features(4, 4, 8), &x, 1.0, 0.0).unwrap();
        assert!((swapped.loss - back.loss).abs() < 1e-12);
    }
}
