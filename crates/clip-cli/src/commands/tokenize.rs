//! `clip tokenize`: ids exactly as OpenAI's `clip.tokenize`, one row per text padded with 0, streamed.

use crate::args::{GlobalArgs, TokenizeArgs};
use crate::json_list::JsonList;
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
    let tokenize = |text: &str| {
        tokenizer
            .tokenize(text, args.context_length, args.truncate)
            .map_err(|e| hint_truncate(e.into()))
    };
    if !args.truncate {
        // As clip.tokenize, one over-long text fails the call: find it before printing anything.
        for text in &texts {
            tokenize(text)?;
        }
    }
    if args.json {
        let mut list = JsonList::start()?;
        for text in &texts {
            list.push(&tokenize(text)?)?;
        }
        list.finish()?;
    } else {
        for text in &texts {
            let ids: Vec<String> = tokenize(text)?.iter().map(u32::to_string).collect();
            print_line(&ids.join(" "))?;
        }
    }
    Ok(Outcome::Success)
}
