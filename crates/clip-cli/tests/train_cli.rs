//! `clip train` and `clip merge` from the command line: the issue's command on the committed fixtures (its log
//! must equal open_clip's run), a `kill -9` in the middle and `--resume` ending with the uninterrupted run's
//! weights, zero-shot evaluation during training equal to `clip eval` afterwards, and bad inputs failing with
//! one line while what was written stays usable.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{clip, root, stderr, stdout, tempdir};
use serde_json::Value;

const MODEL: &str = "fixtures/models/hf_tiny_quickgelu";
const DATA: &str = "fixtures/train/train.csv";

/// The command of the issue, into `out`, with `extra` arguments.
fn train_args(out: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "train",
        "--model",
        MODEL,
        "--train-data",
        DATA,
        "--csv-separator",
        ",",
        "--csv-img-key",
        "filepath",
        "--csv-caption-key",
        "title",
        "--batch-size",
        "4",
        "--steps",
        "12",
        "--lr",
        "1e-3",
        "--wd",
        "0.2",
        "--warmup",
        "3",
        "--beta1",
        "0.9",
        "--beta2",
        "0.98",
        "--eps",
        "1e-6",
        "--no-shuffle",
        "--no-augment",
        "--seed",
        "0",
        "--save-every",
        "3",
        "--output",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(out.to_string_lossy().into());
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn run(args: &[String]) -> std::process::Output {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    clip(&refs)
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn fresh(tag: &str) -> common::TempDir {
    let dir = tempdir(tag);
    let _ = std::fs::remove_dir_all(&*dir);
    std::fs::create_dir_all(&*dir).unwrap();
    dir
}

#[test]
fn the_issue_command_logs_open_clip_losses_and_writes_a_loadable_model() {
    let dir = fresh("train-issue");
    let out = dir.join("OUT");
    let log = dir.join("log.jsonl");
    let mut args = train_args(&out, &["--log-json"]);
    args.push(log.to_string_lossy().into());
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let runs: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("fixtures/train/runs.json")).unwrap(),
    )
    .unwrap();
    let want = runs["full"]["losses"].as_array().unwrap();
    let steps: Vec<Value> = lines(&log)
        .into_iter()
        .filter(|l| l.get("loss").is_some())
        .collect();
    assert_eq!(steps.len(), 12);
    for (k, (line, w)) in steps.iter().zip(want).enumerate() {
        assert_eq!(line["step"], k as u64 + 1);
        let (g, w) = (line["loss"].as_f64().unwrap(), w.as_f64().unwrap());
        assert!((g - w).abs() <= 1e-4 * w, "step {}: {g} vs {w}", k + 1);
        for key in ["lr", "logit_scale"] {
            assert!(line[key].is_number(), "{key} in {line}");
        }
    }
    // Four checkpoints, each a model `clip` loads; the output is one too.
    for step in [3, 6, 9, 12] {
        let ckpt = out.join(format!("checkpoints/step-{step:08}"));
        assert!(ckpt.join("state.json").is_file(), "{}", ckpt.display());
    }
    for model in [out.clone(), out.join("checkpoints/step-00000003")] {
        let o = clip(&[
            "embed",
            "--model",
            model.to_str().unwrap(),
            "--text",
            "a cup of coffee",
            "--json",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    for file in [
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "vocab.json",
        "merges.txt",
    ] {
        assert!(out.join(file).is_file(), "{file}");
    }
}

/// Spawns `clip` (as the common runner does) without waiting.
fn spawn(args: &[String], cache: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_clip"))
        .args(args)
        .current_dir(root())
        .env("HF_HUB_CACHE", cache)
        .env("CLIP_CACHE_DIR", cache)
        .env("HF_HUB_OFFLINE", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn kill_dash_nine_then_resume_ends_with_the_uninterrupted_weights() {
    let dir = fresh("train-kill");
    let steps = ["--steps", "150", "--warmup", "10"];
    let whole = dir.join("whole");
    let o = run(&train_args(&whole, &steps));
    assert!(o.status.success(), "{}", stderr(&o));

    let parts = dir.join("parts");
    let args = train_args(&parts, &steps);
    let mut child = spawn(&args, &dir.join("cache"));
    let start = Instant::now();
    // Kill as soon as the second checkpoint exists: mid-run, possibly mid-checkpoint.
    while !parts.join("checkpoints/step-00000006").exists() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no checkpoint appeared"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        !parts.join("model.safetensors").exists(),
        "the run finished before it was killed; the test needs a longer run"
    );
    let mut resume = args.clone();
    resume.push("--resume".into());
    let o = run(&resume);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("resuming from"), "{}", stderr(&o));
    let a = std::fs::read(whole.join("model.safetensors")).unwrap();
    let b = std::fs::read(parts.join("model.safetensors")).unwrap();
    assert!(
        a == b,
        "the resumed run's weights differ from the uninterrupted run's"
    );
    let steps: Vec<u64> = lines(&parts.join("log.jsonl"))
        .iter()
        .filter(|l| l.get("loss").is_some())
        .map(|l| l["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, (1..=150).collect::<Vec<_>>());
}

#[test]
fn zero_shot_evaluation_during_training_equals_clip_eval_afterwards() {
    let dir = fresh("train-zeroshot");
    let out = dir.join("OUT");
    let o = run(&train_args(
        &out,
        &[
            "--zeroshot-data",
            "fixtures/zeroshot/train",
            "--zeroshot-templates",
            "simple",
            "--val-data",
            "fixtures/train/val.csv",
            "--json",
        ],
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    let report: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    let during = report["zeroshot_top1"].as_f64().unwrap();
    assert_eq!(report["validation"]["num_samples"], 8.0);
    let o = clip(&[
        "eval",
        "--model",
        out.to_str().unwrap(),
        "--dataset",
        "fixtures/zeroshot/train",
        "--templates",
        "simple",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let after: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(during, after["top1"].as_f64().unwrap());
}

#[test]
fn bad_inputs_fail_with_one_line_and_keep_checkpoints() {
    let dir = fresh("train-bad");
    let one_line_error = |o: &std::process::Output, needle: &str| {
        assert!(!o.status.success());
        let err = stderr(o);
        let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "{err}");
        assert!(errors[0].contains(needle), "wanted {needle:?} in {err}");
        assert!(!err.contains("panicked"), "{err}");
    };
    let csv = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_string_lossy().into_owned()
    };
    let with_data = |data: &str, extra: &[&str]| {
        let mut args = train_args(&dir.join("o"), extra);
        let i = args.iter().position(|a| a == DATA).unwrap();
        args[i] = data.to_string();
        args
    };
    // Missing column, empty file, more pairs per batch than the data has.
    let missing = csv("missing.csv", "path,text\na.jpg,x\n");
    one_line_error(&run(&with_data(&missing, &[])), "no column \"filepath\"");
    let empty = csv("empty.csv", "");
    one_line_error(&run(&with_data(&empty, &[])), "empty");
    let header_only = csv("header.csv", "filepath,title\n");
    one_line_error(
        &run(&with_data(&header_only, &[])),
        "no image-caption pairs",
    );
    one_line_error(&run(&with_data(DATA, &["--batch-size", "25"])), "only 24");
    // An unknown architecture.
    let mut args = train_args(&dir.join("o"), &[]);
    let i = args.iter().position(|a| a == "--model").unwrap();
    args[i] = "--config".into();
    args[i + 1] = "ViT-Nope-99".into();
    one_line_error(&run(&args), "unknown open_clip config");
    // A ResNet image tower (no backward pass yet), even locked.
    let mut args = train_args(&dir.join("o"), &["--lock-image"]);
    let i = args.iter().position(|a| a == "--model").unwrap();
    args[i + 1] = root()
        .join("fixtures/openai/rn/model.pt")
        .to_string_lossy()
        .into_owned();
    one_line_error(&run(&args), "only ViT image towers");
    // Training arithmetic other than f32 / bf16.
    one_line_error(
        &run(&train_args(&dir.join("o"), &["--dtype", "int8"])),
        "not int8",
    );
    // An output folder that cannot be written (under a regular file: fails even for root).
    let file = csv("a-file", "x");
    one_line_error(
        &run(&train_args(&Path::new(&file).join("out"), &[])),
        "cannot write to the output folder",
    );

    // A finished run's folder: refused without --resume; a resume with other settings is refused; its
    // checkpoints stay loadable and resumable.
    let out = dir.join("run");
    let o = run(&train_args(&out, &["--steps", "6", "--warmup", "1"]));
    assert!(o.status.success(), "{}", stderr(&o));
    one_line_error(
        &run(&train_args(&out, &["--steps", "6", "--warmup", "1"])),
        "--resume",
    );
    let o = run(&train_args(
        &out,
        &["--steps", "6", "--warmup", "1", "--lr", "2e-3", "--resume"],
    ));
    one_line_error(&o, "other settings");
    let ckpt = out.join("checkpoints/step-00000003");
    // A checkpoint is a whole model directory: the run's tokenizer files are in it.
    assert!(
        ckpt.join("tokenizer.json").is_file() || ckpt.join("vocab.json").is_file(),
        "no tokenizer in {}",
        ckpt.display()
    );
    let o = clip(&[
        "embed",
        "--model",
        ckpt.to_str().unwrap(),
        "--text",
        "x",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&train_args(
        &out,
        &["--steps", "6", "--warmup", "1", "--resume"],
    ));
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn unreadable_images_are_skipped_counted_and_logged() {
    let dir = fresh("train-unreadable");
    let data = std::fs::read_to_string(root().join(DATA)).unwrap();
    let broken = root().join("fixtures/zeroshot/broken.jpg");
    let mut rows: Vec<String> = data
        .lines()
        .map(|l| {
            l.replace(
                "../zeroshot/",
                &format!("{}/", root().join("fixtures/zeroshot").display()),
            )
        })
        .collect();
    rows.insert(3, format!("{},\"a broken image\"", broken.display()));
    rows.insert(
        4,
        format!("{},\"a missing image\"", dir.join("nope.jpg").display()),
    );
    let csv = dir.join("data.csv");
    std::fs::write(&csv, rows.join("\n") + "\n").unwrap();
    let mut args = train_args(&dir.join("OUT"), &["--json"]);
    let i = args.iter().position(|a| a == DATA).unwrap();
    args[i] = csv.to_string_lossy().into();
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("warning: skipped unreadable image") && err.contains("broken.jpg"),
        "{err}"
    );
    let report: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(report["unreadable_images"].as_array().unwrap().len(), 2);
    let skipped = lines(&dir.join("OUT/log.jsonl"))
        .iter()
        .filter(|l| l.get("skipped").is_some())
        .count();
    assert_eq!(skipped, 2);
}

#[test]
fn merge_interpolates_weights() {
    let dir = fresh("train-merge");
    let out = dir.join("tuned");
    let o = run(&train_args(&out, &["--steps", "3", "--warmup", "1"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let embed = |model: &Path| -> Vec<f64> {
        let o = clip(&[
            "embed",
            "--model",
            model.to_str().unwrap(),
            "--text",
            "a red motorcycle",
            "--json",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
        v[0].as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    for (alpha, same_as) in [("0", root().join(MODEL)), ("1", out.clone())] {
        let merged = dir.join(format!("merged-{alpha}"));
        let o = clip(&[
            "merge",
            "--alpha",
            alpha,
            MODEL,
            out.to_str().unwrap(),
            "--output",
            merged.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let (a, b) = (embed(&merged), embed(&same_as));
        let worst = a
            .iter()
            .zip(&b)
            .fold(0f64, |m, (x, y)| m.max((x - y).abs()));
        assert!(worst <= 1e-6, "alpha {alpha}: {worst}");
    }
    let other = dir.join("other");
    let o = clip(&[
        "merge",
        "--alpha",
        "0.5",
        MODEL,
        "fixtures/models/hf_odd_gelu",
        "--output",
        other.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("different architectures"),
        "{}",
        stderr(&o)
    );
}
