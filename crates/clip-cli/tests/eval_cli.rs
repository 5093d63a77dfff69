//! `clip classify --classes/--templates/--top-k/--save-classifier/--classifier`, `clip eval` and `clip probe`
//! end to end on the fixture model and dataset, against scripts/fixtures/gen_zeroshot.py's references
//! (open_clip's `build_zero_shot_classifier`, clip-anytorch preprocessing, scikit-learn's LogisticRegression).

mod common;
use common::{clip, root, stderr, stdout};

use std::path::Path;
use std::process::Output;

use serde_json::Value;

const MODEL: &str = "fixtures/models/hf_tiny_quickgelu";

fn reference() -> Value {
    let text = std::fs::read_to_string(root().join("fixtures/zeroshot/reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn temp(name: &str) -> common::TempFile {
    common::tempfile("eval", name)
}

fn json(output: &Output) -> Value {
    serde_json::from_str(stdout(output).trim())
        .unwrap_or_else(|e| panic!("{e}: {}", stdout(output)))
}

fn indices(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_u64().unwrap() as usize)
        .collect()
}

fn matrix(v: &Value) -> Vec<Vec<usize>> {
    v.as_array().unwrap().iter().map(indices).collect()
}

/// A one-line error with the given exit code: no panic, no backtrace.
fn assert_clean_error(output: &Output, code: i32, mentions: &str) {
    let err = stderr(output);
    assert_eq!(output.status.code(), Some(code), "stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    assert!(err.contains(mentions), "expected {mentions:?} in: {err}");
}

fn check_report(report: &Value, expected: &Value, what: &str) {
    for key in ["top1", "top5"] {
        let (ours, theirs) = (
            report[key].as_f64().unwrap(),
            expected[key].as_f64().unwrap(),
        );
        assert!(
            (ours - theirs).abs() < 1e-12,
            "{what} {key}: {ours} vs {theirs}"
        );
    }
    assert_eq!(
        matrix(&report["confusion"]),
        matrix(&expected["confusion"]),
        "{what}: confusion"
    );
    let top: Vec<Vec<usize>> = report["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| indices(&p["top"]))
        .collect();
    assert_eq!(top, matrix(&expected["predictions"]), "{what}: predictions");
    let per_class: Vec<Option<f64>> = report["per_class"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["accuracy"].as_f64())
        .collect();
    let expected_per_class: Vec<Option<f64>> = expected["per_class"]
        .as_array()
        .unwrap()
        .iter()
        .map(Value::as_f64)
        .collect();
    for (a, b) in per_class.iter().zip(&expected_per_class) {
        assert!(
            (a.unwrap() - b.unwrap()).abs() < 1e-12,
            "{what}: per class {per_class:?} vs {expected_per_class:?}"
        );
    }
}

#[test]
fn eval_image_folder_matches_the_python_reference() {
    let expected = &reference()["eval_folder"];
    let confusion = temp("confusion.csv");
    let out = clip(&[
        "eval",
        "--model",
        MODEL,
        "--dataset",
        "fixtures/zeroshot/test",
        "--templates",
        "openai",
        "--json",
        "--confusion",
        confusion.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = json(&out);
    check_report(&report, expected, "ImageFolder");
    assert_eq!(report["evaluated"], 24);
    assert_eq!(report["unreadable"].as_array().unwrap().len(), 0);

    // The CSV: a header of predicted classes, then one row of counts per true class.
    let csv = std::fs::read_to_string(&confusion).unwrap();
    std::fs::remove_file(&confusion).ok();
    let rows: Vec<Vec<String>> = csv
        .lines()
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    let classes: Vec<String> = reference()["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(rows[0][1..], classes[..]);
    let counts: Vec<Vec<usize>> = rows[1..]
        .iter()
        .map(|r| r[1..].iter().map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(counts, matrix(&expected["confusion"]));
    assert_eq!(
        rows[1..].iter().map(|r| r[0].clone()).collect::<Vec<_>>(),
        classes
    );

    // The human-readable report carries the same figure.
    let text = clip(&[
        "eval",
        "--model",
        MODEL,
        "--dataset",
        "fixtures/zeroshot/test",
    ]);
    assert!(text.status.success());
    let top1 = format!("{:6.2}%", expected["top1"].as_f64().unwrap() * 100.0);
    assert!(
        stdout(&text).contains(&format!("top-1 accuracy: {top1}")),
        "{}",
        stdout(&text)
    );
}

#[test]
fn eval_csv_lists_unreadable_images() {
    let expected = &reference()["eval_csv"];
    let out = clip(&[
        "eval",
        "--model",
        MODEL,
        "--dataset",
        "fixtures/zeroshot/test.csv",
        "--json",
    ]);
    // Unreadable images make it a partial failure, reported on stderr and in the report.
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report = json(&out);
    check_report(&report, expected, "CSV");
    assert_eq!(report["images"], 26);
    assert_eq!(report["evaluated"], 24);
    let unreadable: Vec<String> = report["unreadable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            Path::new(u["path"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(unreadable, ["broken.jpg", "missing.jpg"]);
    let err = stderr(&out);
    assert!(
        err.contains("broken.jpg") && err.contains("missing.jpg") && err.contains("2 of 26"),
        "{err}"
    );
    assert!(!err.contains("panicked"));
}

#[test]
fn classify_with_classes_templates_and_top_k_follows_the_ensemble() {
    let reference = reference();
    let expected = &reference["eval_folder"];
    let classes_file = temp("classes.txt");
    let classes: Vec<&str> = reference["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    std::fs::write(&classes_file, classes.join("\n") + "\n").unwrap();
    let paths: Vec<String> = expected["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| format!("fixtures/zeroshot/{}", p.as_str().unwrap()))
        .collect();
    let saved = temp("classifier.safetensors");
    let mut args = vec![
        "classify",
        "--model",
        MODEL,
        "--classes",
        classes_file.to_str().unwrap(),
        "--templates",
        "openai",
        "--top-k",
        "3",
        "--json",
        "--save-classifier",
        saved.to_str().unwrap(),
    ];
    args.extend(paths.iter().map(String::as_str));
    let out = clip(&args);
    std::fs::remove_file(&classes_file).ok();
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), paths.len());
    for (line, top) in lines.iter().zip(matrix(&expected["predictions"])) {
        let labels: Vec<&str> = line["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect();
        let want: Vec<&str> = top[..3].iter().map(|&i| classes[i]).collect();
        assert_eq!(labels, want, "{}", line["image"]);
        let probs: Vec<f64> = line["probs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_f64().unwrap())
            .collect();
        assert!(probs.windows(2).all(|w| w[0] >= w[1]), "{probs:?}");
    }

    // The saved classifier gives the same answers without the text tower.
    let mut args = vec![
        "classify",
        "--model",
        MODEL,
        "--classifier",
        saved.to_str().unwrap(),
        "--top-k",
        "3",
        "--json",
    ];
    args.extend(paths.iter().map(String::as_str));
    let again = clip(&args);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(stdout(&again), stdout(&out));

    // ... and is refused by another model.
    let other = clip(&[
        "classify",
        "--model",
        "fixtures/models/hf_odd_gelu",
        "--classifier",
        saved.to_str().unwrap(),
        &paths[0],
    ]);
    std::fs::remove_file(&saved).ok();
    assert_clean_error(&other, 1, "made with model hf_tiny_quickgelu");
}

#[test]
fn probe_matches_scikit_learn_and_saves_a_classifier() {
    let expected = &reference()["probe"];
    let output = temp("probe.safetensors");
    let out = clip(&[
        "probe",
        "--model",
        MODEL,
        "--train",
        "fixtures/zeroshot/train",
        "--test",
        "fixtures/zeroshot/test",
        "--output",
        output.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = json(&out);
    let (ours, theirs) = (
        report["test_accuracy"].as_f64().unwrap(),
        expected["test_accuracy"].as_f64().unwrap(),
    );
    assert!(
        (ours - theirs).abs() <= 0.01,
        "probe test accuracy {ours} vs scikit-learn {theirs}"
    );
    assert_eq!(report["best_C"].as_f64(), expected["best_C"].as_f64());
    assert_eq!(
        report["validation_images"],
        expected["val_indices"].as_array().unwrap().len()
    );

    // `clip eval --classifier` with the probe reproduces its test accuracy.
    let eval = clip(&[
        "eval",
        "--model",
        MODEL,
        "--dataset",
        "fixtures/zeroshot/test",
        "--classifier",
        output.to_str().unwrap(),
        "--json",
    ]);
    std::fs::remove_file(&output).ok();
    assert!(eval.status.success(), "{}", stderr(&eval));
    assert!((json(&eval)["top1"].as_f64().unwrap() - ours).abs() < 1e-12);
}

#[test]
fn bad_zero_shot_input_is_a_clean_error() {
    let image = "fixtures/zeroshot/test/cat/cat_1.jpg";
    assert_clean_error(
        &clip(&[
            "classify",
            "--model",
            MODEL,
            image,
            "--classes",
            "cifar10",
            "--labels",
            "a",
        ]),
        2,
        "cannot be used",
    );
    assert_clean_error(
        &clip(&[
            "classify",
            "--model",
            MODEL,
            image,
            "--classes",
            "no-such-set",
        ]),
        1,
        "cifar100",
    );
    assert_clean_error(
        &clip(&["classify", "--model", MODEL, image]),
        2,
        "no labels",
    );
    let bad_templates = temp("templates.txt");
    std::fs::write(&bad_templates, "a photo of a thing\n").unwrap();
    let out = clip(&[
        "classify",
        "--model",
        MODEL,
        image,
        "--labels",
        "a",
        "--templates",
        bad_templates.to_str().unwrap(),
    ]);
    std::fs::remove_file(&bad_templates).ok();
    assert_clean_error(&out, 1, "exactly once");
    assert_clean_error(
        &clip(&[
            "eval",
            "--model",
            MODEL,
            "--dataset",
            "fixtures/zeroshot/nothing",
        ]),
        1,
        "does not exist",
    );
    assert_clean_error(
        &clip(&[
            "classify",
            "--model",
            MODEL,
            image,
            "--classifier",
            "fixtures/models/hf_tiny_quickgelu/model.safetensors",
        ]),
        1,
        "not a classifier file",
    );
    assert_clean_error(
        &clip(&[
            "eval",
            "--model",
            MODEL,
            "--dataset",
            "fixtures/zeroshot/test",
            "--classes",
            "cifar10",
        ]),
        1,
        "6 classes",
    );
}
