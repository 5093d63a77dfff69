//! `clip inference` as a user runs it on WebDataset shards: rows equal the Python reference and the library,
//! metadata aligned with the arrays, brace ranges, damaged members and shards, sharded runs whose union is the
//! unsharded run, a run killed with SIGKILL and resumed, folder and CSV inputs, and misuse.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{bmp, clip, root, Scratch};
use serde_json::Value;

const MODEL: &str = "fixtures/models/hf_tiny_quickgelu";

/// Writes a tar shard of `(member name, bytes)` in order.
fn shard(path: &Path, members: &[(String, Vec<u8>)]) {
    let mut builder = tar::Builder::new(std::fs::File::create(path).unwrap());
    for (name, data) in members {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, name, data.as_slice())
            .unwrap();
    }
    builder.finish().unwrap();
}

/// An img2dataset-style sample: image, caption and metadata members.
fn sample(key: &str, image: Vec<u8>, ext: &str, caption: &str) -> Vec<(String, Vec<u8>)> {
    let meta = serde_json::json!({"key": key, "url": format!("https://example.com/{key}.{ext}"), "width": 32,
                                  "status": "success"});
    vec![
        (format!("{key}.{ext}"), image),
        (format!("{key}.txt"), caption.as_bytes().to_vec()),
        (format!("{key}.json"), meta.to_string().into_bytes()),
    ]
}

/// `count` shards of `per_shard` distinct BMP samples each, named `{dir}/{i:03}.tar`.
fn bmp_shards(dir: &Path, count: u32, per_shard: u32) {
    for s in 0..count {
        let members: Vec<_> = (0..per_shard)
            .flat_map(|i| {
                let key = format!("{s:03}{i:06}");
                sample(
                    &key,
                    bmp(s * 1000 + i, 24),
                    "bmp",
                    &format!("picture {s} {i}"),
                )
            })
            .collect();
        shard(&dir.join(format!("{s:03}.tar")), &members);
    }
}

fn json(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "clip failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn inference(input: &str, out: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "inference",
        "--input",
        input,
        "--output-dir",
        out,
        "-m",
        MODEL,
        "--json",
    ];
    args.extend_from_slice(extra);
    clip(&args)
}

/// Rows of an `.npy` file.
fn rows(path: &Path) -> Vec<Vec<f32>> {
    let (shape, values) = clip::npy::read_f32(path).unwrap();
    assert_eq!(shape.len(), 2, "{}", path.display());
    values.chunks(shape[1]).map(<[f32]>::to_vec).collect()
}

/// Columns of a parquet file, each value as its display string (`null` for nulls).
fn parquet_rows(path: &Path) -> Vec<BTreeMap<String, String>> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    reader
        .get_row_iter(None)
        .unwrap()
        .map(|row| {
            row.unwrap()
                .get_column_iter()
                .map(|(name, field)| {
                    (
                        name.clone(),
                        field.to_string().trim_matches('"').to_string(),
                    )
                })
                .collect()
        })
        .collect()
}

/// Column names of a parquet file, in order.
fn parquet_columns(path: &Path) -> Vec<String> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let schema = reader.metadata().file_metadata().schema_descr();
    schema
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect()
}

/// The largest |a - b| over `want`'s largest |value|.
fn relative_difference(got: &[Vec<f32>], want: &[Vec<f32>]) -> f32 {
    assert_eq!(got.len(), want.len(), "row count");
    let scale = want.iter().flatten().fold(0f32, |m, v| m.max(v.abs()));
    let worst = got
        .iter()
        .flatten()
        .zip(want.iter().flatten())
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    worst / scale
}

fn normalized(mut rows: Vec<Vec<f32>>) -> Vec<Vec<f32>> {
    clip::normalize_rows(&mut rows);
    rows
}

fn library() -> clip::Clip {
    clip::Clip::load(
        &root().join(MODEL).display().to_string(),
        &clip::LoadOptions::default(),
    )
    .unwrap()
}

