//! open_clip's architecture configs (`open_clip/model_configs/<name>.json`) and pretrained metadata
//! (`open_clip/pretrained.py`: hf-hub id or URL, mean, std, interpolation, resize mode, QuickGELU) for the families
//! this crate supports, as embedded data. Parsing a config into a [`crate::model::ModelArch`] is
//! [`crate::checkpoint::open_clip::parse_model_config`].

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::Value;

use crate::preprocess::PreprocessConfig;

/// The pretrained metadata of one `(architecture, tag)` pair.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PretrainedCfg {
    /// Hugging Face repository (`laion/CLIP-ViT-H-14-laion2B-s32B-b79K`), trailing slash removed.
    #[serde(default)]
    pub hf_hub: Option<String>,
    /// Direct download URL (OpenAI's releases, some early LAION ones).
    #[serde(default)]
    pub url: Option<String>,
    pub mean: [f64; 3],
    pub std: [f64; 3],
    /// Resize filter (`"bicubic"` for every supported family).
    pub interpolation: String,
    /// `"shortest"` (resize the shorter side, then centre crop) or `"squash"` (resize to a square).
    pub resize_mode: String,
    /// Whether these weights were trained with QuickGELU (then the `-quickgelu` config must be used).
    #[serde(default)]
    pub quick_gelu: bool,
}

impl PretrainedCfg {
    /// The preprocessing for an input size of `size` pixels with this entry's mean and std (as float32, as torch
    /// turns the Python floats into its normalisation tensor).
    pub fn preprocess_config(&self, size: u32) -> PreprocessConfig {
        PreprocessConfig {
            size,
            mean: self.mean.map(|v| v as f32),
            std: self.std.map(|v| v as f32),
        }
    }
}

fn configs() -> &'static BTreeMap<String, Value> {
    static CONFIGS: OnceLock<BTreeMap<String, Value>> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        // Embedded data checked by this module's tests.
        serde_json::from_str(include_str!("../../configs/open_clip_models.json"))
            .unwrap_or_default()
    })
}

fn pretrained() -> &'static BTreeMap<String, BTreeMap<String, PretrainedCfg>> {
    static PRETRAINED: OnceLock<BTreeMap<String, BTreeMap<String, PretrainedCfg>>> =
        OnceLock::new();
    PRETRAINED.get_or_init(|| {
        let mut map: BTreeMap<String, BTreeMap<String, PretrainedCfg>> =
            serde_json::from_str(include_str!("../../configs/open_clip_pretrained.json"))
                .unwrap_or_default();
        for tags in map.values_mut() {
            for cfg in tags.values_mut() {
                if let Some(h) = &mut cfg.hf_hub {
                    *h = h.trim_end_matches('/').to_string();
                }
            }
        }
        map
    })
}

/// The supported open_clip architecture names (`ViT-B-32`, `ViT-B-32-quickgelu`, `RN50`, ...), sorted.
pub fn open_clip_model_names() -> Vec<&'static str> {
    configs().keys().map(String::as_str).collect()
}

/// open_clip's model config JSON for `name`.
pub fn open_clip_config(name: &str) -> Option<&'static Value> {
    configs().get(name)
}

/// The pretrained tags known for architecture `name` (`["openai", "laion2b_s34b_b79k", ...]`).
pub fn pretrained_tags(name: &str) -> Vec<&'static str> {
    pretrained()
        .get(name)
        .map(|t| t.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

/// The metadata of pretrained weights `tag` for architecture `name`.
pub fn pretrained_cfg(name: &str, tag: &str) -> Option<&'static PretrainedCfg> {
    pretrained().get(name).and_then(|t| t.get(tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_twins_are_present() {
        for base in [
            "ViT-B-32",
            "ViT-B-16",
            "ViT-L-14",
            "ViT-H-14",
            "ViT-bigG-14",
            "RN50",
        ] {
            assert!(open_clip_config(base).is_some(), "{base}");
            let twin = open_clip_config(&format!("{base}-quickgelu")).unwrap();
            assert_eq!(twin["quick_gelu"], Value::Bool(true), "{base}");
        }
        let h = pretrained_cfg("ViT-H-14", "laion2b_s32b_b79k").unwrap();
        assert_eq!(
            h.hf_hub.as_deref(),
            Some("laion/CLIP-ViT-H-14-laion2B-s32B-b79K")
        );
        assert_eq!(
            (h.interpolation.as_str(), h.resize_mode.as_str()),
            ("bicubic", "shortest")
        );
        assert!(!h.quick_gelu);
        assert!(pretrained_cfg("RN50", "openai").unwrap().quick_gelu);
        assert!(pretrained_tags("ViT-bigG-14").contains(&"laion2b_s39b_b160k"));
        let p = h.preprocess_config(224);
        assert_eq!(p.mean, crate::preprocess::OPENAI_MEAN);
    }
}
