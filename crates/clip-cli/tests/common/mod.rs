//! Running the `clip` binary in the CLI tests: from the repository root, offline, with empty caches so that
//! nothing outside the repository is used, under a 4 GiB address-space cap and a time limit (a hostile input
//! that allocates without bound or hangs fails its test instead of taking the machine).
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The address-space cap of every `clip` run in the tests.
pub const MEMORY_CAP: u64 = 4 << 30;
/// Wall-clock limit of one run; the process is killed after it (a hang is then a failed exit status).
pub const TIME_LIMIT: Duration = Duration::from_secs(300);

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

pub fn clip(args: &[&str]) -> Output {
    run(args, None, TIME_LIMIT)
}

/// `clip` with `input` on its standard input.
pub fn clip_with_stdin(args: &[&str], input: &[u8]) -> Output {
    run(args, Some(input), TIME_LIMIT)
}

/// `clip` killed after `limit` (for inputs that once hung).
pub fn clip_within(args: &[&str], limit: Duration) -> Output {
    run(args, None, limit)
}

fn run(args: &[&str], input: Option<&[u8]>, limit: Duration) -> Output {
    let cache = std::env::temp_dir().join(format!("clip-cli-test-cache-{}", std::process::id()));
    // CLIP_TEST_BINARY runs the tests against another build (e.g. an older commit, to see a regression test fail).
    let binary = std::env::var_os("CLIP_TEST_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_clip")));
    let mut command = Command::new(binary);
    command
        .args(args)
        .current_dir(root())
        .env("HF_HUB_CACHE", &cache)
        .env("CLIP_CACHE_DIR", &cache)
        .env("HF_HUB_OFFLINE", "1")
        .env_remove("RUST_BACKTRACE")
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cap_memory(&mut command);
    let mut child = command.spawn().unwrap();
    if let Some(bytes) = input {
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(bytes).unwrap();
    }
    let done = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let done = Arc::clone(&done);
        let pid = child.id();
        std::thread::spawn(move || {
            let start = Instant::now();
            while !done.load(Ordering::Relaxed) {
                if start.elapsed() > limit {
                    kill(pid);
                    return true;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            false
        })
    };
    let output = child.wait_with_output().unwrap();
    done.store(true, Ordering::Relaxed);
    let killed = watchdog.join().unwrap();
    assert!(
        !killed,
        "clip {args:?} ran longer than {limit:?} and was killed"
    );
    output
}

#[cfg(unix)]
fn cap_memory(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec only setrlimit runs, which is async-signal-safe and touches no memory of
    // the parent.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: MEMORY_CAP,
                rlim_max: MEMORY_CAP,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(not(unix))]
fn cap_memory(_: &mut Command) {}

#[cfg(unix)]
fn kill(pid: u32) {
    // SAFETY: sends a signal to the child we spawned.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL);
    }
}

#[cfg(not(unix))]
fn kill(_: u32) {}

/// The project's bar for features and logits: max |diff| <= 1e-4 x max |reference|.
pub fn assert_close_flat(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: size");
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    let worst = got
        .iter()
        .zip(want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        worst <= 1e-4 * scale,
        "{what}: max |diff| {worst} > 1e-4 x {scale}"
    );
}

/// [`assert_close_flat`] over rows of equal width.
pub fn assert_close(actual: &[Vec<f32>], expected: &[Vec<f32>], what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: row count");
    for (a, e) in actual.iter().zip(expected) {
        assert_eq!(a.len(), e.len(), "{what}: row width");
    }
    let flat = |rows: &[Vec<f32>]| rows.concat();
    assert_close_flat(&flat(actual), &flat(expected), what);
}

/// A temporary directory unique to the process and `tag` (created if missing, never wiped: tests running in
/// parallel may share a tag).
/// A test's scratch directory, removed when dropped (a failed test's too: its paths are in the message).
pub struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = PathBuf;

    fn deref(&self) -> &PathBuf {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A scratch file (or directory) path, removed when dropped; unique per call, so parallel tests never share one.
pub struct TempFile(PathBuf);

impl std::ops::Deref for TempFile {
    type Target = PathBuf;

    fn deref(&self) -> &PathBuf {
        &self.0
    }
}

impl AsRef<Path> for TempFile {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        // A test may have made a directory of it.
        if std::fs::remove_file(&self.0).is_err() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub fn tempfile(tag: &str, name: &str) -> TempFile {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    TempFile(std::env::temp_dir().join(format!(
        "clip-cli-test-{tag}-{}-{n}-{name}",
        std::process::id()
    )))
}

pub fn tempdir(tag: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!("clip-cli-test-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

/// A 24-bit BMP of `size x size` pixels whose content depends on `seed` (distinct files, no codec needed).
pub fn bmp(seed: u32, size: u32) -> Vec<u8> {
    let row = (size * 3).div_ceil(4) * 4;
    let data = row * size;
    let mut out = Vec::with_capacity(54 + data as usize);
    out.extend_from_slice(b"BM");
    out.extend_from_slice(&(54 + data).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&54u32.to_le_bytes());
    out.extend_from_slice(&40u32.to_le_bytes());
    out.extend_from_slice(&(size as i32).to_le_bytes());
    out.extend_from_slice(&(size as i32).to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&24u16.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&data.to_le_bytes());
    out.extend_from_slice(&[0; 16]);
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    for _ in 0..size {
        for x in 0..row {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            out.push(if x < size * 3 { (state >> 24) as u8 } else { 0 });
        }
    }
    out
}

/// A scratch folder `clip-cli-{name}-{pid}` under the temporary directory, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("clip-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir.canonicalize().unwrap())
    }

    pub fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
