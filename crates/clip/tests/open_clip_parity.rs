//! Parity of open_clip checkpoints with open_clip_torch 3.3 (`encode_image`, `encode_text`, and
//! `logit_scale.exp() * normalize(img) @ normalize(txt).T`) on small random-weight models written by
//! scripts/fixtures/gen_open_clip.py: an erf-GELU ViT in both weight formats (`open_clip_pytorch_model.bin`,
//! `open_clip_model.safetensors`), a bigG-like tower (head width 24, mlp_ratio 4.9231) and a QuickGELU ResNet.

use clip::model::Precision;
use std::path::{Path, PathBuf};

use candle_core::Device;
use clip::checkpoint::open_clip::{load_open_clip, load_open_clip_dir};
use clip::model::{Activation, VisionTowerConfig};

mod common;
use common::{check_model, reference};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/open_clip")
        .join(name)
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
        let ckpt = load_open_clip(
            &config_path(&dir),
            &dir.join(file),
            &Device::Cpu,
            Precision::F32,
        )
        .unwrap();
        assert_eq!(ckpt.arch.text.activation, Activation::Gelu);
        let pre = ckpt.preprocess.as_ref().unwrap();
        assert_eq!(pre.resize_mode, "shortest");
        check_model(&format!("vit_gelu/{file}"), &ckpt.model, &refs);
    }
    // The Hub-repository layout: config + preferred weight file found in the directory.
    let ckpt = load_open_clip_dir(&dir, &Device::Cpu, Precision::F32).unwrap();
    check_model("vit_gelu/dir", &ckpt.model, &refs);
}

#[test]
fn bigg_like_head_width() {
    let dir = fixture("bigg_like");
    let ckpt = load_open_clip(
        &config_path(&dir),
        &dir.join("open_clip_model.safetensors"),
        &Device::Cpu,
        Precision::F32,
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
        Precision::F32,
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
        Precision::F32,
    )
    .unwrap_err()
    .to_string();
    println!("{err}");
    assert!(err.contains("visual.") && !err.contains('\n'), "{err}");
}
