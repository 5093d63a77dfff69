//! Photo search over the index given with `--db`: `GET /v1/search?q=&k=`, `POST /v1/search` (text, image, an
//! indexed image's id for "more like this", or a sum), `GET /v1/thumbnail/{id}` (JPEG, longest side 256, made
//! once and cached) and `GET /v1/info`. Only files in the index are ever read (no path comes from a request).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use crate::error::{ApiError, ApiResult};
use crate::inputs::{embed_images, embed_texts, image_bytes, JsonBody};
use crate::state::AppState;

const DEFAULT_K: usize = 24;
const MAX_K: usize = 1000;
const THUMBNAIL_SIDE: u32 = 256;

pub async fn info(State(state): State<Arc<AppState>>) -> ApiResult<Json<serde_json::Value>> {
    let loaded = state.loaded()?;
    let images = match &loaded.search {
        Some(searcher) => searcher.lock().map(|s| s.len()).unwrap_or(0),
        None => 0,
    };
    Ok(Json(serde_json::json!({
        "model": state.options.model,
        "dtype": loaded.dtype.to_string(),
        "dim": loaded.clip.model().config().projection_dim,
        "db": loaded.search.is_some(),
        "images": images,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    q: String,
    k: Option<usize>,
    min_score: Option<f32>,
    /// The API key, for clients that cannot send headers (checked before the handler).
    #[allow(dead_code)]
    key: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    text: Option<String>,
    image: Option<String>,
    /// An indexed image's id: "more like this".
    id: Option<i64>,
    k: Option<usize>,
    min_score: Option<f32>,
}

pub async fn search_get(
    State(state): State<Arc<AppState>>,
    query: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let request = SearchRequest {
        text: Some(query.q),
        image: None,
        id: None,
        k: query.k,
        min_score: query.min_score,
    };
    search(&state, request).await
}

pub async fn search_post(
    State(state): State<Arc<AppState>>,
    JsonBody(request): JsonBody<SearchRequest>,
) -> ApiResult<Json<serde_json::Value>> {
    search(&state, request).await
}

async fn search(
    state: &Arc<AppState>,
    request: SearchRequest,
) -> ApiResult<Json<serde_json::Value>> {
    let loaded = state.loaded()?;
    let searcher = loaded.search.as_ref().ok_or_else(|| {
        ApiError::NotFound("no index: start the service with --db F to search".into())
    })?;
    let k = request.k.unwrap_or(DEFAULT_K);
    if k == 0 || k > MAX_K {
        return Err(ApiError::BadRequest(format!(
            "k must be between 1 and {MAX_K}"
        )));
    }
    let mut parts: Vec<Vec<f32>> = Vec::new();
    if let Some(text) = request.text.as_ref().filter(|t| !t.trim().is_empty()) {
        parts.extend(embed_texts(state, std::slice::from_ref(text)).await?.0);
    }
    if let Some(image) = &request.image {
        parts.extend(
            embed_images(state, vec![("image".into(), image_bytes(image, "image")?)]).await?,
        );
    }
    if let Some(id) = request.id {
        let guard = searcher
            .lock()
            .map_err(|_| ApiError::Internal("index lock poisoned".into()))?;
        let record = guard.store().records(&[id])?.pop();
        let (_, record) = record
            .ok_or_else(|| ApiError::NotFound(format!("no image with id {id} in the index")))?;
        parts.push(record.embedding);
    }
    if parts.is_empty() {
        return Err(ApiError::BadRequest(
            "give text, image or id to search by".into(),
        ));
    }
    // As `clip search`: the sum of the parts' normalised embeddings, normalised.
    let dim = parts[0].len();
    let mut vector = vec![0f32; dim];
    for mut part in parts {
        clip_search::vectors::normalize(&mut part);
        for (v, p) in vector.iter_mut().zip(&part) {
            *v += p;
        }
    }
    if !clip_search::vectors::normalize(&mut vector) {
        return Err(ApiError::BadRequest("the query parts cancel out".into()));
    }
    let options = clip_search::SearchOptions {
        top_k: k,
        min_score: request.min_score,
        ..Default::default()
    };
    let hits = {
        let guard = searcher
            .lock()
            .map_err(|_| ApiError::Internal("index lock poisoned".into()))?;
        guard.search(&vector, &options)?
    };
    let results: Vec<serde_json::Value> = hits
        .iter()
        .map(|hit| {
            serde_json::json!({
                "id": hit.id,
                "path": hit.record.path.display().to_string(),
                "score": hit.score,
                "thumbnail": format!("/v1/thumbnail/{}", hit.id),
                "width": hit.record.width,
                "height": hit.record.height,
                "date": hit.record.date,
            })
        })
        .collect();
    Ok(Json(serde_json::json!({"results": results})))
}

pub async fn thumbnail(
    State(state): State<Arc<AppState>>,
    id: Result<Path<i64>, axum::extract::rejection::PathRejection>,
) -> ApiResult<Response> {
    let Path(id) = id.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    if let Some(jpeg) = state.thumbnail(id) {
        return Ok(jpeg_response(jpeg));
    }
    let loaded = state.loaded()?;
    let searcher = loaded
        .search
        .as_ref()
        .ok_or_else(|| ApiError::NotFound("no index".into()))?;
    let path = {
        let guard = searcher
            .lock()
            .map_err(|_| ApiError::Internal("index lock poisoned".into()))?;
        let record = guard.store().records(&[id])?.pop();
        record
            .ok_or_else(|| ApiError::NotFound(format!("no image with id {id} in the index")))?
            .1
            .path
    };
    let jpeg = tokio::task::spawn_blocking(move || make_thumbnail(&path))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    let jpeg = Arc::new(jpeg);
    state.keep_thumbnail(id, Arc::clone(&jpeg));
    Ok(jpeg_response(jpeg))
}

fn jpeg_response(jpeg: Arc<Vec<u8>>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        jpeg.as_ref().clone(),
    )
        .into_response()
}

/// Decodes with the project's decoder (the same limits as indexing), scales to fit 256 x 256, encodes JPEG.
fn make_thumbnail(path: &std::path::Path) -> ApiResult<Vec<u8>> {
    let image = clip::preprocess::open(path).map_err(|e| ApiError::NotFound(e.to_string()))?;
    let (w, h) = (image.width(), image.height());
    let scale = (THUMBNAIL_SIDE as f64 / w.max(h) as f64).min(1.0);
    let (tw, th) = (
        ((w as f64 * scale).round() as u32).max(1),
        ((h as f64 * scale).round() as u32).max(1),
    );
    let rgb = clip::preprocess::resize_rgb(&image, tw, th)
        .map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    let mut out = Vec::new();
    let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85);
    image::ImageEncoder::write_image(encoder, &rgb.data, tw, th, image::ExtendedColorType::Rgb8)
        .map_err(|e| ApiError::Internal(format!("cannot encode a thumbnail: {e}")))?;
    Ok(out)
}
