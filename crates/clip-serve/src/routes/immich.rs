//! immich's machine-learning API, so that an immich install can point its "machine learning URL" here for smart
//! search: `POST /predict` (multipart: `entries` JSON naming the task, and `image` or `text`) answering
//! `{"clip": "[...]"}` (the embedding as a JSON-array string, as immich's server reads it), plus
//! `imageHeight`/`imageWidth` for images, and `GET /ping` -> `pong`. Only the CLIP tasks are served; face
//! recognition and OCR requests get a 422 naming the task.

use std::sync::Arc;

use axum::extract::{Multipart, State};
use axum::Json;

use crate::error::{ApiError, ApiResult};
use crate::inputs::{embed_images, embed_texts};
use crate::state::AppState;

pub async fn ping() -> &'static str {
    "pong"
}

pub async fn predict(
    State(state): State<Arc<AppState>>,
    mut form: Multipart,
) -> ApiResult<Json<serde_json::Value>> {
    let mut entries: Option<String> = None;
    let mut image: Option<Vec<u8>> = None;
    let mut text: Option<String> = None;
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| ApiError::BadRequest(format!("malformed multipart body: {e}")))?
    {
        let name = field.name().unwrap_or_default().to_string();
        let bytes = field
            .bytes()
            .await
            .map_err(|e| ApiError::BadRequest(format!("cannot read field {name}: {e}")))?;
        match name.as_str() {
            "entries" => entries = Some(String::from_utf8_lossy(&bytes).into_owned()),
            "image" => image = Some(bytes.to_vec()),
            "text" => text = Some(String::from_utf8_lossy(&bytes).into_owned()),
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown field {other:?} (expected entries, image, text)"
                )))
            }
        }
    }
    let entries = entries.ok_or_else(|| ApiError::BadRequest("missing field entries".into()))?;
    let entries: serde_json::Value = serde_json::from_str(&entries)
        .map_err(|e| ApiError::BadRequest(format!("entries is not JSON: {e}")))?;
    let tasks = entries
        .as_object()
        .ok_or_else(|| ApiError::BadRequest("entries must be a JSON object of tasks".into()))?;
    if let Some(other) = tasks.keys().find(|k| k.as_str() != "clip") {
        return Err(ApiError::Unprocessable(format!(
            "task {other:?} is not served here; this service computes CLIP embeddings only"
        )));
    }
    let clip_task = tasks
        .get("clip")
        .and_then(|c| c.as_object())
        .ok_or_else(|| ApiError::BadRequest("entries has no clip task".into()))?;
    let mut response = serde_json::Map::new();
    let embedding = if clip_task.contains_key("visual") {
        let bytes = image
            .ok_or_else(|| ApiError::BadRequest("a visual task needs an image field".into()))?;
        let (width, height) = image_size(&bytes)?;
        response.insert("imageHeight".into(), height.into());
        response.insert("imageWidth".into(), width.into());
        embed_images(&state, vec![("image".into(), bytes)])
            .await?
            .pop()
    } else if clip_task.contains_key("textual") {
        let text =
            text.ok_or_else(|| ApiError::BadRequest("a textual task needs a text field".into()))?;
        embed_texts(&state, &[text]).await?.0.pop()
    } else {
        return Err(ApiError::BadRequest(
            "the clip task must be visual or textual".into(),
        ));
    };
    let embedding = embedding.ok_or_else(|| ApiError::Internal("no embedding".into()))?;
    response.insert(
        "clip".into(),
        serde_json::to_string(&embedding).unwrap_or_default().into(),
    );
    Ok(Json(serde_json::Value::Object(response)))
}

fn image_size(bytes: &[u8]) -> ApiResult<(u32, u32)> {
    let image =
        clip::preprocess::decode(bytes).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    Ok((image.width(), image.height()))
}
