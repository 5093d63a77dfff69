//! `clip models`: OpenAI's nine released models, as `clip.available_models()` lists them, with cache state.

use clap::Args;

use crate::args::GlobalArgs;
use crate::report::Outcome;

use super::{hub_options, print_line};

#[derive(Args, Debug)]
pub struct ModelsArgs {
    /// Print one JSON object per model per line
    #[arg(long)]
    pub json: bool,
}

pub fn run(global: &GlobalArgs, args: ModelsArgs) -> anyhow::Result<Outcome> {
    let options = hub_options(global);
    if !args.json {
        print_line(&format!(
            "{:<16} {:>10} {:>10}  {}",
            "name", "resolution", "cached", "file"
        ))?;
    }
    for name in clip::registry::available_models() {
        let Some(model) = clip::registry::openai_model(name) else {
            continue;
        };
        let size = model.cached_size(&options);
        let path = model.cache_path(&options);
        if args.json {
            let line = serde_json::json!({
                "name": name,
                "image_size": model.image_size,
                "cached": size.is_some(),
                "size_bytes": size,
                "path": path,
                "url": model.url,
                "sha256": model.sha256,
            });
            print_line(&line.to_string())?;
        } else {
            let cached = size.map_or("no".to_string(), |b| format!("{:.0} MB", b as f64 / 1e6));
            print_line(&format!(
                "{name:<16} {:>10} {cached:>10}  {}",
                model.image_size,
                path.display()
            ))?;
        }
    }
    if !args.json {
        print_line("Also: Hugging Face ids (openai/clip-vit-base-patch32), hf-hub:ORG/NAME and open_clip ARCH:TAG.")?;
    }
    Ok(Outcome::Success)
}
