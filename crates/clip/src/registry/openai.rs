//! OpenAI's released CLIP models by name, as data: clip-anytorch's `_MODELS` (the nine names with their
//! published URLs, whose path holds the file's SHA-256), input resolutions and the open_clip architecture with
//! the same shapes. Downloading and caching them is [`crate::hub`]'s.

use std::sync::OnceLock;

use serde::Deserialize;

/// One released model (a row of `configs/openai_models.json`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OpenAiModel {
    /// The name `clip.load` takes (`"ViT-B/32"`).
    pub name: String,
    pub url: String,
    /// Hex SHA-256 of the file (the second-to-last path component of `url`).
    pub sha256: String,
    /// File name in the cache directory (`ViT-B-32.pt`).
    pub file_name: String,
    /// Input resolution in pixels.
    pub image_size: u32,
    /// The open_clip architecture with the same shapes (QuickGELU twin).
    pub open_clip_config: String,
}

fn registry() -> &'static [OpenAiModel] {
    static REGISTRY: OnceLock<Vec<OpenAiModel>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        // Embedded data checked by this module's tests: a parse failure is a build defect, not user input.
        serde_json::from_str(include_str!("../../configs/openai_models.json")).unwrap_or_default()
    })
}

/// The names of the released models, in clip-anytorch's order.
pub fn available_models() -> Vec<&'static str> {
    registry().iter().map(|m| m.name.as_str()).collect()
}

/// The registry entry for `name`, if it is one of [`available_models`].
pub fn openai_model(name: &str) -> Option<&'static OpenAiModel> {
    registry().iter().find(|m| m.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nine_models_with_hashes_from_their_urls() {
        let names = available_models();
        assert_eq!(
            names,
            [
                "RN50",
                "RN101",
                "RN50x4",
                "RN50x16",
                "RN50x64",
                "ViT-B/32",
                "ViT-B/16",
                "ViT-L/14",
                "ViT-L/14@336px"
            ]
        );
        for m in registry() {
            assert!(
                m.url.contains(&format!("/{}/{}", m.sha256, m.file_name)),
                "{m:?}"
            );
            assert_eq!(m.sha256.len(), 64);
        }
        let sizes: Vec<u32> = registry().iter().map(|m| m.image_size).collect();
        assert_eq!(sizes, [224, 224, 288, 384, 448, 224, 224, 224, 336]);
    }
}
