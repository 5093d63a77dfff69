//! `clip::train` against open_clip's own training loop (`open_clip_train.train.train_one_epoch`, its losses,
//! AdamW groups and cosine schedule) on the committed fixtures of scripts/fixtures/gen_train.py: a tiny random
//! transformers CLIP trained on 24 image-caption pairs for 12 steps (batch 4, lr 1e-3, wd 0.2, warmup 3, file
//! order, no augmentation). Every step's loss, learning rate and logit scale must equal open_clip's within
//! 1e-4 relative, the final model's features within 1e-3; also with `--lock-image`, `--lock-text`, gradient
//! clipping with accumulation, the sigmoid loss, and after an interrupted run is resumed.

mod common;

use std::path::Path;

use candle_core::{Device, Tensor};
use clip::train::{
    train, DataFormat, FeatureCacheMode, Length, ModelInit, Resume, Silent, StepRecord,
    TrainObserver, TrainOptions, TrainReport,
};
use clip::{Clip, LoadOptions};
use common::{fixture, relative_error, TempDir};
use serde_json::Value;

fn runs() -> Value {
    let text = std::fs::read_to_string(fixture("train", "runs.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The options of a reference run (`runs.json` holds its settings).
fn options(run: &Value, out: &Path) -> TrainOptions {
    let model = fixture("models", "hf_tiny_quickgelu");
    let data = fixture("train", "train.csv");
    let mut o = TrainOptions::new(
        ModelInit::Load(model.to_string_lossy().into()),
        data.to_string_lossy(),
        out,
    );
    o.data_format = DataFormat::Csv {
        separator: b',',
        image_key: "filepath".into(),
        caption_key: "title".into(),
    };
    o.batch_size = run["batch_size"].as_u64().unwrap() as usize;
    o.length = Length::Steps(run["steps"].as_u64().unwrap());
    o.lr = run["lr"].as_f64().unwrap();
    o.weight_decay = run["wd"].as_f64().unwrap();
    o.warmup = Some(run["warmup"].as_u64().unwrap());
    o.lock_image = run["lock_image"].as_bool().unwrap();
    o.lock_text = run["lock_text"].as_bool().unwrap();
    o.siglip = run["siglip"].as_bool().unwrap();
    o.grad_clip_norm = run["grad_clip_norm"].as_f64();
    o.accum_freq = run["accum_freq"].as_u64().unwrap() as usize;
    o.shuffle = false;
    o.augment = Some(false);
    o.feature_cache = FeatureCacheMode::Dir(out.join("feature-cache"));
    o
}

fn log_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn step_lines(path: &Path) -> Vec<Value> {
    log_lines(path)
        .into_iter()
        .filter(|l| l.get("loss").is_some())
        .collect()
}

fn rel(got: f64, want: f64) -> f64 {
    (got - want).abs() / want.abs()
}

/// Compares the logged steps with the reference run; returns the worst relative error of each series.
fn check_steps(name: &str, log: &Path, run: &Value) -> (f64, f64, f64) {
    let lines = step_lines(log);
    let accum = run["accum_freq"].as_u64().unwrap() as usize;
    let losses: Vec<f64> = run["losses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    // The reference records the rate and scale each time the scheduler runs: once per batch.
    let every = |key: &str| -> Vec<f64> {
        run[key]
            .as_array()
            .unwrap()
            .iter()
            .step_by(accum)
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    let (lrs, scales) = (every("lrs"), every("logit_scales"));
    assert_eq!(lines.len(), losses.len(), "{name}: steps logged");
    let mut worst = (0f64, 0f64, 0f64);
    for (k, line) in lines.iter().enumerate() {
        assert_eq!(line["step"].as_u64().unwrap(), k as u64 + 1);
        worst.0 = worst.0.max(rel(line["loss"].as_f64().unwrap(), losses[k]));
        worst.1 = worst.1.max(rel(line["lr"].as_f64().unwrap(), lrs[k]));
        worst.2 = worst
            .2
            .max(rel(line["logit_scale"].as_f64().unwrap(), scales[k]));
    }
    println!(
        "{name}: worst relative error: loss {:.2e}, lr {:.2e}, logit scale {:.2e}",
        worst.0, worst.1, worst.2
    );
    assert!(worst.0 <= 1e-4, "{name}: loss off by {:.3e}", worst.0);
    assert!(worst.1 <= 1e-12, "{name}: lr off by {:.3e}", worst.1);
    assert!(
        worst.2 <= 1e-4,
        "{name}: logit scale off by {:.3e}",
        worst.2
    );
    worst
}

/// The trained model's features of the first four pairs against the reference model's.
fn check_features(name: &str, out: &Path) {
    let reference =
        candle_core::safetensors::load(fixture("train", "runs.safetensors"), &Device::Cpu).unwrap();
    let clip = Clip::load(&out.to_string_lossy(), &LoadOptions::default()).unwrap();
    let rows = std::fs::read_to_string(fixture("train", "train.csv")).unwrap();
    let mut paths = Vec::new();
    let mut captions = Vec::new();
    let mut reader = csv_rows(&rows);
    for _ in 0..4 {
        let (p, c) = reader.remove(0);
        paths.push(fixture("train", &p));
        captions.push(c);
    }
    let images = clip.encode_image_files(&paths, |_| {});
    let images: Vec<Vec<f32>> = images.into_iter().map(Result::unwrap).collect();
    let texts = clip.encode_texts(&captions, true).unwrap();
    let to_tensor = |rows: &[Vec<f32>]| {
        Tensor::from_vec(rows.concat(), (rows.len(), rows[0].len()), &Device::Cpu).unwrap()
    };
    for (got, key) in [
        (to_tensor(&images), "image_features"),
        (to_tensor(&texts), "text_features"),
    ] {
        let e = relative_error(&got, &reference[&format!("{name}.{key}")]);
        println!("{name}: final {key}: {e:.2e}");
        assert!(e <= 1e-3, "{name}: final {key} off by {e:e} (relative)");
    }
}

/// `(path, caption)` rows of the fixture CSV (plain `path,"caption"` lines).
fn csv_rows(text: &str) -> Vec<(String, String)> {
    text.lines()
        .skip(1)
        .map(|line| {
            let (path, caption) = line.split_once(',').unwrap();
            (path.to_string(), caption.trim_matches('"').to_string())
        })
        .collect()
}

/// Records messages; stops the run after step `stop_after`.
#[derive(Default)]
struct Recorder {
    messages: Vec<String>,
    steps: u64,
    stop_after: Option<u64>,
}

impl TrainObserver for Recorder {
    fn step(&mut self, record: &StepRecord) {
        self.steps = record.step;
    }
    fn message(&mut self, line: &str) {
        self.messages.push(line.to_string());
    }
    fn should_stop(&mut self) -> bool {
        self.stop_after == Some(self.steps)
    }
}

fn run_and_check(name: &str) -> (TrainReport, TempDir) {
    let all = runs();
    let run = &all[name];
    let out = TempDir::new(&format!("train-{name}"));
    let report = train(&options(run, out.path()), &mut Silent).unwrap();
    check_steps(name, &report.log, run);
    check_features(name, out.path());
    assert_eq!(report.steps, run["steps"].as_u64().unwrap());
    (report, out)
}

#[test]
fn twelve_steps_equal_open_clip() {
    let (report, _out) = run_and_check("full");
    // The over-long caption of row 6 was cut, and counted once.
    assert_eq!(report.truncated_captions, 1);
}

#[test]
fn lock_image_equals_open_clip_and_reuses_cached_features() {
    let (report, first) = run_and_check("lock_image");
    let cache = report
        .feature_cache
        .expect("the LiT path caches image features");
    assert!(cache.is_file());
    // A second run on the same tower and images computes no image features.
    let second = TempDir::new("train-lock-image-again");
    let mut o = options(&runs()["lock_image"], second.path());
    o.feature_cache = FeatureCacheMode::Dir(first.path().join("feature-cache"));
    let mut recorder = Recorder::default();
    let again = train(&o, &mut recorder).unwrap();
    assert_eq!(again.feature_cache.as_ref(), Some(&cache));
    assert!(
        recorder
            .messages
            .iter()
            .any(|m| m.contains("24 from the cache, 0 computed")),
        "{:?}",
        recorder.messages
    );
    check_steps("lock_image (cached)", &again.log, &runs()["lock_image"]);
}

#[test]
fn lock_text_equals_open_clip() {
    run_and_check("lock_text");
}

#[test]
fn gradient_clipping_with_accumulation_equals_open_clip() {
    run_and_check("clip_accum");
}

#[test]
fn sigmoid_loss_equals_open_clip() {
    let (_, out) = run_and_check("siglip");
    // The learned bias travels with the model (transformers ignores it; training reads it back).
    let st =
        candle_core::safetensors::load(out.path().join("model.safetensors"), &Device::Cpu).unwrap();
    let bias = st["logit_bias"].to_scalar::<f32>().unwrap();
    let want = runs()["siglip"]["final_logit_bias"].as_f64().unwrap();
    assert!(
        (f64::from(bias) - want).abs() <= 1e-4 * want.abs(),
        "{bias} vs {want}"
    );
}

#[test]
fn validation_metrics_equal_open_clip() {
    let all = runs();
    let run = &all["full"];
    let out = TempDir::new("train-val");
    let mut o = options(run, out.path());
    o.val_data = Some(fixture("train", "val.csv").to_string_lossy().into());
    let report = train(&o, &mut Silent).unwrap();
    let got = report.validation.unwrap();
    let want = run["val"].as_object().unwrap();
    for (key, value) in want {
        let w = value.as_f64().unwrap();
        let g = got[key];
        assert!(
            (g - w).abs() <= 1e-4 * w.abs().max(1.0),
            "{key}: {g} vs {w}"
        );
    }
    assert_eq!(got["num_samples"], 8.0);
}

#[test]
fn an_interrupted_run_resumed_ends_with_the_same_weights() {
    let all = runs();
    let run = &all["full"];
    let whole = TempDir::new("train-whole");
    let mut o = options(run, whole.path());
    o.save_every = Some(3);
    train(&o, &mut Silent).unwrap();

    // The same run stopped after step 7 (its last checkpoint is step 6), then resumed.
    let parts = TempDir::new("train-parts");
    let mut o = options(run, parts.path());
    o.save_every = Some(3);
    let mut stopper = Recorder {
        stop_after: Some(7),
        ..Recorder::default()
    };
    match train(&o, &mut stopper) {
        Err(clip::ClipError::Stopped { step: 7 }) => {}
        other => panic!(
            "expected a stop after step 7, got {:?}",
            other.map(|r| r.steps)
        ),
    }
    // Without --resume, the folder holding a run is refused.
    let refused = train(&o, &mut Silent).unwrap_err().to_string();
    assert!(refused.contains("--resume"), "{refused}");
    o.resume = Resume::Latest;
    let report = train(&o, &mut Silent).unwrap();
    assert_eq!(report.resumed_from, Some(6));
    let a = std::fs::read(whole.path().join("model.safetensors")).unwrap();
    let b = std::fs::read(parts.path().join("model.safetensors")).unwrap();
    assert!(
        a == b,
        "resumed weights differ from the uninterrupted run's"
    );
    // The log reads as one run: steps 1..=12 once each.
    let steps: Vec<u64> = step_lines(&report.log)
        .iter()
        .map(|l| l["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, (1..=12).collect::<Vec<_>>());
    check_steps("resumed", &report.log, run);
}

/// The fixture CSV's pairs written as two WebDataset shards, in the same order.
fn shards(dir: &Path) -> String {
    let text = std::fs::read_to_string(fixture("train", "train.csv")).unwrap();
    let rows = csv_rows(&text);
    for (s, chunk) in rows.chunks(12).enumerate() {
        let file = std::fs::File::create(dir.join(format!("shard-{s:03}.tar"))).unwrap();
        let mut builder = tar::Builder::new(file);
        for (i, (path, caption)) in chunk.iter().enumerate() {
            let key = format!("{:06}", s * 12 + i);
            let image = std::fs::read(fixture("train", path)).unwrap();
            for (name, data) in [
                (format!("{key}.jpg"), image),
                (format!("{key}.txt"), caption.clone().into_bytes()),
            ] {
                let mut header = tar::Header::new_gnu();
                header.set_size(data.len() as u64);
                header.set_mode(0o644);
                header.set_cksum();
                builder
                    .append_data(&mut header, name, data.as_slice())
                    .unwrap();
            }
        }
        builder.finish().unwrap();
    }
    format!("{}/shard-{{000..001}}.tar", dir.display())
}

#[test]
fn webdataset_shards_train_exactly_as_the_csv() {
    let all = runs();
    let run = &all["full"];
    let out = TempDir::new("train-wds");
    let mut o = options(run, out.path());
    o.train_data = shards(out.path());
    o.data_format = DataFormat::auto(&o.train_data);
    assert_eq!(o.data_format, DataFormat::WebDataset);
    let report = train(&o, &mut Silent).unwrap();
    check_steps("webdataset", &report.log, run);
}

#[test]
fn shuffled_augmented_runs_repeat_from_their_seed() {
    let all = runs();
    let mut run = all["full"].clone();
    run["steps"] = 5.into();
    let losses = |seed: u64, tag: &str| -> Vec<f64> {
        let out = TempDir::new(tag);
        let mut o = options(&run, out.path());
        o.shuffle = true;
        o.augment = Some(true);
        o.seed = seed;
        let report = train(&o, &mut Silent).unwrap();
        step_lines(&report.log)
            .iter()
            .map(|l| l["loss"].as_f64().unwrap())
            .collect()
    };
    let (a, b, c) = (losses(1, "aug-a"), losses(1, "aug-b"), losses(2, "aug-c"));
    assert_eq!(a, b, "the same seed must give the same run");
    assert_ne!(a, c, "another seed must give another order and crops");
    let plain: Vec<f64> = run["losses"].as_array().unwrap()[..5]
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_ne!(a, plain);
}

#[test]
fn a_fresh_model_from_a_config_learns_the_pairs() {
    let out = TempDir::new("train-fresh");
    let config = r#"{"embed_dim": 32, "quick_gelu": true,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}}"#;
    let mut o = options(&runs()["full"], out.path());
    o.model = ModelInit::Config(config.into());
    o.length = Length::Epochs(20);
    o.lr = 2e-3;
    o.warmup = Some(10);
    o.batch_size = 8;
    let report = train(&o, &mut Silent).unwrap();
    assert_eq!(report.steps, 60);
    let losses: Vec<f64> = step_lines(&report.log)
        .iter()
        .map(|l| l["loss"].as_f64().unwrap())
        .collect();
    let first = losses[..3].iter().sum::<f64>() / 3.0;
    let last = losses[losses.len() - 3..].iter().sum::<f64>() / 3.0;
    // ln 8 = 2.08 is chance for a batch of 8.
    assert!(
        first > 1.9 && last < 0.5 * first,
        "loss {first:.3} -> {last:.3}"
    );
    // The result is an ordinary model directory.
    Clip::load(&out.path().to_string_lossy(), &LoadOptions::default()).unwrap();
}
