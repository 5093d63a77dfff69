//! `clip embed`: raw `encode_image` / `encode_text` features as JSON or a float32 `[N, D]` .npy file.

use anyhow::Context;

use crate::args::{EmbedArgs, GlobalArgs};
use crate::progress;
use crate::report::{input_failed, Outcome};

use super::{hint_truncate, load_model, print_line, read_lines};

pub fn run(global: &GlobalArgs, args: EmbedArgs) -> anyhow::Result<Outcome> {
    let clip = load_model(global, &args.model, args.vocab.as_deref())?;
    let (mut rows, failed, total) = if !args.image.is_empty() {
        let bar = progress::items(args.image.len(), "embedding", global.quiet);
        let results = clip.encode_image_files(&args.image, |done| bar.set_position(done as u64));
        bar.finish_and_clear();
        let mut rows = Vec::with_capacity(results.len());
        let mut failed = 0;
        for result in results {
            match result {
                Ok(row) => rows.push(row),
                Err(e) => {
                    failed += 1;
                    input_failed(&e);
                }
            }
        }
        (rows, failed, args.image.len())
    } else {
        let mut texts = args.text.clone();
        if let Some(file) = &args.text_file {
            texts.extend(read_lines(file, "text")?);
        }
        let rows = clip
            .encode_texts(&texts, args.truncate)
            .map_err(hint_truncate)?;
        (rows, 0, texts.len())
    };
    if args.normalize {
        clip::loader::normalize_rows(&mut rows);
    }
    // With nothing embedded, an existing output file is left as it was.
    if let Some(output) = args.output.as_ref().filter(|_| !rows.is_empty()) {
        let dim = rows
            .first()
            .map_or(clip.model().config().projection_dim, Vec::len);
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        clip::npy::write_f32(output, &[rows.len(), dim], &flat)
            .with_context(|| format!("cannot write {}", output.display()))?;
    }
    if args.json {
        print_line(&serde_json::to_string(&rows)?)?;
    }
    Ok(Outcome::from_failures(failed, total))
}
