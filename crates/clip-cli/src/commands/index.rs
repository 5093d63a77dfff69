//! `clip index`: build or update a photo index (a thin layer over `clip_search::index`).

use std::path::{Path, PathBuf};

use clap::Args;

use crate::args::GlobalArgs;
use crate::progress;
use crate::report::Outcome;

use super::print_line;
use super::search::{load_index_model, IndexModelArgs};

#[derive(Args, Debug)]
pub struct IndexArgs {
    /// Folders (or single images) to index; files no longer found under them are removed from the index
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// The index file (SQLite; created when absent)
    #[arg(long, value_name = "F")]
    pub db: PathBuf,
    #[command(flatten)]
    pub model: IndexModelArgs,
    /// Print a JSON summary: {"added", "updated", "removed", "unchanged", "reused", "failed": [{"path", "error"}], ...}
    #[arg(long)]
    pub json: bool,
    /// Wait for another `clip index` on the same index to finish instead of failing at once
    #[arg(long)]
    pub wait: bool,
    /// Images from which on queries use the HNSW graph instead of exact search
    #[arg(long, value_name = "N", default_value_t = clip_search::DEFAULT_THRESHOLD)]
    pub ann_threshold: usize,
    /// Files per committed transaction (what a killed run can lose)
    #[arg(long, value_name = "N", default_value_t = clip_search::COMMIT_BATCH as u64, hide = true,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub commit_every: u64,
}

pub fn run(global: &GlobalArgs, args: IndexArgs) -> anyhow::Result<Outcome> {
    let (clip, spec, dtype) = load_index_model(global, &args.model, &args.db, false)?;
    let options = clip_search::IndexOptions {
        model_spec: spec,
        dtype,
        wait: args.wait,
        ann: clip_search::AnnOptions {
            threshold: args.ann_threshold,
            ..Default::default()
        },
        commit_batch: args.commit_every as usize,
    };
    let quiet = global.quiet || args.json;
    // The bar is made once the number of files to read is known (it stays hidden for a handful).
    let mut bar: Option<indicatif::ProgressBar> = None;
    let summary = clip_search::index(&clip, &args.db, &args.dirs, &options, |p| {
        bar.get_or_insert_with(|| progress::items(p.total, "indexing", quiet))
            .set_position(p.done as u64);
    })?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    for failure in &summary.failed {
        eprintln!("warning: not indexed: {}", failure.error_line());
    }
    if args.json {
        print_line(&serde_json::to_string(&summary)?)?;
    } else {
        print_line(&describe(&summary, &args.db))?;
    }
    Ok(Outcome::Success)
}

fn describe(s: &clip_search::IndexSummary, db: &Path) -> String {
    format!(
        "{}: {} added, {} updated, {} removed, {} unchanged, {} failed ({} reused an indexed twin's embedding); \
         {} images, {} search",
        db.display(),
        s.added,
        s.updated,
        s.removed,
        s.unchanged,
        s.failed.len(),
        s.reused,
        s.total,
        if s.ann { "HNSW" } else { "exact" }
    )
}
