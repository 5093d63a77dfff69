//! Parity of the Rust CLIP towers with transformers 5.23's `CLIPModel` (`get_image_features`,
//! `get_text_features`, `logits_per_image`, `logits_per_text`) on the small random-weight checkpoints written by
//! scripts/fixtures/gen_models.py, plus strict loading (missing / unexpected / mis-shaped tensors) and corrupt files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use clip::{ClipError, ClipModel, Precision, TextPooling, VisionTowerConfig};

mod common;
use common::{check, check_model, ids, load_model, reference, TempDir};

fn fixture(name: &str) -> PathBuf {
    common::fixture("models", name)
}

/// Everything a fixture's reference holds: features, logits, and texts shorter than the context.
fn check_fixture(name: &str, model: &ClipModel, refs: &HashMap<String, Tensor>) {
    check_model(name, model, refs);
    let short = model.encode_text(&ids(&refs["input_ids_short"])).unwrap();
    check(
        &format!("{name} text_features_short"),
        &short,
        &refs["text_features_short"],
    );
}

#[test]
fn tiny_quickgelu_f16_safetensors_parity() {
    let dir = fixture("hf_tiny_quickgelu");
    let model = load_model(&dir, Precision::F32).unwrap();
    let refs = reference(&dir);
    assert_eq!(model.config().text.pooling, TextPooling::FirstEos(49407));
    assert!(
        (model.logit_scale() - 30.0).abs() < 0.05,
        "{}",
        model.logit_scale()
    );
    check_fixture("hf_tiny_quickgelu", &model, &refs);
    let noeos = model.encode_text(&ids(&refs["input_ids_noeos"])).unwrap();
    check(
        "hf_tiny_quickgelu text_features_noeos",
        &noeos,
        &refs["text_features_noeos"],
    );
}

#[test]
fn odd_gelu_pytorch_bin_parity() {
    let dir = fixture("hf_odd_gelu");
    let model = load_model(&dir, Precision::F32).unwrap();
    let c = model.config();
    let VisionTowerConfig::Vit(v) = &c.vision else {
        panic!("{:?}", c.vision)
    };
    assert_eq!((c.text.width / c.text.heads, v.width / v.heads), (11, 12));
    check_fixture("hf_odd_gelu", &model, &reference(&dir));
}

#[test]
fn bf16_safetensors_parity() {
    let dir = fixture("hf_odd_gelu_bf16");
    let model = load_model(&dir, Precision::F32).unwrap();
    check_fixture("hf_odd_gelu_bf16", &model, &reference(&dir));
}

#[test]
fn legacy_eos_token_id_2_pools_at_argmax() {
    // Published configs written before transformers PR #24773 say eos_token_id 2; transformers then pools at
    // the (first) largest id. The references were computed by transformers with eos_token_id set to 2.
    let src = fixture("hf_tiny_quickgelu");
    let tmp = TempDir::new("legacy-eos");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    config["text_config"]["eos_token_id"] = 2.into();
    std::fs::write(tmp.0.join("config.json"), config.to_string()).unwrap();
    std::fs::copy(
        src.join("model.safetensors"),
        tmp.0.join("model.safetensors"),
    )
    .unwrap();
    let model = load_model(&tmp.0, Precision::F32).unwrap();
    let refs = reference(&src);
    let noeos = model.encode_text(&ids(&refs["input_ids_noeos"])).unwrap();
    check(
        "legacy eos text_features_noeos",
        &noeos,
        &refs["text_features_noeos_legacy_eos2"],
    );
    let short = model.encode_text(&ids(&refs["input_ids_short"])).unwrap();
    check(
        "legacy eos text_features_short",
        &short,
        &refs["text_features_short_legacy_eos2"],
    );
}

/// Writes a copy of the quickgelu fixture whose tensors went through `edit`.
fn edited_copy(
    tag: &str,
    edit: impl FnOnce(&mut Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)>),
) -> TempDir {
    let src = fixture("hf_tiny_quickgelu");
    let tmp = TempDir::new(tag);
    std::fs::copy(src.join("config.json"), tmp.0.join("config.json")).unwrap();
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            (
                name,
                view.dtype(),
                view.shape().to_vec(),
                view.data().to_vec(),
            )
        })
        .collect();
    edit(&mut tensors);
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(name, dtype, shape, data)| {
            (
                name.clone(),
                safetensors::tensor::TensorView::new(*dtype, shape.clone(), data).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &tmp.0.join("model.safetensors")).unwrap();
    tmp
}

