//! `clip serve`: CLIP embeddings, zero-shot classification, ranking and photo search over HTTP, with requests
//! from many clients batched together, a bounded queue that answers 429 when full, Prometheus metrics, an
//! immich-compatible `/predict`, and a web page for searching photos.
//!
//! # Layers
//!
//! Modules use only modules declared before them (`tests/layers.rs` checks it):
//!
//! 0. `error`, `options`, `metrics` — leaves
//! 1. `batcher` — the queues
//! 2. `state` — what handlers share
//! 3. `inputs` — request content to model inputs
//! 4. `routes` — the handlers
//! 5. `server` — the router, authentication, request metrics, graceful shutdown

#![deny(unsafe_op_in_unsafe_fn)]
// Layer 0
mod error;
mod options;
mod metrics;
// Layer 1
mod batcher;
// Layer 2
mod state;
// Layer 3
mod inputs;
// Layer 4
mod routes;
// Layer 5
mod server;

pub use error::ApiError;
pub use options::ServeOptions;
pub use server::{serve, Server};
