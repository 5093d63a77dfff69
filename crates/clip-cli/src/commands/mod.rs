//! One module per subcommand; this file dispatches and holds what they share.

pub mod bench;
mod classifier;
pub mod classify;
pub mod condition;
pub mod embed;
pub mod eval;
pub mod models;
pub mod preprocess;
pub mod probe;
mod rows;
pub mod tokenize;

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

use crate::args::{Cli, Command, GlobalArgs, ModelArg};
use crate::progress::DownloadBar;
use crate::report::Outcome;

pub fn run(cli: Cli) -> anyhow::Result<Outcome> {
    apply_process_settings(&cli.global)?;
    match cli.command {
        Command::Classify(args) => classify::run(&cli.global, args),
        Command::Embed(args) => embed::run(&cli.global, args),
        Command::Tokenize(args) => tokenize::run(&cli.global, args),
        Command::Preprocess(args) => preprocess::run(&cli.global, args),
        Command::Bench(args) => bench::run(&cli.global, args),
        Command::Models(args) => models::run(&cli.global, args),
        Command::Eval(args) => eval::run(&cli.global, args),
        Command::Probe(args) => probe::run(&cli.global, args),
        Command::Condition(args) => condition::run(&cli.global, args),
    }
}

/// `--threads` for every computation, `--max-image-bytes` / `--max-text-bytes` for every read.
fn apply_process_settings(global: &GlobalArgs) -> anyhow::Result<()> {
    use clip::io::{set_limit, Input};
    if let Some(n) = global.threads {
        clip::threads::set(n).map_err(crate::report::UsageError)?;
    }
    for (kind, bytes) in [
        (Input::Image, global.max_image_bytes),
        (Input::Text, global.max_text_bytes),
    ] {
        if let Some(bytes) = bytes {
            set_limit(kind, bytes).map_err(crate::report::UsageError)?;
        }
    }
    Ok(())
}

fn hub_options(global: &GlobalArgs) -> clip::hub::HubOptions {
    clip::hub::HubOptions {
        cache_dir: global.cache_dir.clone(),
        offline: global.offline,
        progress: Some(Arc::new(DownloadBar::new(global.quiet))),
    }
}

fn load_model(
    global: &GlobalArgs,
    model: &ModelArg,
    vocab: Option<&Path>,
) -> anyhow::Result<clip::Clip> {
    let options = clip::LoadOptions {
        hub: hub_options(global),
        vocab: vocab.map(Path::to_path_buf),
        precision: model.dtype,
        threads: global.threads,
    };
    let name = &model.model;
    clip::Clip::load(name, &options).with_context(|| format!("cannot load model {name}"))
}

/// Non-empty lines of a text file, or of standard input for `-` (trailing whitespace and `\r` removed). Only
/// regular files within the text size limit are read.
fn read_lines(path: &Path, what: &str) -> anyhow::Result<Vec<String>> {
    let text = if path == Path::new("-") {
        let bytes = clip::io::read_stdin(clip::io::Input::Text)?;
        String::from_utf8(bytes).map_err(|e| {
            anyhow::anyhow!(
                "cannot read {what}s from standard input: not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            )
        })?
    } else {
        clip::io::read_input_text(path, clip::io::Input::Text)?
    };
    let lines: Vec<String> = text
        .lines()
        .map(|l| l.trim_end().to_string())
        .filter(|l| !l.trim().is_empty())
        .collect();
    if lines.is_empty() {
        anyhow::bail!("{what} file {} has no {what}s", path.display());
    }
    Ok(lines)
}

/// Adds the command-line remedy to a too-long-text error.
fn hint_truncate(error: clip::ClipError) -> anyhow::Error {
    let too_long = matches!(
        &error,
        clip::ClipError::Tokenizer(clip::tokenizer::TokenizerError::TooLong { .. })
    );
    if too_long {
        anyhow::anyhow!("{error} (use --truncate to cut it)")
    } else {
        error.into()
    }
}

/// Writes to stdout; a closed pipe (e.g. `| head`) ends quietly instead of panicking.
fn print_line(line: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{line}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        other => other.context("cannot write to stdout"),
    }
}
