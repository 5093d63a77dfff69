//! The bf16 and int8 paths against the reference outputs (computed in f32 by transformers / clip-anytorch /
//! open_clip): every image and text embedding must keep cosine similarity >= 0.9995 (bf16) / >= 0.995 (int8)
//! with the reference, and the zero-shot decisions (argmax of logits_per_image) are reported. The same checks on
//! a full-size random ViT-B/32 run with `CLIP_FULL_VITB32_DIR=DIR cargo test -p clip --test precision --
//! --ignored` (scripts/make_full_vitb32.py DIR).

mod common;

use std::path::{Path, PathBuf};

use candle_core::Tensor;
use clip::{ClipModel, Precision};
use common::{ids, load_model, reference};

/// The bars: cosine similarity to the f32 embeddings.
fn min_cosine(precision: Precision) -> f32 {
    match precision {
        Precision::F32 => 0.99999,
        Precision::Bf16 => 0.9995,
        Precision::Int8 => 0.995,
    }
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

fn rows(t: &Tensor) -> Vec<Vec<f32>> {
    t.to_vec2::<f32>().unwrap()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 {
                (i, v)
            } else {
                best
            }
        })
        .0
}

/// Worst cosine over image and text rows, and how many images keep the reference's zero-shot choice.
fn compare(name: &str, model: ClipModel, dir: &Path, precision: Precision) -> (f32, usize, usize) {
    let refs = reference(dir);
    let image = model.encode_image(&refs["pixel_values"]).unwrap();
    let text = model.encode_text(&ids(&refs["input_ids"])).unwrap();
    let mut worst = 1f32;
    for (got, want) in [(&image, "image_features"), (&text, "text_features")] {
        let tower_worst = rows(got)
            .iter()
            .zip(rows(&refs[want]))
            .fold(1f32, |m, (g, w)| m.min(cosine(g, &w)));
        println!("{name} {precision} {want}: min cosine {tower_worst:.6}");
        worst = worst.min(tower_worst);
    }
    let (per_image, _) = model.logits(&image, &text).unwrap();
    let agree = rows(&per_image)
        .iter()
        .zip(rows(&refs["logits_per_image"]))
        .filter(|(g, w)| argmax(g) == argmax(w))
        .count();
    let total = rows(&per_image).len();
    println!(
        "{name} {precision}: min cosine {worst:.6}, zero-shot argmax agreement {agree}/{total}"
    );
    let bar = min_cosine(precision);
    assert!(worst >= bar, "{name} {precision}: cosine {worst} < {bar}");
    (worst, agree, total)
}

/// Every fixture model (Hugging Face, OpenAI ResNet and ViT, open_clip), loaded at `precision` (layers packed
/// as they load).
fn check_fixtures(precision: Precision) {
    for name in ["hf_tiny_quickgelu", "hf_odd_gelu"] {
        let dir = fixtures().join("models").join(name);
        let model = load_model(&dir, precision).unwrap();
        compare(name, model, &dir, precision);
    }
    for name in ["rn", "vit"] {
        let dir = fixtures().join("openai").join(name);
        let model = load_model(&dir.join("model.pt"), precision).unwrap();
        compare(&format!("openai {name}"), model, &dir, precision);
    }
    let dir = fixtures().join("open_clip/vit_gelu");
    let model = load_model(&dir, precision).unwrap();
    compare("open_clip vit_gelu", model, &dir, precision);
}

fn check_full_size(precision: Precision) {
    let Ok(dir) = std::env::var("CLIP_FULL_VITB32_DIR") else {
        panic!("set CLIP_FULL_VITB32_DIR to the output of scripts/make_full_vitb32.py");
    };
    let dir = PathBuf::from(dir);
    let model = load_model(&dir, precision).unwrap();
    compare(
        &format!("full-size {}", dir.display()),
        model,
        &dir,
        precision,
    );
    photo_agreement(&dir, precision);
}

/// The 24 photos of the zero-shot fixture dataset (real images: skimage and generated scenes).
fn photos() -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(fixtures().join("zeroshot/test"))
        .unwrap()
        .flat_map(|class| std::fs::read_dir(class.unwrap().path()).unwrap())
        .map(|entry| entry.unwrap().path())
        .collect();
    paths.sort();
    paths
}

/// Zero-shot decisions over real photos at `precision` against the same model in f32: every image embedding
/// within the cosine bar, and the share of unchanged argmax decisions printed.
fn photo_agreement(dir: &Path, precision: Precision) -> (usize, usize) {
    let load = |precision| {
        let options = clip::LoadOptions {
            precision,
            ..Default::default()
        };
        clip::Clip::load(dir.to_str().unwrap(), &options).unwrap()
    };
    let (exact, reduced) = (load(Precision::F32), load(precision));
    let paths = photos();
    let classes = [
        "astronaut",
        "cat",
        "coffee",
        "galaxy",
        "motorcycle",
        "rocket",
    ];
    let prompts: Vec<String> = classes
        .iter()
        .map(|c| format!("a photo of a {c}"))
        .collect();
    let pixels: Vec<Vec<f32>> = paths
        .iter()
        .map(|p| exact.preprocess_path(p).unwrap())
        .collect();
    let (want, got) = (
        exact.encode_pixels(&pixels).unwrap(),
        reduced.encode_pixels(&pixels).unwrap(),
    );
    let worst = want
        .iter()
        .zip(&got)
        .fold(1f32, |m, (w, g)| m.min(cosine(w, g)));
    let decisions = |clip: &clip::Clip, features: &[Vec<f32>]| -> Vec<usize> {
        let text = clip.encode_texts(&prompts, false).unwrap();
        clip.probabilities(features, &text)
            .unwrap()
            .iter()
            .map(|row| argmax(row))
            .collect()
    };
    let agree = decisions(&exact, &want)
        .iter()
        .zip(decisions(&reduced, &got))
        .filter(|(a, b)| **a == *b)
        .count();
    println!(
        "{} {precision} on {} photos: min image cosine to f32 {worst:.6}, zero-shot argmax agreement {agree}/{}",
        dir.display(),
        paths.len(),
        paths.len()
    );
    let bar = min_cosine(precision);
    assert!(
        worst >= bar,
        "{precision}: cosine {worst} < {bar} on photos"
    );
    (agree, paths.len())
}

#[test]
fn reduced_precisions_keep_zero_shot_decisions_on_photos() {
    let dir = fixtures().join("models/hf_tiny_quickgelu");
    for precision in [Precision::Bf16, Precision::Int8] {
        photo_agreement(&dir, precision);
    }
}

#[test]
fn bf16_embeddings_stay_within_the_cosine_bar() {
    check_fixtures(Precision::Bf16);
}

#[test]
fn int8_embeddings_stay_within_the_cosine_bar() {
    check_fixtures(Precision::Int8);
}

#[test]
#[ignore = "needs a full-size checkpoint from scripts/make_full_vitb32.py"]
fn bf16_full_size_vit_b32() {
    check_full_size(Precision::Bf16);
}

#[test]
#[ignore = "needs a full-size checkpoint from scripts/make_full_vitb32.py"]
fn int8_full_size_vit_b32() {
    check_full_size(Precision::Int8);
}
