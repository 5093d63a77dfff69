//! `clip index`, `clip search` and `clip dups` as a user runs them: output forms, a run killed with SIGKILL
//! and resumed, a second writer, another model, and misuse.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{bmp, clip, root, Scratch};

const MODEL: &str = "fixtures/models/hf_tiny_quickgelu";

/// A scratch folder with an empty `photos/` inside.
fn photo_scratch(name: &str) -> Scratch {
    let scratch = Scratch::new(&format!("search-{name}"));
    std::fs::create_dir_all(scratch.0.join("photos")).unwrap();
    scratch
}

fn copy_fixtures(to: &Path, names: &[&str]) {
    for name in names {
        std::fs::copy(
            root().join("fixtures/images/inputs").join(name),
            to.join(name),
        )
        .unwrap();
    }
}

fn json(output: &std::process::Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "exit {:?}: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Path -> (hash, embedding): what an index holds, independent of row ids.
fn contents(db: &Path) -> BTreeMap<PathBuf, (Vec<u8>, Vec<f32>)> {
    let store = clip_search::Store::open_read_only(db).unwrap();
    let ids = store.ids_matching(&clip_search::Filter::default()).unwrap();
    store
        .records(&ids)
        .unwrap()
        .into_iter()
        .map(|(_, r)| (r.path, (r.hash.to_vec(), r.embedding)))
        .collect()
}

#[test]
fn index_search_and_dups_print_their_documented_forms() {
    let scratch = photo_scratch("forms");
    let photos = scratch.0.join("photos");
    copy_fixtures(
        &photos,
        &[
            "jpeg_q95_444.jpg",
            "noise_rgb.png",
            "sk_rocket.jpg",
            "odd_149x113.png",
            "webp_lossy.webp",
        ],
    );
    std::fs::copy(photos.join("sk_rocket.jpg"), photos.join("rocket-copy.jpg")).unwrap();
    std::fs::write(photos.join("broken.jpg"), b"\xff\xd8\xff broken").unwrap();
    let db = scratch.path("photos.db");
    let photos_arg = photos.display().to_string();

    let summary = json(&clip(&[
        "index",
        &photos_arg,
        "--db",
        &db,
        "-m",
        MODEL,
        "--json",
    ]));
    assert_eq!(summary["added"], 6);
    assert_eq!(summary["updated"], 0);
    assert_eq!(summary["removed"], 0);
    assert_eq!(summary["unchanged"], 0);
    let failed = summary["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(
        failed[0]["path"],
        photos.join("broken.jpg").display().to_string()
    );
    assert!(failed[0]["error"].as_str().unwrap().contains("broken.jpg"));

    // The model is remembered: no --model needed to search.
    let hits = json(&clip(&[
        "search", "--db", &db, "a", "rocket", "--top-k", "3", "--json",
    ]));
    let hits = hits.as_array().unwrap();
    assert_eq!(hits.len(), 3);
    let scores: Vec<f64> = hits.iter().map(|h| h["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    for hit in hits {
        let path = PathBuf::from(hit["path"].as_str().unwrap());
        assert!(path.is_absolute() && path.starts_with(&photos), "{path:?}");
    }

    // Plain output: "score  path"; --paths: paths alone, in the same order.
    let plain = clip(&["search", "--db", &db, "a rocket", "-k", "3"]);
    let plain = String::from_utf8(plain.stdout).unwrap();
    let paths = clip(&["search", "--db", &db, "a rocket", "-k", "3", "--paths"]);
    let paths = String::from_utf8(paths.stdout).unwrap();
    let from_plain: Vec<&str> = plain
        .lines()
        .map(|l| l.split_once("  ").unwrap().1)
        .collect();
    let from_paths: Vec<&str> = paths.lines().collect();
    let from_json: Vec<&str> = hits.iter().map(|h| h["path"].as_str().unwrap()).collect();
    assert_eq!(from_plain, from_json);
    assert_eq!(from_paths, from_json);

    // An image query (an indexed photo) and a negative term; its twin ranks with it.
    let rocket = photos.join("sk_rocket.jpg").display().to_string();
    let hits = json(&clip(&[
        "search",
        "--db",
        &db,
        &rocket,
        "-",
        "0.1:noise",
        "-k",
        "2",
        "--json",
    ]));
    let top: Vec<&str> = hits
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["path"].as_str().unwrap())
        .collect();
    let mut top_sorted = top.clone();
    top_sorted.sort();
    assert_eq!(
        top_sorted,
        [
            photos.join("rocket-copy.jpg").display().to_string(),
            rocket.clone()
        ]
    );

    let groups = json(&clip(&[
        "dups",
        "--db",
        &db,
        "--threshold",
        "0.9999",
        "--json",
    ]));
    let groups = groups.as_array().unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0]["size"], 2);

    // Re-running changes nothing.
    let again = json(&clip(&["index", &photos_arg, "--db", &db, "--json"]));
    assert_eq!(
        (again["added"].as_u64(), again["unchanged"].as_u64()),
        (Some(0), Some(6))
    );
}

