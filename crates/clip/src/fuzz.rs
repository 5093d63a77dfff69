//! Entry points of the fuzz suite (`crates/clip-fuzz` runs them in CI, `fuzz/` under libFuzzer): each takes
//! arbitrary bytes and must return, whatever they are, without panicking, aborting, hanging or allocating
//! beyond the limits. Compiled only with the `fuzz` feature; not part of the library's API.

use std::path::{Path, PathBuf};

use crate::formats::{hf, open_clip};
use crate::kernels::Precision;
use crate::weights::{pickle, pytorch, safetensors, TensorStore};

/// A Hugging Face model's config for the model-building half of [`safetensors`] (the tiny fixture model).
const HF_CONFIG: &str = include_str!("../../../fixtures/models/hf_tiny_quickgelu/config.json");

/// `data` as a safetensors file: the store opens it and every tensor is read at its own shape; then it is
/// loaded as the weights of a Hugging Face model directory.
pub fn safetensors(data: &[u8]) {
    with_temp_dir(|dir| {
        let path = dir.join("model.safetensors");
        if std::fs::write(&path, data).is_err() {
            return;
        }
        if let Ok(store) = safetensors::open(std::slice::from_ref(&path), Precision::F32) {
            take_all(&store);
        }
        if std::fs::write(dir.join("config.json"), HF_CONFIG).is_ok() {
            let _ = crate::Clip::from_dir(dir, None);
        }
    });
}

/// `data` as a PyTorch file: a `pytorch_model.bin` state dict through the store, and an OpenAI `.pt` file
/// (TorchScript or state dict) through architecture inference and model building.
pub fn pytorch(data: &[u8]) {
    with_temp_dir(|dir| {
        let bin = dir.join("pytorch_model.bin");
        if std::fs::write(&bin, data).is_ok() {
            if let Ok((_, store)) = pytorch::open(&bin, Precision::F32) {
                take_all(&store);
            }
        }
        let pt = dir.join("model.pt");
        if std::fs::write(&pt, data).is_ok() {
            let _ = crate::Clip::load(&pt.to_string_lossy(), &crate::LoadOptions::default());
        }
    });
}

/// `data` as a pickle stream.
pub fn pickle(data: &[u8]) {
    let _ = pickle::unpickle(data);
}

/// `data` as JSON through every config reader: `config.json`, `preprocessor_config.json`, open_clip's model
/// config and `open_clip_config.json`.
pub fn config(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let _ = hf::parse_config(&value);
    let _ = hf::parse_preprocessor_config(&value);
    let _ = open_clip::parse_config_file(&value);
}

/// `data` as a `.npy` file.
pub fn npy(data: &[u8]) {
    let _ = crate::npy::from_bytes(data);
}

/// `data` as a saved classifier (`clip classify --save-classifier`).
pub fn classifier(data: &[u8]) {
    with_temp_dir(|dir| {
        let path = dir.join("classifier.safetensors");
        if std::fs::write(&path, data).is_ok() {
            let _ = crate::zeroshot::Classifier::load(&path);
        }
    });
}

/// Reads every tensor of the store at its recorded shape (the loader's path, without a model).
fn take_all(store: &TensorStore) {
    let names: Vec<(String, Vec<usize>)> = store
        .names()
        .filter_map(|n| store.shape(n).map(|s| (n.to_string(), s.to_vec())))
        .collect();
    for (name, shape) in names {
        let _ = store.take(&name, &shape);
    }
}

/// A fresh directory per thread and call, removed afterwards.
fn with_temp_dir(f: impl FnOnce(&Path)) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "clip-fuzz-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    if std::fs::create_dir_all(&dir).is_ok() {
        f(&dir);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
