//! Classifiers as the commands share them: built with a progress bar, loaded with the check that they belong to
//! the loaded model, saved bound to it.

use std::path::Path;

use anyhow::Context;
use clip::zeroshot::{Classifier, ModelIdentity};
use clip::Clip;

use crate::progress;

/// Builds a zero-shot classifier with a progress bar over classes (shown for big builds).
pub fn build_classifier(
    clip: &Clip,
    classes: &[String],
    templates: &[String],
    quiet: bool,
) -> anyhow::Result<Classifier> {
    let bar = progress::items(classes.len(), "building classifier", quiet);
    let classifier = Classifier::zero_shot(clip, classes, templates, |done, _| {
        bar.set_position(done as u64)
    })
    .context("cannot build the classifier")?;
    bar.finish_and_clear();
    Ok(classifier)
}

/// Loads a saved classifier and refuses it unless it was made with `clip`'s weights.
pub fn load_classifier(clip: &Clip, path: &Path) -> anyhow::Result<Classifier> {
    let classifier = Classifier::load(path)
        .with_context(|| format!("cannot load classifier {}", path.display()))?;
    let identity = ModelIdentity::of(clip).context("cannot identify the loaded model")?;
    classifier
        .check_model(&identity)
        .with_context(|| format!("cannot use classifier {}", path.display()))?;
    Ok(classifier)
}

/// Binds a classifier to the model and writes it.
pub fn save_classifier(
    clip: &Clip,
    classifier: &mut Classifier,
    path: &Path,
) -> anyhow::Result<()> {
    classifier
        .bind_to(clip)
        .context("cannot identify the loaded model")?;
    classifier
        .save(path)
        .with_context(|| format!("cannot save classifier {}", path.display()))?;
    let kind = match classifier.head {
        clip::zeroshot::Head::ZeroShot { .. } => {
            format!("{} templates", classifier.templates.len())
        }
        clip::zeroshot::Head::Linear { .. } => "linear probe".to_string(),
    };
    eprintln!(
        "saved classifier {} ({} classes, {kind})",
        path.display(),
        classifier.num_classes()
    );
    Ok(())
}
