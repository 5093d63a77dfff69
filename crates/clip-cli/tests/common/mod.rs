//! Running the `clip` binary in the CLI tests: from the repository root, offline, with empty caches so that
//! nothing outside the repository is used.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

pub fn clip(args: &[&str]) -> Output {
    let cache = std::env::temp_dir().join(format!("clip-cli-test-cache-{}", std::process::id()));
    Command::new(env!("CARGO_BIN_EXE_clip"))
        .args(args)
        .current_dir(root())
        .env("HF_HUB_CACHE", &cache)
        .env("CLIP_CACHE_DIR", &cache)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}
