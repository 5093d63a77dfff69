//! Parity of Stable Diffusion text conditioning with diffusers 0.42.1's `encode_prompt`
//! (`StableDiffusionPipeline` for SD1- and SD2-style encoders, `StableDiffusionXLPipeline`) on the tiny random
//! text encoders of scripts/fixtures/gen_conditioning.py, loaded from the diffusers directory layout and from
//! original single-file checkpoints (SD1 transformers layout, SD2 / SDXL open_clip layout), plus the MLX-style
//! "pad to the longest prompt" variant, batch order, truncation reports, strict and scoped loading.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use clip::conditioning::{
    BatchOrder, ConditionerOptions, ConditioningRequest, ConditioningSettings, Padding, Preset,
    PromptRole, TextConditioner,
};
use clip::ClipError;
use serde_json::Value;

/// Tolerance from ARCHITECTURE.md: max |diff| <= 1e-4 x max |reference|.
const REL_TOL: f32 = 1e-4;

mod common;

fn fixtures() -> PathBuf {
    common::fixtures().join("conditioning")
}

fn cases() -> Value {
    let text = std::fs::read_to_string(fixtures().join("cases.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn reference(preset: Preset) -> HashMap<String, Tensor> {
    let path = fixtures().join(format!("reference_{preset}.safetensors"));
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

/// max |got - want| / max |want| (want's scale floored at 1e-6 for all-zero references).
fn rel_error(what: &str, got: &Tensor, want: &Tensor) -> f32 {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    let rel = common::relative_error(got, want);
    assert!(rel <= REL_TOL, "{what}: relative error {rel:e}");
    rel
}

/// Sources of one preset: the diffusers directory, and the single file read with that directory as `config`.
fn sources(preset: Preset) -> Vec<(&'static str, PathBuf, Option<PathBuf>)> {
    let dir = fixtures().join(preset.name());
    vec![
        ("diffusers", dir.clone(), None),
        (
            "single-file",
            fixtures().join(format!("{preset}.safetensors")),
            Some(dir),
        ),
    ]
}

fn load(
    preset: Preset,
    path: &Path,
    config: Option<&Path>,
    force_zeros: Option<bool>,
) -> TextConditioner {
    let options = ConditionerOptions {
        config_dir: config.map(Path::to_path_buf),
        force_zeros_for_empty_prompt: force_zeros,
        ..Default::default()
    };
    TextConditioner::load(preset, path, &options).unwrap()
}

fn row(t: &Tensor, i: usize) -> Tensor {
    t.narrow(0, i, 1).unwrap()
}

/// Runs every case of `preset` against the reference, from both sources and in both batch orders; returns the
/// largest relative error.
fn check_preset(preset: Preset) -> f32 {
    let all = cases();
    let refs = reference(preset);
    let mut worst = 0f32;
    for (source, path, config) in sources(preset) {
        let default = load(preset, &path, config.as_deref(), None);
        let no_zeros = load(preset, &path, config.as_deref(), Some(false));
        for (i, case) in all[preset.name()].as_array().unwrap().iter().enumerate() {
            let conditioner = if case["force_zeros"].as_bool().unwrap() {
                &default
            } else {
                &no_zeros
            };
            let n = case["n_images"].as_u64().unwrap() as usize;
            let cfg = case["cfg"].as_f64().unwrap();
            let padding = match case["padding"].as_str().unwrap() {
                "longest" => Padding::Longest,
                _ => Padding::MaxLength,
            };
            let clip_skip = case["clip_skip"].as_u64().map(|k| k as usize);
            let key = |name: &str| format!("case{i}.{name}");
            for order in [BatchOrder::PositiveFirst, BatchOrder::NegativeFirst] {
                let what = format!("{preset} {source} case {i} {order:?}");
                let request = ConditioningRequest {
                    prompt: case["prompt"].as_str().unwrap(),
                    negative: case["negative"].as_str(),
                    n_images: n,
                    cfg_weight: cfg,
                    settings: ConditioningSettings {
                        clip_skip,
                        padding,
                        order,
                    },
                };
                let out = conditioner.condition(&request).unwrap();
                let guided = cfg > 1.0;
                assert_eq!(out.guidance, guided, "{what}");
                let b = if guided { 2 * n } else { n };
                assert_eq!(out.conditioning.dims()[0], b, "{what}: batch");
                // Row r of the batch is positive or negative by the documented order.
                let positive_row = |r: usize| match order {
                    BatchOrder::PositiveFirst => r < n,
                    BatchOrder::NegativeFirst => r >= n || !guided,
                };
                for r in 0..b {
                    let (name, pooled_name) = if positive_row(r) {
                        ("prompt_embeds", "pooled_prompt_embeds")
                    } else {
                        ("negative_prompt_embeds", "negative_pooled_prompt_embeds")
                    };
                    let e = rel_error(
                        &format!("{what} row {r} {name}"),
                        &row(&out.conditioning, r),
                        &refs[&key(name)],
                    );
                    worst = worst.max(e);
                    if let Some(p) = &out.pooled {
                        let e = rel_error(
                            &format!("{what} row {r} {pooled_name}"),
                            &row(p, r),
                            &refs[&key(pooled_name)],
                        );
                        worst = worst.max(e);
                    }
                }
                assert_eq!(
                    out.pooled.is_some(),
                    refs.contains_key(&key("pooled_prompt_embeds")),
                    "{what}: pooled"
                );
                // The accessors give encode_prompt's separate halves.
                rel_error(
                    &what,
                    &row(&out.positive().unwrap(), 0),
                    &refs[&key("prompt_embeds")],
                );
                assert_eq!(out.negative().unwrap().is_some(), guided, "{what}");
                // Tokens: the tokenizer's input_ids, row for row.
                let tokens = out
                    .tokens
                    .to_dtype(DType::I64)
                    .unwrap()
                    .to_vec2::<i64>()
                    .unwrap();
                let want = refs[&key("input_ids")].to_vec2::<i64>().unwrap();
                assert_eq!(tokens, want, "{what}: tokens");
                if let Some(t2) = &out.tokens_2 {
                    let t2 = t2.to_dtype(DType::I64).unwrap().to_vec2::<i64>().unwrap();
                    let want = refs[&key("input_ids_2")].to_vec2::<i64>().unwrap();
                    assert_eq!(t2, want, "{what}: tokens_2");
                }
                // Truncation reports: what diffusers' warning drops, per prompt.
                let dropped: Vec<u64> = case["dropped"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_u64().unwrap())
                    .collect();
                for (role, want) in [PromptRole::Positive, PromptRole::Negative]
                    .into_iter()
                    .zip(&dropped)
                {
                    let got = out
                        .truncations
                        .iter()
                        .find(|t| t.prompt == role)
                        .map_or(0, |t| t.dropped as u64);
                    assert_eq!(got, *want, "{what}: {role:?} tokens dropped");
                }
            }
        }
    }
    println!("{preset}: worst relative error {worst:e}");
    worst
}

#[test]
fn sd1_matches_diffusers() {
    check_preset(Preset::Sd1);
}

#[test]
fn sd2_matches_diffusers() {
    check_preset(Preset::Sd2);
}

#[test]
fn sdxl_matches_diffusers() {
    check_preset(Preset::Sdxl);
}

#[test]
fn get_text_conditioning_uses_load_settings() {
    let dir = fixtures().join("sdxl");
    let options = ConditionerOptions {
        settings: ConditioningSettings {
            order: BatchOrder::NegativeFirst,
            ..Default::default()
        },
        ..Default::default()
    };
    let c = TextConditioner::load(Preset::Sdxl, &dir, &options).unwrap();
    assert!(c.force_zeros_for_empty_prompt());
    assert_eq!(c.width(), 24 + 36);
    let refs = reference(Preset::Sdxl);
    // Case 0: no negative prompt, guidance 5, two images: zeros first, then the prompt.
    let out = c
        .get_text_conditioning("a photograph of an astronaut riding a horse", 2, 5.0, None)
        .unwrap();
    assert_eq!(out.conditioning.dims(), &[4, 77, 60]);
    assert_eq!(out.pooled.as_ref().unwrap().dims(), &[4, 20]);
    let zeros = row(&out.conditioning, 1).abs().unwrap().sum_all().unwrap();
    assert_eq!(zeros.to_scalar::<f32>().unwrap(), 0.0);
    rel_error(
        "row 2",
        &row(&out.conditioning, 2),
        &refs["case0.prompt_embeds"],
    );
    // Guidance 1: no negative half.
    let out = c
        .get_text_conditioning(
            "a photograph of an astronaut riding a horse",
            1,
            1.0,
            Some("x"),
        )
        .unwrap();
    assert_eq!(out.conditioning.dims()[0], 1);
    assert!(out.negative().unwrap().is_none());
}

#[test]
fn saved_file_holds_the_tensors() {
    let c = load(Preset::Sdxl, &fixtures().join("sdxl"), None, None);
    let out = c
        .get_text_conditioning("a cat", 1, 7.5, Some("a dog"))
        .unwrap();
    let tmp = common::TempDir::new("clip-conditioning");
    let dir = tmp.path().to_path_buf();
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("cond.safetensors");
    out.save_safetensors(&path, Preset::Sdxl).unwrap();
    let back = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    assert_eq!(back["conditioning"].dims(), &[2, 77, 60]);
    assert_eq!(back["conditioning"].dtype(), DType::F32);
    assert_eq!(back["pooled"].dims(), &[2, 20]);
    assert_eq!(back["tokens"].dtype(), DType::I64);
    assert_eq!(back["tokens_2"].dims(), &[2, 77]);
    let diff = (&back["conditioning"] - &out.conditioning)
        .unwrap()
        .abs()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert_eq!(diff, 0.0);
    let bytes = std::fs::read(&path).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().clone().unwrap();
    assert_eq!(meta["order"], "positive_first");
    assert_eq!(meta["preset"], "sdxl");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn clip_skip_beyond_the_layers_is_an_error() {
    let c = load(Preset::Sd1, &fixtures().join("sd1"), None, None);
    let request = |k| ConditioningRequest {
        prompt: "a cat",
        negative: None,
        n_images: 1,
        cfg_weight: 7.5,
        settings: ConditioningSettings {
            clip_skip: Some(k),
            ..Default::default()
        },
    };
    // Three layers: hidden_states has four entries, so clip-skip 3 reads the embeddings and 4 is out of range.
    assert!(c.condition(&request(3)).is_ok());
    let err = c.condition(&request(4)).unwrap_err();
    assert!(err.to_string().contains("clip skip 4"), "{err}");
    let err = c.get_text_conditioning("a cat", 0, 7.5, None).unwrap_err();
    assert!(err.to_string().contains("n_images"), "{err}");
}

#[test]
fn single_file_errors_name_the_problem() {
    // An SDXL file read as SD1 says what it is.
    let err = TextConditioner::load(
        Preset::Sd1,
        &fixtures().join("sdxl.safetensors"),
        &ConditionerOptions::default(),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("cond_stage_model.transformer.text_model") && msg.contains("sdxl"),
        "{msg}"
    );
    // A diffusers directory of the wrong family.
    let err = TextConditioner::load(
        Preset::Sd2,
        &fixtures().join("sdxl"),
        &ConditionerOptions::default(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("StableDiffusionXLPipeline"),
        "{err}"
    );
    let err = TextConditioner::load(
        Preset::Sdxl,
        &fixtures().join("sd1"),
        &ConditionerOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("StableDiffusionPipeline"), "{err}");
}

#[test]
fn single_file_is_strict_only_about_text_encoder_tensors() {
    let src = fixtures().join("sd1.safetensors");
    let mut tensors = candle_core::safetensors::load(&src, &Device::Cpu).unwrap();
    let tmp = common::TempDir::new("clip-conditioning-strict");
    let dir = tmp.path().to_path_buf();
    std::fs::create_dir_all(&dir).unwrap();
    let config = fixtures().join("sd1");
    let options = ConditionerOptions {
        config_dir: Some(config),
        ..Default::default()
    };
    // More unrelated tensors: still fine.
    tensors.insert(
        "model.diffusion_model.time_embed.0.weight".into(),
        Tensor::zeros((2, 2), DType::F16, &Device::Cpu).unwrap(),
    );
    let path = dir.join("extra_unet.safetensors");
    candle_core::safetensors::save(&tensors, &path).unwrap();
    TextConditioner::load(Preset::Sd1, &path, &options).unwrap();
    // An unknown tensor inside the text encoder: an error naming it.
    let name = "cond_stage_model.transformer.text_model.encoder.layers.0.extra.weight";
    tensors.insert(
        name.into(),
        Tensor::zeros(2, DType::F16, &Device::Cpu).unwrap(),
    );
    let path = dir.join("extra_text.safetensors");
    candle_core::safetensors::save(&tensors, &path).unwrap();
    match TextConditioner::load(Preset::Sd1, &path, &options) {
        Err(ClipError::UnexpectedTensors { names, .. }) => assert_eq!(names, name),
        other => panic!("{other:?}"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn single_file_without_config_infers_the_architecture() {
    // Without a config directory the tower's shape comes from the tensors (heads = width / 64, OpenAI's rule,
    // which these tiny 32-wide fixtures do not follow) and OpenAI's full vocabulary is used, whose ids do not
    // fit the fixture's 764-row embedding: a clear error, not a panic.
    let c = TextConditioner::load(
        Preset::Sd2,
        &fixtures().join("sd2.safetensors"),
        &ConditionerOptions::default(),
    )
    .unwrap();
    let tower = c.encoders()[0].config();
    assert_eq!((tower.width, tower.layers, tower.vocab_size), (32, 3, 764));
    assert_eq!(c.encoders()[0].tokenizer().pad_id(), 0);
    let err = c.get_text_conditioning("a cat", 1, 7.5, None).unwrap_err();
    assert!(err.to_string().contains("outside the vocabulary"), "{err}");
    let c = TextConditioner::load(
        Preset::Sdxl,
        &fixtures().join("sdxl.safetensors"),
        &ConditionerOptions::default(),
    )
    .unwrap();
    let widths: Vec<usize> = c.encoders().iter().map(|e| e.width()).collect();
    assert_eq!(widths, [24, 36]);
    assert_eq!(c.encoders()[1].pooled_width(), Some(20));
    assert_eq!(c.encoders()[0].tokenizer().pad_id(), 49407);
}

/// Copies a diffusers directory's files (not sub-directories' weights) into `to`.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn transformers5_layout_and_fp16_variant_load() {
    // transformers 5.x saves a standalone CLIPTextModel without the `text_model.` level; diffusers repositories
    // also ship `model.fp16.safetensors` variants. Both must give the published layout's numbers.
    let src = fixtures().join("sd1");
    let refs = reference(Preset::Sd1);
    let tmp = common::TempDir::new("clip-conditioning-layout");
    let dir = tmp.path().to_path_buf();
    copy_tree(&src, &dir);
    let weights = dir.join("text_encoder/model.safetensors");
    let tensors = candle_core::safetensors::load(&weights, &Device::Cpu).unwrap();
    let flat: HashMap<String, Tensor> = tensors
        .into_iter()
        .map(|(k, v)| (k.strip_prefix("text_model.").unwrap().to_string(), v))
        .collect();
    candle_core::safetensors::save(&flat, &weights).unwrap();
    for step in ["unprefixed", "fp16 variant"] {
        if step == "fp16 variant" {
            std::fs::rename(&weights, dir.join("text_encoder/model.fp16.safetensors")).unwrap();
        }
        let c = load(Preset::Sd1, &dir, None, None);
        let out = c
            .get_text_conditioning("a photograph of an astronaut riding a horse", 2, 7.5, None)
            .unwrap();
        for r in 0..2 {
            rel_error(
                step,
                &row(&out.conditioning, r),
                &refs["case0.prompt_embeds"],
            );
            rel_error(
                step,
                &row(&out.conditioning, 2 + r),
                &refs["case0.negative_prompt_embeds"],
            );
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
