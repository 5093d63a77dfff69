//! What `clip serve` is started with.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone)]
pub struct ServeOptions {
    /// The model's `--model` text.
    pub model: String,
    pub load: clip::LoadOptions,
    /// A photo index to search (`clip index`); without it the search routes answer 404.
    pub db: Option<PathBuf>,
    /// Saved classifiers (`clip classify --save-classifier`, `clip probe`), named by their file stems in
    /// `/v1/classify` requests.
    pub classifiers: Vec<PathBuf>,
    pub host: String,
    pub port: u16,
    /// Items per model call, at most.
    pub max_batch: usize,
    /// How long the first item of a batch waits for others.
    pub max_wait: Duration,
    /// Items waiting per queue before the service answers 429.
    pub queue: usize,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Texts (or images) per request, at most.
    pub max_items: usize,
    /// Cut texts longer than the context length instead of refusing them.
    pub truncate: bool,
    /// Required as `Authorization: Bearer KEY` (or `?key=KEY`) on every route but `/health`, `/ready`, `/ping`.
    pub api_key: Option<String>,
    /// Longest time a request may take before it is answered 504.
    pub timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            model: clip::DEFAULT_MODEL.to_string(),
            load: clip::LoadOptions::default(),
            db: None,
            classifiers: Vec::new(),
            host: "127.0.0.1".into(),
            port: 8080,
            max_batch: 32,
            max_wait: Duration::from_millis(5),
            queue: 256,
            max_body_bytes: 32 << 20,
            max_items: 256,
            truncate: false,
            api_key: None,
            timeout: Duration::from_secs(60),
        }
    }
}
