//! `clip eval`: zero-shot (or saved-classifier) accuracy on an ImageFolder directory or a path,label CSV:
//! top-1 / top-5, per-class accuracy, a confusion-matrix CSV; unreadable images are listed, never dropped.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use clip::zeroshot::prompts::{classes_from_spec, templates_from_spec};
use clip::zeroshot::{Dataset, EvalReport};
use serde_json::json;

use crate::args::{GlobalArgs, ModelArg};
use crate::progress;
use crate::report::{input_failed, Outcome};

use super::classifier::{build_classifier, load_classifier};
use super::{load_model, print_line};

#[derive(Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArg,
    /// An ImageFolder directory (one sub-folder per class) or a CSV file of path,label rows
    #[arg(long, value_name = "DIR|FILE.csv")]
    pub dataset: PathBuf,
    /// Class names for the prompts: imagenet, cifar10, cifar100 or a file with one name per line, in the order
    /// of the dataset's sorted class folders or matching its labels [default: the dataset's class names]
    #[arg(long, value_name = "NAME|FILE", conflicts_with = "classifier")]
    pub classes: Option<String>,
    /// Prompt templates: openai (80), simple (7) or a file with one template per line, {} marking the class
    /// name [default: openai]
    #[arg(long, value_name = "openai|simple|FILE", conflicts_with = "classifier")]
    pub templates: Option<String>,
    /// Use a classifier saved by `clip classify --save-classifier` or `clip probe`
    #[arg(long, value_name = "F")]
    pub classifier: Option<PathBuf>,
    /// Write the confusion matrix (rows: true class, columns: predicted) as CSV
    #[arg(long, value_name = "F.csv")]
    pub confusion: Option<PathBuf>,
    /// Tokenizer file or directory overriding the model's
    #[arg(long, value_name = "PATH")]
    pub vocab: Option<PathBuf>,
    /// Print the report as one JSON object
    #[arg(long)]
    pub json: bool,
}

pub fn run(global: &GlobalArgs, args: EvalArgs) -> anyhow::Result<Outcome> {
    let dataset = Dataset::open(&args.dataset)
        .with_context(|| format!("cannot read dataset {}", args.dataset.display()))?;
    // Check the prompt inputs before the (slow) model load.
    let class_names = args.classes.as_deref().map(classes_from_spec).transpose()?;
    let templates = templates_from_spec(args.templates.as_deref().unwrap_or("openai"))?;
    let clip = load_model(global, &args.model, args.vocab.as_deref())?;
    let classifier = match &args.classifier {
        Some(path) => load_classifier(&clip, path)?,
        None => {
            let names = class_names.unwrap_or_else(|| dataset.classes.clone());
            build_classifier(&clip, &names, &templates, global.quiet)?
        }
    };
    let dataset = dataset
        .with_class_names(&classifier.class_names)
        .with_context(|| format!("dataset {}", args.dataset.display()))?;
    for path in &dataset.ignored {
        eprintln!(
            "warning: ignored {} (not an image file extension)",
            path.display()
        );
    }

    let bar = progress::items(dataset.samples.len(), "evaluating", global.quiet);
    let report = clip::zeroshot::evaluate(&clip, &classifier, &dataset, |done, _| {
        bar.set_position(done as u64)
    })?;
    bar.finish_and_clear();

    if let Some(path) = &args.confusion {
        clip::io::write_output(path, report.confusion_csv().as_bytes())
            .context("cannot write the confusion matrix")?;
    }
    for (path, error) in &report.unreadable {
        input_failed(&format!("unreadable image {}: {error}", path.display()));
    }
    if args.json {
        print_line(&report_json(&report, &args.dataset).to_string())?;
    } else {
        print_text(&report, &args.dataset)?;
    }
    Ok(Outcome::from_failures(
        report.unreadable.len(),
        report.total,
    ))
}

fn report_json(report: &EvalReport, dataset: &Path) -> serde_json::Value {
    let per_class: Vec<_> = report
        .classes
        .iter()
        .zip(report.per_class())
        .map(|(name, (images, correct, accuracy))| {
            json!({ "class": name, "images": images, "correct": correct, "accuracy": accuracy })
        })
        .collect();
    let predictions: Vec<_> = report
        .predictions
        .iter()
        .map(|p| json!({ "path": p.path, "label": p.label, "top": p.top }))
        .collect();
    let unreadable: Vec<_> = report
        .unreadable
        .iter()
        .map(|(path, error)| json!({ "path": path, "error": error }))
        .collect();
    json!({
        "dataset": dataset,
        "classes": report.classes,
        "images": report.total,
        "evaluated": report.evaluated(),
        "unreadable": unreadable,
        "top1": report.top1(),
        "top5": report.top5(),
        "top_k": report.k,
        "mean_per_class": report.mean_per_class(),
        "per_class": per_class,
        "confusion": report.confusion,
        "predictions": predictions,
    })
}

fn print_text(report: &EvalReport, dataset: &Path) -> anyhow::Result<()> {
    let n = report.evaluated();
    let count = |f: f64| (f * n as f64).round() as usize;
    print_line(&format!(
        "{}: {} classes, {} images, {} evaluated, {} unreadable",
        dataset.display(),
        report.classes.len(),
        report.total,
        n,
        report.unreadable.len()
    ))?;
    print_line(&format!(
        "top-1 accuracy: {:6.2}% ({}/{n})",
        report.top1() * 100.0,
        count(report.top1())
    ))?;
    print_line(&format!(
        "top-{} accuracy: {:6.2}% ({}/{n})",
        report.k,
        report.top5() * 100.0,
        count(report.top5())
    ))?;
    print_line(&format!(
        "mean per-class accuracy: {:6.2}%",
        report.mean_per_class() * 100.0
    ))?;
    print_line("per-class accuracy:")?;
    let width = report
        .classes
        .iter()
        .map(|c| c.chars().count())
        .max()
        .unwrap_or(0)
        .min(40);
    for (name, (images, correct, accuracy)) in report.classes.iter().zip(report.per_class()) {
        if images == 0 {
            continue;
        }
        let accuracy = accuracy.unwrap_or(0.0) * 100.0;
        print_line(&format!(
            "  {name:<width$}  {correct:>5}/{images:<5} {accuracy:6.2}%"
        ))?;
    }
    if !report.unreadable.is_empty() {
        print_line(&format!(
            "unreadable images ({}, not counted above):",
            report.unreadable.len()
        ))?;
        for (path, error) in &report.unreadable {
            print_line(&format!("  {}: {error}", path.display()))?;
        }
    }
    Ok(())
}
