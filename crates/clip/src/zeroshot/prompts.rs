//! Prompt templates and class-name lists as data, not code: OpenAI's 80 ImageNet templates and its 7-template
//! subset (open_clip's `zero_shot_metadata.OPENAI_IMAGENET_TEMPLATES` / `SIMPLE_IMAGENET_TEMPLATES`), OpenAI's
//! curated ImageNet-1k class names (`IMAGENET_CLASSNAMES`) and the CIFAR-10 / CIFAR-100 label names. The files
//! under `crates/clip/data/zeroshot/` are written by `scripts/fixtures/gen_zeroshot_data.py`; user lists are
//! text files with one entry per line, `{}` marking where a template takes the class name.

use std::path::Path;

use crate::error::{ClipError, Result};

/// Where a template takes the class name.
pub const PLACEHOLDER: &str = "{}";

const TEMPLATES_OPENAI: &str = include_str!("../../data/zeroshot/templates_openai.txt");
const TEMPLATES_SIMPLE: &str = include_str!("../../data/zeroshot/templates_simple.txt");
const CLASSES_IMAGENET: &str = include_str!("../../data/zeroshot/classes_imagenet.txt");
const CLASSES_CIFAR10: &str = include_str!("../../data/zeroshot/classes_cifar10.txt");
const CLASSES_CIFAR100: &str = include_str!("../../data/zeroshot/classes_cifar100.txt");

/// Names accepted by [`templates_from_spec`]: `openai` (80 templates) and `simple` (OpenAI's 7-template subset).
pub const TEMPLATE_SETS: [&str; 2] = ["openai", "simple"];
/// Names accepted by [`classes_from_spec`].
pub const CLASS_SETS: [&str; 3] = ["imagenet", "cifar10", "cifar100"];

fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.trim_end().to_string())
        .filter(|l| !l.trim().is_empty())
        .collect()
}

/// A built-in template set by name (`openai`, `simple`).
pub fn builtin_templates(name: &str) -> Option<Vec<String>> {
    match name.to_ascii_lowercase().as_str() {
        "openai" | "openai80" | "imagenet" => Some(lines(TEMPLATES_OPENAI)),
        "simple" | "openai7" => Some(lines(TEMPLATES_SIMPLE)),
        _ => None,
    }
}

/// A built-in class-name list by name (`imagenet`, `cifar10`, `cifar100`).
pub fn builtin_classes(name: &str) -> Option<Vec<String>> {
    match name.to_ascii_lowercase().replace(['-', '_'], "").as_str() {
        "imagenet" | "imagenet1k" => Some(lines(CLASSES_IMAGENET)),
        "cifar10" => Some(lines(CLASSES_CIFAR10)),
        "cifar100" => Some(lines(CLASSES_CIFAR100)),
        _ => None,
    }
}

/// Non-empty lines of a user file (trailing whitespace and `\r` removed); an empty list is an error.
pub fn read_list(path: &Path, what: &str) -> Result<Vec<String>> {
    let text = clip_io::read_input_text(path, clip_io::Input::Text)?;
    let entries = lines(&text);
    if entries.is_empty() {
        return Err(ClipError::InvalidInput(format!(
            "{what} file {} is empty",
            path.display()
        )));
    }
    Ok(entries)
}

/// Templates from a built-in name or a file; each must hold `{}` exactly once.
pub fn templates_from_spec(spec: &str) -> Result<Vec<String>> {
    let templates = match builtin_templates(spec) {
        Some(t) => t,
        None if Path::new(spec).is_file() => read_list(Path::new(spec), "template")?,
        None => {
            return Err(ClipError::InvalidInput(format!(
                "templates {spec:?}: not a file and not one of {}",
                TEMPLATE_SETS.join(", ")
            )))
        }
    };
    check_templates(&templates)?;
    Ok(templates)
}

/// Class names from a built-in name or a file.
pub fn classes_from_spec(spec: &str) -> Result<Vec<String>> {
    match builtin_classes(spec) {
        Some(c) => Ok(c),
        None if Path::new(spec).is_file() => read_list(Path::new(spec), "class"),
        None => Err(ClipError::InvalidInput(format!(
            "classes {spec:?}: not a file and not one of {}",
            CLASS_SETS.join(", ")
        ))),
    }
}

/// Every template must say where the class name goes, once (open_clip fills them with `str.format(c)`).
pub fn check_templates<S: AsRef<str>>(templates: &[S]) -> Result<()> {
    if templates.is_empty() {
        return Err(ClipError::InvalidInput("no templates".into()));
    }
    for t in templates {
        let count = t.as_ref().matches(PLACEHOLDER).count();
        if count != 1 {
            return Err(ClipError::InvalidInput(format!(
                "template {:?} must contain {PLACEHOLDER} exactly once (found {count})",
                t.as_ref()
            )));
        }
    }
    Ok(())
}

/// The prompt for one class: the template with `{}` replaced by the class name.
pub fn fill(template: &str, class_name: &str) -> String {
    template.replacen(PLACEHOLDER, class_name, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_sets_have_the_reference_sizes() {
        assert_eq!(builtin_templates("openai").unwrap().len(), 80);
        assert_eq!(builtin_templates("simple").unwrap().len(), 7);
        assert_eq!(builtin_classes("imagenet").unwrap().len(), 1000);
        assert_eq!(builtin_classes("CIFAR-10").unwrap().len(), 10);
        assert_eq!(builtin_classes("cifar100").unwrap().len(), 100);
        check_templates(&builtin_templates("openai").unwrap()).unwrap();
        check_templates(&builtin_templates("simple").unwrap()).unwrap();
    }

    #[test]
    fn fill_replaces_the_placeholder() {
        assert_eq!(fill("a photo of a {}.", "dog"), "a photo of a dog.");
        assert_eq!(fill("{}", "a {} b"), "a {} b");
        assert!(check_templates(&["no placeholder"]).is_err());
        assert!(check_templates(&["{} and {}"]).is_err());
    }
}
