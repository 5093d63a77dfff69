//! `POST /v1/classify` (images + labels -> probabilities, as `clip classify`) and `POST /v1/rank` (one query
//! against candidates, by cosine similarity).

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::Deserialize;

use crate::error::{ApiError, ApiResult};
use crate::inputs::{check_count, embed_images, embed_texts, image_bytes, normalize, JsonBody};
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifyRequest {
    /// Images as data URIs or base64.
    images: Vec<String>,
    /// The labels, used as the prompts themselves (as `clip classify --labels`)...
    labels: Option<Vec<String>>,
    /// ... or the name of a classifier the service was started with (`--classifier F`: its file stem).
    classifier: Option<String>,
}

pub async fn classify(
    State(state): State<Arc<AppState>>,
    JsonBody(request): JsonBody<ClassifyRequest>,
) -> ApiResult<Json<serde_json::Value>> {
    check_count(&state, request.images.len(), "images")?;
    let images = decode_all(&request.images, "image")?;
    let (labels, probabilities) = match (&request.labels, &request.classifier) {
        (Some(labels), None) => {
            check_count(&state, labels.len(), "labels")?;
            let (label_features, _) = embed_texts(&state, labels).await?;
            let features = embed_images(&state, images).await?;
            let loaded = state.loaded()?;
            (
                labels.clone(),
                loaded.clip.probabilities(&features, &label_features)?,
            )
        }
        (None, Some(name)) => {
            let features = embed_images(&state, images).await?;
            let loaded = state.loaded()?;
            let classifier = loaded.classifiers.get(name).ok_or_else(|| {
                let mut known: Vec<&String> = loaded.classifiers.keys().collect();
                known.sort();
                ApiError::NotFound(format!(
                    "no classifier named {name:?} (loaded: {known:?}; start with --classifier F)"
                ))
            })?;
            (
                classifier.class_names.clone(),
                classifier.probabilities(&features)?,
            )
        }
        _ => {
            return Err(ApiError::BadRequest(
                "give exactly one of labels and classifier".into(),
            ))
        }
    };
    let data: Vec<serde_json::Value> = probabilities
        .into_iter()
        .enumerate()
        .map(|(index, p)| serde_json::json!({"index": index, "probabilities": p}))
        .collect();
    Ok(Json(serde_json::json!({"labels": labels, "data": data})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RankRequest {
    /// The query: a text, or an image (data URI or base64) with `query_image`.
    query: Option<String>,
    query_image: Option<String>,
    /// Candidates: texts, or images (data URIs or base64).
    texts: Option<Vec<String>>,
    images: Option<Vec<String>>,
    top_k: Option<usize>,
}

pub async fn rank(
    State(state): State<Arc<AppState>>,
    JsonBody(request): JsonBody<RankRequest>,
) -> ApiResult<Json<serde_json::Value>> {
    let mut query = match (&request.query, &request.query_image) {
        (Some(text), None) => embed_texts(&state, std::slice::from_ref(text)).await?.0,
        (None, Some(image)) => {
            embed_images(
                &state,
                vec![("query_image".into(), image_bytes(image, "query_image")?)],
            )
            .await?
        }
        _ => {
            return Err(ApiError::BadRequest(
                "give exactly one of query (text) and query_image".into(),
            ))
        }
    };
    let mut candidates = match (&request.texts, &request.images) {
        (Some(texts), None) => {
            check_count(&state, texts.len(), "texts")?;
            embed_texts(&state, texts).await?.0
        }
        (None, Some(images)) => {
            check_count(&state, images.len(), "images")?;
            embed_images(&state, decode_all(images, "image")?).await?
        }
        _ => {
            return Err(ApiError::BadRequest(
                "give exactly one of texts and images to rank".into(),
            ))
        }
    };
    normalize(&mut query);
    normalize(&mut candidates);
    let q = query.pop().unwrap_or_default();
    let mut scored: Vec<(usize, f32)> = candidates
        .iter()
        .enumerate()
        .map(|(i, c)| (i, clip_search::vectors::dot(&q, c)))
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    scored.truncate(request.top_k.unwrap_or(scored.len()));
    let data: Vec<serde_json::Value> = scored
        .into_iter()
        .map(|(index, score)| serde_json::json!({"index": index, "score": score}))
        .collect();
    Ok(Json(serde_json::json!({"data": data})))
}

fn decode_all(items: &[String], what: &str) -> ApiResult<Vec<(String, Vec<u8>)>> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let name = format!("{what} {i}");
            image_bytes(item, &name).map(|bytes| (name, bytes))
        })
        .collect()
}
