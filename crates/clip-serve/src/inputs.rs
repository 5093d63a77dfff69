//! Turning request content into model inputs: JSON bodies whose rejections are JSON errors, images given as
//! data URIs or base64, and the two encode paths (decode on the blocking pool, then the batching queue).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use base64::Engine;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// `Json<T>` whose rejections (malformed JSON, unknown fields, a body over the limit) are [`ApiError`]s.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::TooLarge(rejection.body_text());
    }
    ApiError::BadRequest(rejection.body_text())
}

/// The bytes of an image given as a data URI (`data:image/png;base64,...`) or as plain base64.
pub fn image_bytes(text: &str, what: &str) -> ApiResult<Vec<u8>> {
    let payload = match text.strip_prefix("data:") {
        Some(rest) => {
            let (meta, data) = rest.split_once(',').ok_or_else(|| {
                ApiError::BadRequest(format!("{what}: a data URI without a comma"))
            })?;
            if !meta.ends_with(";base64") {
                return Err(ApiError::BadRequest(format!(
                    "{what}: only base64 data URIs are accepted (data:image/...;base64,...)"
                )));
            }
            data
        }
        None => text,
    };
    let payload: String = payload
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(&payload)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(&payload))
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(&payload))
        .map_err(|e| ApiError::BadRequest(format!("{what}: invalid base64 ({e})")))
}

pub fn is_data_uri(text: &str) -> bool {
    text.starts_with("data:image/")
}

/// Checks the number of items of one request against the limit.
pub fn check_count(state: &AppState, n: usize, what: &str) -> ApiResult<()> {
    if n == 0 {
        return Err(ApiError::BadRequest(format!("no {what} given")));
    }
    if n > state.options.max_items {
        return Err(ApiError::BadRequest(format!(
            "{n} {what} in one request; the limit is {} (--max-items)",
            state.options.max_items
        )));
    }
    Ok(())
}

/// Decodes and preprocesses images (on the blocking pool, one per core at a time), then encodes them through the image
/// queue. Raw features, in input order. `names` name the images in errors.
pub async fn embed_images(
    state: &Arc<AppState>,
    images: Vec<(String, Vec<u8>)>,
) -> ApiResult<Vec<Vec<f32>>> {
    let started = Instant::now();
    let loaded = state.loaded()?;
    // Admission before any decoding: a full queue refuses at once, and the memory held by requests being decoded
    // stays within the queue's bound.
    let reservation = loaded
        .images
        .reserve(images.len())
        .map_err(ApiError::Busy)?;
    let mut tasks = Vec::with_capacity(images.len());
    for (name, bytes) in images {
        let clip = Arc::clone(&loaded.clip);
        let metrics = Arc::clone(&state.metrics);
        // As many decodes at once as there are cores: more would only slice the cores the model needs.
        let permit = Arc::clone(&state.decode_slots)
            .acquire_owned()
            .await
            .map_err(|_| ApiError::Internal("decoding stopped".into()))?;
        tasks.push(tokio::task::spawn_blocking(
            move || -> clip::Result<Vec<f32>> {
                let _permit = permit;
                let start = Instant::now();
                // Pillow's decompression-bomb limit is checked from the header, before any pixel is decoded.
                let image = clip::preprocess::decode_named(&bytes, std::path::Path::new(&name))?;
                metrics.observe_stage("decode", start.elapsed());
                let start = Instant::now();
                let pixels = clip::preprocess::preprocess_image(&image, clip.preprocess_config())?;
                metrics.observe_stage("preprocess", start.elapsed());
                Ok(pixels)
            },
        ));
    }
    let mut pixels = Vec::with_capacity(tasks.len());
    for task in tasks {
        let result = task
            .await
            .map_err(|e| ApiError::Internal(format!("decoding failed: {e}")))?;
        pixels.push(result?);
    }
    let receivers = reservation.submit(pixels).map_err(ApiError::Busy)?;
    state.collect(receivers, started).await
}

/// Tokenizes texts (refusing, or with `--truncate` cutting, those over the context length) and encodes them
/// through the text queue. Raw features, in input order, and the number of tokens (start and end included).
pub async fn embed_texts(
    state: &Arc<AppState>,
    texts: &[String],
) -> ApiResult<(Vec<Vec<f32>>, usize)> {
    let started = Instant::now();
    let loaded = state.loaded()?;
    let ids = loaded
        .clip
        .tokenize(texts, state.options.truncate)
        .map_err(|e| {
            ApiError::Unprocessable(format!("{e} (the service was started without --truncate)"))
        })?;
    let tokens = ids
        .iter()
        .map(|row| row.iter().filter(|&&t| t != 0).count())
        .sum();
    let receivers = loaded.texts.submit(ids).map_err(ApiError::Busy)?;
    Ok((state.collect(receivers, started).await?, tokens))
}

/// L2-normalises each row in place.
pub fn normalize(rows: &mut [Vec<f32>]) {
    clip::normalize_rows(rows);
}
