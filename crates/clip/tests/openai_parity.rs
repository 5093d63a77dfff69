//! Parity of OpenAI-format checkpoints with clip-anytorch 2.6 (`CLIP.encode_image`, `encode_text`, `forward`)
//! on small random-weight models written by scripts/fixtures/gen_openai.py in the released formats
//! (TorchScript archive via `torch.jit.trace`, `torch.save` state dict), plus the architecture inference of
//! `build_model` and bad input (a hostile pickle, a truncated archive). The archive reader's own checks (each
//! tensor's dtype, the archive kind, a text tower under a prefix) are unit tests of `formats::openai`.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use clip::{Clip, ClipError, ClipModel, LoadOptions, VisionTowerConfig};

mod common;
use common::{check_model, reference};

fn fixture(name: &str) -> PathBuf {
    common::fixture("openai", name)
}

fn load_path(path: &Path) -> clip::Result<Clip> {
    Clip::load(&path.to_string_lossy(), &LoadOptions::default())
}

fn load(name: &str, file: &str) -> Clip {
    load_path(&fixture(name).join(file)).unwrap()
}

fn model(clip: &Clip) -> &ClipModel {
    clip.model()
}

#[test]
fn resnet_refuses_pixels_of_the_wrong_shape() {
    // The tower's GEMMs are sized for [batch, 3, image_size, image_size]: anything else is a one-line error, not a
    // kernel's size assertion.
    let clip = load("rn", "state_dict.pt");
    for dims in [(1, 3, 32, 32), (2, 1, 64, 64), (1, 3, 64, 65)] {
        let pixels = Tensor::zeros(dims, DType::F32, &Device::Cpu).unwrap();
        let error = model(&clip).encode_image(&pixels).unwrap_err();
        assert!(
            matches!(error, ClipError::InvalidInput(_)),
            "{dims:?}: {error}"
        );
        assert!(error.to_string().contains("[batch, 3, 64, 64]"), "{error}");
    }
    let ok = Tensor::zeros((2, 3, 64, 64), DType::F32, &Device::Cpu).unwrap();
    assert_eq!(model(&clip).encode_image(&ok).unwrap().dims(), &[2, 32]);
}

#[test]
fn resnet_torchscript_and_state_dict() {
    let refs = reference(&fixture("rn"));
    for file in ["model.pt", "state_dict.pt"] {
        let clip = load("rn", file);
        let config = clip.model().config();
        match &config.vision {
            VisionTowerConfig::ResNet(r) => {
                assert_eq!(
                    (r.image_size, r.layers, r.width, r.heads, r.output_dim),
                    (64, [2, 1, 1, 1], 4, 2, 32)
                );
            }
            other => panic!("{other:?}"),
        }
        let t = &config.text;
        assert_eq!(
            (
                config.projection_dim,
                t.vocab_size,
                t.context_length,
                t.width,
                t.heads,
                t.layers
            ),
            (32, 100, 16, 64, 1, 1)
        );
        check_model(&format!("rn/{file}"), model(&clip), &refs);
    }
}

#[test]
fn vit_torchscript() {
    let clip = load("vit", "model.pt");
    match &clip.model().config().vision {
        VisionTowerConfig::Vit(v) => assert_eq!(
            (v.image_size, v.patch_size, v.width, v.layers, v.heads),
            (32, 8, 64, 2, 1)
        ),
        other => panic!("{other:?}"),
    }
    check_model("vit/model.pt", model(&clip), &reference(&fixture("vit")));
}

#[test]
fn vit_larger_resolution_from_positional_embedding() {
    let clip = load("vit_hires", "model.pt");
    assert_eq!(clip.model().config().vision.image_size(), 48);
    check_model(
        "vit_hires/model.pt",
        model(&clip),
        &reference(&fixture("vit_hires")),
    );
}

#[test]
fn hostile_pickle_is_refused() {
    let err = load_path(&fixture("evil.pt")).err().unwrap();
    let msg = err.to_string();
    println!("{msg}");
    assert!(matches!(err, ClipError::Checkpoint { .. }));
    assert!(
        msg.contains("system") && msg.contains("not allowed"),
        "{msg}"
    );
    assert!(!msg.contains('\n'));
}

#[test]
fn truncated_archive_is_an_error() {
    let tmp = common::TempDir::new("clip-openai-trunc");
    let dir = tmp.path().to_path_buf();
    std::fs::create_dir_all(&dir).unwrap();
    let bytes = std::fs::read(fixture("vit").join("model.pt")).unwrap();
    for keep in [bytes.len() / 2, bytes.len() - 10, 100] {
        let path = dir.join("cut.pt");
        std::fs::write(&path, &bytes[..keep]).unwrap();
        let err = load_path(&path).err().unwrap();
        let msg = err.to_string();
        println!("{keep}: {msg}");
        assert!(matches!(err, ClipError::Checkpoint { .. }), "{msg}");
        assert!(!msg.contains('\n'));
    }
}

/// Full-size random stand-ins of the nine released models, written on demand by scripts/make_full_openai.py into
/// `$CLIP_FULL_OPENAI_DIR` (default `target/full_openai`): each present file must load, with the architecture
/// inferred from its shapes equal to the released model's (the open_clip config the registry names for it).
#[test]
#[ignore = "needs scripts/make_full_openai.py output (several GB)"]
fn full_size_models_load_with_their_architecture() {
    use clip::registry::open_clip::resolve_config;
    use clip::registry::{available_models, openai_model};
    let dir = std::env::var_os("CLIP_FULL_OPENAI_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/full_openai"));
    let mut loaded = 0;
    for name in available_models() {
        let entry = openai_model(name).unwrap();
        let path = dir.join(&entry.file_name);
        if !path.is_file() {
            println!("{name}: {} not present, skipped", path.display());
            continue;
        }
        let expected = resolve_config(&entry.open_clip_config).unwrap().0;
        let clip = load_path(&path).unwrap();
        assert_eq!(clip.model().config(), &expected, "{name}");
        assert_eq!(
            clip.model().config().vision.image_size(),
            entry.image_size as usize,
            "{name}"
        );
        // One forward pass at the model's resolution proves the tower is wired for it.
        let s = entry.image_size as usize;
        let pixels = Tensor::zeros((1, 3, s, s), DType::F32, &Device::Cpu).unwrap();
        let image = clip.model().encode_image(&pixels).unwrap();
        assert_eq!(image.dims(), &[1, expected.projection_dim]);
        println!("{name}: ok");
        loaded += 1;
    }
    assert!(loaded > 0, "no full-size checkpoints in {}", dir.display());
}

#[test]
fn load_by_path_gives_model_and_preprocessing() {
    let clip = load("vit_hires", "model.pt");
    let pre = clip.preprocess_config();
    assert_eq!(pre.size, 48);
    assert_eq!(pre.mean, clip::preprocess::OPENAI_MEAN);
    assert_eq!(clip.model().config().vision.image_size(), 48);
}
