//! The hostile-input campaign's reproducers (issue 17), each run as the campaign ran it: the release-style
//! binary under a 4 GiB address-space cap and a time limit (tests/common). Before the fixes these clobbered
//! device files, aborted, exhausted memory, hung or misaligned outputs; now each is refused with one line on
//! stderr (or handled), and no output file is replaced by anything but a complete file.

mod common;
use common::{clip, clip_with_stdin, clip_within, root, stderr, stdout, tempdir};

use std::path::Path;
use std::process::Output;
use std::time::Duration;

const MODEL: &str = "fixtures/models/hf_tiny_quickgelu";
const IMAGE: &str = "examples/cat.jpg";

/// Exit code `code`, a one-line `error:` naming `mentions`, no panic or backtrace.
fn assert_refused(output: &Output, code: i32, mentions: &str) {
    let err = stderr(output);
    assert_eq!(output.status.code(), Some(code), "stderr: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    assert!(err.contains(mentions), "expected {mentions:?} in: {err}");
    assert!(
        err.lines().all(|l| l.starts_with("error:")
            || l.starts_with("warning:")
            || l.is_empty()
            || l.starts_with("Usage:")
            || l.starts_with("For more")),
        "{err}"
    );
}

#[cfg(unix)]
fn file_type(path: &Path) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = std::fs::symlink_metadata(path).unwrap().file_type();
    if t.is_symlink() {
        "symlink"
    } else if t.is_char_device() {
        "char device"
    } else if t.is_fifo() {
        "fifo"
    } else if t.is_file() {
        "file"
    } else {
        "other"
    }
}

#[cfg(unix)]
fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo only creates a file.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

// ---- 1. --output never replaces what it points at

