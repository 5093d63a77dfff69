//! `clip probe`: a linear probe as in OpenAI's README: logistic regression on image embeddings, C swept on a
//! validation split, refitted on the training set, scored on the test set and saved as a classifier for
//! `clip classify --classifier` / `clip eval --classifier`.

use anyhow::Context;
use clip::zeroshot::probe::{accuracy, validation_split};
use clip::zeroshot::{fit_probe, Dataset, Encoded, ProbeOptions};
use serde_json::json;

use std::path::PathBuf;

use clap::Args;

use crate::args::{GlobalArgs, ModelArg};
use crate::progress;
use crate::report::{input_failed, Outcome};

use super::classifier::save_classifier;
use super::{load_model, print_line};

#[derive(Args, Debug)]
pub struct ProbeArgs {
    #[command(flatten)]
    pub model: ModelArg,
    /// Training images: an ImageFolder directory or a CSV file of path,label rows
    #[arg(long, value_name = "DIR|FILE.csv")]
    pub train: PathBuf,
    /// Test images, labelled with the training set's class names
    #[arg(long, value_name = "DIR|FILE.csv")]
    pub test: Option<PathBuf>,
    /// Where to save the probe as a classifier for `clip classify --classifier`
    #[arg(long, value_name = "F", default_value = "classifier.safetensors")]
    pub output: PathBuf,
    /// L-BFGS iterations per fit
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub max_iter: usize,
    /// Print the report as one JSON object
    #[arg(long)]
    pub json: bool,
}

/// Features and labels of a dataset's readable images, with a progress bar; unreadable ones are reported.
fn encode(clip: &clip::Clip, dataset: &Dataset, what: &str, quiet: bool) -> (Encoded, Vec<usize>) {
    let bar = progress::items(dataset.samples.len(), what, quiet);
    let encoded = dataset.encode(clip, |done, _| bar.set_position(done as u64));
    bar.finish_and_clear();
    for (path, error) in &encoded.unreadable {
        input_failed(&format!("unreadable image {}: {error}", path.display()));
    }
    let labels = encoded
        .indices
        .iter()
        .map(|&i| dataset.samples[i].label)
        .collect();
    (encoded, labels)
}

pub fn run(global: &GlobalArgs, args: ProbeArgs) -> anyhow::Result<Outcome> {
    let train = Dataset::open(&args.train)
        .with_context(|| format!("cannot read dataset {}", args.train.display()))?;
    let test = match &args.test {
        Some(path) => Some(
            Dataset::open(path)
                .and_then(|d| d.with_class_names(&train.classes))
                .with_context(|| format!("cannot read test dataset {}", path.display()))?,
        ),
        None => None,
    };
    let clip = load_model(global, &args.model, None)?;

    let (train_enc, train_y) = encode(&clip, &train, "encoding training images", global.quiet);
    let options = ProbeOptions {
        max_iter: args.max_iter,
        ..ProbeOptions::default()
    };
    let bar = progress::items(options.cs.len() + 1, "fitting", global.quiet);
    let probe = fit_probe(
        &train_enc.features,
        &train_y,
        train.classes.len(),
        &options,
        |done, _| bar.set_position(done as u64),
    )?;
    bar.finish_and_clear();
    let validation = validation_split(&train_y).1.len();

    let mut failed = train_enc.unreadable.len();
    let mut total = train.samples.len();
    let mut test_result = None;
    if let Some(test) = &test {
        let (test_enc, test_y) = encode(&clip, test, "encoding test images", global.quiet);
        let predicted = probe.model.predict(&test_enc.features);
        test_result = Some((accuracy(&predicted, &test_y), test_y.len()));
        failed += test_enc.unreadable.len();
        total += test.samples.len();
    }

    let mut classifier = probe.to_classifier(&train.classes);
    save_classifier(&clip, &mut classifier, &args.output)?;

    if args.json {
        let sweep: Vec<_> = probe
            .sweep
            .iter()
            .map(|p| json!({ "C": p.c, "val_accuracy": p.val_accuracy, "val_log_loss": p.val_log_loss }))
            .collect();
        let line = json!({
            "classes": train.classes,
            "train_images": train_y.len(),
            "validation_images": validation,
            "test_images": test_result.map(|(_, n)| n),
            "unreadable": failed,
            "sweep": sweep,
            "best_C": probe.best_c,
            "train_accuracy": probe.train_accuracy,
            "test_accuracy": test_result.map(|(a, _)| a),
            "output": args.output,
        });
        print_line(&line.to_string())?;
    } else {
        print_line(&format!(
            "train: {} images in {} classes ({validation} held out to pick C)",
            train_y.len(),
            train.classes.len()
        ))?;
        match probe.sweep.iter().find(|p| p.c == probe.best_c) {
            Some(best) => print_line(&format!(
                "C = {:.4e} (validation accuracy {:.2}%)",
                probe.best_c,
                best.val_accuracy * 100.0
            ))?,
            None => print_line(&format!(
                "C = {} (too few images for a validation split)",
                probe.best_c
            ))?,
        }
        print_line(&format!(
            "train accuracy: {:.2}%",
            probe.train_accuracy * 100.0
        ))?;
        if let Some((acc, n)) = test_result {
            print_line(&format!("test accuracy: {:.2}% ({n} images)", acc * 100.0))?;
        }
    }
    Ok(Outcome::from_failures(failed, total))
}
