//! The real service on a free loopback port with the tiny fixture model: every endpoint's values against the
//! library the CLI calls, batching under concurrency, bad input, a full queue, /metrics, the API key, and a
//! graceful stop.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn model_dir() -> PathBuf {
    root().join("fixtures/models/hf_tiny_quickgelu")
}

fn fixture(name: &str) -> PathBuf {
    root().join("fixtures/images/inputs").join(name)
}

fn data_uri(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    format!(
        "data:image/jpeg;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// A service running on its own runtime thread, stopped when dropped.
struct Service {
    base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Service {
    fn start(configure: impl FnOnce(&mut clip_serve::ServeOptions)) -> Self {
        let mut options = clip_serve::ServeOptions {
            model: model_dir().display().to_string(),
            port: 0,
            ..Default::default()
        };
        configure(&mut options);
        let (address_tx, address_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let server = clip_serve::serve(options).await.unwrap();
                address_tx.send(server.address).unwrap();
                let _ = stopped.await;
                server.stop().await.unwrap();
            });
        });
        let address = address_rx.recv().unwrap();
        let service = Self {
            base: format!("http://{address}"),
            stop: Some(stop),
            thread: Some(thread),
        };
        for _ in 0..600 {
            if service.get("/ready").0 == 200 {
                return service;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "the service never became ready: {:?}",
            service.get("/ready")
        );
    }

    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into()
    }

    fn get(&self, path: &str) -> (u16, String) {
        let mut response = Self::agent()
            .get(&format!("{}{path}", self.base))
            .call()
            .unwrap();
        (
            response.status().as_u16(),
            response.body_mut().read_to_string().unwrap_or_default(),
        )
    }

    fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: &[u8],
        key: Option<&str>,
    ) -> (u16, Vec<(String, String)>, String) {
        let mut request = Self::agent()
            .post(&format!("{}{path}", self.base))
            .header("content-type", content_type);
        if let Some(key) = key {
            request = request.header("authorization", &format!("Bearer {key}"));
        }
        let mut response = request.send(body).unwrap();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    v.to_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        (
            response.status().as_u16(),
            headers,
            response.body_mut().read_to_string().unwrap_or_default(),
        )
    }

    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let (status, _, text) =
            self.post_raw(path, "application/json", body.to_string().as_bytes(), None);
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn library() -> clip::Clip {
    clip::Clip::load(
        &model_dir().display().to_string(),
        &clip::LoadOptions::default(),
    )
    .unwrap()
}

