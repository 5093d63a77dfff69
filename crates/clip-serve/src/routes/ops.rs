//! The routes for operators: `/health` (the process is up), `/ready` (the model is loaded), `/metrics`
//! (Prometheus text) and the web page at `/`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use crate::state::AppState;

const PAGE: &str = include_str!("../../static/index.html");

pub async fn health() -> &'static str {
    "ok"
}

pub async fn ready(State(state): State<Arc<AppState>>) -> Response {
    if state.is_ready() {
        (StatusCode::OK, "ready").into_response()
    } else if let Some(error) = state.load_error() {
        (StatusCode::SERVICE_UNAVAILABLE, format!("failed: {error}")).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "loading").into_response()
    }
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let text = state.metrics.render(&state.queue_depths());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

pub async fn page() -> Html<&'static str> {
    Html(PAGE)
}
