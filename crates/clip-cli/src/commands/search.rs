//! `clip search`: rank an index's photos by a text/image query (a thin layer over `clip_search::Searcher`).
//! Also the model choice that `index`, `search` and `dups` share: the index remembers its model.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

use crate::args::GlobalArgs;
use crate::report::{Outcome, UsageError};

use super::print_line;

#[derive(Args, Debug)]
pub struct IndexModelArgs {
    /// Model [default: the one the index was built with, else ViT-B/32]; another path to the same weights is
    /// accepted, another model is refused
    #[arg(long, short, value_name = "M")]
    pub model: Option<String>,
    /// Arithmetic: f32, bf16, int8 or auto (the fastest within its bar on this CPU) [default: the index's, else
    /// f32]
    #[arg(long, value_name = "f32|bf16|int8|auto", value_parser = clip::Precision::parse_or_auto)]
    pub dtype: Option<clip::Precision>,
}

/// Loads the model for an index: the one named, else the one the index records, else the default.
pub fn load_index_model(
    global: &GlobalArgs,
    args: &IndexModelArgs,
    db: &Path,
    text_only: bool,
) -> anyhow::Result<(clip::Clip, String, clip::Precision)> {
    let stored = if db.exists() {
        clip_search::Store::open_read_only(db)?.model()?
    } else {
        None
    };
    let spec = args
        .model
        .clone()
        .or_else(|| stored.as_ref().map(|m| m.spec.clone()))
        .unwrap_or_else(|| clip::DEFAULT_MODEL.to_string());
    let dtype = match (args.dtype, &stored) {
        (Some(d), _) => d,
        (None, Some(m)) => m.dtype.parse().map_err(anyhow::Error::msg)?,
        (None, None) => clip::Precision::F32,
    };
    let model = crate::args::ModelArg {
        model: spec.clone(),
        dtype,
    };
    let clip = super::load_model_towers(global, &model, None, text_only)?;
    Ok((clip, spec, dtype))
}

#[derive(Args, Debug)]
#[command(group = clap::ArgGroup::new("what").required(true).multiple(true).args(["query", "image"]))]
pub struct SearchArgs {
    /// Query: words, image paths (starting with /, ./, ../ or ~/), joined by + and -, each optionally weighted
    /// as W:term, e.g. "2:golden retriever" + ./pool.jpg - fruit
    #[arg(value_name = "QUERY")]
    pub query: Vec<String>,
    /// The index file
    #[arg(long, value_name = "F")]
    pub db: PathBuf,
    /// An image to search by (added to the query with weight 1)
    #[arg(long, value_name = "P")]
    pub image: Vec<PathBuf>,
    #[command(flatten)]
    pub model: IndexModelArgs,
    /// Results to return
    #[arg(long, short = 'k', default_value_t = 10, value_name = "K", value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub top_k: u64,
    /// Leave out results with a cosine similarity below S
    #[arg(long, value_name = "S", allow_hyphen_values = true)]
    pub min_score: Option<f32>,
    /// Only images under this folder
    #[arg(long, value_name = "DIR")]
    pub under: Option<PathBuf>,
    /// Only images taken (EXIF date, else modified) on or after this date: YYYY-MM-DD[THH:MM[:SS]]
    #[arg(long, value_name = "DATE")]
    pub after: Option<String>,
    /// Only images taken before this date
    #[arg(long, value_name = "DATE")]
    pub before: Option<String>,
    /// Rank every image exactly even when the index has an HNSW graph
    #[arg(long)]
    pub exact: bool,
    /// Print a JSON array [{"path", "score", ...}], best first
    #[arg(long, conflicts_with = "paths")]
    pub json: bool,
    /// Print paths alone, one per line (for piping)
    #[arg(long)]
    pub paths: bool,
}

pub fn run(global: &GlobalArgs, args: SearchArgs) -> anyhow::Result<Outcome> {
    let query = clip_search::Query::parse(&args.query, &args.image)
        .map_err(|e| UsageError(e.to_string()))?;
    let filter = clip_search::Filter {
        under: args
            .under
            .as_ref()
            .map(|d| std::fs::canonicalize(d).with_context(|| format!("--under {}", d.display())))
            .transpose()?,
        after: args.after.as_deref().map(date_bound).transpose()?,
        before: args.before.as_deref().map(date_bound).transpose()?,
    };
    let searcher = clip_search::Searcher::open(&args.db)?;
    // A text-only query loads the text tower alone (less than half the load time of the whole model).
    let text_only = query
        .terms
        .iter()
        .all(|t| matches!(t.kind, clip_search::TermKind::Text(_)));
    let (clip, spec, dtype) = load_index_model(global, &args.model, &args.db, text_only)?;
    searcher.check_model(&clip, &spec, dtype)?;
    let vector = searcher.query_vector(&clip, &query)?;
    let options = clip_search::SearchOptions {
        top_k: args.top_k as usize,
        min_score: args.min_score,
        filter,
        exact: args.exact,
        ..Default::default()
    };
    let hits = searcher.search(&vector, &options)?;
    if args.json {
        let rows: Vec<serde_json::Value> = hits.iter().map(hit_json).collect();
        print_line(&serde_json::to_string(&rows)?)?;
    } else {
        for hit in &hits {
            if args.paths {
                print_line(&hit.record.path.display().to_string())?;
            } else {
                print_line(&format!("{:.4}  {}", hit.score, hit.record.path.display()))?;
            }
        }
    }
    Ok(Outcome::Success)
}

fn date_bound(text: &str) -> anyhow::Result<String> {
    clip_search::parse_date_bound(text).map_err(|e| UsageError(e).into())
}

pub fn hit_json(hit: &clip_search::Hit) -> serde_json::Value {
    let r = &hit.record;
    serde_json::json!({
        "path": r.path.display().to_string(),
        "score": hit.score,
        "date": r.date,
        "taken": r.taken,
        "camera": r.camera,
        "width": r.width,
        "height": r.height,
    })
}
