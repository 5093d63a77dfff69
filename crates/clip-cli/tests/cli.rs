//! The `clip` binary end to end on a committed fixture model, against references computed by the Python
//! originals (scripts/fixtures/gen_cli.py: clip-anytorch preprocessing and tokenizer, transformers CLIPModel).

mod common;
use common::{assert_close, clip, root, stderr, stdout, tempdir};

use std::process::Output;

use serde_json::Value;

fn reference() -> Value {
    let text = std::fs::read_to_string(root().join("fixtures/cli/reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn floats(value: &Value) -> Vec<f32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect()
}

fn matrix(value: &Value) -> Vec<Vec<f32>> {
    value.as_array().unwrap().iter().map(floats).collect()
}

/// A one-line error: no panic, no backtrace.
fn assert_clean_error(output: &Output, code: i32, mentions: &str) {
    let err = stderr(output);
    assert_eq!(output.status.code(), Some(code), "stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    assert!(err.contains(mentions), "expected {mentions:?} in: {err}");
    assert!(
        err.lines().filter(|l| l.starts_with("error:")).count() >= 1,
        "{err}"
    );
}

fn str_list(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn classify_json_matches_the_python_pipeline() {
    let reference = reference();
    let model = reference["model"].as_str().unwrap();
    let images = str_list(&reference["images"]);
    let labels = str_list(&reference["labels"]);
    let mut args = vec!["classify", "--model", model];
    args.extend(images.iter().map(String::as_str));
    args.push("--labels");
    args.extend(labels.iter().map(String::as_str));
    args.push("--json");
    let output = clip(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    let lines: Vec<Value> = stdout(&output)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), images.len());
    for (line, image) in lines.iter().zip(&images) {
        assert_eq!(line["image"].as_str().unwrap(), image);
        assert_eq!(str_list(&line["labels"]), labels);
    }
    let probs: Vec<Vec<f32>> = lines.iter().map(|l| floats(&l["probs"])).collect();
    assert_close(&probs, &matrix(&reference["probs"]), "probabilities");

    // The table form prints every label with a percentage.
    let mut table_args = args.clone();
    table_args.pop();
    let table = stdout(&clip(&table_args));
    for label in &labels {
        assert!(table.contains(label.as_str()), "{table}");
    }
}

#[test]
fn labels_file_is_read_and_empty_label_sets_are_rejected() {
    let reference = reference();
    let model = reference["model"].as_str().unwrap();
    let dir = tempdir("labels");
    let file = dir.join("labels.txt");
    std::fs::write(&file, str_list(&reference["labels"]).join("\n") + "\n\n").unwrap();
    let image = str_list(&reference["images"]).remove(0);
    let output = clip(&[
        "classify",
        "--model",
        model,
        &image,
        "--labels-file",
        file.to_str().unwrap(),
        "--json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let line: Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_close(
        &[floats(&line["probs"])],
        &matrix(&reference["probs"])[..1],
        "probabilities from a labels file",
    );

    let no_labels = clip(&["classify", "--model", model, &image]);
    assert_clean_error(&no_labels, 2, "no labels");
    let empty = dir.join("empty.txt");
    std::fs::write(&empty, "\n  \n").unwrap();
    let empty_file = clip(&[
        "classify",
        "--model",
        model,
        &image,
        "--labels-file",
        empty.to_str().unwrap(),
    ]);
    assert_clean_error(&empty_file, 1, "has no labels");
}

#[test]
fn one_bad_image_in_a_batch_does_not_stop_the_others() {
    let reference = reference();
    let model = reference["model"].as_str().unwrap();
    let dir = tempdir("batch");
    let corrupt = dir.join("corrupt.jpg");
    std::fs::write(&corrupt, b"\xff\xd8\xff\xe0 definitely not a jpeg").unwrap();
    let images = str_list(&reference["images"]);
    let output = clip(&[
        "classify",
        "--model",
        model,
        &images[0],
        corrupt.to_str().unwrap(),
        "missing-photo.png",
        &images[1],
        "--labels",
        "a cat",
        "a dog",
        "--json",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains("corrupt.jpg") && err.contains("missing-photo.png"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let printed: Vec<Value> = stdout(&output)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Each input keeps its line: the failed ones carry an "error" instead of probabilities.
    assert_eq!(printed.len(), 4, "one line per input");
    assert_eq!(printed[0]["image"].as_str().unwrap(), images[0]);
    assert!(printed[0]["probs"].is_array());
    assert_eq!(
        printed[1]["image"].as_str().unwrap(),
        corrupt.to_str().unwrap()
    );
    assert!(printed[1]["error"]
        .as_str()
        .unwrap()
        .contains("corrupt.jpg"));
    assert!(printed[1].get("probs").is_none());
    assert!(printed[2]["error"]
        .as_str()
        .unwrap()
        .contains("missing-photo.png"));
    assert_eq!(printed[3]["image"].as_str().unwrap(), images[1]);
    assert!(printed[3]["probs"].is_array());
}

#[test]
fn embed_images_to_npy_and_texts_to_json() {
    let reference = reference();
    let model = reference["model"].as_str().unwrap();
    let dir = tempdir("embed");
    let out = dir.join("images.npy");
    let images = str_list(&reference["images"]);
    let mut args = vec!["embed", "--model", model, "--image"];
    args.extend(images.iter().map(String::as_str));
    args.extend(["--output", out.to_str().unwrap()]);
    let output = clip(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    let (shape, values) = clip::npy::read_f32(&out).unwrap();
    let expected = matrix(&reference["image_features"]);
    assert_eq!(shape, vec![expected.len(), expected[0].len()]);
    let rows: Vec<Vec<f32>> = values.chunks(shape[1]).map(<[f32]>::to_vec).collect();
    assert_close(&rows, &expected, "image features");

    let texts = str_list(&reference["texts"]);
    let mut args = vec!["embed", "--model", model, "--text"];
    args.extend(texts.iter().map(String::as_str));
    args.push("--json");
    let output = clip(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    let rows = matrix(&serde_json::from_str(&stdout(&output)).unwrap());
    assert_close(&rows, &matrix(&reference["text_features"]), "text features");

    args.push("--normalize");
    let normalized = matrix(&serde_json::from_str(&stdout(&clip(&args))).unwrap());
    for (row, raw) in normalized.iter().zip(&rows) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
        let raw_norm = raw.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((row[0] - raw[0] / raw_norm).abs() < 1e-6);
    }
}

#[test]
fn tokenize_matches_clip_tokenize() {
    let reference = reference();
    let texts = str_list(&reference["texts"]);
    let mut args = vec!["tokenize"];
    args.extend(texts.iter().map(String::as_str));
    args.push("--json");
    let output = clip(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    let ids: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(ids, reference["text_tokens"]);

    let long = "word ".repeat(100);
    let too_long = clip(&["tokenize", &long, "--json"]);
    assert_clean_error(&too_long, 1, "77");
    let cut = clip(&[
        "tokenize",
        &long,
        "--truncate",
        "--context-length",
        "10",
        "--json",
    ]);
    let rows: Vec<Vec<u32>> = serde_json::from_str(&stdout(&cut)).unwrap();
    assert_eq!(rows[0].len(), 10);
    assert_eq!(rows[0][0], 49406);
    assert_eq!(rows[0][9], 49407);
}

#[test]
fn preprocess_writes_the_reference_tensor() {
    let reference = reference();
    let size = reference["preprocess_size"].as_u64().unwrap().to_string();
    let images = str_list(&reference["images"]);
    let dir = tempdir("pre");
    let out = dir.join("pixels.npy");
    let mut args = vec!["preprocess", "--size", &size];
    args.extend(images.iter().map(String::as_str));
    args.extend(["--output", out.to_str().unwrap()]);
    let output = clip(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    let (shape, values) = clip::npy::read_f32(&out).unwrap();
    let n: usize = size.parse().unwrap();
    assert_eq!(shape, vec![images.len(), 3, n, n]);
    let expected = floats(&reference["pixels"]);
    let worst = values
        .iter()
        .zip(&expected)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(worst <= 1e-6, "max |diff| {worst}");

    // --model reads size, mean and std from the model's preprocessor_config.json.
    let model = reference["model"].as_str().unwrap();
    let output = clip(&[
        "preprocess",
        "--model",
        model,
        &images[0],
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn bad_models_and_checkpoints_are_one_line_errors() {
    let output = clip(&[
        "classify",
        "--model",
        "no-such-model",
        "examples/cat.jpg",
        "--labels",
        "a",
    ]);
    assert_clean_error(&output, 1, "no-such-model");
    // A Hub id that is not cached, offline.
    let output = clip(&[
        "classify",
        "--model",
        "someone/missing-model",
        "examples/cat.jpg",
        "--labels",
        "a",
    ]);
    assert_clean_error(&output, 1, "someone/missing-model");

    let reference = reference();
    let model = root().join(reference["model"].as_str().unwrap());
    let dir = tempdir("ckpt");
    for entry in std::fs::read_dir(&model).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    let weights = ["model.safetensors", "pytorch_model.bin"]
        .iter()
        .map(|w| dir.join(w))
        .find(|p| p.exists())
        .unwrap();
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let output = clip(&[
        "classify",
        "--model",
        dir.to_str().unwrap(),
        "examples/cat.jpg",
        "--labels",
        "a",
    ]);
    assert_clean_error(&output, 1, weights.file_name().unwrap().to_str().unwrap());
    std::fs::remove_file(&weights).unwrap();
    let output = clip(&[
        "classify",
        "--model",
        dir.to_str().unwrap(),
        "examples/cat.jpg",
        "--labels",
        "a",
    ]);
    assert_clean_error(&output, 1, "cannot load model");
}

#[test]
fn usage_errors_exit_with_two() {
    let output = clip(&["embed", "--text", "a"]);
    assert_eq!(output.status.code(), Some(2), "needs --json or --output");
    let output = clip(&["frobnicate"]);
    assert_eq!(output.status.code(), Some(2));
    let help = clip(&["classify", "--help"]);
    assert!(help.status.success());
    assert!(stdout(&help).contains("--labels"));
}

#[test]
fn openai_pt_files_and_open_clip_dirs_match_their_reference_loaders() {
    let reference = reference();
    let images = str_list(&reference["images"]);
    let dir = tempdir("formats");
    for (i, entry) in reference["other_formats"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let model = entry["model"].as_str().unwrap();
        let out = dir.join(format!("features{i}.npy"));
        let mut args = vec!["embed", "--model", model, "--image"];
        args.extend(images.iter().map(String::as_str));
        args.extend(["--output", out.to_str().unwrap()]);
        let output = clip(&args);
        assert!(output.status.success(), "{model}: {}", stderr(&output));
        let (shape, values) = clip::npy::read_f32(&out).unwrap();
        let rows: Vec<Vec<f32>> = values.chunks(shape[1]).map(<[f32]>::to_vec).collect();
        assert_close(&rows, &matrix(&entry["image_features"]), model);
    }
}

#[test]
fn models_lists_the_nine_openai_models() {
    let output = clip(&["models", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let rows: Vec<Value> = stdout(&output)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    // clip.available_models() of clip-anytorch 2.6.0.
    assert_eq!(
        names,
        [
            "RN50",
            "RN101",
            "RN50x4",
            "RN50x16",
            "RN50x64",
            "ViT-B/32",
            "ViT-B/16",
            "ViT-L/14",
            "ViT-L/14@336px"
        ]
    );
    let resolution: Vec<u64> = rows
        .iter()
        .map(|r| r["image_size"].as_u64().unwrap())
        .collect();
    assert_eq!(resolution, [224, 224, 288, 384, 448, 224, 224, 224, 336]);
    assert!(
        rows.iter().all(|r| r["cached"] == Value::Bool(false)),
        "the test cache is empty"
    );
    // Offline and not cached: a clear error, nothing downloaded.
    let output = clip(&[
        "classify",
        "--model",
        "ViT-B/32",
        "examples/cat.jpg",
        "--labels",
        "a",
    ]);
    assert_clean_error(&output, 1, "not cached");
}

/// `clip embed --dtype D` over the reference images: every embedding within cosine `bar` of the reference.
fn check_dtype_embeddings(dtype: &str, bar: f32) {
    let reference = reference();
    let model = reference["model"].as_str().unwrap();
    let images = str_list(&reference["images"]);
    let mut args = vec![
        "embed", "--model", model, "--dtype", dtype, "--json", "--image",
    ];
    args.extend(images.iter().map(String::as_str));
    let output = clip(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    let rows = matrix(&serde_json::from_str(&stdout(&output)).unwrap());
    assert_eq!(rows.len(), images.len());
    for (got, want) in rows.iter().zip(matrix(&reference["image_features"])) {
        let dot: f32 = got.iter().zip(&want).map(|(a, b)| a * b).sum();
        let norms = got.iter().map(|v| v * v).sum::<f32>().sqrt()
            * want.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!(dot / norms >= bar, "{dtype}: cosine {}", dot / norms);
    }
}

#[test]
fn reduced_precision_dtypes_keep_embeddings_within_their_cosine_bars() {
    check_dtype_embeddings("bf16", 0.9995);
    check_dtype_embeddings("int8", 0.995);
    // auto resolves to one of the three, so the loosest bar holds whichever this CPU gets.
    check_dtype_embeddings("auto", 0.995);
    let model = reference()["model"].as_str().unwrap().to_string();
    let bad = clip(&[
        "embed", "--model", &model, "--dtype", "int4", "--text", "a", "--json",
    ]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
}

/// `clip bench` reports what it measured on: the CPU, its extensions and the kernel each precision ran on.
#[test]
fn bench_reports_the_machine_and_kernel() {
    let model = "fixtures/models/hf_tiny_quickgelu";
    let kernels = [
        "avx512f",
        "avx512_bf16",
        "avx512_vnni",
        "avx2_fma",
        "avx2",
        "portable",
    ];
    for dtype in ["f32", "int8", "auto"] {
        let out = clip(&[
            "bench", "-m", model, "--dtype", dtype, "--batch", "2", "--iters", "1", "--json",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let report: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
        assert!(!report["machine"]["cpu"].as_str().unwrap().is_empty());
        assert!(kernels.contains(&report["machine"]["kernel"].as_str().unwrap()));
        assert!(report["rows"].as_array().unwrap().len() == 2, "{report}");
        // The report names the precision that ran, auto resolved.
        let ran = report["dtype"].as_str().unwrap();
        assert!(["f32", "bf16", "int8"].contains(&ran), "{report}");
        if dtype != "auto" {
            assert_eq!(ran, dtype);
        }
    }
    let out = clip(&[
        "bench", "--train", "-m", model, "--batch", "4", "--iters", "1", "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert!(kernels.contains(&report["machine"]["kernel"].as_str().unwrap()));
    let losses = report["losses"].as_array().unwrap();
    assert_eq!(losses.len(), 2, "one warm-up and one timed step: {report}");
    assert!(losses.iter().all(|l| l.as_f64().unwrap().is_finite()));
}