/// Every file under `dir` (hidden ones too) with its bytes, by relative path.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let name = path.strip_prefix(dir).unwrap().display().to_string();
                files.insert(name, std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

#[test]
fn shards_match_the_python_reference_and_the_library_with_aligned_metadata() {
    let scratch = Scratch::new("inference-match");
    let reference: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("fixtures/cli/reference.json")).unwrap(),
    )
    .unwrap();
    let images: Vec<String> = reference["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().into())
        .collect();
    let texts: Vec<String> = reference["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().into())
        .collect();
    let matrix = |v: &Value| -> Vec<Vec<f32>> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap() as f32)
                    .collect()
            })
            .collect()
    };
    // Shard 0: the reference images with the reference texts as captions; shard 1: fixture photos.
    let members: Vec<_> = images
        .iter()
        .zip(&texts)
        .enumerate()
        .flat_map(|(i, (image, text))| {
            sample(
                &format!("{i:09}"),
                std::fs::read(root().join(image)).unwrap(),
                "jpg",
                text,
            )
        })
        .collect();
    shard(&scratch.0.join("00.tar"), &members);
    let photos = [
        "jpeg_q95_444.jpg",
        "noise_rgba.png",
        "jpeg_progressive.jpg",
        "gif_p.gif",
    ];
    let photo_paths: Vec<PathBuf> = photos
        .iter()
        .map(|p| root().join("fixtures/images/inputs").join(p))
        .collect();
    let members: Vec<_> = photo_paths
        .iter()
        .enumerate()
        .flat_map(|(i, path)| {
            let ext = path.extension().unwrap().to_str().unwrap();
            sample(
                &format!("1{i:08}"),
                std::fs::read(path).unwrap(),
                ext,
                &format!("photo number {i}"),
            )
        })
        .collect();
    shard(&scratch.0.join("01.tar"), &members);

    let out = scratch.path("out");
    let summary = json(&inference(
        &scratch.path("{00..01}.tar"),
        &out,
        &["--text", "--batch-size", "3"],
    ));
    assert_eq!(summary["samples"], 7);
    assert_eq!(summary["failed"], 0);
    assert_eq!(summary["written"], 2);
    let out = Path::new(&out);

    // Against the Python reference (transformers' CLIPModel on the same files): the project's 1e-4 bar.
    let image_rows = rows(&out.join("img_emb/img_emb_0.npy"));
    let want = normalized(matrix(&reference["image_features"]));
    assert!(
        relative_difference(&image_rows, &want) <= 1e-4,
        "image rows vs reference"
    );
    let text_rows = rows(&out.join("text_emb/text_emb_0.npy"));
    let want = normalized(matrix(&reference["text_features"]));
    assert!(
        relative_difference(&text_rows, &want) <= 1e-4,
        "text rows vs reference"
    );
    for row in image_rows.iter().chain(&text_rows) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    }

    // Against the library on the same files: 1e-6.
    let clip = library();
    let reference_paths: Vec<PathBuf> = images.iter().map(|i| root().join(i)).collect();
    for (shard_rows, paths, captions) in [
        (image_rows, reference_paths, texts.clone()),
        (
            rows(&out.join("img_emb/img_emb_1.npy")),
            photo_paths,
            (0..photos.len())
                .map(|i| format!("photo number {i}"))
                .collect(),
        ),
    ] {
        let library_rows: Vec<Vec<f32>> = normalized(
            clip.encode_image_files(&paths, |_| {})
                .into_iter()
                .map(Result::unwrap)
                .collect(),
        );
        let difference = relative_difference(&shard_rows, &library_rows);
        assert!(difference <= 1e-6, "image rows vs library: {difference}");
        let library_text = normalized(clip.encode_texts(&captions, true).unwrap());
        let index = if captions == texts { 0 } else { 1 };
        let text_rows = rows(&out.join(format!("text_emb/text_emb_{index}.npy")));
        assert!(
            relative_difference(&text_rows, &library_text) <= 1e-6,
            "text rows vs library"
        );
    }

    // Metadata rows follow the array rows: key, caption and the .json fields of each sample.
    let meta = parquet_rows(&out.join("metadata/metadata_0.parquet"));
    assert_eq!(meta.len(), 3);
    // clip-retrieval's columns: image_path, caption, then the .json's fields in the file's order.
    let json_order: Vec<String> = serde_json::from_slice::<clip_bulk::Fields>(&members[2].1)
        .unwrap()
        .0
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    let mut columns = vec!["image_path".to_string(), "caption".to_string()];
    columns.extend(json_order);
    assert_eq!(
        parquet_columns(&out.join("metadata/metadata_0.parquet")),
        columns
    );
    for (i, row) in meta.iter().enumerate() {
        let key = format!("{i:09}");
        assert_eq!(row["key"], key);
        assert_eq!(row["image_path"], key);
        assert_eq!(row["caption"], texts[i]);
        assert_eq!(row["url"], format!("https://example.com/{key}.jpg"));
        assert_eq!(row["width"], "32");
        assert_eq!(row["status"], "success");
    }
    assert_eq!(
        parquet_rows(&out.join("metadata/metadata_1.parquet")).len(),
        photos.len()
    );
    let marker: Value =
        serde_json::from_slice(&std::fs::read(out.join("done/1.json")).unwrap()).unwrap();
    assert_eq!(marker["samples"], photos.len());

    // float16 as clip-retrieval stores it: the float32 rows rounded.
    let out16 = scratch.path("out16");
    json(&inference(&scratch.path("00.tar"), &out16, &["--float16"]));
    let bytes = std::fs::read(Path::new(&out16).join("img_emb/img_emb_0.npy")).unwrap();
    assert!(String::from_utf8_lossy(&bytes[..64]).contains("'<f2'"));
    let half = rows(&Path::new(&out16).join("img_emb/img_emb_0.npy"));
    let full = rows(&out.join("img_emb/img_emb_0.npy"));
    for (h, f) in half.iter().flatten().zip(full.iter().flatten()) {
        assert!((h - f).abs() <= f.abs() * 1e-3 + 1e-7, "{h} vs {f}");
    }
}