fn rows(response: &Value) -> Vec<Vec<f32>> {
    response["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            d["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect()
}

/// The `probabilities` rows of a `/v1/classify` answer.
fn probability_rows(body: &Value) -> Vec<Vec<f32>> {
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            d["probabilities"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect()
}

fn assert_close(got: &[Vec<f32>], want: &[Vec<f32>], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (g, w) in got.iter().zip(want) {
        let scale = w.iter().fold(0f32, |m, x| m.max(x.abs()));
        let worst = g.iter().zip(w).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            worst <= 1e-6 * scale,
            "{what}: max |diff| {worst} vs scale {scale}"
        );
    }
}

const PHOTOS: &[&str] = &[
    "jpeg_q95_444.jpg",
    "sk_rocket.jpg",
    "noise_rgb.png",
    "webp_lossy.webp",
    "odd_149x113.png",
];

#[test]
fn embeddings_classify_and_rank_equal_the_library() {
    let clip = library();
    // A saved classifier (as `clip classify --save-classifier` writes it), served by its file stem.
    let saved = std::env::temp_dir().join(format!(
        "clip-serve-pets-{}.safetensors",
        std::process::id()
    ));
    let mut classifier =
        clip::zeroshot::Classifier::from_prompts(&clip, &["a rocket", "noise", "a cat"]).unwrap();
    classifier.bind_to(&clip).unwrap();
    classifier.save(&saved).unwrap();
    let stem = saved.file_stem().unwrap().to_string_lossy().into_owned();
    let service = Service::start(|o| o.classifiers = vec![saved.clone()]);
    let texts = ["a photo of a rocket", "noise", "a diagram"];
    let (status, body) = service.post("/v1/embeddings", &json!({"model": "m", "input": texts}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "list");
    assert_eq!(body["data"][1]["index"], 1);
    assert!(body["usage"]["prompt_tokens"].as_u64().unwrap() >= 6);
    assert_close(
        &rows(&body),
        &clip.encode_texts(&texts, false).unwrap(),
        "texts",
    );

    let paths: Vec<PathBuf> = PHOTOS.iter().map(|p| fixture(p)).collect();
    let want: Vec<Vec<f32>> = clip
        .encode_image_files(&paths, |_| {})
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let uris: Vec<String> = paths.iter().map(|p| data_uri(p)).collect();
    let (status, body) = service.post("/v1/embeddings", &json!({"input": uris}));
    assert_eq!(status, 200, "{body}");
    assert_close(&rows(&body), &want, "images as data URIs");
    // Infinity's modality field: plain base64; and base64 output of little-endian float32.
    let plain: Vec<String> = uris
        .iter()
        .map(|u| u.split_once(',').unwrap().1.to_string())
        .collect();
    let (status, body) = service.post(
        "/v1/embeddings",
        &json!({"input": plain, "modality": "image", "encoding_format": "base64"}),
    );
    assert_eq!(status, 200, "{body}");
    let decoded: Vec<Vec<f32>> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(d["embedding"].as_str().unwrap())
                .unwrap();
            bytes
                .chunks(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect()
        })
        .collect();
    assert_close(&decoded, &want, "base64 output");
    // Mixed input keeps its order; normalize gives unit rows.
    let (_, body) = service.post(
        "/v1/embeddings",
        &json!({"input": [texts[0], uris[1].clone()], "normalize": true}),
    );
    let mixed = rows(&body);
    let mut expected = vec![
        clip.encode_texts(&[texts[0]], false).unwrap().remove(0),
        want[1].clone(),
    ];
    clip::normalize_rows(&mut expected);
    assert_close(&mixed, &expected, "mixed, normalised");

    let labels = ["a rocket", "noise", "a cat"];
    let (status, body) = service.post("/v1/classify", &json!({"images": uris, "labels": labels}));
    assert_eq!(status, 200, "{body}");
    let text_features = clip.encode_texts(&labels, false).unwrap();
    let probabilities = clip.probabilities(&want, &text_features).unwrap();
    let got = probability_rows(&body);
    assert_close(&got, &probabilities, "classify");
    let (status, body) = service.post("/v1/classify", &json!({"images": uris, "classifier": stem}));
    assert_eq!(status, 200, "{body}");
    let got = probability_rows(&body);
    assert_close(
        &got,
        &classifier.probabilities(&want).unwrap(),
        "saved classifier",
    );
    assert_eq!(body["labels"], json!(classifier.class_names));
    let (status, body) = service.post(
        "/v1/classify",
        &json!({"images": uris, "classifier": "nope"}),
    );
    assert_eq!(status, 404, "{body}");
    let _ = std::fs::remove_file(&saved);

    let (status, body) = service.post(
        "/v1/rank",
        &json!({"query": "a rocket", "images": uris, "top_k": 3}),
    );
    assert_eq!(status, 200, "{body}");
    let mut query = clip.encode_texts(&["a rocket"], false).unwrap();
    clip::normalize_rows(&mut query);
    let mut candidates = want.clone();
    clip::normalize_rows(&mut candidates);
    let mut scored: Vec<(usize, f32)> = candidates
        .iter()
        .enumerate()
        .map(|(i, c)| (i, c.iter().zip(&query[0]).map(|(a, b)| a * b).sum()))
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    for (d, (index, score)) in data.iter().zip(&scored) {
        assert_eq!(d["index"].as_u64().unwrap() as usize, *index);
        assert!((d["score"].as_f64().unwrap() as f32 - score).abs() < 1e-6);
    }
}

#[test]
fn concurrent_mixed_requests_are_batched_and_answer_as_one_by_one() {
    // A long batching window, so that concurrent requests share model calls.
    let service = Arc::new(Service::start(|o| o.max_wait = Duration::from_millis(30)));
    let uris: Vec<String> = PHOTOS.iter().map(|p| data_uri(&fixture(p))).collect();
    let requests: Vec<Value> = (0..64)
        .map(|i| {
            if i % 2 == 0 {
                json!({"input": format!("a photo number {i}")})
            } else {
                json!({"input": uris[i % uris.len()]})
            }
        })
        .collect();
    let one_by_one: Vec<Value> = requests
        .iter()
        .map(|r| service.post("/v1/embeddings", r).1["data"].clone())
        .collect();
    let handles: Vec<_> = requests
        .iter()
        .cloned()
        .map(|request| {
            let service = Arc::clone(&service);
            std::thread::spawn(move || service.post("/v1/embeddings", &request))
        })
        .collect();
    for (handle, alone) in handles.into_iter().zip(&one_by_one) {
        let (status, body) = handle.join().unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            &body["data"], alone,
            "a batched answer differs from the one-by-one answer"
        );
    }
    let (_, metrics) = service.get("/metrics");
    let batches: f64 = metric(&metrics, "clip_batch_size_count{kind=\"text\"}")
        + metric(&metrics, "clip_batch_size_count{kind=\"image\"}");
    let items: f64 = metric(&metrics, "clip_encoded_total{kind=\"text\"}")
        + metric(&metrics, "clip_encoded_total{kind=\"image\"}");
    assert_eq!(items, 128.0);
    assert!(
        batches < 128.0,
        "no two requests shared a model call ({batches} calls for {items} items)"
    );
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).map(|v| v.trim().parse().unwrap()))
        .unwrap_or(0.0)
}

