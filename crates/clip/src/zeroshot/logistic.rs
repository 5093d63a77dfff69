//! Multinomial logistic regression with an L2 penalty, fitted by L-BFGS: the model of scikit-learn's
//! `LogisticRegression(C=..., solver="lbfgs")` that OpenAI's README uses for linear probes. The objective is
//! sklearn's divided by the sample count, which has the same minimiser:
//!     f(W, b) = 1/N sum_i [logsumexp(W x_i + b) - (W x_i + b)_{y_i}] + |W|^2 / (2 C N)   (b unpenalised).
//! The large products run as f64 matrix products on candle; L-BFGS (Nocedal & Wright, Algorithm 7.4) with a
//! backtracking Armijo line search, which suffices because the objective is smooth and strictly convex.

use candle_core::{DType, Device, Tensor, D};

use crate::error::{ClipError, Result};

/// L-BFGS memory.
const MEMORY: usize = 10;
/// Stop when the largest gradient component is below this (sklearn's default `tol` is 1e-4 on the same
/// scaled objective; tighter here so the answer depends less on the optimiser's path).
const GRADIENT_TOLERANCE: f64 = 1e-6;
/// Stop when an iteration improves the objective by less than this relative amount (scipy's `ftol` as sklearn
/// sets it: 64 x machine epsilon).
const RELATIVE_DECREASE: f64 = 64.0 * f64::EPSILON;
const ARMIJO: f64 = 1e-4;
const MAX_LINE_SEARCH: usize = 50;

/// A fitted model: `scores = W x + b`.
#[derive(Clone, Debug)]
pub struct LogisticRegression {
    /// `[classes][dim]`.
    pub weights: Vec<Vec<f64>>,
    pub bias: Vec<f64>,
    /// L-BFGS iterations used.
    pub iterations: usize,
    pub converged: bool,
}

struct Problem {
    x: Tensor,
    onehot: Tensor,
    n: usize,
    d: usize,
    k: usize,
    c: f64,
}