#[test]
fn damaged_members_and_shards_are_skipped_counted_and_reported() {
    let scratch = Scratch::new("inference-damaged");
    let good = |key: &str, seed: u32| sample(key, bmp(seed, 24), "bmp", key);
    let mut members = good("000", 1);
    // An image member that does not decode.
    members.extend(sample(
        "001",
        b"\xff\xd8\xff\xe0 not really a jpeg".to_vec(),
        "jpg",
        "broken",
    ));
    members.extend(good("002", 2));
    // A .json member that is not JSON: the sample stays, without metadata.
    members.push(("003.bmp".into(), bmp(3, 24)));
    members.push(("003.txt".into(), b"three".to_vec()));
    members.push(("003.json".into(), b"{not json".to_vec()));
    // A caption without an image.
    members.push(("004.txt".into(), b"orphan".to_vec()));
    members.extend(good("005", 5));
    shard(&scratch.0.join("0.tar"), &members);
    // Shard 1 is cut inside its third image: the two samples before the damage are kept.
    let cut = scratch.0.join("1.tar");
    shard(
        &cut,
        &(10..14)
            .flat_map(|i| good(&format!("{i:03}"), i))
            .collect::<Vec<_>>(),
    );
    let bytes = std::fs::read(&cut).unwrap();
    let third_image = bytes.windows(7).position(|w| w == b"012.bmp").unwrap();
    std::fs::write(&cut, &bytes[..third_image + 512 + 600]).unwrap();
    // Shard 2 is not a tar file at all.
    std::fs::write(
        scratch.0.join("2.tar"),
        b"hello, this is not a tar archive, just text",
    )
    .unwrap();

    let out = scratch.path("out");
    let output = inference(&scratch.path("{0..2}.tar"), &out, &[]);
    let summary = json(&output);
    assert_eq!(summary["samples"], 4 + 2, "{summary}");
    // 001 does not decode, 004 has no image, 012 was cut.
    assert_eq!(summary["failed"], 3, "{summary}");
    assert_eq!(summary["damaged_members"], 1, "{summary}");
    assert_eq!(
        summary["damaged_shards"].as_array().unwrap().len(),
        2,
        "{summary}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("001"), "{stderr}");
    assert!(stderr.contains("damaged shard"), "{stderr}");

    let keys = |i: usize| -> Vec<String> {
        parquet_rows(&Path::new(&out).join(format!("metadata/metadata_{i}.parquet")))
            .into_iter()
            .map(|r| r["key"].clone())
            .collect()
    };
    assert_eq!(keys(0), ["000", "002", "003", "005"]);
    assert_eq!(keys(1), ["010", "011"]);
    assert_eq!(
        rows(&Path::new(&out).join("img_emb/img_emb_0.npy")).len(),
        4
    );
    let meta = parquet_rows(&Path::new(&out).join("metadata/metadata_0.parquet"));
    assert_eq!(
        meta[2]["url"], "null",
        "the damaged .json leaves no metadata"
    );
    assert_eq!(meta[2]["caption"], "three");
    // The rows that were kept are the library's embeddings of those images.
    let clip = library();
    let dir = scratch.0.join("decoded");
    std::fs::create_dir_all(&dir).unwrap();
    let paths: Vec<PathBuf> = [1, 2, 3, 5]
        .iter()
        .map(|seed| {
            let path = dir.join(format!("{seed}.bmp"));
            std::fs::write(&path, bmp(*seed, 24)).unwrap();
            path
        })
        .collect();
    let library_rows = normalized(
        clip.encode_image_files(&paths, |_| {})
            .into_iter()
            .map(Result::unwrap)
            .collect(),
    );
    assert!(
        relative_difference(
            &rows(&Path::new(&out).join("img_emb/img_emb_0.npy")),
            &library_rows
        ) <= 1e-6
    );
}

#[test]
fn sharded_runs_together_equal_one_run_and_reruns_skip_finished_partitions() {
    let scratch = Scratch::new("inference-sharded");
    let shards = scratch.0.join("shards");
    std::fs::create_dir_all(&shards).unwrap();
    bmp_shards(&shards, 5, 6);
    let pattern = format!("{}/{{000..004}}.tar", shards.display());
    let whole = scratch.path("whole");
    let summary = json(&inference(&pattern, &whole, &["--text"]));
    assert_eq!(summary["written"], 5);
    assert_eq!(summary["samples"], 30);
    let split = scratch.path("split");
    for i in 0..3 {
        let slice = format!("{i}/3");
        let summary = json(&inference(&pattern, &split, &["--text", "--shard", &slice]));
        assert_eq!(summary["partitions"], if i < 2 { 2 } else { 1 });
    }
    let (whole_tree, split_tree) = (tree(Path::new(&whole)), tree(Path::new(&split)));
    assert_eq!(whole_tree.len(), 5 * 4, "{:?}", whole_tree.keys());
    assert_eq!(
        whole_tree.keys().collect::<Vec<_>>(),
        split_tree.keys().collect::<Vec<_>>()
    );
    for (name, bytes) in &whole_tree {
        assert!(
            bytes == &split_tree[name],
            "{name} differs between the sharded and the unsharded run"
        );
    }
    // A glob names the same shards; everything is already done, nothing is rewritten.
    let again = json(&inference(
        &format!("{}/*.tar", shards.display()),
        &whole,
        &["--text"],
    ));
    assert_eq!(again["skipped"], 5);
    assert_eq!(again["written"], 0);
    assert!(tree(Path::new(&whole)) == whole_tree);
    // Other settings never mix into a folder.
    let output = inference(&pattern, &whole, &["--text", "--dtype", "int8"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("another --output-dir") && stderr.lines().count() == 1,
        "{stderr}"
    );
}

#[test]
fn a_run_killed_with_sigkill_resumes_to_the_clean_result() {
    let scratch = Scratch::new("inference-kill");
    let shards = scratch.0.join("shards");
    std::fs::create_dir_all(&shards).unwrap();
    const SHARDS: u32 = 60;
    bmp_shards(&shards, SHARDS, 24);
    let pattern = format!("{}/{{000..059}}.tar", shards.display());
    let killed = scratch.0.join("killed");
    let binary = std::env::var_os("CLIP_TEST_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_clip")));
    let mut child = Command::new(&binary)
        .args(["inference", "--input", &pattern, "--output-dir"])
        .arg(&killed)
        .args(["-m", MODEL, "--batch-size", "4", "--quiet"])
        .current_dir(root())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Committed partitions (a marker being written is a hidden temporary file).
    let markers = || {
        std::fs::read_dir(killed.join("done")).map_or(0, |d| {
            d.filter(|e| {
                !e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with('.')
            })
            .count()
        })
    };
    let start = Instant::now();
    while markers() < 3 && start.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(1));
    }
    // SAFETY: signals the child this test spawned.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
    child.wait().unwrap();
    let at_kill = markers();
    assert!(at_kill >= 3, "no partition was committed in time");
    assert!(
        at_kill < SHARDS as usize,
        "the run finished before the kill: the test proves nothing"
    );

    let resumed = json(&inference(&pattern, killed.to_str().unwrap(), &[]));
    assert_eq!(resumed["skipped"].as_u64().unwrap() as usize, at_kill);
    assert_eq!(
        resumed["written"].as_u64().unwrap() as usize,
        SHARDS as usize - at_kill
    );
    let clean = scratch.path("clean");
    json(&inference(&pattern, &clean, &[]));
    let (killed_tree, clean_tree) = (tree(&killed), tree(Path::new(&clean)));
    assert_eq!(killed_tree.len(), SHARDS as usize * 3);
    assert_eq!(
        killed_tree.keys().collect::<Vec<_>>(),
        clean_tree.keys().collect::<Vec<_>>()
    );
    assert!(
        killed_tree == clean_tree,
        "the resumed output differs from a clean run"
    );
}