fn load_err(dir: &Path) -> ClipError {
    match load_model(dir, Precision::F32) {
        Ok(_) => panic!("{} loaded but should not", dir.display()),
        Err(e) => e,
    }
}

#[test]
fn missing_tensor_is_named() {
    let name = "text_model.encoder.layers.1.mlp.fc2.bias";
    let tmp = edited_copy("missing", |t| t.retain(|(n, ..)| n != name));
    match load_err(&tmp.0) {
        ClipError::MissingTensor { name: got, .. } => assert_eq!(got, name),
        other => panic!("expected MissingTensor, got {other}"),
    }
}

#[test]
fn unexpected_tensor_is_named() {
    let tmp = edited_copy("unexpected", |t| {
        t.push((
            "text_model.extra_head.weight".into(),
            safetensors::Dtype::F16,
            vec![2, 2],
            vec![0; 8],
        ));
    });
    let err = load_err(&tmp.0);
    match &err {
        ClipError::UnexpectedTensors { names, .. } => {
            assert_eq!(names, "text_model.extra_head.weight")
        }
        other => panic!("expected UnexpectedTensors, got {other}"),
    }
    assert!(
        err.to_string().contains("text_model.extra_head.weight"),
        "{err}"
    );
}

#[test]
fn wrong_shape_names_both_shapes() {
    let name = "visual_projection.weight";
    let tmp = edited_copy("shape", |t| {
        let entry = t.iter_mut().find(|(n, ..)| n == name).unwrap();
        entry.2 = vec![20, 31];
        entry.3.truncate(20 * 31 * 2);
    });
    let err = load_err(&tmp.0);
    match &err {
        ClipError::ShapeMismatch {
            name: got,
            expected,
            found,
            ..
        } => {
            assert_eq!(
                (got.as_str(), expected.as_slice(), found.as_slice()),
                (name, &[20, 32][..], &[20, 31][..])
            );
        }
        other => panic!("expected ShapeMismatch, got {other}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("[20, 31]") && msg.contains("[20, 32]"),
        "{msg}"
    );
}

#[test]
fn mixed_f16_f32_checkpoint_parity() {
    // OpenAI's `convert_weights` leaves norms and embeddings in f32 and the rest in f16: each tensor is read in
    // its own dtype. f16 -> f32 is exact, so the f16 fixture's references still hold.
    let tmp = edited_copy("mixed-dtype", |t| {
        for (name, dtype, _, data) in t.iter_mut() {
            if name.contains("norm") || name.contains("embedding") {
                *data = data
                    .chunks_exact(2)
                    .flat_map(|b| {
                        half::f16::from_le_bytes([b[0], b[1]])
                            .to_f32()
                            .to_le_bytes()
                    })
                    .collect();
                *dtype = safetensors::Dtype::F32;
            }
        }
    });
    let model = load_model(&tmp.0, Precision::F32).unwrap();
    let refs = reference(&fixture("hf_tiny_quickgelu"));
    check_fixture("mixed f16/f32", &model, &refs);
}

#[test]
fn position_ids_buffers_are_skipped() {
    // Published checkpoints carry int64 `position_ids`; they are known and skipped, not unexpected.
    let tmp = edited_copy("position-ids", |t| {
        let data: Vec<u8> = (0..77i64).flat_map(|i| i.to_le_bytes()).collect();
        t.push((
            "text_model.embeddings.position_ids".into(),
            safetensors::Dtype::I64,
            vec![1, 77],
            data,
        ));
    });
    load_model(&tmp.0, Precision::F32).unwrap();
}

/// Every failure must be an error whose message is one line, never a panic.
fn assert_one_line_err(what: &str, result: clip::Result<ClipModel>) -> ClipError {
    match result {
        Ok(_) => panic!("{what}: loaded"),
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "{what}: multi-line message {msg:?}");
            e
        }
    }
}

/// Deterministic pseudo-random bytes (xorshift), so the corrupt-file tests need no extra crates.
fn noise(len: usize, mut state: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 32) as u8
        })
        .collect()
}