#[cfg(unix)]
#[test]
fn output_to_a_device_is_written_in_place() {
    let out = clip(&[
        "preprocess",
        "--size",
        "224",
        IMAGE,
        "--output",
        "/dev/null",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(file_type(Path::new("/dev/null")), "char device");

    if Path::new("/dev/full").exists() {
        let out = clip(&[
            "embed",
            "-m",
            MODEL,
            "--text",
            "hi",
            "--output",
            "/dev/full",
        ]);
        assert_refused(&out, 1, "cannot write /dev/full: No space left on device");
        assert_eq!(file_type(Path::new("/dev/full")), "char device");
    }
}

#[cfg(unix)]
#[test]
fn output_to_a_fifo_is_written_in_place() {
    let dir = tempdir("fifo-out");
    let fifo = dir.join("pipe.npy");
    mkfifo(&fifo);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    let out = clip(&[
        "preprocess",
        "--size",
        "32",
        IMAGE,
        "--output",
        fifo.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let bytes = reader.join().unwrap();
    assert!(bytes.starts_with(b"\x93NUMPY"));
    assert_eq!(bytes.len(), 128 + 3 * 32 * 32 * 4);
    assert_eq!(file_type(&fifo), "fifo");
}

#[cfg(unix)]
#[test]
fn output_through_a_symlink_writes_its_target() {
    let dir = tempdir("symlink");
    let link = dir.join("link.npy");
    std::os::unix::fs::symlink("real.npy", &link).unwrap();
    for _ in 0..2 {
        let out = clip(&[
            "preprocess",
            "--size",
            "32",
            IMAGE,
            "--output",
            link.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(file_type(&link), "symlink");
        let (shape, _) = clip::npy::read_f32(&dir.join("real.npy")).unwrap();
        assert_eq!(shape, vec![1, 3, 32, 32]);
    }
}

#[test]
fn write_errors_say_write() {
    let out = clip(&[
        "embed",
        "-m",
        MODEL,
        "--text",
        "hi",
        "--output",
        "/no/such/dir/x.npy",
    ]);
    assert_refused(
        &out,
        1,
        "cannot write /no/such/dir/x.npy: No such file or directory",
    );
    assert!(!stderr(&out).contains("cannot read"), "{}", stderr(&out));
}

// ---- 2. sizes from flags and configs are checked before allocating

#[test]
fn oversized_flags_are_refused_before_allocating() {
    for size in ["65536", "100000", "20000"] {
        let out = clip(&["preprocess", "--size", size, IMAGE, "--output", "/dev/null"]);
        assert_refused(&out, 2, &format!("image size {size} is out of range"));
    }
    for n in ["1000000000", "18446744073709551615"] {
        let out = clip(&["tokenize", "--context-length", n, "hi"]);
        assert_refused(&out, 1, &format!("context length {n} is out of range"));
    }
    let out = clip(&["bench", "-m", MODEL, "--batch", "100000"]);
    assert_refused(
        &out,
        2,
        "batch size 100000 is larger than the limit of 1024",
    );
    let out = clip(&[
        "condition",
        "--preset",
        "sd1",
        "-m",
        MODEL,
        "--prompt",
        "x",
        "--n-images",
        "100000000",
        "--output",
        "/dev/null",
    ]);
    assert_refused(&out, 2, "--n-images must be between 1 and 256");
    let out = clip(&["bench", "-m", MODEL, "--iters", "0"]);
    assert_refused(&out, 2, "--iters");
}

/// A copy of the fixture model with one of its JSON files edited.
fn edited_model(
    name: &str,
    file: &str,
    edit: impl FnOnce(&mut serde_json::Value),
) -> common::TempDir {
    let dir = tempdir(name);
    for entry in std::fs::read_dir(root().join(MODEL)).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    }
    let path = dir.join(file);
    let mut value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut value);
    std::fs::write(&path, value.to_string()).unwrap();
    dir
}

#[test]
fn hostile_model_configs_are_refused_naming_the_field() {
    let cases: [(&str, &str, serde_json::Value, &str); 5] = [
        (
            "crop",
            "preprocessor_config.json",
            serde_json::json!({"crop_size": {"height": 1000000, "width": 1000000}}),
            "crop_size 1000000 is larger than the limit of 4096 pixels",
        ),
        (
            "std",
            "preprocessor_config.json",
            serde_json::json!({"image_std": [1e-45, 1e-45, 1e-45]}),
            "normalised pixels overflow float32",
        ),
        (
            "resample",
            "preprocessor_config.json",
            serde_json::json!({"resample": 99}),
            "preprocessor_config.resample is 99",
        ),
        (
            "act",
            "config.json",
            serde_json::json!({"text_config": {"hidden_act": null}}),
            "text_config.hidden_act is null",
        ),
        (
            "positions",
            "config.json",
            serde_json::json!({"text_config": {"max_position_embeddings": 1000000000}}),
            "max_position_embeddings 1000000000 is larger than the limit",
        ),
    ];
    for (name, file, patch, message) in cases {
        let dir = edited_model(name, file, |value| {
            for (section, fields) in patch.as_object().unwrap() {
                match fields {
                    serde_json::Value::Object(inner)
                        if value.get(section).is_some_and(|v| v.is_object()) =>
                    {
                        for (k, v) in inner {
                            value[section][k] = v.clone();
                        }
                    }
                    other => value[section] = other.clone(),
                }
            }
        });
        let out = clip(&[
            "embed",
            "-m",
            dir.to_str().unwrap(),
            "--image",
            IMAGE,
            "--json",
        ]);
        assert_refused(&out, 1, message);
        assert!(stdout(&out).is_empty(), "{name}: {}", stdout(&out));
    }
}

// ---- 3. tokenizing is near-linear and --truncate bounds the work

#[test]
fn a_megabyte_word_tokenizes_within_the_time_limit() {
    let dir = tempdir("long-word");
    let mut state = 12345u64;
    let word: String = (0..1_000_000)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (b'a' + ((state >> 33) % 26) as u8) as char
        })
        .collect();
    let file = dir.join("word.txt");
    std::fs::write(&file, &word).unwrap();
    let out = clip_within(
        &[
            "tokenize",
            "--truncate",
            "--text-file",
            file.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = stdout(&out);
    let ids: Vec<&str> = printed.split_whitespace().collect();
    assert_eq!(ids.len(), 77);
    assert_eq!((ids[0], ids[76]), ("49406", "49407"));
    let out = clip_within(
        &[
            "embed",
            "-m",
            MODEL,
            "--truncate",
            "--text-file",
            file.to_str().unwrap(),
            "--json",
        ],
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

// ---- 4, 5. endless inputs and FIFOs are refused at once

#[cfg(unix)]
#[test]
fn devices_and_fifos_are_refused_as_inputs_without_blocking() {
    for device in ["/dev/zero", "/dev/urandom"] {
        let out = clip_within(
            &["preprocess", device, "--output", "/dev/null"],
            Duration::from_secs(30),
        );
        assert_refused(&out, 1, "it is a character device, not a regular file");
    }
    let out = clip_within(
        &["tokenize", "--text-file", "/dev/zero"],
        Duration::from_secs(30),
    );
    assert_refused(
        &out,
        1,
        "cannot read text file /dev/zero: it is a character device",
    );

    let dir = tempdir("fifo-in");
    let fifo = dir.join("image.jpg");
    mkfifo(&fifo);
    let f = fifo.to_str().unwrap();
    let runs: [&[&str]; 3] = [
        &["preprocess", f, "--output", "/dev/null"],
        &["embed", "-m", MODEL, "--image", f, "--json"],
        &["classify", "-m", MODEL, f, "--labels", "a", "b"],
    ];
    for args in runs {
        let out = clip_within(args, Duration::from_secs(60));
        assert_refused(&out, 1, "it is a FIFO (named pipe), not a regular file");
    }
}

#[test]
fn text_files_over_the_limit_are_refused_and_stdin_is_read_when_asked() {
    let dir = tempdir("text-limit");
    let file = dir.join("captions.txt");
    std::fs::write(&file, "a dog\na cat\n").unwrap();
    let out = clip(&[
        "--max-text-bytes",
        "8",
        "tokenize",
        "--text-file",
        file.to_str().unwrap(),
    ]);
    assert_refused(&out, 1, "larger than the limit of 8 bytes");
    let out = clip_with_stdin(
        &["tokenize", "--text-file", "-", "--json"],
        b"a dog\na cat\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Vec<Vec<u32>> = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(rows.len(), 2);
}

// ---- 7. a failed input keeps its place

#[test]
fn failed_images_keep_their_rows() {
    let dir = tempdir("aligned");
    let missing = dir.join("missing.jpg");
    let missing = missing.to_str().unwrap();
    let out = clip(&[
        "embed", "-m", MODEL, "--image", IMAGE, missing, IMAGE, "--json",
    ]);
    assert_refused(&out, 1, "1 of 3 inputs failed");
    let rows: Vec<Option<Vec<f32>>> = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(rows.len(), 3);
    assert!(rows[0].is_some() && rows[1].is_none() && rows[2].is_some());
    assert_eq!(rows[0], rows[2]);

    let npy = dir.join("pixels.npy");
    let out = clip(&[
        "preprocess",
        "--size",
        "32",
        missing,
        IMAGE,
        "--output",
        npy.to_str().unwrap(),
    ]);
    assert_refused(&out, 1, "1 of 2 inputs failed");
    let (shape, values) = clip::npy::read_f32(&npy).unwrap();
    assert_eq!(shape, vec![2, 3, 32, 32]);
    let per = 3 * 32 * 32;
    assert!(values[..per].iter().all(|v| v.is_nan()));
    assert!(values[per..].iter().all(|v| v.is_finite()));

    let npy = dir.join("features.npy");
    let out = clip(&[
        "embed",
        "-m",
        MODEL,
        "--image",
        missing,
        IMAGE,
        "--output",
        npy.to_str().unwrap(),
    ]);
    assert_refused(&out, 1, "1 of 2 inputs failed");
    let (shape, values) = clip::npy::read_f32(&npy).unwrap();
    assert_eq!(shape[0], 2);
    assert!(values[..shape[1]].iter().all(|v| v.is_nan()));

    // Nothing succeeded: an existing output is left as it was.
    let before = std::fs::read(&npy).unwrap();
    let out = clip(&[
        "embed",
        "-m",
        MODEL,
        "--image",
        missing,
        "--output",
        npy.to_str().unwrap(),
    ]);
    assert_refused(&out, 1, "1 of 1 inputs failed");
    assert_eq!(std::fs::read(&npy).unwrap(), before);
}
