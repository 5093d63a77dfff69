//! Zero-shot classification, evaluation and linear probes on the fixture model against the Python references
//! of scripts/fixtures/gen_zeroshot.py: open_clip's `build_zero_shot_classifier` (over transformers' CLIPModel
//! text features and `clip.tokenize`), an ImageFolder / CSV evaluation with clip-anytorch preprocessing, and
//! scikit-learn's `LogisticRegression` swept over C on the same validation split.

use std::path::PathBuf;

use clip::zeroshot::prompts::{builtin_classes, builtin_templates};
use clip::zeroshot::{fit_probe, Classifier, Dataset, EvalReport, ModelIdentity, ProbeOptions};
use clip::Clip;
use safetensors::SafeTensors;
use serde_json::Value;

mod common;

fn root() -> PathBuf {
    common::fixtures().join("..")
}

fn fixtures() -> PathBuf {
    root().join("fixtures/zeroshot")
}

fn reference() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("reference.json")).unwrap())
        .unwrap()
}

fn model() -> Clip {
    Clip::from_dir(&root().join("fixtures/models/hf_tiny_quickgelu"), None).unwrap()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn numbers(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_f64().unwrap())
        .collect()
}

fn indices(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_u64().unwrap() as usize)
        .collect()
}

/// The reference classifiers, `[classes][dim]` per case.
fn reference_classifiers() -> Vec<(String, Vec<Vec<f32>>)> {
    let bytes = std::fs::read(fixtures().join("classifiers.safetensors")).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    file.tensors()
        .into_iter()
        .map(|(name, view)| {
            let values: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            let rows = values
                .chunks(view.shape()[1])
                .map(<[f32]>::to_vec)
                .collect();
            (name, rows)
        })
        .collect()
}

/// The class names and templates of a reference case, taken from our embedded data where the case names it.
fn case_inputs(case: &str, meta: &Value) -> (Vec<String>, Vec<String>) {
    let classes = match case {
        c if c.starts_with("cifar100") => builtin_classes("cifar100").unwrap(),
        c if c.starts_with("cifar10") => builtin_classes("cifar10").unwrap(),
        c if c.starts_with("imagenet") => builtin_classes("imagenet").unwrap(),
        _ => strings(&meta["classes"]),
    };
    let templates = match case {
        c if c.ends_with("_openai") => builtin_templates("openai").unwrap(),
        c if c.ends_with("_simple") => builtin_templates("simple").unwrap(),
        _ => strings(&meta["templates"]),
    };
    (classes, templates)
}

#[test]
fn ensembled_classifiers_match_open_clip() {
    let clip = model();
    let reference = reference();
    let cases = reference_classifiers();
    assert_eq!(cases.len(), 6);
    for (case, expected) in cases {
        let meta = &reference["cases"][&case];
        let (classes, templates) = case_inputs(&case, meta);
        // Our data files are the package's lists.
        assert_eq!(classes, strings(&meta["classes"]), "{case}: class names");
        assert_eq!(templates, strings(&meta["templates"]), "{case}: templates");
        let mut steps = Vec::new();
        let built = Classifier::zero_shot(&clip, &classes, &templates, |done, total| {
            steps.push((done, total))
        })
        .unwrap();
        assert_eq!(
            steps.last(),
            Some(&(classes.len(), classes.len())),
            "{case}: progress"
        );
        assert_eq!(built.weights.len(), expected.len(), "{case}");
        let mut worst = 0f32;
        for (a, e) in built.weights.iter().zip(&expected) {
            assert_eq!(a.len(), e.len());
            for (x, y) in a.iter().zip(e) {
                worst = worst.max((x - y).abs());
            }
        }
        println!(
            "{case}: {} classes x {} templates, max |diff| {worst:e}",
            classes.len(),
            templates.len()
        );
        assert!(worst <= 1e-5, "{case}: max |diff| {worst} > 1e-5");
    }
}

fn fixture_classifier(clip: &Clip) -> Classifier {
    let classes = strings(&reference()["classes"]);
    Classifier::zero_shot(
        clip,
        &classes,
        &builtin_templates("openai").unwrap(),
        |_, _| {},
    )
    .unwrap()
}

