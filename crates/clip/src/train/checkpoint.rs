//! Resumable checkpoints: `OUT/checkpoints/step-00000012/` holds the model as a Hugging Face directory (so any
//! checkpoint loads with `clip --model`), the optimizer's moments (`optimizer.safetensors`) and `state.json`
//! (step, data position, settings). A checkpoint is written into a hidden directory and renamed into place once
//! complete, so a crash (even `kill -9`) leaves either the whole checkpoint or none, and earlier ones intact.

use std::path::{Path, PathBuf};

use clip_preprocess::PreprocessConfig;
use serde::{Deserialize, Serialize};

use crate::error::{ClipError, Result};
use crate::formats::{hf, LOGIT_BIAS};
use crate::kernels::Precision;
use crate::model::layout::parameters;
use crate::model::params::Params;
use crate::model::ClipConfig;
use crate::train::batches::Position;
use crate::train::export::{write_json, write_model, write_tokenizer};
use crate::train::optim::{AdamW, Moments};
use crate::weights::safetensors::{open, write_f32};

pub(crate) const CHECKPOINT_DIR: &str = "checkpoints";
const STATE_FILE: &str = "state.json";
const OPTIMIZER_FILE: &str = "optimizer.safetensors";
const FORMAT: u32 = 1;

/// The settings a resumed run must share with the run it continues (others, such as `--save-every`, may change).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Settings {
    pub train_data: String,
    pub batch_size: usize,
    pub accum_freq: usize,
    pub steps: u64,
    pub lr: f64,
    pub weight_decay: f64,
    pub warmup: u64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub grad_clip_norm: Option<f64>,
    pub lock_image: bool,
    pub lock_text: bool,
    pub siglip: bool,
    pub shuffle: bool,
    pub augment: bool,
    pub seed: u64,
    pub precision: String,
}

impl Settings {
    /// The first setting that differs, as `name: was -> now`.
    pub fn difference(&self, now: &Settings) -> Option<String> {
        let (a, b) = (
            serde_json::to_value(self).ok()?,
            serde_json::to_value(now).ok()?,
        );
        let (a, b) = (a.as_object()?, b.as_object()?);
        a.iter()
            .find(|(k, v)| b.get(*k) != Some(v))
            .map(|(k, v)| format!("{k}: {v} -> {}", b.get(k).cloned().unwrap_or_default()))
    }
}

/// Where a run stands after a step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RunState {
    pub format: u32,
    /// Optimizer steps done.
    pub step: u64,
    /// Where the data stream continues.
    pub position: Position,
    pub settings: Settings,
    pub samples_seen: u64,
    /// Samples whose image could not be read, and samples whose caption was cut to the context (indices into
    /// the training data, sorted).
    pub unreadable: Vec<usize>,
    pub truncated: Vec<usize>,
}

/// A checkpoint read back.
pub(crate) struct Checkpoint {
    pub config: ClipConfig,
    pub params: Params,
    pub adam: AdamW,
    pub state: RunState,
}