fn corrupt_copies(
    fixture_name: &str,
    file: &str,
    tag: &str,
    variants: Vec<(String, Vec<u8>)>,
    must_fail: bool,
) {
    let src = fixture(fixture_name);
    for (i, (what, bytes)) in variants.into_iter().enumerate() {
        let tmp = TempDir::new(&format!("{tag}-{i}"));
        std::fs::copy(src.join("config.json"), tmp.0.join("config.json")).unwrap();
        std::fs::write(tmp.0.join(file), bytes).unwrap();
        let result = load_model(&tmp.0, Precision::F32);
        if must_fail {
            let err = assert_one_line_err(&what, result);
            println!("{what}: {err}");
            assert!(matches!(err, ClipError::Checkpoint { .. }), "{what}: {err}");
        } else {
            match result {
                Ok(_) => println!("{what}: loaded"),
                Err(e) => {
                    println!("{what}: {e}");
                    assert!(
                        !e.to_string().contains('\n'),
                        "{what}: multi-line message {e}"
                    );
                }
            }
        }
    }
}

fn truncations(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let n = bytes.len();
    [0, 1, 7, 8, 9, 64, 500, n / 4, n / 2, n - 100, n - 1]
        .into_iter()
        .map(|cut| (format!("truncated at {cut} of {n}"), bytes[..cut].to_vec()))
        .collect()
}