#[test]
fn a_run_killed_with_sigkill_leaves_a_valid_index_and_resuming_equals_a_clean_run() {
    let scratch = photo_scratch("kill");
    let photos = scratch.0.join("photos");
    const FILES: u32 = 1200;
    for i in 0..FILES {
        std::fs::write(photos.join(format!("img{i:05}.bmp")), bmp(i, 32)).unwrap();
    }
    let photos_arg = photos.display().to_string();
    let killed_db = scratch.0.join("killed.db");
    let binary = std::env::var_os("CLIP_TEST_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_clip")));
    let mut child = Command::new(&binary)
        .args(["index", &photos_arg, "--db"])
        .arg(&killed_db)
        .args(["-m", MODEL, "--commit-every", "8", "--quiet"])
        .current_dir(root())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill once some batches are committed, mid-run.
    let start = Instant::now();
    let committed = loop {
        let count = clip_search::Store::open_read_only(&killed_db)
            .and_then(|s| s.count())
            .unwrap_or(0);
        if count >= 40 || start.elapsed() > Duration::from_secs(120) {
            break count;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    // SAFETY: signals the child this test spawned.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
    child.wait().unwrap();
    let store = clip_search::Store::open_read_only(&killed_db).unwrap();
    let at_kill = store.count().unwrap();
    assert!(committed >= 40, "no batch was committed in time");
    assert!(
        at_kill < FILES as usize,
        "the run finished before the kill: the test proves nothing"
    );
    assert_eq!(store.integrity_check().unwrap(), "ok");
    drop(store);
    // The lock died with the process: the next run neither waits nor fails.
    let resumed = json(&clip(&[
        "index",
        &photos_arg,
        "--db",
        killed_db.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(resumed["unchanged"].as_u64().unwrap() as usize, at_kill);
    assert_eq!(
        resumed["added"].as_u64().unwrap() as usize,
        FILES as usize - at_kill
    );

    let clean_db = scratch.0.join("clean.db");
    json(&clip(&[
        "index",
        &photos_arg,
        "--db",
        clean_db.to_str().unwrap(),
        "-m",
        MODEL,
        "--json",
    ]));
    let (killed, clean) = (contents(&killed_db), contents(&clean_db));
    assert_eq!(killed.len(), FILES as usize);
    assert!(
        killed == clean,
        "the resumed index differs from a clean run"
    );
    // The derived vector file matches too: searches agree.
    let q = [
        "search",
        "--db",
        killed_db.to_str().unwrap(),
        "blue",
        "-k",
        "20",
        "--json",
    ];
    let a = json(&clip(&q));
    let q = [
        "search",
        "--db",
        clean_db.to_str().unwrap(),
        "blue",
        "-k",
        "20",
        "--json",
    ];
    let b = json(&clip(&q));
    assert_eq!(a, b);
}

#[test]
fn a_second_writer_is_told_the_index_is_busy() {
    use std::os::unix::io::AsRawFd;
    let scratch = photo_scratch("busy");
    let photos = scratch.0.join("photos");
    copy_fixtures(&photos, &["noise_rgb.png"]);
    let db = scratch.0.join("photos.db");
    let lock = std::fs::File::create(clip_search::lock_path(&db)).unwrap();
    // SAFETY: locks a file this test holds open.
    assert_eq!(
        unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
        0
    );
    let out = clip(&[
        "index",
        photos.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
        "-m",
        MODEL,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let message = stderr(&out);
    assert!(
        message.contains("busy") && message.lines().count() == 1,
        "{message}"
    );
    drop(lock);
    let out = clip(&[
        "index",
        photos.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
        "-m",
        MODEL,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn misuse_gets_one_line_and_the_index_is_untouched() {
    let scratch = photo_scratch("misuse");
    let photos = scratch.0.join("photos");
    copy_fixtures(&photos, &["noise_rgb.png", "sk_rocket.jpg"]);
    let db = scratch.path("photos.db");
    let photos_arg = photos.display().to_string();
    json(&clip(&[
        "index",
        &photos_arg,
        "--db",
        &db,
        "-m",
        MODEL,
        "--json",
    ]));
    let before = contents(Path::new(&db));

    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (
            vec![
                "search",
                "--db",
                &db,
                "-m",
                "fixtures/models/hf_odd_gelu",
                "cat",
            ],
            1,
            "was built with",
        ),
        (
            vec![
                "index",
                &photos_arg,
                "--db",
                &db,
                "-m",
                "fixtures/models/hf_odd_gelu",
            ],
            1,
            "was built with",
        ),
        (
            vec!["search", "--db", &db, "--dtype", "int8", "cat"],
            1,
            "was built with",
        ),
        (vec!["search", "--db", &db], 2, "required"),
        (
            vec!["search", "--db", &db, "cat", "+"],
            2,
            "ends with an operator",
        ),
        (
            vec!["search", "--db", &db, "cat", "--after", "last week"],
            2,
            "not a date",
        ),
        (
            vec!["search", "--db", "missing.db", "cat"],
            1,
            "does not exist",
        ),
        (
            vec!["search", "--db", &db, "./no-such-photo.jpg"],
            1,
            "no-such-photo.jpg",
        ),
        (
            vec!["index", "/no/such/folder", "--db", &db, "-m", MODEL],
            1,
            "/no/such/folder",
        ),
        (
            vec!["dups", "--db", &db, "--threshold", "2"],
            2,
            "threshold",
        ),
        (
            vec!["search", "--db", "Cargo.toml", "cat"],
            1,
            "not a clip search index",
        ),
    ];
    for (args, code, needle) in cases {
        let out = clip(&args);
        let message = stderr(&out);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {message}");
        assert!(message.contains(needle), "{args:?}: {message}");
        assert!(!message.contains("panicked"), "{args:?}: {message}");
    }
    assert_eq!(contents(Path::new(&db)), before);
}
