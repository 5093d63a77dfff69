//! Parity of open_clip checkpoints with open_clip_torch 3.3 (`encode_image`, `encode_text`, and
//! `logit_scale.exp() * normalize(img) @ normalize(txt).T`) on small random-weight models written by
//! scripts/fixtures/gen_open_clip.py: an erf-GELU ViT in both weight formats (`open_clip_pytorch_model.bin`,
//! `open_clip_model.safetensors`), a bigG-like tower (head width 24, mlp_ratio 4.9231) and a QuickGELU ResNet.

use std::path::{Path, PathBuf};

use clip::{Activation, Clip, LoadOptions, VisionTowerConfig};

mod common;
use common::{check_model, reference};

fn fixture(name: &str) -> PathBuf {
    common::fixture("open_clip", name)
}

fn config_path(dir: &Path) -> String {
    dir.join("open_clip_config.json")
        .to_string_lossy()
        .into_owned()
}

/// `CONFIG:WEIGHTS`, the model string for open_clip weights with their architecture.
fn load_open_clip(config: &str, weights: &Path) -> clip::Result<Clip> {
    Clip::load(
        &format!("{config}:{}", weights.display()),
        &LoadOptions::default(),
    )
}

#[test]
fn vit_gelu_bin_and_safetensors() {
    let dir = fixture("vit_gelu");
    let refs = reference(&dir);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(config_path(&dir)).unwrap()).unwrap();
    let mean: Vec<f32> = config["preprocess_cfg"]["mean"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    for file in ["open_clip_pytorch_model.bin", "open_clip_model.safetensors"] {
        let clip = load_open_clip(&config_path(&dir), &dir.join(file)).unwrap();
        assert_eq!(clip.model().config().text.activation, Activation::Gelu);
        // The preprocessing comes from the config file's preprocess_cfg.
        assert_eq!(clip.preprocess_config().mean.to_vec(), mean);
        check_model(&format!("vit_gelu/{file}"), clip.model(), &refs);
    }
    // The Hub-repository layout: config + preferred weight file found in the directory.
    let clip = Clip::load(&dir.to_string_lossy(), &LoadOptions::default()).unwrap();
    check_model("vit_gelu/dir", clip.model(), &refs);
}

#[test]
fn bigg_like_head_width() {
    let dir = fixture("bigg_like");
    let clip =
        load_open_clip(&config_path(&dir), &dir.join("open_clip_model.safetensors")).unwrap();
    match &clip.model().config().vision {
        VisionTowerConfig::Vit(v) => {
            assert_eq!((v.width / v.heads, v.intermediate_size), (24, 236));
        }
        other => panic!("{other:?}"),
    }
    check_model("bigg_like", clip.model(), &reference(&dir));
}

#[test]
fn resnet_quickgelu_bin() {
    let dir = fixture("rn_quickgelu");
    let clip =
        load_open_clip(&config_path(&dir), &dir.join("open_clip_pytorch_model.bin")).unwrap();
    assert_eq!(clip.model().config().text.activation, Activation::QuickGelu);
    match &clip.model().config().vision {
        VisionTowerConfig::ResNet(r) => assert_eq!((r.layers, r.heads), ([1, 2, 1, 1], 4)),
        other => panic!("{other:?}"),
    }
    check_model("rn_quickgelu", clip.model(), &reference(&dir));
}

#[test]
fn wrong_config_for_weights_names_the_tensor() {
    // The GELU ViT's weights under the bigG-like config: a strict shape error, one line.
    let err = load_open_clip(
        &config_path(&fixture("bigg_like")),
        &fixture("vit_gelu").join("open_clip_model.safetensors"),
    )
    .err()
    .unwrap()
    .to_string();
    println!("{err}");
    assert!(err.contains("visual.") && !err.contains('\n'), "{err}");
}
