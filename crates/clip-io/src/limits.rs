//! Size limits of inputs, by kind. Every read checks one before it allocates, so no file, header or stream
//! can make the process take more memory than the limit for its kind.

use std::sync::atomic::{AtomicU64, Ordering};

/// What is being read: each kind has its own size limit and its own word in messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// An image file. Default 256 MiB (a Pillow-sized bomb refused by pixels is far smaller as JPEG or PNG;
    /// uncompressed TIFF and BMP at Pillow's pixel limit are under 1.5 GiB but are not photos one embeds).
    /// `CLIP_MAX_IMAGE_BYTES`.
    Image,
    /// A text file of the user's: captions, labels, class names, templates, a dataset CSV. Default 64 MiB.
    /// `CLIP_MAX_TEXT_BYTES`.
    Text,
    /// A JSON configuration or index (`config.json`, `tokenizer.json`, ...): 64 MiB, fixed.
    Config,
    /// A tokenizer vocabulary (`bpe_simple_vocab_16e6.txt.gz`, `vocab.json`, `merges.txt`), compressed or
    /// not: 64 MiB, fixed.
    Vocabulary,
    /// A whole-file weights or embeddings file read into memory (classifiers, `.npy`): 4 GiB, fixed.
    Data,
    /// A checkpoint, memory-mapped or read entry by entry (each entry bounded by its reader): only the
    /// regular-file check applies (published checkpoints reach 10 GB).
    Checkpoint,
}

const MIB: u64 = 1024 * 1024;

static IMAGE_LIMIT: AtomicU64 = AtomicU64::new(0);
static TEXT_LIMIT: AtomicU64 = AtomicU64::new(0);

impl Input {
    /// The word used in messages ("cannot read image x.jpg: ...").
    pub fn label(self) -> &'static str {
        match self {
            Input::Image => "image",
            Input::Text => "text file",
            Input::Config => "config",
            Input::Vocabulary => "vocabulary",
            Input::Data => "file",
            Input::Checkpoint => "checkpoint",
        }
    }

    fn default_limit(self) -> u64 {
        match self {
            Input::Image => 256 * MIB,
            Input::Text | Input::Config | Input::Vocabulary => 64 * MIB,
            Input::Data => 4096 * MIB,
            Input::Checkpoint => u64::MAX,
        }
    }

    /// The environment variable that sets this kind's limit, for the kinds a user may change.
    pub fn env_var(self) -> Option<&'static str> {
        match self {
            Input::Image => Some("CLIP_MAX_IMAGE_BYTES"),
            Input::Text => Some("CLIP_MAX_TEXT_BYTES"),
            _ => None,
        }
    }

    fn slot(self) -> Option<&'static AtomicU64> {
        match self {
            Input::Image => Some(&IMAGE_LIMIT),
            Input::Text => Some(&TEXT_LIMIT),
            _ => None,
        }
    }
}

/// The size limit in bytes for `kind`: set by [`set_limit`], else its environment variable (a malformed value
/// is ignored), else the default.
pub fn limit(kind: Input) -> u64 {
    let Some(slot) = kind.slot() else {
        return kind.default_limit();
    };
    match slot.load(Ordering::Relaxed) {
        0 => kind
            .env_var()
            .and_then(|var| std::env::var(var).ok())
            .and_then(|v| parse_size(&v).ok())
            .unwrap_or_else(|| kind.default_limit()),
        set => set,
    }
}

/// Sets the limit of a configurable kind (image or text) for this process; `Err` for the fixed kinds or 0.
pub fn set_limit(kind: Input, bytes: u64) -> Result<(), String> {
    match kind.slot() {
        Some(slot) if bytes > 0 => {
            slot.store(bytes, Ordering::Relaxed);
            Ok(())
        }
        Some(_) => Err("a size limit must be at least 1 byte".into()),
        None => Err(format!("the {} size limit is fixed", kind.label())),
    }
}

/// A byte count as users write it: `1048576`, `512K`, `64M`, `2G`, `64MiB`, `1GB` (binary multiples).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (examples: 1048576, 512K, 64M, 2G)"))?;
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?} (use K, M, G or T)"
            ))
        }
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// How the message for a too-large input tells the user to raise the limit.
pub(crate) fn raise_hint(kind: Input) -> String {
    match kind.env_var() {
        Some(var) => format!(" (set {var} to raise it)"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size(" 2g "), Ok(2 << 30));
        assert!(parse_size("").is_err());
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("99999999999999999999").is_err());
        assert!(parse_size("18446744073709551615T").is_err());
    }

    #[test]
    fn fixed_kinds_cannot_be_changed() {
        assert!(set_limit(Input::Config, 10).is_err());
        assert!(set_limit(Input::Text, 0).is_err());
        assert_eq!(limit(Input::Config), 64 * MIB);
    }
}
