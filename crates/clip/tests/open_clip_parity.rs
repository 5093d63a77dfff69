//! Parity of open_clip checkpoints with open_clip_torch 3.3 (`encode_image`, `encode_text`, and
//! `logit_scale.exp() * normalize(img) @ normalize(txt).T`) on small random-weight models written by
//! scripts/fixtures/gen_open_clip.py: an erf-GELU ViT in both weight formats (`open_clip_pytorch_model.bin`,
//! `open_clip_model.safetensors`), a bigG-like tower (head width 24, mlp_ratio 4.9231) and a QuickGELU ResNet.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use clip::checkpoint::open_clip::{load_open_clip, load_open_clip_dir};
use clip::model::{Activation, ClipModel, VisionTowerConfig};

/// Tolerance from DESIGN.md: max |diff| <= 1e-4 x max |reference|.
const REL_TOL: f32 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/open_clip")
        .join(name)
}

fn reference(dir: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(dir.join("reference.safetensors"), &Device::Cpu).unwrap()
}

fn check(what: &str, got: &Tensor, want: &Tensor) {
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
}

fn check_model(name: &str, model: &ClipModel, refs: &HashMap<String, Tensor>) {
    let image = model.encode_image(&refs["pixel_values"]).unwrap();
    let ids = refs["input_ids"].to_dtype(DType::U32).unwrap();
    let text = model.encode_text(&ids).unwrap();
    check(&format!("{name} image"), &image, &refs["image_features"]);
    check(&format!("{name} text"), &text, &refs["text_features"]);
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

fn config_path(dir: &Path) -> String {
    dir.join("open_clip_config.json")
        .to_string_lossy()
        .into_owned()
}

#[test]
fn vit_gelu_bin_and_safetensors() {
    let dir = fixture("vit_gelu");
    let refs = reference(&dir);
    for file in ["open_clip_pytorch_model.bin", "open_clip_model.safetensors"] {
        let ckpt = load_open_clip(&config_path(&dir), &dir.join(file), &Device::Cpu).unwrap();
        assert_eq!(ckpt.arch.text.activation, Activation::Gelu);
        let pre = ckpt.preprocess.as_ref().unwrap();
        assert_eq!(pre.resize_mode, "shortest");
        check_model(&format!("vit_gelu/{file}"), &ckpt.model, &refs);
    }
    // The Hub-repository layout: config + preferred weight file found in the directory.
    let ckpt = load_open_clip_dir(&dir, &Device::Cpu).unwrap();
    check_model("vit_gelu/dir", &ckpt.model, &refs);
}

#[test]
fn bigg_like_head_width() {
    let dir = fixture("bigg_like");
    let ckpt = load_open_clip(
        &config_path(&dir),
        &dir.join("open_clip_model.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    match &ckpt.arch.vision {
        VisionTowerConfig::Vit(v) => {
            assert_eq!((v.width / v.heads, v.intermediate_size), (24, 236));
        }
        other => panic!("{other:?}"),
    }
    check_model("bigg_like", &ckpt.model, &reference(&dir));
}

#[test]
fn resnet_quickgelu_bin() {
    let dir = fixture("rn_quickgelu");
    let ckpt = load_open_clip(
        &config_path(&dir),
        &dir.join("open_clip_pytorch_model.bin"),
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(ckpt.arch.text.activation, Activation::QuickGelu);
    match &ckpt.arch.vision {
        VisionTowerConfig::ResNet(r) => assert_eq!((r.layers, r.heads), ([1, 2, 1, 1], 4)),
        other => panic!("{other:?}"),
    }
    check_model("rn_quickgelu", &ckpt.model, &reference(&dir));
}

#[test]
fn wrong_config_for_weights_names_the_tensor() {
    // The GELU ViT's weights under the bigG-like config: a strict shape error, one line.
    let err = load_open_clip(
        &config_path(&fixture("bigg_like")),
        &fixture("vit_gelu").join("open_clip_model.safetensors"),
        &Device::Cpu,
    )
    .unwrap_err()
    .to_string();
    println!("{err}");
    assert!(err.contains("visual.") && !err.contains('\n'), "{err}");
}
