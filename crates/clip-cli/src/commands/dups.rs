//! `clip dups`: groups of near-duplicate photos in an index (a thin layer over `clip_search::find_duplicates`).

use std::path::PathBuf;

use clap::Args;

use crate::args::GlobalArgs;
use crate::report::{Outcome, UsageError};

use super::print_line;

#[derive(Args, Debug)]
pub struct DupsArgs {
    /// The index file
    #[arg(long, value_name = "F")]
    pub db: PathBuf,
    /// Cosine similarity from which two photos count as duplicates (0 to 1)
    #[arg(long, default_value_t = 0.95, value_name = "T")]
    pub threshold: f32,
    /// Print a JSON array of groups [{"size", "min_score", "paths"}], largest first
    #[arg(long)]
    pub json: bool,
}

pub fn run(_global: &GlobalArgs, args: DupsArgs) -> anyhow::Result<Outcome> {
    if !(args.threshold.is_finite() && (-1.0..=1.0).contains(&args.threshold)) {
        return Err(UsageError(format!(
            "--threshold {} is not a cosine similarity (between -1 and 1)",
            args.threshold
        ))
        .into());
    }
    // No model is needed: the embeddings are in the index.
    let searcher = clip_search::Searcher::open(&args.db)?;
    let groups = clip_search::find_duplicates(&searcher, args.threshold)?;
    if args.json {
        let rows: Vec<serde_json::Value> = groups
            .iter()
            .map(|g| {
                serde_json::json!({
                    "size": g.images.len(),
                    "min_score": g.min_score,
                    "paths": g.images.iter().map(|(_, r)| r.path.display().to_string()).collect::<Vec<_>>(),
                })
            })
            .collect();
        print_line(&serde_json::to_string(&rows)?)?;
    } else {
        for (i, group) in groups.iter().enumerate() {
            if i > 0 {
                print_line("")?;
            }
            print_line(&format!(
                "{} photos (similarity >= {:.4}):",
                group.images.len(),
                group.min_score
            ))?;
            for (_, record) in &group.images {
                print_line(&format!("  {}", record.path.display()))?;
            }
        }
    }
    Ok(Outcome::Success)
}
