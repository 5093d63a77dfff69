//! `clip classify`: zero-shot probabilities, `softmax(logits_per_image)` over the label prompts, over class
//! names ensembled across prompt templates (`--classes`, `--templates`), or over a saved classifier.

use std::path::PathBuf;

use clip::zeroshot::prompts::{classes_from_spec, templates_from_spec, PLACEHOLDER};
use clip::zeroshot::top_k;

use crate::args::{ClassifyArgs, GlobalArgs};
use crate::progress;
use crate::report::{input_failed, Outcome, UsageError};

use super::eval::{build_classifier, load_classifier, save_classifier};
use super::{load_model, print_line, read_lines};

/// Where the classifier comes from.
enum Source {
    Saved(PathBuf),
    Build {
        classes: Vec<String>,
        templates: Vec<String>,
    },
}

/// `--classifier`, else `--classes` in `--templates` (default openai), else the `--labels` as plain prompts
/// (or as class names when `--templates` is given).
fn source(args: &ClassifyArgs) -> anyhow::Result<Source> {
    if let Some(path) = &args.classifier {
        return Ok(Source::Saved(path.clone()));
    }
    if let Some(spec) = &args.classes {
        return Ok(Source::Build {
            classes: classes_from_spec(spec)?,
            templates: templates_from_spec(args.templates.as_deref().unwrap_or("openai"))?,
        });
    }
    let mut labels = args.labels.clone();
    if let Some(file) = &args.labels_file {
        labels.extend(read_lines(file, "label")?);
    }
    if labels.is_empty() {
        return Err(UsageError(
            "no labels: give --labels L1 L2 ..., --labels-file F, --classes NAME|FILE or --classifier F".into(),
        )
        .into());
    }
    let templates = match &args.templates {
        Some(spec) => templates_from_spec(spec)?,
        None => vec![PLACEHOLDER.to_string()],
    };
    Ok(Source::Build {
        classes: labels,
        templates,
    })
}

pub fn run(global: &GlobalArgs, args: ClassifyArgs) -> anyhow::Result<Outcome> {
    let source = source(&args)?;
    let clip = load_model(global, &args.model, args.vocab.as_deref())?;
    let mut classifier = match source {
        Source::Saved(path) => load_classifier(&clip, &path)?,
        Source::Build { classes, templates } => {
            build_classifier(&clip, &classes, &templates, global.quiet)?
        }
    };
    if let Some(path) = &args.save_classifier {
        save_classifier(&clip, &mut classifier, path)?;
    }
    if args.images.is_empty() {
        return Ok(Outcome::Success);
    }
    let labels = &classifier.class_names;
    let shown = args.top_k.map_or(labels.len(), |k| {
        usize::try_from(k).unwrap_or(usize::MAX).min(labels.len())
    });

    let bar = progress::items(args.images.len(), "classifying", global.quiet);
    let features = clip.encode_image_files(&args.images, |done| bar.set_position(done as u64));
    bar.finish_and_clear();

    let mut failed = 0;
    for (path, feature) in args.images.iter().zip(features) {
        let feature = match feature {
            Ok(f) => f,
            Err(e) => {
                // The image keeps its place in the output: scripts pair lines with inputs.
                failed += 1;
                input_failed(&e);
                if args.json {
                    let line = serde_json::json!({ "image": path, "error": e.to_string() });
                    print_line(&line.to_string())?;
                } else {
                    print_line(&path.display().to_string())?;
                    print_line(&format!("  error: {e}"))?;
                }
                continue;
            }
        };
        let probs = classifier.probabilities(&[feature])?.remove(0);
        if args.json {
            // All classes in class order; with --top-k only the best K, best first.
            let order: Vec<usize> = match args.top_k {
                Some(_) => top_k(&probs, shown),
                None => (0..labels.len()).collect(),
            };
            let names: Vec<&str> = order.iter().map(|&i| labels[i].as_str()).collect();
            let values: Vec<f32> = order.iter().map(|&i| probs[i]).collect();
            let line = serde_json::json!({ "image": path, "labels": names, "probs": values });
            print_line(&line.to_string())?;
        } else {
            print_line(&path.display().to_string())?;
            for i in top_k(&probs, shown) {
                print_line(&format!("  {:>6.2}%  {}", probs[i] * 100.0, labels[i]))?;
            }
        }
    }
    Ok(Outcome::from_failures(failed, args.images.len()))
}
