//! `clip classify`: zero-shot probabilities, `softmax(logits_per_image)` over the label prompts, over class
//! names ensembled across prompt templates (`--classes`, `--templates`), or over a saved classifier.

use std::path::PathBuf;

use clip::zeroshot::prompts::{classes_from_spec, templates_from_spec, PLACEHOLDER};
use clip::zeroshot::top_k;

use clap::Args;

use crate::args::{GlobalArgs, ModelArg};
use crate::progress;
use crate::report::{input_failed, Outcome, UsageError};

use super::classifier::{build_classifier, load_classifier, save_classifier};
use super::{load_model, print_line, read_lines};

#[derive(Args, Debug)]
pub struct ClassifyArgs {
    #[command(flatten)]
    pub model: ModelArg,
    /// Images to classify
    #[arg(value_name = "IMAGE", required_unless_present = "save_classifier")]
    pub images: Vec<PathBuf>,
    /// Label prompts, e.g. "a photo of a dog"
    #[arg(long, num_args = 1.., value_name = "LABEL")]
    pub labels: Vec<String>,
    /// File with one label per line (added after --labels)
    #[arg(long, value_name = "FILE")]
    pub labels_file: Option<PathBuf>,
    /// Class names put into every prompt template and ensembled: imagenet, cifar10, cifar100 or a file with
    /// one name per line
    #[arg(long, value_name = "NAME|FILE", conflicts_with_all = ["labels", "labels_file", "classifier"])]
    pub classes: Option<String>,
    /// Prompt templates for --classes (or for --labels taken as class names): openai (80), simple (7) or a file
    /// with one template per line, {} marking the class name [default with --classes: openai]
    #[arg(long, value_name = "openai|simple|FILE", conflicts_with = "classifier")]
    pub templates: Option<String>,
    /// Show only the K most probable classes per image
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..))]
    pub top_k: Option<u64>,
    /// Save the classifier (class embeddings, names, templates, model hash) as safetensors
    #[arg(long, value_name = "F", conflicts_with = "classifier")]
    pub save_classifier: Option<PathBuf>,
    /// Use a classifier saved by --save-classifier or `clip probe`
    #[arg(long, value_name = "F", conflicts_with_all = ["labels", "labels_file"])]
    pub classifier: Option<PathBuf>,
    /// Tokenizer file or directory overriding the model's
    #[arg(long, value_name = "PATH")]
    pub vocab: Option<PathBuf>,
    /// One JSON object per image per line: {"image", "labels", "probs"}, or {"image", "error"} for an image
    /// that could not be read
    #[arg(long)]
    pub json: bool,
}

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