#[test]
fn metrics_parse_as_prometheus_text() {
    let service = Service::start(|_| {});
    service.post("/v1/embeddings", &json!({"input": "x"}));
    service.post("/v1/embeddings", &json!({"input": 3}));
    let (status, text) = service.get("/metrics");
    assert_eq!(status, 200);
    let mut typed = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            typed.insert(name.to_string());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        // name{label="value",...} number
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        value
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("not a number: {line}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line}"
        );
        let base = name
            .trim_end_matches("_bucket")
            .trim_end_matches("_sum")
            .trim_end_matches("_count");
        assert!(
            typed.contains(name) || typed.contains(base),
            "series without TYPE: {line}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
                for pair in labels[1..labels.len() - 1].split("\",") {
                    let (key, value) = pair.split_once("=\"").unwrap_or_else(|| panic!("{line}"));
                    assert!(
                        key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                        "{line}"
                    );
                    assert!(!value.trim_end_matches('"').contains('"'), "{line}");
                }
            }
        }
    }
    assert!(
        text.contains("clip_requests_total{route=\"/v1/embeddings\",status=\"400\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("clip_queue_depth{queue=\"image\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("clip_stage_seconds_total{stage=\"text_model\"}"),
        "{text}"
    );
}

#[test]
fn bad_input_gets_a_json_error_with_the_right_status() {
    let service = Service::start(|o| {
        o.max_body_bytes = 64 << 10;
        o.max_items = 4;
    });
    let long_text = "word ".repeat(200);
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("/v1/embeddings", "{not json".into(), 400, "JSON"),
        (
            "/v1/embeddings",
            json!({"input": "x", "colour": 1}).to_string(),
            400,
            "unknown field",
        ),
        (
            "/v1/embeddings",
            json!({"text": "x"}).to_string(),
            400,
            "input",
        ),
        (
            "/v1/embeddings",
            json!({"input": "data:image/png;base64,@@@"}).to_string(),
            400,
            "base64",
        ),
        (
            "/v1/embeddings",
            json!({"input": "data:image/png;base64,AAAA"}).to_string(),
            422,
            "decode",
        ),
        (
            "/v1/embeddings",
            json!({"input": long_text}).to_string(),
            422,
            "context",
        ),
        (
            "/v1/embeddings",
            json!({"input": ["a", "b", "c", "d", "e"]}).to_string(),
            400,
            "limit",
        ),
        (
            "/v1/embeddings",
            json!({"input": []}).to_string(),
            400,
            "no inputs",
        ),
        (
            "/v1/embeddings",
            json!({"input": "x".repeat(100 << 10)}).to_string(),
            413,
            "too large",
        ),
        (
            "/v1/classify",
            json!({"images": [], "labels": ["a"]}).to_string(),
            400,
            "no images",
        ),
        (
            "/v1/rank",
            json!({"query": "a", "query_image": "b", "texts": ["c"]}).to_string(),
            400,
            "exactly one",
        ),
        ("/v1/search", json!({"text": "a"}).to_string(), 404, "--db"),
        ("/v1/nothing", "{}".into(), 404, "no such route"),
    ];
    for (path, body, status, needle) in cases {
        let (got, _, text) = service.post_raw(path, "application/json", body.as_bytes(), None);
        let error: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{path} {body:.60}: not JSON: {text}"));
        let message = error["error"]["message"].as_str().unwrap_or_default();
        assert_eq!(got, status, "{path} {body:.60}: {text}");
        assert!(message.contains(needle), "{path} {body:.60}: {message}");
    }
    // A decompression bomb is refused from its header, before decoding.
    let bomb = png_header(100_000, 100_000);
    let (status, body) = service.post("/v1/embeddings", &json!({"input": format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(bomb))}));
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("pixels"),
        "{body}"
    );
    // The service is still up.
    assert_eq!(service.get("/health").0, 200);
}

