//! `clip tokenize`: ids exactly as OpenAI's `clip.tokenize`, one row per text padded with 0.

use crate::args::{GlobalArgs, TokenizeArgs};
use crate::report::Outcome;

use super::{hint_truncate, hub_options, print_line, read_lines};

pub fn run(global: &GlobalArgs, args: TokenizeArgs) -> anyhow::Result<Outcome> {
    let mut texts = args.texts.clone();
    if let Some(file) = &args.text_file {
        texts.extend(read_lines(file, "text")?);
    }
    let tokenizer = match &args.model {
        Some(model) => {
            clip::source::ModelSource::parse(model)?.tokenizer(&hub_options(global), None)?
        }
        None => clip::source::tokenizer_for(None, args.vocab.as_deref())?,
    };
    let rows = tokenizer
        .tokenize_batch(&texts, args.context_length, args.truncate)
        .map_err(|e| hint_truncate(e.into()))?;
    if args.json {
        print_line(&serde_json::to_string(&rows)?)?;
    } else {
        for row in rows {
            let ids: Vec<String> = row.iter().map(u32::to_string).collect();
            print_line(&ids.join(" "))?;
        }
    }
    Ok(Outcome::Success)
}
