//! Parity of OpenAI-format checkpoints with clip-anytorch 2.6 (`CLIP.encode_image`, `encode_text`, `forward`)
//! on small random-weight models written by scripts/fixtures/gen_openai.py in the released formats
//! (TorchScript archive via `torch.jit.trace`, `torch.save` state dict), plus the architecture inference of
//! `build_model` and bad input (a hostile pickle, a truncated archive).

use clip::model::Precision;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use clip::checkpoint::openai::load_openai_file;
use clip::checkpoint::torchscript::{read_archive, ArchiveKind};
use clip::model::{ClipModel, ModelArch, VisionTowerConfig};
use clip::ClipError;

mod common;
use common::{check, check_model, ids, reference};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/openai")
        .join(name)
}

fn load(name: &str, file: &str, kind: ArchiveKind) -> (ClipModel, ModelArch) {
    let ckpt = load_openai_file(&fixture(name).join(file), &Device::Cpu, Precision::F32).unwrap();
    assert_eq!(ckpt.kind, kind, "{name}/{file}");
    (ckpt.model, ckpt.arch)
}

#[test]
fn resnet_torchscript_and_state_dict() {
    let refs = reference(&fixture("rn"));
    for (file, kind) in [
        ("model.pt", ArchiveKind::TorchScript),
        ("state_dict.pt", ArchiveKind::StateDict),
    ] {
        let (model, arch) = load("rn", file, kind);
        match &arch.vision {
            VisionTowerConfig::ResNet(r) => {
                assert_eq!(
                    (r.image_size, r.layers, r.width, r.heads, r.output_dim),
                    (64, [2, 1, 1, 1], 4, 2, 32)
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            (
                arch.embed_dim,
                arch.text.vocab_size,
                arch.text.context_length,
                arch.text.width,
                arch.text.heads,
                arch.text.layers
            ),
            (32, 100, 16, 64, 1, 1)
        );
        check_model(&format!("rn/{file}"), &model, &refs);
    }
}

#[test]
fn vit_torchscript() {
    let (model, arch) = load("vit", "model.pt", ArchiveKind::TorchScript);
    match &arch.vision {
        VisionTowerConfig::Vit(v) => assert_eq!(
            (v.image_size, v.patch_size, v.width, v.layers, v.heads),
            (32, 8, 64, 2, 1)
        ),
        other => panic!("{other:?}"),
    }
    check_model("vit/model.pt", &model, &reference(&fixture("vit")));
}

#[test]
fn vit_larger_resolution_from_positional_embedding() {
    let (model, arch) = load("vit_hires", "model.pt", ArchiveKind::TorchScript);
    assert_eq!(arch.vision.image_size(), 48);
    check_model(
        "vit_hires/model.pt",
        &model,
        &reference(&fixture("vit_hires")),
    );
}

#[test]
fn archive_keeps_each_tensor_dtype() {
    let archive = read_archive(&fixture("rn").join("model.pt"), &Device::Cpu).unwrap();
    let t = &archive.tensors;
    // convert_weights: convs, linears, attention and projections f16; norms, embeddings, BN statistics f32.
    assert_eq!(t["visual.conv1.weight"].dtype(), DType::F16);
    assert_eq!(t["text_projection"].dtype(), DType::F16);
    assert_eq!(
        t["transformer.resblocks.0.attn.in_proj_weight"].dtype(),
        DType::F16
    );
    assert_eq!(t["visual.bn1.running_var"].dtype(), DType::F32);
    assert_eq!(t["token_embedding.weight"].dtype(), DType::F32);
    assert_eq!(t["ln_final.weight"].dtype(), DType::F32);
    assert_eq!(t["visual.bn1.num_batches_tracked"].dtype(), DType::I64);
}

#[test]
fn hostile_pickle_is_refused() {
    let err = load_openai_file(&fixture("evil.pt"), &Device::Cpu, Precision::F32).unwrap_err();
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
    let dir = std::env::temp_dir().join(format!("clip-openai-trunc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bytes = std::fs::read(fixture("vit").join("model.pt")).unwrap();
    for keep in [bytes.len() / 2, bytes.len() - 10, 100] {
        let path = dir.join("cut.pt");
        std::fs::write(&path, &bytes[..keep]).unwrap();
        let err = load_openai_file(&path, &Device::Cpu, Precision::F32).unwrap_err();
        let msg = err.to_string();
        println!("{keep}: {msg}");
        assert!(matches!(err, ClipError::Checkpoint { .. }), "{msg}");
        assert!(!msg.contains('\n'));
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Full-size random stand-ins of the nine released models, written on demand by scripts/make_full_openai.py into
/// `$CLIP_FULL_OPENAI_DIR` (default `target/full_openai`): each present file must load, with the architecture
/// inferred from its shapes equal to the released model's (the open_clip config the registry names for it).
#[test]
#[ignore = "needs scripts/make_full_openai.py output (several GB)"]
fn full_size_models_load_with_their_architecture() {
    use clip::checkpoint::open_clip::parse_model_config;
    use clip::pretrained::{available_models, open_clip_config, openai_model};
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
        let expected =
            parse_model_config(open_clip_config(&entry.open_clip_config).unwrap()).unwrap();
        let ckpt = load_openai_file(&path, &Device::Cpu, Precision::F32).unwrap();
        assert_eq!(ckpt.arch, expected, "{name}");
        assert_eq!(
            ckpt.arch.vision.image_size(),
            entry.image_size as usize,
            "{name}"
        );
        // One forward pass at the model's resolution proves the tower is wired for it.
        let s = entry.image_size as usize;
        let pixels = Tensor::zeros((1, 3, s, s), DType::F32, &Device::Cpu).unwrap();
        let image = ckpt.model.encode_image(&pixels).unwrap();
        assert_eq!(image.dims(), &[1, expected.embed_dim]);
        println!("{name}: {:?} ok", ckpt.kind);
        loaded += 1;
    }
    assert!(loaded > 0, "no full-size checkpoints in {}", dir.display());
}

#[test]
fn load_by_path_gives_model_and_preprocessing() {
    let path = fixture("vit_hires").join("model.pt");
    let (model, pre) = clip::pretrained::load_openai(
        &path.to_string_lossy(),
        &clip::hub::HubOptions::default(),
        &Device::Cpu,
        Precision::F32,
    )
    .unwrap();
    assert_eq!(pre.size, 48);
    assert_eq!(pre.mean, clip::preprocess::OPENAI_MEAN);
    assert_eq!(model.vision_tower().image_size(), 48);
}

/// The text tower alone under a key prefix (as inside Stable Diffusion checkpoints), read with
/// `openai_layout::load_text_transformer`: pooled output `@ text_projection` is clip-anytorch's `encode_text`.
#[test]
fn text_tower_under_a_prefix() {
    use clip::checkpoint::openai_layout::{infer_text_config, load_text_transformer};
    use clip::checkpoint::TensorStore;
    use clip::model::Activation;
    let archive = read_archive(&fixture("vit").join("model.pt"), &Device::Cpu).unwrap();
    let prefix = "cond_stage_model.model.";
    let tensors = archive
        .tensors
        .into_iter()
        .filter(|(k, _)| !k.starts_with("visual.") && k != "logit_scale")
        .map(|(k, v)| (format!("{prefix}{k}"), v))
        .collect();
    let store = TensorStore::from_tensors("mem", tensors, &Device::Cpu);
    let config = infer_text_config(&store, prefix, None, Activation::QuickGelu).unwrap();
    assert_eq!(
        (
            config.width,
            config.heads,
            config.layers,
            config.intermediate_size
        ),
        (64, 1, 1, 256)
    );
    let (tower, projection) = load_text_transformer(&store, prefix, &config).unwrap();
    store.finish().unwrap();
    let refs = reference(&fixture("vit"));
    let pooled = tower.forward(&ids(&refs["input_ids"])).unwrap();
    let text = pooled.matmul(&projection.unwrap()).unwrap();
    check(
        "vit text tower under a prefix",
        &text,
        &refs["text_features"],
    );
}