#[test]
fn folders_and_csv_files_are_inputs_too() {
    let scratch = Scratch::new("inference-files");
    let photos = scratch.0.join("photos");
    std::fs::create_dir_all(photos.join("sub")).unwrap();
    let names = ["a.bmp", "b.bmp", "sub/c.bmp", "sub/d.bmp", "e.bmp"];
    for (i, name) in names.iter().enumerate() {
        std::fs::write(photos.join(name), bmp(i as u32 + 50, 24)).unwrap();
    }
    std::fs::write(photos.join("a.txt"), "the first picture\n").unwrap();
    std::fs::write(photos.join("notes.md"), "not an image").unwrap();
    let out = scratch.path("folder");
    let summary = json(&inference(
        photos.to_str().unwrap(),
        &out,
        &["--samples-per-part", "2"],
    ));
    assert_eq!(summary["samples"], 5);
    assert_eq!(summary["written"], 3);
    // Sorted by path: a, b, e, sub/c, sub/d.
    let sorted: Vec<PathBuf> = ["a.bmp", "b.bmp", "e.bmp", "sub/c.bmp", "sub/d.bmp"]
        .iter()
        .map(|n| photos.join(n))
        .collect();
    let library_rows = normalized(
        library()
            .encode_image_files(&sorted, |_| {})
            .into_iter()
            .map(Result::unwrap)
            .collect(),
    );
    let mut folder_rows = Vec::new();
    let mut keys = Vec::new();
    for i in 0..3 {
        folder_rows.extend(rows(
            &Path::new(&out).join(format!("img_emb/img_emb_{i}.npy")),
        ));
        for row in parquet_rows(&Path::new(&out).join(format!("metadata/metadata_{i}.parquet"))) {
            keys.push((row["key"].clone(), row["caption"].clone()));
        }
    }
    assert!(relative_difference(&folder_rows, &library_rows) <= 1e-6);
    assert_eq!(keys[0], ("a".to_string(), "the first picture".to_string()));
    assert_eq!(keys[3].0, "sub/c");

    let csv = scratch.0.join("list.csv");
    std::fs::write(&csv, "filepath,caption,license\nphotos/e.bmp,\"fifth, with a comma\",cc-by\nphotos/missing.bmp,gone,x\nphotos/a.bmp,first,cc0\n").unwrap();
    let out = scratch.path("csv");
    let summary = json(&inference(csv.to_str().unwrap(), &out, &["--text"]));
    assert_eq!(summary["samples"], 2);
    assert_eq!(summary["failed"], 1);
    let meta = parquet_rows(&Path::new(&out).join("metadata/metadata_0.parquet"));
    assert_eq!(
        meta.iter()
            .map(|r| r["caption"].as_str())
            .collect::<Vec<_>>(),
        ["fifth, with a comma", "first"]
    );
    assert_eq!(meta[1]["license"], "cc0");
    let want = normalized(
        library()
            .encode_image_files(&[photos.join("e.bmp"), photos.join("a.bmp")], |_| {})
            .into_iter()
            .map(Result::unwrap)
            .collect(),
    );
    assert!(
        relative_difference(&rows(&Path::new(&out).join("img_emb/img_emb_0.npy")), &want) <= 1e-6
    );
}