/// The signature and IHDR chunk of a PNG of the given size (no pixel data: nothing to decode).
fn png_header(width: u32, height: u32) -> Vec<u8> {
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend_from_slice(&13u32.to_be_bytes());
    let mut chunk = b"IHDR".to_vec();
    chunk.extend_from_slice(&ihdr);
    out.extend_from_slice(&chunk);
    out.extend_from_slice(&crc32(&chunk).to_be_bytes());
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn a_full_queue_answers_429_at_once_with_retry_after() {
    let service = Arc::new(Service::start(|o| {
        o.queue = 2;
        o.max_batch = 1;
        o.max_wait = Duration::from_millis(0);
    }));
    // More items than the queue holds: refused whole, at once.
    let (status, headers, body) = service.post_raw(
        "/v1/embeddings",
        "application/json",
        json!({"input": ["a", "b", "c"]}).to_string().as_bytes(),
        None,
    );
    assert_eq!(status, 429, "{body}");
    assert!(
        headers.iter().any(|(k, v)| k == "retry-after" && v == "1"),
        "{headers:?}"
    );
    assert!(body.contains("busy"), "{body}");
    // Many concurrent clients: each is answered 200 or 429, never anything else.
    let handles: Vec<_> = (0..48)
        .map(|i| {
            let service = Arc::clone(&service);
            std::thread::spawn(move || {
                service
                    .post(
                        "/v1/embeddings",
                        &json!({"input": ["x y z", format!("text {i}")]}),
                    )
                    .0
            })
        })
        .collect();
    let statuses: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    assert!(statuses.contains(&200));
}

#[test]
fn search_thumbnails_immich_and_the_api_key() {
    let dir = std::env::temp_dir().join(format!("clip-serve-search-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("photos")).unwrap();
    for name in PHOTOS {
        std::fs::copy(fixture(name), dir.join("photos").join(name)).unwrap();
    }
    let clip = library();
    let db = dir.join("photos.db");
    let options = clip_search::IndexOptions {
        model_spec: model_dir().display().to_string(),
        ..Default::default()
    };
    clip_search::index(&clip, &db, &[dir.join("photos")], &options, |_| {}).unwrap();
    let service = Service::start(|o| {
        o.db = Some(db.clone());
        o.api_key = Some("sesame".into());
    });
    // Without the key: 401, except for the probes and the page.
    assert_eq!(service.get("/v1/search?q=rocket").0, 401);
    assert_eq!(service.get("/health").0, 200);
    assert_eq!(service.get("/").0, 200);
    let (status, body) = service.get("/v1/search?q=a%20rocket&k=3&key=sesame");
    assert_eq!(status, 200, "{body}");
    let results: Value = serde_json::from_str(&body).unwrap();
    let searcher = clip_search::Searcher::open(&db).unwrap();
    let query = clip_search::Query::parse(&["a rocket"], &[]).unwrap();
    let hits = searcher
        .search(
            &searcher.query_vector(&clip, &query).unwrap(),
            &clip_search::SearchOptions {
                top_k: 3,
                ..Default::default()
            },
        )
        .unwrap();
    let got: Vec<(String, f32)> = results["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["path"].as_str().unwrap().to_string(),
                r["score"].as_f64().unwrap() as f32,
            )
        })
        .collect();
    let want: Vec<(String, f32)> = hits
        .iter()
        .map(|h| (h.record.path.display().to_string(), h.score))
        .collect();
    assert_eq!(
        got.iter().map(|g| &g.0).collect::<Vec<_>>(),
        want.iter().map(|w| &w.0).collect::<Vec<_>>()
    );
    for (g, w) in got.iter().zip(&want) {
        assert!((g.1 - w.1).abs() < 1e-6);
    }
    // More like this: an indexed image's id finds itself first.
    let first = results["results"][0]["id"].as_i64().unwrap();
    let (status, _, body) = service.post_raw(
        "/v1/search",
        "application/json",
        json!({"id": first, "k": 1}).to_string().as_bytes(),
        Some("sesame"),
    );
    assert_eq!(status, 200, "{body}");
    let more: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(more["results"][0]["id"].as_i64(), Some(first));
    // Thumbnails are JPEGs no larger than 256 on a side.
    let mut response = Service::agent()
        .get(&format!("{}/v1/thumbnail/{first}?key=sesame", service.base))
        .call()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let jpeg = response.body_mut().read_to_vec().unwrap();
    assert_eq!(&jpeg[..3], b"\xff\xd8\xff");
    let thumb = clip::preprocess::decode(&jpeg).unwrap();
    assert!(thumb.width().max(thumb.height()) <= 256);
    assert_eq!(service.get("/v1/thumbnail/999999?key=sesame").0, 404);
    let (status, body) = service.get("/v1/thumbnail/abc?key=sesame");
    assert_eq!(status, 400);
    assert!(body.contains("\"error\""), "{body}");
    let (status, body) = service.get("/v1/classify?key=sesame");
    assert_eq!(status, 405);
    assert!(body.contains("method"), "{body}");

    // immich's /predict (multipart): the visual embedding as a JSON-array string, with the image's size.
    let boundary = "XyZboundary";
    let image = std::fs::read(fixture("sk_rocket.jpg")).unwrap();
    let mut body = Vec::new();
    let entries = r#"{"clip": {"visual": {"modelName": "ViT-B-32__openai", "options": {}}}}"#;
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"entries\"\r\n\r\n{entries}\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n").as_bytes());
    body.extend_from_slice(&image);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let (status, _, text) = service.post_raw(
        "/predict",
        &format!("multipart/form-data; boundary={boundary}"),
        &body,
        Some("sesame"),
    );
    assert_eq!(status, 200, "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    let embedding: Vec<f32> = serde_json::from_str(answer["clip"].as_str().unwrap()).unwrap();
    let want = clip
        .encode_image_files(&[fixture("sk_rocket.jpg")], |_| {})
        .remove(0)
        .unwrap();
    assert_close(&[embedding], &[want], "immich visual");
    let decoded = clip::preprocess::decode(&image).unwrap();
    assert_eq!(
        answer["imageWidth"].as_u64(),
        Some(u64::from(decoded.width()))
    );
    assert_eq!(
        answer["imageHeight"].as_u64(),
        Some(u64::from(decoded.height()))
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn stopping_finishes_the_requests_in_flight() {
    // A long batching window keeps the request in flight while the stop arrives.
    let mut service = Service::start(|o| o.max_wait = Duration::from_millis(800));
    let base = service.base.clone();
    let request = std::thread::spawn(move || {
        let mut response = Service::agent()
            .post(&format!("{base}/v1/embeddings"))
            .header("content-type", "application/json")
            .send(json!({"input": "in flight"}).to_string().as_bytes())
            .unwrap();
        (
            response.status().as_u16(),
            response.body_mut().read_to_string().unwrap(),
        )
    });
    std::thread::sleep(Duration::from_millis(200));
    let _ = service.stop.take().unwrap().send(());
    let (status, body) = request.join().unwrap();
    assert_eq!(status, 200, "{body}");
    service.thread.take().unwrap().join().unwrap();
    // Stopped: nothing listens any more.
    assert!(Service::agent()
        .get(&format!("{}/health", service.base))
        .call()
        .is_err());
}