fn step_dir_name(step: u64) -> String {
    format!("step-{step:08}")
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> ClipError + '_ {
    move |source| {
        ClipError::File(clip_io::FileError::Write {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// Writes the checkpoint of `state.step` under `root` and returns its directory.
pub(crate) fn save(
    root: &Path,
    config: &ClipConfig,
    params: &Params,
    adam: &AdamW,
    preprocess: &PreprocessConfig,
    tokenizer_dir: Option<&Path>,
    state: &RunState,
) -> Result<PathBuf> {
    let name = step_dir_name(state.step);
    let done = root.join(&name);
    let partial = root.join(format!(".{name}.partial"));
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(io_err(&partial))?;
    }
    std::fs::create_dir_all(&partial).map_err(io_err(&partial))?;
    // A whole Hugging Face directory, tokenizer included, so that `--model CHECKPOINT` tokenizes as the run did.
    write_model(&partial, config, params, preprocess)?;
    write_tokenizer(&partial, tokenizer_dir)?;
    let mut moments: Vec<(String, Vec<usize>, &[f32])> = Vec::new();
    for (param, m) in &adam.moments {
        let shape = params.get(param)?.dims().to_vec();
        moments.push((format!("exp_avg/{param}"), shape.clone(), &m.exp_avg));
        moments.push((format!("exp_avg_sq/{param}"), shape, &m.exp_avg_sq));
    }
    let entries: Vec<(&str, &[usize], &[f32])> = moments
        .iter()
        .map(|(n, s, v)| (n.as_str(), s.as_slice(), *v))
        .collect();
    write_f32(&partial.join(OPTIMIZER_FILE), &entries)?;
    let mut value = serde_json::to_value(state)
        .map_err(|e| ClipError::InvalidInput(format!("checkpoint state: {e}")))?;
    value["adam_step"] = serde_json::json!(adam.step);
    // Written last: a directory with a state file is complete.
    write_json(&partial.join(STATE_FILE), &value)?;
    if done.exists() {
        // The same step written again (a run resumed from an earlier checkpoint): the new one replaces it.
        let old = root.join(format!(".{name}.old"));
        let _ = std::fs::remove_dir_all(&old);
        std::fs::rename(&done, &old).map_err(io_err(&done))?;
        std::fs::rename(&partial, &done).map_err(io_err(&done))?;
        let _ = std::fs::remove_dir_all(&old);
    } else {
        std::fs::rename(&partial, &done).map_err(io_err(&done))?;
    }
    Ok(done)
}

/// The completed checkpoints under `root`, by step.
pub(crate) fn list(root: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(ClipError::Io {
                path: root.to_path_buf(),
                source,
            })
        }
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(step) = name
            .strip_prefix("step-")
            .and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        if entry.path().join(STATE_FILE).is_file() {
            found.push((step, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// Removes what a crash left half-written under `root`.
pub(crate) fn remove_partials(root: &Path) {
    if let Ok(entries) = std::fs::read_dir(root) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".step-") && (name.ends_with(".partial") || name.ends_with(".old"))
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// Reads a checkpoint directory.
pub(crate) fn load(dir: &Path) -> Result<Checkpoint> {
    let state_path = dir.join(STATE_FILE);
    let value = crate::json::read_json(&state_path)?;
    let bad = |reason: String| ClipError::Checkpoint {
        path: state_path.clone(),
        reason,
    };
    let state: RunState = serde_json::from_value(value.clone())
        .map_err(|e| bad(format!("not a training state: {e}")))?;
    if state.format != FORMAT {
        return Err(bad(format!("format {} is not {FORMAT}", state.format)));
    }
    let adam_step = value
        .get("adam_step")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| bad("no adam_step".into()))?;
    let config = hf::read_config(&dir.join(hf::CONFIG_FILE))?;
    let store = open(&[dir.join(hf::SAFETENSORS_FILE)], Precision::F32)?;
    let mut params = Params::new();
    let mut shapes = parameters(&config)?;
    if store.contains(LOGIT_BIAS) {
        shapes.push((LOGIT_BIAS.to_string(), Vec::new()));
    }
    for (name, shape) in &shapes {
        params.insert(name.clone(), store.take(name, shape)?);
    }
    let optimizer = open(&[dir.join(OPTIMIZER_FILE)], Precision::F32)?;
    let mut adam = AdamW {
        step: adam_step,
        ..AdamW::default()
    };
    for (name, shape) in &shapes {
        let key = format!("exp_avg/{name}");
        if !optimizer.contains(&key) {
            continue;
        }
        let read = |key: &str| -> Result<Vec<f32>> {
            Ok(optimizer
                .take(key, shape)?
                .flatten_all()?
                .to_vec1::<f32>()?)
        };
        adam.moments.insert(
            name.clone(),
            Moments {
                exp_avg: read(&key)?,
                exp_avg_sq: read(&format!("exp_avg_sq/{name}"))?,
            },
        );
    }
    Ok(Checkpoint {
        config,
        params,
        adam,
        state,
    })
}

/// A fresh [`RunState`] at step 0.
pub(crate) fn initial_state(settings: Settings) -> RunState {
    RunState {
        format: FORMAT,
        step: 0,
        position: Position::default(),
        settings,
        samples_seen: 0,
        unreadable: Vec::new(),
        truncated: Vec::new(),
    }
}
