//! What the handlers share: the model (loaded once, after the port is open, so that `/health` answers at once and
//! `/ready` says when the model is there), the two batching queues, the photo index, thumbnails and metrics.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::batcher::{BatchLimits, Batcher};
use crate::error::{ApiError, ApiResult};
use crate::metrics::Metrics;
use crate::options::ServeOptions;

/// Thumbnails kept in memory, by total size.
const THUMBNAIL_CACHE_BYTES: usize = 64 << 20;

pub struct Loaded {
    pub clip: Arc<clip::Clip>,
    pub images: Batcher<Vec<f32>, Vec<f32>>,
    pub texts: Batcher<Vec<u32>, Vec<f32>>,
    pub search: Option<Mutex<clip_search::Searcher>>,
    pub dtype: clip::Precision,
    /// Saved classifiers by name (file stem).
    pub classifiers: HashMap<String, clip::zeroshot::Classifier>,
}

pub struct AppState {
    pub options: ServeOptions,
    pub metrics: Arc<Metrics>,
    /// Images decoded at once, at most (one per core).
    pub decode_slots: Arc<tokio::sync::Semaphore>,
    loaded: OnceLock<Loaded>,
    load_error: OnceLock<String>,
    thumbnails: Mutex<ThumbnailCache>,
}

#[derive(Default)]
struct ThumbnailCache {
    bytes: usize,
    order: VecDeque<i64>,
    entries: HashMap<i64, Arc<Vec<u8>>>,
}

impl AppState {
    pub fn new(options: ServeOptions) -> Arc<Self> {
        Arc::new(Self {
            options,
            metrics: Arc::new(Metrics::default()),
            decode_slots: Arc::new(tokio::sync::Semaphore::new(clip::threads::count().max(1))),
            loaded: OnceLock::new(),
            load_error: OnceLock::new(),
            thumbnails: Mutex::new(ThumbnailCache::default()),
        })
    }

    /// Loads the model and opens the index; on failure the error is kept for `/ready` and every request.
    pub fn load(&self) -> Result<(), String> {
        let result = self.try_load();
        if let Err(e) = &result {
            let _ = self.load_error.set(e.clone());
        }
        result
    }

    fn try_load(&self) -> Result<(), String> {
        let o = &self.options;
        let clip = Arc::new(
            clip::Clip::load(&o.model, &o.load)
                .map_err(|e| format!("cannot load model {}: {e}", o.model))?,
        );
        let search = match &o.db {
            Some(db) => {
                let searcher = clip_search::Searcher::open(db).map_err(|e| e.to_string())?;
                searcher
                    .check_model(&clip, &o.model, o.load.precision)
                    .map_err(|e| e.to_string())?;
                Some(Mutex::new(searcher))
            }
            None => None,
        };
        let identity = clip::zeroshot::ModelIdentity::of(&clip).map_err(|e| e.to_string())?;
        let mut classifiers = HashMap::new();
        for path in &o.classifiers {
            let classifier = clip::zeroshot::Classifier::load(path)
                .and_then(|c| c.check_model(&identity).map(|()| c))
                .map_err(|e| format!("cannot use classifier {}: {e}", path.display()))?;
            let name = path.file_stem().map_or_else(
                || path.display().to_string(),
                |s| s.to_string_lossy().into_owned(),
            );
            classifiers.insert(name, classifier);
        }
        let limits = BatchLimits {
            max_batch: o.max_batch,
            max_wait: o.max_wait,
            capacity: o.queue,
        };
        let image_clip = Arc::clone(&clip);
        let images = Batcher::start(
            "image",
            limits,
            Arc::clone(&self.metrics),
            move |pixels: Vec<Vec<f32>>| match image_clip.encode_pixels(&pixels) {
                Ok(rows) => rows.into_iter().map(Ok).collect(),
                Err(e) => vec![Err(e.to_string()); pixels.len()],
            },
        );
        let text_clip = Arc::clone(&clip);
        let texts = Batcher::start(
            "text",
            limits,
            Arc::clone(&self.metrics),
            move |ids: Vec<Vec<u32>>| match text_clip.encode_ids(&ids) {
                Ok(rows) => rows.into_iter().map(Ok).collect(),
                Err(e) => vec![Err(e.to_string()); ids.len()],
            },
        );
        let _ = self.loaded.set(Loaded {
            clip,
            images,
            texts,
            search,
            dtype: o.load.precision,
            classifiers,
        });
        Ok(())
    }

    /// The model, or 503 while it loads (or if loading failed).
    pub fn loaded(&self) -> ApiResult<&Loaded> {
        if let Some(loaded) = self.loaded.get() {
            return Ok(loaded);
        }
        Err(match self.load_error.get() {
            Some(e) => ApiError::Internal(e.clone()),
            None => ApiError::Unavailable("the model is still loading".into()),
        })
    }

    pub fn is_ready(&self) -> bool {
        self.loaded.get().is_some()
    }

    pub fn load_error(&self) -> Option<&str> {
        self.load_error.get().map(String::as_str)
    }

    pub fn queue_depths(&self) -> Vec<(&'static str, usize)> {
        match self.loaded.get() {
            Some(l) => vec![("image", l.images.depth()), ("text", l.texts.depth())],
            None => vec![("image", 0), ("text", 0)],
        }
    }

    pub fn thumbnail(&self, id: i64) -> Option<Arc<Vec<u8>>> {
        self.thumbnails.lock().ok()?.entries.get(&id).cloned()
    }

    pub fn keep_thumbnail(&self, id: i64, jpeg: Arc<Vec<u8>>) {
        let Ok(mut cache) = self.thumbnails.lock() else {
            return;
        };
        if cache.entries.contains_key(&id) {
            return;
        }
        cache.bytes += jpeg.len();
        cache.order.push_back(id);
        cache.entries.insert(id, jpeg);
        while cache.bytes > THUMBNAIL_CACHE_BYTES {
            let Some(oldest) = cache.order.pop_front() else {
                break;
            };
            if let Some(old) = cache.entries.remove(&oldest) {
                cache.bytes -= old.len();
            }
        }
    }

    /// Awaits `receivers` within the request timeout.
    pub async fn collect(
        &self,
        receivers: Vec<tokio::sync::oneshot::Receiver<Result<Vec<f32>, String>>>,
        started: Instant,
    ) -> ApiResult<Vec<Vec<f32>>> {
        let left = self
            .options
            .timeout
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(1));
        let all = async {
            let mut rows = Vec::with_capacity(receivers.len());
            for receiver in receivers {
                match receiver.await {
                    Ok(Ok(row)) => rows.push(row),
                    Ok(Err(e)) => return Err(ApiError::Internal(e)),
                    Err(_) => return Err(ApiError::Internal("the model worker stopped".into())),
                }
            }
            Ok(rows)
        };
        tokio::time::timeout(left, all)
            .await
            .map_err(|_| ApiError::Timeout(self.options.timeout.as_secs()))?
    }
}