fn check_eval(report: &EvalReport, expected: &Value, what: &str) {
    let expected_top: Vec<Vec<usize>> = expected["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(indices)
        .collect();
    let ours: Vec<Vec<usize>> = report.predictions.iter().map(|p| p.top.clone()).collect();
    assert_eq!(ours, expected_top, "{what}: top-5 predictions per image");
    assert!(
        (report.top1() - expected["top1"].as_f64().unwrap()).abs() < 1e-12,
        "{what}: top-1"
    );
    assert!(
        (report.top5() - expected["top5"].as_f64().unwrap()).abs() < 1e-12,
        "{what}: top-5"
    );
    let confusion: Vec<Vec<usize>> = expected["confusion"]
        .as_array()
        .unwrap()
        .iter()
        .map(indices)
        .collect();
    assert_eq!(report.confusion, confusion, "{what}: confusion");
    for ((_, _, ours), theirs) in report
        .per_class()
        .iter()
        .zip(expected["per_class"].as_array().unwrap())
    {
        assert_eq!(
            ours.map(|a| (a * 1e9).round()),
            theirs.as_f64().map(|a| (a * 1e9).round()),
            "{what}: per class"
        );
    }
    println!(
        "{what}: top-1 {:.4} top-5 {:.4} on {} images",
        report.top1(),
        report.top5(),
        report.evaluated()
    );
}

#[test]
fn evaluation_matches_the_python_reference() {
    let clip = model();
    let reference = reference();
    let classifier = fixture_classifier(&clip);

    let folder = Dataset::open(&fixtures().join("test")).unwrap();
    assert_eq!(folder.classes, classifier.class_names);
    let paths: Vec<String> = folder
        .samples
        .iter()
        .map(|s| {
            s.path
                .strip_prefix(fixtures())
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        paths,
        strings(&reference["eval_folder"]["paths"]),
        "ImageFolder order"
    );
    assert_eq!(
        folder.labels(),
        indices(&reference["eval_folder"]["labels"])
    );
    let report = clip::zeroshot::evaluate(&clip, &classifier, &folder, |_, _| {}).unwrap();
    assert!(report.unreadable.is_empty());
    check_eval(&report, &reference["eval_folder"], "ImageFolder");

    let csv = Dataset::open(&fixtures().join("test.csv"))
        .unwrap()
        .with_class_names(&classifier.class_names)
        .unwrap();
    let report = clip::zeroshot::evaluate(&clip, &classifier, &csv, |_, _| {}).unwrap();
    assert_eq!(report.total, report.evaluated() + 2);
    let unreadable: Vec<String> = report
        .unreadable
        .iter()
        .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(unreadable, strings(&reference["eval_csv"]["unreadable"]));
    check_eval(&report, &reference["eval_csv"], "CSV");
}

#[test]
fn linear_probe_matches_scikit_learn() {
    let clip = model();
    let expected = &reference()["probe"];
    let train = Dataset::open(&fixtures().join("train")).unwrap();
    let test = Dataset::open(&fixtures().join("test"))
        .unwrap()
        .with_class_names(&train.classes)
        .unwrap();
    let train_enc = train.encode(&clip, |_, _| {});
    let test_enc = test.encode(&clip, |_, _| {});
    assert!(train_enc.unreadable.is_empty() && test_enc.unreadable.is_empty());
    let train_y = train.labels();
    let (fit, val) = clip::zeroshot::probe::validation_split(&train_y);
    assert_eq!(fit, indices(&expected["fit_indices"]));
    assert_eq!(val, indices(&expected["val_indices"]));

    let options = ProbeOptions {
        cs: numbers(&expected["Cs"]),
        max_iter: expected["max_iter"].as_u64().unwrap() as usize,
    };
    assert_eq!(
        options.cs,
        ProbeOptions::default().cs,
        "the library's default sweep is the reference's"
    );
    let probe = fit_probe(
        &train_enc.features,
        &train_y,
        train.classes.len(),
        &options,
        |_, _| {},
    )
    .unwrap();
    let mut same_val_accuracy = 0;
    for (ours, theirs) in probe
        .sweep
        .iter()
        .zip(expected["sweep"].as_array().unwrap())
    {
        let theirs_acc = theirs["val_accuracy"].as_f64().unwrap();
        same_val_accuracy += usize::from((ours.val_accuracy - theirs_acc).abs() < 1e-9);
        println!(
            "C {:>9.3e}: val accuracy {:.4} (sklearn {theirs_acc:.4}), log-loss {:.5} (sklearn {:.5})",
            ours.c,
            ours.val_accuracy,
            ours.val_log_loss,
            theirs["val_log_loss"].as_f64().unwrap()
        );
    }
    println!(
        "validation accuracy equal at {same_val_accuracy} of {} C values",
        probe.sweep.len()
    );
    // sklearn's default tol stops early on weak regularisation; solved to convergence, its fits are ours.
    for theirs in expected["sweep_converged"].as_array().unwrap() {
        let c = theirs["C"].as_f64().unwrap();
        let ours = probe.sweep.iter().find(|p| p.c == c).unwrap();
        let loss = theirs["val_log_loss"].as_f64().unwrap();
        let rel = (ours.val_log_loss - loss).abs() / loss;
        println!(
            "C {c:>9.3e}: converged sklearn log-loss {loss:.6}, ours {:.6}, rel diff {rel:.1e}",
            ours.val_log_loss
        );
        assert!(
            rel <= 1e-3,
            "C {c}: validation log-loss {} vs converged sklearn {loss}",
            ours.val_log_loss
        );
    }
    assert_eq!(
        probe.best_c,
        expected["best_C"].as_f64().unwrap(),
        "chosen C"
    );

    let test_y = test.labels();
    let predicted = probe.model.predict(&test_enc.features);
    let accuracy = clip::zeroshot::probe::accuracy(&predicted, &test_y);
    let theirs = expected["test_accuracy"].as_f64().unwrap();
    println!(
        "probe test accuracy {accuracy:.4} (sklearn {theirs:.4}), C {}",
        probe.best_c
    );
    assert!(
        (accuracy - theirs).abs() <= 0.01,
        "probe accuracy {accuracy} vs sklearn {theirs}"
    );
    assert!((probe.train_accuracy - expected["train_accuracy"].as_f64().unwrap()).abs() <= 0.01);

    // Saved as a classifier, the probe scores the same way.
    let classifier = probe.to_classifier(&train.classes);
    let logits = classifier.logits(&test_enc.features).unwrap();
    let via_classifier: Vec<usize> = logits
        .iter()
        .map(|row| clip::zeroshot::top_k(row, 1)[0])
        .collect();
    assert_eq!(via_classifier, predicted);
}

#[test]
fn classifiers_round_trip_and_refuse_other_models() {
    let clip = model();
    let mut classifier = fixture_classifier(&clip);
    classifier.bind_to(&clip).unwrap();
    let path =
        std::env::temp_dir().join(format!("clip-zeroshot-{}.safetensors", std::process::id()));
    classifier.save(&path).unwrap();
    let loaded = Classifier::load(&path).unwrap();
    std::fs::remove_file(&path).ok();
    assert_eq!(loaded.class_names, classifier.class_names);
    assert_eq!(loaded.templates, classifier.templates);
    assert_eq!(loaded.weights, classifier.weights);
    assert_eq!(loaded.head, classifier.head);
    assert_eq!(loaded.model, classifier.model);
    loaded
        .check_model(&ModelIdentity::of(&clip).unwrap())
        .unwrap();

    let other = ModelIdentity::of_dir(&root().join("fixtures/models/hf_odd_gelu")).unwrap();
    let err = loaded.check_model(&other).unwrap_err().to_string();
    assert!(
        err.contains("hf_tiny_quickgelu") && err.contains("hf_odd_gelu"),
        "{err}"
    );

    let not_a_classifier =
        Classifier::load(&root().join("fixtures/models/hf_tiny_quickgelu/model.safetensors"));
    assert!(not_a_classifier
        .unwrap_err()
        .to_string()
        .contains("not a classifier file"));
}