#[test]
fn misuse_is_a_one_line_error() {
    let scratch = Scratch::new("inference-misuse");
    let out = scratch.path("out");
    let cases: [(&[&str], i32, &str); 5] = [
        (
            &[
                "inference",
                "--input",
                "/nonexistent/{0..3}.tar",
                "--output-dir",
                &out,
                "-m",
                MODEL,
            ],
            1,
            "no such file",
        ),
        (
            &[
                "inference",
                "--input",
                "s/{3..1}.tar",
                "--output-dir",
                &out,
                "-m",
                MODEL,
            ],
            1,
            "empty",
        ),
        (
            &[
                "inference",
                "--input",
                "/nonexistent/*.tar",
                "--output-dir",
                &out,
                "-m",
                MODEL,
            ],
            1,
            "no file matches",
        ),
        (
            &[
                "inference",
                "--input",
                "x.tar",
                "--output-dir",
                &out,
                "--shard",
                "2/2",
            ],
            2,
            "I/N",
        ),
        (
            &[
                "inference",
                "--input",
                "x.tar",
                "--output-dir",
                &out,
                "--batch-size",
                "0",
            ],
            2,
            "batch-size",
        ),
    ];
    for (args, code, mentions) in cases {
        let output = clip(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(mentions), "{args:?}: {stderr}");
        if code == 1 {
            assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        }
    }
    assert!(
        !Path::new(&out).exists(),
        "a failed plan must not create the output folder"
    );
}
