//! `clip serve` as a user starts it: it prints its address, answers the same numbers as `clip embed`, and stops
//! cleanly on SIGTERM.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::{clip, root};

const MODEL: &str = "fixtures/models/hf_tiny_quickgelu";

#[test]
fn serve_answers_what_embed_prints_and_stops_on_sigterm() {
    let binary = std::env::var_os("CLIP_TEST_BINARY")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_clip").into());
    let mut child = Command::new(binary)
        .args(["serve", "-m", MODEL, "--port", "0"])
        .current_dir(root())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{line}"))
        .to_string();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut ready = false;
    for _ in 0..600 {
        if agent
            .get(&format!("{base}/ready"))
            .call()
            .is_ok_and(|r| r.status() == 200)
        {
            ready = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(ready, "never ready");

    let texts = ["a photo of a cat", "a diagram"];
    let image = root().join("fixtures/images/inputs/sk_rocket.jpg");
    let embeddings = |input: serde_json::Value| -> serde_json::Value {
        let body = serde_json::json!({ "input": input }).to_string();
        let mut response = agent
            .post(&format!("{base}/v1/embeddings"))
            .header("content-type", "application/json")
            .send(body.as_bytes())
            .unwrap();
        serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap()
    };
    let served = embeddings(serde_json::json!(texts));
    let printed = clip(&["embed", "-m", MODEL, "--text", texts[0], texts[1], "--json"]);
    let printed: Vec<Vec<f64>> = serde_json::from_slice(&printed.stdout).unwrap();
    let image_served: serde_json::Value = {
        use base64::Engine;
        let uri = format!(
            "data:image/jpeg;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(std::fs::read(&image).unwrap())
        );
        embeddings(serde_json::json!([uri]))
    };
    let image_printed = clip(&[
        "embed",
        "-m",
        MODEL,
        "--image",
        image.to_str().unwrap(),
        "--json",
    ]);
    let image_printed: Vec<Vec<f64>> = serde_json::from_slice(&image_printed.stdout).unwrap();
    let served_rows: Vec<Vec<f64>> = served["data"]
        .as_array()
        .unwrap()
        .iter()
        .chain(image_served["data"].as_array().unwrap())
        .map(|d| {
            d["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect();
    let printed_rows: Vec<Vec<f64>> = printed.into_iter().chain(image_printed).collect();
    assert_eq!(served_rows.len(), 3);
    for (s, p) in served_rows.iter().zip(&printed_rows) {
        let scale = p.iter().fold(0f64, |m, x| m.max(x.abs()));
        let worst = s.iter().zip(p).fold(0f64, |m, (a, b)| m.max((a - b).abs()));
        assert!(worst <= 1e-6 * scale, "served vs printed: {worst}");
    }

    // SAFETY: signals the child this test spawned.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
