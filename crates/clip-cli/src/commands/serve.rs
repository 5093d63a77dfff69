//! `clip serve`: the HTTP service (a thin layer over `clip_serve::serve`), until SIGTERM or Ctrl-C, which finish
//! the requests in flight.

use std::path::PathBuf;

use clap::Args;

use crate::args::{GlobalArgs, ModelArg};
use crate::report::{Outcome, UsageError};

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelArg,
    /// A photo index (`clip index`) to search; it must have been built with the same model
    #[arg(long, value_name = "F")]
    pub db: Option<PathBuf>,
    /// A saved classifier (`clip classify --save-classifier`, `clip probe`) that /v1/classify can name by its file
    /// stem; repeatable
    #[arg(long, value_name = "F")]
    pub classifier: Vec<PathBuf>,
    /// Address to listen on (loopback by default; set --api-key before opening it wider)
    #[arg(long, default_value = "127.0.0.1", value_name = "HOST")]
    pub host: String,
    #[arg(long, default_value_t = 8080, value_name = "PORT")]
    pub port: u16,
    /// Items per model call, at most
    #[arg(long, default_value_t = 32, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub max_batch: u64,
    /// Milliseconds the first item of a batch waits for others
    #[arg(long, default_value_t = 5, value_name = "MS", value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub max_wait_ms: u64,
    /// Items waiting per queue (images, texts) before requests are answered 429
    #[arg(long, default_value_t = 256, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub queue: u64,
    /// Largest request body (K, M, G suffixes)
    #[arg(long, default_value = "32M", value_name = "SIZE")]
    pub max_body: String,
    /// Images or texts per request, at most
    #[arg(long, default_value_t = 256, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_items: u64,
    /// Cut texts longer than the context length instead of answering 422
    #[arg(long)]
    pub truncate: bool,
    /// Require `Authorization: Bearer KEY` on every route but /health, /ready and /ping (also: $CLIP_API_KEY)
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,
    /// Seconds a request may take before it is answered 504
    #[arg(long, default_value_t = 60, value_name = "S", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
}

pub fn run(global: &GlobalArgs, args: ServeArgs) -> anyhow::Result<Outcome> {
    let max_body = clip::io::parse_size(&args.max_body).map_err(UsageError)?;
    let options = clip_serve::ServeOptions {
        model: args.model.model.clone(),
        load: clip::LoadOptions {
            hub: super::hub_options(global),
            vocab: None,
            precision: args.model.dtype,
            threads: global.threads,
            text_only: false,
        },
        db: args.db,
        classifiers: args.classifier,
        host: args.host,
        port: args.port,
        max_batch: args.max_batch as usize,
        max_wait: std::time::Duration::from_millis(args.max_wait_ms),
        queue: args.queue as usize,
        max_body_bytes: usize::try_from(max_body).unwrap_or(usize::MAX),
        max_items: args.max_items as usize,
        truncate: args.truncate,
        api_key: args
            .api_key
            .or_else(|| std::env::var("CLIP_API_KEY").ok().filter(|k| !k.is_empty())),
        timeout: std::time::Duration::from_secs(args.timeout),
    };
    // The network needs few threads; the model has its own.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let server = clip_serve::serve(options).await?;
        eprintln!("listening on http://{}", server.address);
        wait_for_signal().await;
        eprintln!("stopping: finishing the requests in flight");
        server.stop().await?;
        anyhow::Ok(())
    })?;
    Ok(Outcome::Success)
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
