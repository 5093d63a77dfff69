//! `clip condition` end to end: the file it writes holds what diffusers' `encode_prompt` returns for the same
//! prompts (references from scripts/fixtures/gen_conditioning.py, diffusers 0.42.1), in the documented order.

mod common;
use common::{assert_close_flat, clip, root};

use safetensors::SafeTensors;
use serde_json::Value;

fn case(preset: &str, i: usize) -> Value {
    let text = std::fs::read_to_string(root().join("fixtures/conditioning/cases.json")).unwrap();
    let cases: Value = serde_json::from_str(&text).unwrap();
    cases[preset][i].clone()
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// (shape, values) of a float32 tensor in a safetensors file.
fn tensor(file: &SafeTensors, name: &str) -> (Vec<usize>, Vec<f32>) {
    let view = file.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name}");
    (view.shape().to_vec(), f32s(view.data()))
}

fn tempfile(name: &str) -> common::TempFile {
    common::tempfile("condition", name)
}

#[test]
fn sdxl_file_matches_diffusers_with_negative_prompt_and_clip_skip() {
    let c = case("sdxl", 1);
    let out = tempfile("sdxl.safetensors");
    let output = clip(&[
        "condition",
        "--preset",
        "sdxl",
        "--model",
        "fixtures/conditioning/sdxl",
        "--prompt",
        c["prompt"].as_str().unwrap(),
        "--negative",
        c["negative"].as_str().unwrap(),
        "--cfg",
        "7.5",
        "--n-images",
        "2",
        "--clip-skip",
        "1",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let bytes = std::fs::read(&out).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let reference_bytes =
        std::fs::read(root().join("fixtures/conditioning/reference_sdxl.safetensors")).unwrap();
    let reference = SafeTensors::deserialize(&reference_bytes).unwrap();

    let (shape, cond) = tensor(&file, "conditioning");
    let (_, positive) = tensor(&reference, "case1.prompt_embeds");
    let (_, negative) = tensor(&reference, "case1.negative_prompt_embeds");
    let row = positive.len();
    assert_eq!(shape[0], 4, "2 images x (positive, negative)");
    assert_eq!(shape[1] * shape[2], row);
    // Positive copies first, then negative copies.
    for (r, want) in [&positive, &positive, &negative, &negative]
        .iter()
        .enumerate()
    {
        assert_close_flat(
            &cond[r * row..(r + 1) * row],
            want,
            &format!("conditioning row {r}"),
        );
    }
    let (pooled_shape, pooled) = tensor(&file, "pooled");
    let (_, pooled_pos) = tensor(&reference, "case1.pooled_prompt_embeds");
    let (_, pooled_neg) = tensor(&reference, "case1.negative_pooled_prompt_embeds");
    let width = pooled_pos.len();
    assert_eq!(pooled_shape, vec![4, width]);
    for (r, want) in [&pooled_pos, &pooled_pos, &pooled_neg, &pooled_neg]
        .iter()
        .enumerate()
    {
        assert_close_flat(
            &pooled[r * width..(r + 1) * width],
            want,
            &format!("pooled row {r}"),
        );
    }
    assert!(file.tensor("tokens").is_ok());
}

#[test]
fn long_prompts_are_truncated_with_a_warning() {
    let c = case("sd1", 3);
    let out = tempfile("sd1.safetensors");
    let output = clip(&[
        "condition",
        "--preset",
        "sd1",
        "--model",
        "fixtures/conditioning/sd1",
        "--prompt",
        c["prompt"].as_str().unwrap(),
        "--negative",
        c["negative"].as_str().unwrap(),
        "--cfg",
        "5",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dropped = c["dropped"][0].as_u64().unwrap().to_string();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&dropped),
        "warning should say {dropped} tokens were dropped: {stderr}"
    );
    let bytes = std::fs::read(&out).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let reference_bytes =
        std::fs::read(root().join("fixtures/conditioning/reference_sd1.safetensors")).unwrap();
    let reference = SafeTensors::deserialize(&reference_bytes).unwrap();
    let (_, cond) = tensor(&file, "conditioning");
    let (_, positive) = tensor(&reference, "case3.prompt_embeds");
    assert_close_flat(&cond[..positive.len()], &positive, "truncated prompt");
}

#[test]
fn bad_condition_inputs_are_one_line_errors() {
    let out = tempfile("never.safetensors");
    let missing = clip(&[
        "condition",
        "--preset",
        "sd1",
        "--model",
        "no/such/dir",
        "--prompt",
        "a",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(missing.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains("no/such/dir") && !stderr.contains("panicked"),
        "{stderr}"
    );
    assert!(!out.exists());
    let bad_preset = clip(&[
        "condition",
        "--preset",
        "sd9",
        "--model",
        "x",
        "--prompt",
        "a",
        "--output",
        "y",
    ]);
    assert_eq!(bad_preset.status.code(), Some(2));
}
