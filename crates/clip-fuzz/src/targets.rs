//! The fuzz targets: every parser of untrusted bytes in the project.

/// A named entry point taking arbitrary bytes.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
}

/// All targets; `corpus/<name>/` holds each one's seeds.
pub const TARGETS: &[Target] = &[
    Target {
        name: "image",
        run: image,
    },
    Target {
        name: "tokenizer",
        run: tokenizer,
    },
    Target {
        name: "vocabulary",
        run: vocabulary,
    },
    Target {
        name: "safetensors",
        run: clip::fuzz::safetensors,
    },
    Target {
        name: "pytorch",
        run: clip::fuzz::pytorch,
    },
    Target {
        name: "pickle",
        run: clip::fuzz::pickle,
    },
    Target {
        name: "config",
        run: clip::fuzz::config,
    },
    Target {
        name: "npy",
        run: clip::fuzz::npy,
    },
    Target {
        name: "classifier",
        run: clip::fuzz::classifier,
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// Any decoder (chosen by content), then the whole preprocessing at a small size.
fn image(data: &[u8]) {
    if let Ok(image) = clip::preprocess::decode(data) {
        let config = clip::preprocess::PreprocessConfig {
            size: 32,
            ..Default::default()
        };
        let _ = clip::preprocess::preprocess_image(&image, &config);
    }
}

/// Text (lossy UTF-8) through both cleanings, truncating and not, at two context lengths.
fn tokenizer(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let openai = clip::tokenizer::Tokenizer::openai();
    for context in [77, 8] {
        let _ = openai.tokenize(&text, context, true);
        let _ = openai.tokenize(&text, context, false);
    }
    let hf = openai.with_cleaning(clip::tokenizer::TextCleaning::HuggingFace);
    let _ = hf.tokenize(&text, 77, true);
    let ids = hf.encode(&text);
    let _ = hf.decode(&ids);
}

/// `data` as each tokenizer file layout: `tokenizer.json`, `vocab.json` (with OpenAI's merges beside it) and a
/// gzipped merges file.
fn vocabulary(data: &[u8]) {
    let dir = std::env::temp_dir().join(format!(
        "clip-fuzz-vocab-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    for name in ["tokenizer.json", "vocab.json", "bpe.txt.gz"] {
        let path = dir.join(name);
        if std::fs::write(&path, data).is_ok() {
            if name == "vocab.json" {
                let _ = std::fs::write(dir.join("merges.txt"), "#version: 0.2\na b\n");
            }
            if let Ok(tok) = clip::tokenizer::Tokenizer::from_path(&path) {
                let _ = tok.tokenize(
                    "a photo of a cat, aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                    77,
                    true,
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