#[test]
fn corrupt_safetensors_is_an_error() {
    let bytes = std::fs::read(fixture("hf_tiny_quickgelu").join("model.safetensors")).unwrap();
    let mut variants = truncations(&bytes);
    variants.push(("random bytes".into(), noise(4096, 0x9e37_79b9_7f4a_7c15)));
    let mut bad_header = bytes.clone();
    bad_header[10..40].copy_from_slice(&noise(30, 7));
    variants.push(("garbled header".into(), bad_header));
    let mut huge_len = bytes.clone();
    huge_len[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    variants.push(("header length u64::MAX".into(), huge_len));
    corrupt_copies(
        "hf_tiny_quickgelu",
        "model.safetensors",
        "st",
        variants,
        true,
    );
}

#[test]
fn corrupt_pytorch_bin_is_an_error() {
    let bytes = std::fs::read(fixture("hf_odd_gelu").join("pytorch_model.bin")).unwrap();
    let mut variants = truncations(&bytes);
    variants.push(("random bytes".into(), noise(4096, 42)));
    corrupt_copies("hf_odd_gelu", "pytorch_model.bin", "bin", variants, true);
    // Flipped bytes in the pickle stream (it starts right after the first zip entry's header) may still parse;
    // whatever happens must be an Ok or a one-line error, never a panic.
    let mut flips = Vec::new();
    for (k, offset) in [40usize, 64, 90, 128, 200, 300, 450, 700, 1000, 1500]
        .into_iter()
        .enumerate()
    {
        let mut b = bytes.clone();
        for (j, x) in noise(4, k as u64 + 1).into_iter().enumerate() {
            b[offset + j] ^= x | 1;
        }
        flips.push((format!("bytes flipped at {offset}"), b));
    }
    corrupt_copies("hf_odd_gelu", "pytorch_model.bin", "bin-flip", flips, false);
}

#[test]
fn bad_config_is_an_error() {
    let src = fixture("hf_odd_gelu");
    for (i, text) in [
        "",
        "{",
        "{\"text_config\": 5}",
        "[]",
        "{\"vision_config\": {\"patch_size\": -1}}",
    ]
    .into_iter()
    .enumerate()
    {
        let tmp = TempDir::new(&format!("config-{i}"));
        std::fs::write(tmp.0.join("config.json"), text).unwrap();
        std::fs::copy(
            src.join("pytorch_model.bin"),
            tmp.0.join("pytorch_model.bin"),
        )
        .unwrap();
        let err = assert_one_line_err(text, load_model(&tmp.0, Precision::F32));
        assert!(matches!(err, ClipError::Config { .. }), "{text:?}: {err}");
    }
    // A config that parses but disagrees with the weights is a shape error naming the tensor.
    let tmp = TempDir::new("config-width");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    config["projection_dim"] = 32.into();
    std::fs::write(tmp.0.join("config.json"), config.to_string()).unwrap();
    std::fs::copy(
        src.join("pytorch_model.bin"),
        tmp.0.join("pytorch_model.bin"),
    )
    .unwrap();
    let err = assert_one_line_err("projection_dim 32", load_model(&tmp.0, Precision::F32));
    assert!(matches!(err, ClipError::ShapeMismatch { .. }), "{err}");
    // No weights at all.
    let tmp = TempDir::new("no-weights");
    std::fs::copy(src.join("config.json"), tmp.0.join("config.json")).unwrap();
    let err = assert_one_line_err("no weights", load_model(&tmp.0, Precision::F32));
    assert!(matches!(err, ClipError::Checkpoint { .. }), "{err}");
}

#[test]
fn invalid_inputs_are_errors() {
    let model = load_model(&fixture("hf_odd_gelu"), Precision::F32).unwrap();
    let dev = Device::Cpu;
    let invalid = |what: &str, r: clip::Result<Tensor>| match r {
        Err(ClipError::InvalidInput(msg)) => println!("{what}: {msg}"),
        Err(other) => panic!("{what}: expected InvalidInput, got {other}"),
        Ok(_) => panic!("{what}: accepted"),
    };
    invalid(
        "image 32x32",
        model.encode_image(&Tensor::zeros((1, 3, 32, 32), DType::F32, &dev).unwrap()),
    );
    invalid(
        "1 channel",
        model.encode_image(&Tensor::zeros((1, 1, 40, 40), DType::F32, &dev).unwrap()),
    );
    invalid(
        "rank 3",
        model.encode_image(&Tensor::zeros((3, 40, 40), DType::F32, &dev).unwrap()),
    );
    invalid(
        "u8 pixels",
        model.encode_image(&Tensor::zeros((1, 3, 40, 40), DType::U8, &dev).unwrap()),
    );
    invalid(
        "id = vocab",
        model.encode_text(&Tensor::new(&[[998u32, 1000, 999]], &dev).unwrap()),
    );
    invalid(
        "17 tokens",
        model.encode_text(&Tensor::zeros((1, 17), DType::U32, &dev).unwrap()),
    );
    invalid(
        "0 tokens",
        model.encode_text(&Tensor::zeros((1, 0), DType::U32, &dev).unwrap()),
    );
    invalid(
        "float ids",
        model.encode_text(&Tensor::zeros((1, 4), DType::F32, &dev).unwrap()),
    );
    let a = Tensor::zeros((2, 24), DType::F32, &dev).unwrap();
    let b = Tensor::zeros((2, 23), DType::F32, &dev).unwrap();
    assert!(matches!(
        model.logits(&a, &b),
        Err(ClipError::InvalidInput(_))
    ));
}

#[test]
fn preprocessor_configs() {
    // Published openai/clip-vit-base-patch32 style (integers) and transformers 5.x CLIPImageProcessor style (dicts).
    let preprocess = |dir: &Path| {
        clip::ModelSource::HfDir(dir.to_path_buf())
            .preprocess_config(&clip::hub::HubOptions::default())
    };
    assert_eq!(preprocess(&fixture("hf_tiny_quickgelu")).unwrap().size, 32);
    assert_eq!(preprocess(&fixture("hf_odd_gelu")).unwrap().size, 40);
    let tmp = TempDir::new("no-preprocessor");
    // Neither preprocessor_config.json nor config.json: OpenAI's defaults.
    assert_eq!(
        preprocess(&tmp.0).unwrap(),
        clip::preprocess::PreprocessConfig::default()
    );
    std::fs::write(
        tmp.0.join("preprocessor_config.json"),
        "{\"crop_size\": \"big\"}",
    )
    .unwrap();
    let err = preprocess(&tmp.0).unwrap_err();
    assert!(
        matches!(err, ClipError::Config { .. }) && err.to_string().contains("crop_size"),
        "{err}"
    );
}

/// Full-size check on a random openai/clip-vit-base-patch32-shaped checkpoint written by
/// `scripts/make_full_vitb32.py DIR` (not committed: ~600 MB). Run with
/// `CLIP_FULL_VITB32_DIR=DIR cargo test -p clip --release --test model_parity -- --ignored`.
#[test]
#[ignore]
fn full_vitb32_parity() {
    let dir = PathBuf::from(
        std::env::var("CLIP_FULL_VITB32_DIR")
            .expect("set CLIP_FULL_VITB32_DIR to the output of make_full_vitb32.py"),
    );
    let model = load_model(&dir, Precision::F32).unwrap();
    let refs = reference(&dir);
    let image = model.encode_image(&refs["pixel_values"]).unwrap();
    let text = model.encode_text(&ids(&refs["input_ids"])).unwrap();
    check("vit-b/32 image_features", &image, &refs["image_features"]);
    check("vit-b/32 text_features", &text, &refs["text_features"]);
    let (per_image, per_text) = model.logits(&image, &text).unwrap();
    check(
        "vit-b/32 logits_per_image",
        &per_image,
        &refs["logits_per_image"],
    );
    check(
        "vit-b/32 logits_per_text",
        &per_text,
        &refs["logits_per_text"],
    );
}
