//! The router and the server: routes, the API key check, request metrics, the body limit, and a graceful
//! shutdown on SIGTERM or Ctrl-C that finishes the requests in flight.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::error::ApiError;
use crate::options::ServeOptions;
use crate::routes::{embeddings, immich, ops, search, zeroshot};
use crate::state::AppState;

/// Routes that answer without the API key: probes, and the page (which sends the key itself).
const OPEN_ROUTES: &[&str] = &["/health", "/ready", "/ping", "/"];

pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.options.max_body_bytes;
    Router::new()
        .route("/", get(ops::page))
        .route("/health", get(ops::health))
        .route("/ready", get(ops::ready))
        .route("/metrics", get(ops::metrics))
        .route("/ping", get(immich::ping))
        .route("/predict", post(immich::predict))
        .route("/v1/embeddings", post(embeddings::embeddings))
        .route("/v1/classify", post(zeroshot::classify))
        .route("/v1/rank", post(zeroshot::rank))
        .route(
            "/v1/search",
            get(search::search_get).post(search::search_post),
        )
        .route("/v1/thumbnail/{id}", get(search::thumbnail))
        .route("/v1/info", get(search::info))
        .fallback(|| async {
            ApiError::NotFound("no such route (see /openapi.yaml in the repository's docs/)".into())
        })
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            authenticate,
        ))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            record,
        ))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

async fn authenticate(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(key) = &state.options.api_key else {
        return next.run(request).await;
    };
    if OPEN_ROUTES.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Thumbnails are loaded by <img> tags, which cannot send headers: they may carry ?key=.
    let query_key = request
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|pair| pair.strip_prefix("key=")))
        .map(percent_decode);
    let matches = |given: &[u8]| constant_time_eq(given, key.as_bytes());
    if bearer.is_some_and(|b| matches(b.as_bytes())) || query_key.is_some_and(|q| matches(&q)) {
        next.run(request).await
    } else {
        ApiError::Unauthorized.into_response()
    }
}

/// `%XX` escapes and `+` (a space in a query string) decoded; malformed escapes kept as they are.
fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// Compares without an early exit, so the time taken does not reveal how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn record(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let start = Instant::now();
    let mut response = next.run(request).await;
    // axum answers a known route with the wrong method with an empty 405: give it the JSON error body.
    if response.status() == axum::http::StatusCode::METHOD_NOT_ALLOWED {
        response = ApiError::MethodNotAllowed.into_response();
    }
    state
        .metrics
        .observe_request(&route, response.status().as_u16(), start.elapsed());
    response
}

/// A running service: its address, and a handle to stop it.
pub struct Server {
    pub address: SocketAddr,
    shutdown: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Stops accepting, finishes the requests in flight, and returns.
    pub async fn stop(self) -> std::io::Result<()> {
        let _ = self.shutdown.send(true);
        self.task.await.map_err(std::io::Error::other)?
    }
}

/// Binds the address, starts answering (`/health` at once), and loads the model in the background (`/ready` is
/// 200 once it is loaded). Call from within a tokio runtime.
pub async fn serve(options: ServeOptions) -> std::io::Result<Server> {
    let address = format!("{}:{}", options.host, options.port);
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {address}: {e}")))?;
    let address = listener.local_addr()?;
    let state = AppState::new(options);
    let loader = Arc::clone(&state);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = loader.load() {
            eprintln!("error: {e}");
        }
    });
    let (shutdown, mut stopped) = tokio::sync::watch::channel(false);
    let app = router(state);
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            })
            .await
    });
    Ok(Server {
        address,
        shutdown,
        task,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_keys_are_percent_decoded() {
        assert_eq!(percent_decode("a%2Bb%2Fc%3Dd"), b"a+b/c=d");
        assert_eq!(percent_decode("a+b"), b"a b");
        assert_eq!(percent_decode("100%"), b"100%");
        assert_eq!(percent_decode("%zz%4"), b"%zz%4");
        assert!(constant_time_eq(b"sesame", b"sesame"));
        assert!(!constant_time_eq(b"sesame", b"sesamE"));
        assert!(!constant_time_eq(b"sesame", b"sesam"));
    }
}
