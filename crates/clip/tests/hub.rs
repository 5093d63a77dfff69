//! The Hub client against a local stand-in for the Hugging Face endpoints (`/api/models/.../revision/main` and
//! `/{repo}/resolve/{commit}/{file}`): download into the standard cache layout, reuse offline, 404s remembered,
//! truncated transfers never land in the cache.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use clip::hub::{HubOptions, HubRepo, Need};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// Serves `files` for repo `org/model`; `truncate` names files whose body is cut short of its Content-Length.
fn serve(files: HashMap<String, Vec<u8>>, truncate: Vec<String>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap() == 0 || header == "\r\n" {
                    break;
                }
            }
            let path = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or("")
                .to_string();
            let (status, body, cut) = if path == "/api/models/org/model/revision/main" {
                (
                    "200 OK",
                    format!("{{\"id\":\"org/model\",\"sha\":\"{COMMIT}\"}}").into_bytes(),
                    false,
                )
            } else if let Some(file) = path.strip_prefix(&format!("/org/model/resolve/{COMMIT}/")) {
                match files.get(file) {
                    Some(body) => ("200 OK", body.clone(), truncate.contains(&file.to_string())),
                    None => ("404 Not Found", b"not found".to_vec(), false),
                }
            } else {
                ("404 Not Found", b"not found".to_vec(), false)
            };
            let sent = if cut {
                &body[..body.len() / 2]
            } else {
                &body[..]
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(sent);
        }
    });
    (address, requests)
}

mod common;

#[test]
fn downloads_into_the_hf_cache_then_works_offline() {
    let files = HashMap::from([
        ("config.json".to_string(), b"{\"a\": 1}".to_vec()),
        ("model.safetensors".to_string(), vec![7u8; 300_000]),
        ("broken.bin".to_string(), vec![1u8; 1000]),
    ]);
    let (endpoint, requests) = serve(files, vec!["broken.bin".into()]);
    // The only test in this binary, so setting the process environment is safe.
    std::env::set_var("HF_ENDPOINT", &endpoint);
    let cache_dir = common::TempDir::new("hub-cache");
    let cache = cache_dir.path().to_path_buf();
    let online = HubOptions {
        cache_dir: Some(cache.clone()),
        ..HubOptions::default()
    };
    let repo = HubRepo::new("org/model", &online).unwrap();
    let wanted = [
        ("config.json", Need::Required),
        ("model.safetensors", Need::Required),
        ("vocab.json", Need::Optional),
    ];
    let snapshot = repo.snapshot(&wanted).unwrap();
    assert_eq!(
        snapshot,
        cache.join("models--org--model/snapshots").join(COMMIT)
    );
    assert_eq!(
        std::fs::read(snapshot.join("config.json")).unwrap(),
        b"{\"a\": 1}"
    );
    assert_eq!(
        std::fs::read(snapshot.join("model.safetensors"))
            .unwrap()
            .len(),
        300_000
    );
    assert_eq!(
        std::fs::read_to_string(cache.join("models--org--model/refs/main")).unwrap(),
        COMMIT
    );
    assert!(cache
        .join("models--org--model/.no_exist")
        .join(COMMIT)
        .join("vocab.json")
        .exists());

    // Everything settled: a second resolution makes no request, even offline.
    let before = requests.load(Ordering::SeqCst);
    let offline = HubOptions {
        offline: true,
        ..online.clone()
    };
    let again = HubRepo::new("org/model", &offline)
        .unwrap()
        .snapshot(&wanted)
        .unwrap();
    assert_eq!(again, snapshot);
    assert_eq!(requests.load(Ordering::SeqCst), before);

    // A required file the repository lacks is a clear error.
    let err = repo
        .snapshot(&[("pytorch_model.bin", Need::Required)])
        .unwrap_err()
        .to_string();
    assert!(err.contains("has no pytorch_model.bin"), "{err}");

    // A transfer cut short never lands in the cache, not even as a partial file.
    let err = repo
        .snapshot(&[("broken.bin", Need::Required)])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("truncated") || err.contains("broken.bin"),
        "{err}"
    );
    assert!(!snapshot.join("broken.bin").exists());
    assert!(!snapshot.join("broken.bin.incomplete").exists());
}