impl Problem {
    /// Objective and gradient at `theta` = `[W (k x d, row-major), b (k)]`.
    fn eval(&self, theta: &[f64], grad: &mut [f64]) -> Result<f64> {
        let (k, d, n) = (self.k, self.d, self.n as f64);
        let dev = self.x.device();
        let w = Tensor::from_slice(&theta[..k * d], (k, d), dev)?;
        let b = Tensor::from_slice(&theta[k * d..], (1, k), dev)?;
        let z = self.x.matmul(&w.t()?)?.broadcast_add(&b)?;
        let shifted = z.broadcast_sub(&z.max_keepdim(D::Minus1)?)?;
        let log_p = shifted.broadcast_sub(&shifted.exp()?.sum_keepdim(D::Minus1)?.log()?)?;
        let data_loss = -(log_p.mul(&self.onehot)?.sum_all()?.to_scalar::<f64>()?) / n;
        let residual = (log_p.exp()? - &self.onehot)?;
        let grad_w = (residual.t()?.contiguous()?.matmul(&self.x)? / n)?;
        let grad_b = (residual.sum(0)? / n)?;
        let penalty = 1.0 / (self.c * n);
        let mut norm = 0.0;
        for (g, (gw, wv)) in grad[..k * d].iter_mut().zip(
            grad_w
                .flatten_all()?
                .to_vec1::<f64>()?
                .into_iter()
                .zip(&theta[..k * d]),
        ) {
            *g = gw + penalty * wv;
            norm += wv * wv;
        }
        grad[k * d..].copy_from_slice(&grad_b.to_vec1::<f64>()?);
        Ok(data_loss + 0.5 * penalty * norm)
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

impl LogisticRegression {
    /// Fits on `features` (rows) with `labels` in `0..num_classes`; `c` is sklearn's inverse regularisation.
    pub fn fit(
        features: &[Vec<f32>],
        labels: &[usize],
        num_classes: usize,
        c: f64,
        max_iter: usize,
    ) -> Result<Self> {
        let n = features.len();
        let d = features.first().map_or(0, Vec::len);
        if n == 0 || d == 0 || labels.len() != n || num_classes == 0 || c.is_nan() || c <= 0.0 {
            return Err(ClipError::InvalidInput(format!(
                "logistic regression needs samples, matching labels and C > 0 (got {n} samples, {} labels, C {c})",
                labels.len()
            )));
        }
        if let Some(&bad) = labels.iter().find(|&&l| l >= num_classes) {
            return Err(ClipError::InvalidInput(format!(
                "label {bad} is not below {num_classes}"
            )));
        }
        let flat: Vec<f64> = features.iter().flatten().map(|&v| f64::from(v)).collect();
        let mut onehot = vec![0f64; n * num_classes];
        for (i, &l) in labels.iter().enumerate() {
            onehot[i * num_classes + l] = 1.0;
        }
        let problem = Problem {
            x: Tensor::from_vec(flat, (n, d), &Device::Cpu)?.to_dtype(DType::F64)?,
            onehot: Tensor::from_vec(onehot, (n, num_classes), &Device::Cpu)?,
            n,
            d,
            k: num_classes,
            c,
        };
        let (theta, iterations, converged) =
            lbfgs(&problem, vec![0.0; num_classes * (d + 1)], max_iter)?;
        Ok(Self {
            weights: theta[..num_classes * d]
                .chunks(d)
                .map(<[f64]>::to_vec)
                .collect(),
            bias: theta[num_classes * d..].to_vec(),
            iterations,
            converged,
        })
    }

    /// `W x + b` per row.
    pub fn decision_function(&self, features: &[Vec<f32>]) -> Vec<Vec<f64>> {
        features
            .iter()
            .map(|x| {
                self.weights
                    .iter()
                    .zip(&self.bias)
                    .map(|(w, b)| {
                        w.iter()
                            .zip(x)
                            .map(|(wv, xv)| wv * f64::from(*xv))
                            .sum::<f64>()
                            + b
                    })
                    .collect()
            })
            .collect()
    }

    /// Class probabilities per row (softmax of the scores).
    pub fn predict_proba(&self, features: &[Vec<f32>]) -> Vec<Vec<f64>> {
        self.decision_function(features)
            .into_iter()
            .map(|row| {
                let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let exps: Vec<f64> = row.iter().map(|v| (v - max).exp()).collect();
                let sum: f64 = exps.iter().sum();
                exps.into_iter().map(|e| e / sum).collect()
            })
            .collect()
    }

    /// The best class per row (the first on ties, as numpy's argmax).
    pub fn predict(&self, features: &[Vec<f32>]) -> Vec<usize> {
        self.decision_function(features)
            .iter()
            .map(|row| {
                let mut best = 0;
                for (i, v) in row.iter().enumerate() {
                    if *v > row[best] {
                        best = i;
                    }
                }
                best
            })
            .collect()
    }
}

/// Mean negative log-likelihood of `labels` under `probabilities` (sklearn's `log_loss`, which clips
/// probabilities to [eps, 1 - eps] with eps the float64 machine epsilon).
pub fn log_loss(probabilities: &[Vec<f64>], labels: &[usize]) -> f64 {
    let eps = f64::EPSILON;
    let total: f64 = probabilities
        .iter()
        .zip(labels)
        .map(|(p, &l)| -p[l].clamp(eps, 1.0 - eps).ln())
        .sum();
    total / labels.len().max(1) as f64
}

/// Minimises the problem from `theta`: returns the point, the iterations and whether it converged.
fn lbfgs(
    problem: &Problem,
    mut theta: Vec<f64>,
    max_iter: usize,
) -> Result<(Vec<f64>, usize, bool)> {
    let dim = theta.len();
    let mut grad = vec![0.0; dim];
    let mut f = problem.eval(&theta, &mut grad)?;
    let mut history: Vec<(Vec<f64>, Vec<f64>, f64)> = Vec::with_capacity(MEMORY);
    let mut trial = vec![0.0; dim];
    let mut trial_grad = vec![0.0; dim];
    for iteration in 0..max_iter {
        if grad.iter().fold(0.0f64, |m, g| m.max(g.abs())) <= GRADIENT_TOLERANCE {
            return Ok((theta, iteration, true));
        }
        // Two-loop recursion: direction = -H grad.
        let mut q = grad.clone();
        let mut alphas = Vec::with_capacity(history.len());
        for (s, y, rho) in history.iter().rev() {
            let a = rho * dot(s, &q);
            q.iter_mut().zip(y).for_each(|(qi, yi)| *qi -= a * yi);
            alphas.push(a);
        }
        if let Some((s, y, _)) = history.last() {
            let gamma = dot(s, y) / dot(y, y);
            q.iter_mut().for_each(|v| *v *= gamma);
        }
        for ((s, y, rho), a) in history.iter().zip(alphas.iter().rev()) {
            let beta = rho * dot(y, &q);
            q.iter_mut()
                .zip(s)
                .for_each(|(qi, si)| *qi += (a - beta) * si);
        }
        let mut direction: Vec<f64> = q.iter().map(|v| -v).collect();
        let mut slope = dot(&direction, &grad);
        if slope >= 0.0 {
            history.clear();
            direction = grad.iter().map(|g| -g).collect();
            slope = dot(&direction, &grad);
        }
        let mut step = if history.is_empty() {
            (1.0 / dot(&grad, &grad).sqrt()).min(1.0)
        } else {
            1.0
        };
        let mut accepted = None;
        for _ in 0..MAX_LINE_SEARCH {
            trial
                .iter_mut()
                .zip(&theta)
                .zip(&direction)
                .for_each(|((t, x), d)| *t = x + step * d);
            let f_trial = problem.eval(&trial, &mut trial_grad)?;
            if f_trial.is_finite() && f_trial <= f + ARMIJO * step * slope {
                accepted = Some(f_trial);
                break;
            }
            step *= 0.5;
        }
        let Some(f_new) = accepted else {
            // No decrease along a descent direction: at the optimum to machine precision.
            return Ok((theta, iteration, true));
        };
        let s: Vec<f64> = trial.iter().zip(&theta).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = trial_grad.iter().zip(&grad).map(|(a, b)| a - b).collect();
        let sy = dot(&s, &y);
        if sy > 1e-12 * dot(&y, &y).max(f64::MIN_POSITIVE) {
            if history.len() == MEMORY {
                history.remove(0);
            }
            history.push((s, y, 1.0 / sy));
        }
        std::mem::swap(&mut theta, &mut trial);
        std::mem::swap(&mut grad, &mut trial_grad);
        let decrease = f - f_new;
        let scale = f.abs().max(f_new.abs()).max(1.0);
        f = f_new;
        if decrease <= RELATIVE_DECREASE * scale {
            return Ok((theta, iteration + 1, true));
        }
    }
    Ok((theta, max_iter, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separates_two_clusters_and_regularises() {
        let x = vec![
            vec![1.0, 0.1],
            vec![0.9, -0.1],
            vec![-1.0, 0.2],
            vec![-1.1, 0.0],
        ];
        let y = vec![0, 0, 1, 1];
        let model = LogisticRegression::fit(&x, &y, 2, 1.0, 200).unwrap();
        assert!(model.converged);
        assert_eq!(model.predict(&x), y);
        // A tiny C shrinks the weights towards zero.
        let weak = LogisticRegression::fit(&x, &y, 2, 1e-6, 200).unwrap();
        assert!(weak.weights.iter().flatten().all(|w| w.abs() < 1e-4));
        let p = model.predict_proba(&x);
        assert!(log_loss(&p, &y) < log_loss(&weak.predict_proba(&x), &y));
    }
}
