//! What the parity tests share: the reference files, the project's tolerance (ARCHITECTURE.md: max |diff| <= 1e-4 x
//! max |reference|) and the features-and-logits comparison every model family goes through.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use clip::{Clip, ClipModel, LoadOptions, Precision};

pub const REL_TOL: f32 = 1e-4;

/// `fixtures/` at the repository root.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// `fixtures/<group>/<name>`.
pub fn fixture(group: &str, name: &str) -> PathBuf {
    fixtures().join(group).join(name)
}

/// A temporary directory (unique to the process and `tag`) removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("clip-test-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The model of any model string or path (`Clip::load` without the tokenizer and preprocessing).
pub fn load_model(path: &Path, precision: Precision) -> clip::Result<ClipModel> {
    let options = LoadOptions {
        precision,
        ..LoadOptions::default()
    };
    Clip::load(&path.to_string_lossy(), &options).map(|clip| clip.model().clone())
}

/// The tensors of `dir/reference.safetensors`.
pub fn reference(dir: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(dir.join("reference.safetensors"), &Device::Cpu).unwrap()
}

/// Reference ids (int64 as torch writes them) as the u32 tensor the model takes.
pub fn ids(t: &Tensor) -> Tensor {
    t.to_dtype(DType::U32).unwrap()
}

/// max |got - want| / max |want| (the scale floored at 1e-6 for all-zero references).
pub fn relative_error(got: &Tensor, want: &Tensor) -> f32 {
    assert_eq!(got.dims(), want.dims(), "shape");
    let max_abs = |t: &Tensor| {
        t.abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    };
    max_abs(&(got - want).unwrap()) / max_abs(want).max(1e-6)
}

/// Asserts `got` matches `want` within the tolerance; prints and returns the relative error (see it with
/// `--nocapture`).
pub fn check(what: &str, got: &Tensor, want: &Tensor) -> f32 {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    let got: Vec<f32> = got.flatten_all().unwrap().to_vec1().unwrap();
    let want: Vec<f32> = want.flatten_all().unwrap().to_vec1().unwrap();
    let max_ref = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let max_diff = got
        .iter()
        .zip(&want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    println!(
        "{what}: max |diff| {max_diff:.3e}, max |ref| {max_ref:.3}, ratio {:.3e}",
        max_diff / max_ref
    );
    assert!(max_ref > 0.0, "{what}: reference is all zeros");
    assert!(
        max_diff <= REL_TOL * max_ref,
        "{what}: max |diff| {max_diff:e} exceeds {REL_TOL} x max |ref| {max_ref}"
    );
    max_diff / max_ref
}

/// Image features, text features and both logits of `model` against a fixture's reference (keys
/// `pixel_values`, `input_ids`, `image_features`, `text_features`, `logits_per_image`, `logits_per_text`).
pub fn check_model(name: &str, model: &ClipModel, refs: &HashMap<String, Tensor>) {
    let image = model.encode_image(&refs["pixel_values"]).unwrap();
    let text = model.encode_text(&ids(&refs["input_ids"])).unwrap();
    check(
        &format!("{name} image_features"),
        &image,
        &refs["image_features"],
    );
    check(
        &format!("{name} text_features"),
        &text,
        &refs["text_features"],
    );
    let (per_image, per_text) = model.logits(&image, &text).unwrap();
    check(
        &format!("{name} logits_per_image"),
        &per_image,
        &refs["logits_per_image"],
    );
    check(
        &format!("{name} logits_per_text"),
        &per_text,
        &refs["logits_per_text"],
    );
}
