//! `clip classify`: zero-shot probabilities, `softmax(logits_per_image)` over the label prompts.

use crate::args::{ClassifyArgs, GlobalArgs};
use crate::progress;
use crate::report::{input_failed, Outcome, UsageError};

use super::{load_model, print_line, read_lines};

pub fn run(global: &GlobalArgs, args: ClassifyArgs) -> anyhow::Result<Outcome> {
    let mut labels = args.labels.clone();
    if let Some(file) = &args.labels_file {
        labels.extend(read_lines(file, "label")?);
    }
    if labels.is_empty() {
        return Err(
            UsageError("no labels: give --labels L1 L2 ... or --labels-file F".into()).into(),
        );
    }
    let clip = load_model(global, &args.model.model, args.vocab.as_deref())?;
    let text_features = clip.encode_texts(&labels, false)?;

    let bar = progress::items(args.images.len(), "classifying", global.quiet);
    let features = clip.encode_image_files(&args.images, |done| bar.set_position(done as u64));
    bar.finish_and_clear();

    let mut failed = 0;
    for (path, feature) in args.images.iter().zip(features) {
        let feature = match feature {
            Ok(f) => f,
            Err(e) => {
                failed += 1;
                input_failed(&e);
                continue;
            }
        };
        let probs = clip.probabilities(&[feature], &text_features)?.remove(0);
        if args.json {
            let line = serde_json::json!({ "image": path, "labels": labels, "probs": probs });
            print_line(&line.to_string())?;
        } else {
            print_line(&path.display().to_string())?;
            let mut order: Vec<usize> = (0..labels.len()).collect();
            order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
            for i in order {
                print_line(&format!("  {:>6.2}%  {}", probs[i] * 100.0, labels[i]))?;
            }
        }
    }
    Ok(Outcome::from_failures(failed, args.images.len()))
}
