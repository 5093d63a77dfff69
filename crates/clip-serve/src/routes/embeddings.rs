//! `POST /v1/embeddings` in OpenAI's shape, with Infinity's `modality` extension: texts, or images as data URIs
//! (or, with `"modality": "image"`, as base64). Raw features unless `"normalize": true`, as `clip embed`.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use base64::Engine;
use serde::Deserialize;

use crate::error::{ApiError, ApiResult};
use crate::inputs::{
    check_count, embed_images, embed_texts, image_bytes, is_data_uri, normalize, JsonBody,
};
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(untagged)]
enum Input {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Modality {
    Text,
    Image,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
enum EncodingFormat {
    #[default]
    Float,
    Base64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingsRequest {
    /// Accepted for compatibility; the service has one model.
    #[allow(dead_code)]
    model: Option<String>,
    input: Input,
    #[serde(default)]
    encoding_format: EncodingFormat,
    modality: Option<Modality>,
    #[serde(default)]
    normalize: bool,
    /// OpenAI's optional end-user id; accepted and ignored.
    #[allow(dead_code)]
    user: Option<String>,
}

pub async fn embeddings(
    State(state): State<Arc<AppState>>,
    JsonBody(request): JsonBody<EmbeddingsRequest>,
) -> ApiResult<Json<serde_json::Value>> {
    let items = match request.input {
        Input::One(s) => vec![s],
        Input::Many(v) => v,
    };
    check_count(&state, items.len(), "inputs")?;
    // Texts and images may be mixed; each goes to its own queue and the answer keeps the input order.
    let mut text_slots = Vec::new();
    let mut texts = Vec::new();
    let mut image_slots = Vec::new();
    let mut images = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let image = match request.modality {
            Some(Modality::Image) => true,
            Some(Modality::Text) => false,
            None => is_data_uri(&item),
        };
        if image {
            let what = format!("input {i}");
            images.push((what.clone(), image_bytes(&item, &what)?));
            image_slots.push(i);
        } else {
            texts.push(item);
            text_slots.push(i);
        }
    }
    let n = text_slots.len() + image_slots.len();
    let (text_rows, tokens) = if texts.is_empty() {
        (Vec::new(), 0)
    } else {
        embed_texts(&state, &texts).await?
    };
    let image_rows = if images.is_empty() {
        Vec::new()
    } else {
        embed_images(&state, images).await?
    };
    let mut rows: Vec<Vec<f32>> = vec![Vec::new(); n];
    for (slot, row) in text_slots
        .into_iter()
        .zip(text_rows)
        .chain(image_slots.into_iter().zip(image_rows))
    {
        rows[slot] = row;
    }
    if request.normalize {
        normalize(&mut rows);
    }
    let data: Vec<serde_json::Value> = rows
        .iter()
        .enumerate()
        .map(|(index, row)| {
            let embedding = match request.encoding_format {
                EncodingFormat::Float => serde_json::json!(row),
                EncodingFormat::Base64 => {
                    let bytes: Vec<u8> = row.iter().flat_map(|x| x.to_le_bytes()).collect();
                    serde_json::json!(base64::engine::general_purpose::STANDARD.encode(bytes))
                }
            };
            serde_json::json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    if data.len() != n {
        return Err(ApiError::Internal("lost an embedding".into()));
    }
    Ok(Json(serde_json::json!({
        "object": "list",
        "data": data,
        "model": state.options.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })))
}
