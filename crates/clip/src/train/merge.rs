//! WiSE-FT (Wortsman et al. 2022): the weights of a fine-tuned model interpolated with those of the model it
//! started from, `θ = (1 − α)·θ₀ + α·θ₁`, which keeps much of the fine-tuned accuracy and the original's
//! robustness. Both models may be in any format inference loads; they must share an architecture.

use std::path::Path;

use crate::bundle::source::ModelSource;
use crate::error::{ClipError, Result};
use crate::formats::{stored_name, LOGIT_BIAS};
use crate::hub::HubOptions;
use crate::kernels::Precision;
use crate::model::layout::parameters;
use crate::model::params::Params;
use crate::train::export::{write_model, write_tokenizer};

/// Writes `(1 − alpha)·zeroshot + alpha·finetuned` to `output` as a Hugging Face model directory (with the
/// fine-tuned model's preprocessing and tokenizer).
pub fn merge(
    zeroshot: &str,
    finetuned: &str,
    alpha: f64,
    output: &Path,
    hub: &HubOptions,
) -> Result<()> {
    if !alpha.is_finite() {
        return Err(ClipError::InvalidInput(format!(
            "--alpha {alpha} is not a finite number"
        )));
    }
    let open = |spec: &str| ModelSource::parse(spec)?.open(hub, Precision::F32);
    let (a, b) = (open(zeroshot)?, open(finetuned)?);
    if a.opened.config != b.opened.config {
        return Err(ClipError::InvalidInput(format!(
            "{zeroshot} and {finetuned} have different architectures; only models of one architecture can be merged"
        )));
    }
    let config = &b.opened.config;
    let mut names = parameters(config)?;
    if a.opened.store.contains(LOGIT_BIAS) && b.opened.store.contains(LOGIT_BIAS) {
        names.push((LOGIT_BIAS.to_string(), Vec::new()));
    }
    let mut merged = Params::new();
    for (name, shape) in names {
        let x0 = a
            .opened
            .store
            .take(&name, &shape)
            .map_err(|e| stored_name(a.opened.names, e))?;
        let x1 = b
            .opened
            .store
            .take(&name, &shape)
            .map_err(|e| stored_name(b.opened.names, e))?;
        // As torch computes `(1 - alpha) * t0 + alpha * t1` on float32 tensors.
        let value = (x0.affine(1.0 - alpha, 0.0)? + x1.affine(alpha, 0.0)?)?;
        merged.insert(name, value);
    }
    std::fs::create_dir_all(output).map_err(|source| ClipError::Io {
        path: output.to_path_buf(),
        source,
    })?;
    write_model(output, config, &merged, &b.preprocess)?;
    write_tokenizer(output, b.tokenizer_dir.as_deref())
}
