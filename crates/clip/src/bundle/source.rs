//! What a model string names, decided once and in one place: one of OpenAI's nine release names (as
//! `clip.load` takes them), an OpenAI `.pt` file, a Hugging Face directory or Hub id, an open_clip directory or
//! `hf-hub:` id (as `open_clip.create_model` takes it), or an open_clip architecture with pretrained weights
//! (`ARCH:TAG`, e.g. `ViT-B-32:laion2b_s34b_b79k`) or with a weights file (`ARCH:PATH`).

use std::path::{Path, PathBuf};

use clip_preprocess::PreprocessConfig;
use clip_tokenizer::Tokenizer;

use crate::error::{ClipError, Result};
use crate::formats::open_clip::PreprocessCfg;
use crate::formats::{hf, open_clip, openai, Opened};
use crate::hub::repo::{HubRepo, Need};
use crate::hub::{self, HubOptions};
use crate::kernels::Precision;
use crate::model::ClipModel;
use crate::registry::open_clip::{
    open_clip_config, pretrained_cfg, pretrained_tags, resolve_config,
};
use crate::registry::{self as pretrained, PretrainedCfg};

const HF_CONFIG: &str = "config.json";
const HF_PREPROCESSOR: &str = "preprocessor_config.json";
const HF_WEIGHTS: [&str; 2] = ["model.safetensors", "pytorch_model.bin"];
const TOKENIZER_FILES: [&str; 3] = ["tokenizer.json", "vocab.json", "merges.txt"];

/// A model's checkpoint opened from its source (not yet built), with what belongs to it.
pub(crate) struct OpenedModel {
    pub opened: Opened,
    pub preprocess: PreprocessConfig,
    /// A directory whose tokenizer files (if any) go with the model.
    pub tokenizer_dir: Option<PathBuf>,
    /// The directory or file the model was read from.
    pub origin: PathBuf,
    /// The files that determine the model's outputs (config and weights), for identifying it.
    pub files: Vec<PathBuf>,
}

/// A model loaded from its source, with what belongs to it.
pub(crate) struct LoadedModel {
    pub model: ClipModel,
    pub preprocess: PreprocessConfig,
    /// A directory whose tokenizer files (if any) go with the model.
    pub tokenizer_dir: Option<PathBuf>,
    /// The directory or file the model was read from.
    pub origin: PathBuf,
    /// The files that determine the model's outputs (config and weights), for identifying it.
    pub files: Vec<PathBuf>,
}

/// Where a model comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelSource {
    /// One of [`pretrained::available_models`] (`ViT-B/32`, `RN50`, ...): downloaded to the CLIP cache.
    OpenAiName(String),
    /// An OpenAI checkpoint file (TorchScript archive or `torch.save` state dict).
    OpenAiFile(PathBuf),
    /// A Hugging Face `CLIPModel` directory (`config.json` + weights).
    HfDir(PathBuf),
    /// A Hub id of a Hugging Face `CLIPModel` repository.
    HfHub(String),
    /// A directory laid out like an open_clip Hub repository (`open_clip_config.json` + weights).
    OpenClipDir(PathBuf),
    /// An open_clip Hub repository (`hf-hub:org/name`).
    OpenClipHub(String),
    /// An open_clip architecture (name or config file) with a weights file.
    OpenClipFile { config: String, weights: PathBuf },
    /// An open_clip architecture with weights from its pretrained tag's Hub repository.
    OpenClipPretrained {
        arch: String,
        tag: String,
        repo: String,
    },
}

impl ModelSource {
    /// Classifies `spec` without touching the network.
    pub fn parse(spec: &str) -> Result<Self> {
        if pretrained::openai_model(spec).is_some() {
            return Ok(Self::OpenAiName(spec.to_string()));
        }
        if let Some(repo) = spec.strip_prefix("hf-hub:") {
            return if hub::is_repo_id(repo) {
                Ok(Self::OpenClipHub(repo.to_string()))
            } else {
                Err(ClipError::UnknownModel(spec.to_string()))
            };
        }
        let path = Path::new(spec);
        if path.is_dir() {
            return Self::from_dir(path);
        }
        if path.is_file() {
            return Self::from_file(path);
        }
        if let Some((arch, rest)) = spec.split_once(':') {
            if open_clip_config(arch).is_some() || Path::new(arch).is_file() {
                return Self::open_clip_with(arch, rest);
            }
        }
        if hub::is_repo_id(spec) {
            return Ok(Self::HfHub(spec.to_string()));
        }
        Err(ClipError::InvalidInput(format!(
            "unknown model {spec:?}: not a local file or directory, not a Hub id (org/name), not one of OpenAI's \
             models ({}), and not an open_clip ARCH:TAG or ARCH:WEIGHTS",
            pretrained::available_models().join(", ")
        )))
    }

    fn from_dir(dir: &Path) -> Result<Self> {
        if dir.join("config.json").is_file() {
            Ok(Self::HfDir(dir.to_path_buf()))
        } else if dir.join(open_clip::CONFIG_FILE).is_file() {
            Ok(Self::OpenClipDir(dir.to_path_buf()))
        } else {
            Err(ClipError::InvalidInput(format!(
                "{} holds neither config.json (Hugging Face) nor {} (open_clip)",
                dir.display(),
                open_clip::CONFIG_FILE
            )))
        }
    }

    fn from_file(file: &Path) -> Result<Self> {
        let ext = file
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        match ext.as_str() {
            "pt" | "pth" => Ok(Self::OpenAiFile(file.to_path_buf())),
            _ => Err(ClipError::InvalidInput(format!(
                "{}: a weights file alone does not say its architecture; give a model directory, an OpenAI .pt \
                 file, or ARCH:{} for open_clip weights (e.g. ViT-B-32:{})",
                file.display(),
                file.display(),
                file.display()
            ))),
        }
    }

    fn open_clip_with(arch: &str, rest: &str) -> Result<Self> {
        let weights = Path::new(rest);
        if weights.is_file() {
            return Ok(Self::OpenClipFile {
                config: arch.to_string(),
                weights: weights.to_path_buf(),
            });
        }
        let tags = pretrained_tags(arch);
        let Some(cfg) = pretrained_cfg(arch, rest) else {
            return Err(ClipError::InvalidInput(format!(
                "{arch}:{rest}: no such weights file, and {rest:?} is not a pretrained tag of {arch} (tags: {})",
                if tags.is_empty() { "none".to_string() } else { tags.join(", ") }
            )));
        };
        // OpenAI's own weights: the same file clip.load downloads and verifies.
        let openai = pretrained::available_models().into_iter().find(|name| {
            pretrained::openai_model(name).is_some_and(|m| Some(&m.url) == cfg.url.as_ref())
        });
        if let Some(name) = openai {
            return Ok(Self::OpenAiName(name.to_string()));
        }
        let Some(repo) = &cfg.hf_hub else {
            return Err(ClipError::InvalidInput(format!(
                "{arch}:{rest} is published only at {}; download it and pass {arch}:PATH",
                cfg.url.as_deref().unwrap_or("an unknown address")
            )));
        };
        // As open_clip does: weights trained with QuickGELU force the QuickGELU twin of the architecture.
        let quick = format!("{arch}-quickgelu");
        let arch = if cfg.quick_gelu && open_clip_config(&quick).is_some() {
            quick
        } else {
            arch.to_string()
        };
        Ok(Self::OpenClipPretrained {
            arch,
            tag: rest.to_string(),
            repo: repo.clone(),
        })
    }
}

impl ModelSource {
    /// Fetches what is missing (downloads with progress, verified, cached) and loads the model, its linear
    /// layers packed for `precision` as they load.
    pub(crate) fn load(&self, hub: &HubOptions, precision: Precision) -> Result<LoadedModel> {
        self.load_towers(hub, precision, true)
    }

    /// [`Self::load`], without the image tower unless `image_tower`.
    pub(crate) fn load_towers(
        &self,
        hub: &HubOptions,
        precision: Precision,
        image_tower: bool,
    ) -> Result<LoadedModel> {
        let opened = self.open(hub, precision)?;
        Ok(LoadedModel {
            model: opened.opened.build_towers(image_tower)?,
            preprocess: opened.preprocess,
            tokenizer_dir: opened.tokenizer_dir,
            origin: opened.origin,
            files: opened.files,
        })
    }

    /// Fetches what is missing and opens the checkpoint in the model's layout, `precision` chosen for the linear
    /// layers a model built from it packs.
    pub(crate) fn open(&self, hub: &HubOptions, precision: Precision) -> Result<OpenedModel> {
        match self {
            Self::OpenAiName(name) => {
                let file = hub::openai::download_openai(name, hub)?;
                Self::OpenAiFile(file).open(hub, precision)
            }
            Self::OpenAiFile(file) => {
                let (opened, _) = openai::open(file, precision)?;
                Ok(OpenedModel {
                    preprocess: PreprocessConfig {
                        size: opened.config.vision.image_size() as u32,
                        ..PreprocessConfig::default()
                    },
                    opened,
                    tokenizer_dir: None,
                    origin: file.clone(),
                    files: vec![file.clone()],
                })
            }
            Self::HfDir(dir) => open_hf_dir(dir, precision),
            Self::HfHub(repo) => open_hf_dir(&hf_snapshot(repo, hub, true)?, precision),
            Self::OpenClipDir(dir) => {
                let weights = first_file(dir, &open_clip::WEIGHT_FILES)?;
                let config = dir.join(open_clip::CONFIG_FILE);
                open_open_clip(
                    &config.to_string_lossy(),
                    &weights,
                    None,
                    Some(dir.clone()),
                    dir.clone(),
                    vec![config.clone(), weights.clone()],
                    precision,
                )
            }
            Self::OpenClipHub(repo) => {
                let dir = open_clip_snapshot(repo, hub, true)?;
                Self::OpenClipDir(dir).open(hub, precision)
            }
            Self::OpenClipFile { config, weights } => {
                let mut files = vec![weights.clone()];
                if Path::new(config).is_file() {
                    files.insert(0, PathBuf::from(config));
                }
                open_open_clip(
                    config,
                    weights,
                    None,
                    None,
                    weights.clone(),
                    files,
                    precision,
                )
            }
            Self::OpenClipPretrained { arch, tag, repo } => {
                let dir = open_clip_snapshot(repo, hub, false)?;
                let weights = first_file(&dir, &open_clip::WEIGHT_FILES)?;
                open_open_clip(
                    arch,
                    &weights,
                    pretrained_entry(arch, tag),
                    None,
                    weights.clone(),
                    vec![weights.clone()],
                    precision,
                )
            }
        }
    }

    /// The model's tokenizer without loading its weights: `vocab` if given, else the tokenizer files that come
    /// with a Hugging Face model, else OpenAI's vocabulary (shared by every model of the OpenAI lineage).
    pub fn tokenizer(&self, hub: &HubOptions, vocab: Option<&Path>) -> Result<Tokenizer> {
        let dir = match self {
            _ if vocab.is_some() => None,
            Self::HfDir(dir) => Some(dir.clone()),
            Self::HfHub(repo) => Some(hub_snapshot(
                repo,
                hub,
                &TOKENIZER_FILES.map(|f| (f, Need::Optional)),
            )?),
            _ => None,
        };
        tokenizer_for(dir.as_deref(), vocab)
    }

    /// The model's preprocessing, reading only metadata where the source has it apart from the weights.
    pub fn preprocess_config(&self, hub: &HubOptions) -> Result<PreprocessConfig> {
        match self {
            Self::OpenAiName(name) => Ok(PreprocessConfig {
                size: pretrained::openai_model(name).map_or(224, |m| m.image_size),
                ..PreprocessConfig::default()
            }),
            Self::HfDir(dir) => preprocess_config_for(dir),
            Self::HfHub(repo) => {
                let wanted = [
                    (HF_PREPROCESSOR, Need::Optional),
                    (HF_CONFIG, Need::Optional),
                ];
                preprocess_config_for(&hub_snapshot(repo, hub, &wanted)?)
            }
            Self::OpenClipHub(repo) => {
                let dir = hub_snapshot(repo, hub, &[(open_clip::CONFIG_FILE, Need::Required)])?;
                open_clip_preprocess(&dir.join(open_clip::CONFIG_FILE).to_string_lossy(), None)
            }
            Self::OpenClipDir(dir) => {
                open_clip_preprocess(&dir.join(open_clip::CONFIG_FILE).to_string_lossy(), None)
            }
            Self::OpenClipFile { config, .. } => open_clip_preprocess(config, None),
            Self::OpenClipPretrained { arch, tag, .. } => {
                open_clip_preprocess(arch, pretrained_entry(arch, tag))
            }
            // The resolution of an arbitrary .pt file is known only from its weights.
            Self::OpenAiFile(_) => Ok(self.load(hub, Precision::F32)?.preprocess),
        }
    }
}

/// The tokenizer for a model directory: `vocab` if given, else the directory's files, else OpenAI's vocabulary.
pub(crate) fn tokenizer_for(dir: Option<&Path>, vocab: Option<&Path>) -> Result<Tokenizer> {
    if let Some(vocab) = vocab {
        return Ok(Tokenizer::from_path(vocab)?);
    }
    if let Some(dir) = dir {
        if let Some(tokenizer) = Tokenizer::from_model_dir(dir)? {
            return Ok(tokenizer);
        }
    }
    Ok(Tokenizer::openai())
}

/// A Hugging Face directory's preprocessing: `preprocessor_config.json` if present, else OpenAI's mean and std
/// at the image size in `config.json`, else OpenAI's defaults.
fn preprocess_config_for(dir: &Path) -> Result<PreprocessConfig> {
    if let Some(config) = hf::read_preprocessor_config(dir)? {
        return Ok(config);
    }
    let config_path = dir.join(HF_CONFIG);
    if config_path.is_file() {
        let config = hf::read_config(&config_path)?;
        return Ok(PreprocessConfig {
            size: config.vision.image_size() as u32,
            ..PreprocessConfig::default()
        });
    }
    Ok(PreprocessConfig::default())
}

fn open_hf_dir(dir: &Path, precision: Precision) -> Result<OpenedModel> {
    let opened = hf::open(dir, precision)?;
    let preprocess = preprocess_config_for(dir)?;
    let files = hf::model_files(dir)?;
    Ok(OpenedModel {
        opened,
        preprocess,
        tokenizer_dir: Some(dir.to_path_buf()),
        origin: dir.to_path_buf(),
        files,
    })
}

/// A Hugging Face model's files from the Hub: config, preprocessing and tokenizer files, and (with `weights`)
/// `model.safetensors`, or `pytorch_model.bin` where a repository has no safetensors.
fn hf_snapshot(repo_id: &str, hub: &HubOptions, weights: bool) -> Result<PathBuf> {
    let mut wanted = vec![
        (HF_CONFIG, Need::Required),
        (HF_PREPROCESSOR, Need::Optional),
    ];
    wanted.extend(TOKENIZER_FILES.map(|f| (f, Need::Optional)));
    let dir = hub_snapshot(repo_id, hub, &wanted)?;
    if weights {
        fetch_first_of(repo_id, hub, &HF_WEIGHTS)?;
    }
    Ok(dir)
}

/// An open_clip repository's files: its config (when `config`) and weights.
fn open_clip_snapshot(repo_id: &str, hub: &HubOptions, config: bool) -> Result<PathBuf> {
    if config {
        hub_snapshot(repo_id, hub, &[(open_clip::CONFIG_FILE, Need::Required)])?;
    }
    fetch_first_of(repo_id, hub, &open_clip::WEIGHT_FILES)
}

fn hub_snapshot(repo_id: &str, hub: &HubOptions, wanted: &[(&str, Need)]) -> Result<PathBuf> {
    HubRepo::new(repo_id, hub)?.snapshot(wanted)
}

/// Fetches the first of `candidates` that the repository has (later ones only when earlier ones are absent).
fn fetch_first_of(repo_id: &str, hub: &HubOptions, candidates: &[&str]) -> Result<PathBuf> {
    let repo = HubRepo::new(repo_id, hub)?;
    for (i, file) in candidates.iter().enumerate() {
        let need = if i + 1 == candidates.len() {
            Need::Required
        } else {
            Need::Optional
        };
        let dir = repo.snapshot(&[(file, need)])?;
        if dir.join(file).is_file() {
            return Ok(dir);
        }
    }
    Err(ClipError::UnknownModel(repo_id.to_string()))
}

fn first_file(dir: &Path, names: &[&str]) -> Result<PathBuf> {
    names
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
        .ok_or_else(|| ClipError::Checkpoint {
            path: dir.to_path_buf(),
            reason: format!("no weights: expected one of {}", names.join(", ")),
        })
}

/// The pretrained entry of `arch:tag`, also when `arch` became its QuickGELU twin.
fn pretrained_entry(arch: &str, tag: &str) -> Option<&'static PretrainedCfg> {
    pretrained_cfg(arch, tag).or_else(|| pretrained_cfg(arch.trim_end_matches("-quickgelu"), tag))
}

/// Loads open_clip weights with the config `config` names (see [`resolve_config`]); the preprocessing comes from
/// the config file's `preprocess_cfg`, else from the pretrained `entry`, else OpenAI's.
fn open_open_clip(
    config: &str,
    weights: &Path,
    entry: Option<&PretrainedCfg>,
    tokenizer_dir: Option<PathBuf>,
    origin: PathBuf,
    files: Vec<PathBuf>,
    precision: Precision,
) -> Result<OpenedModel> {
    let (arch, from_file) = resolve_config(config)?;
    let size = arch.vision.image_size() as u32;
    let preprocess = preprocess_from(from_file.as_ref().or(entry.map(|e| &e.preprocess)), size)?;
    let opened = open_clip::open(arch, weights, precision)?;
    Ok(OpenedModel {
        opened,
        preprocess,
        tokenizer_dir,
        origin,
        files,
    })
}

fn open_clip_preprocess(config: &str, entry: Option<&PretrainedCfg>) -> Result<PreprocessConfig> {
    let (arch, from_file) = resolve_config(config)?;
    preprocess_from(
        from_file.as_ref().or(entry.map(|e| &e.preprocess)),
        arch.vision.image_size() as u32,
    )
}

/// open_clip's preprocessing as our one pipeline (OpenAI's mean and std without an entry).
fn preprocess_from(entry: Option<&PreprocessCfg>, size: u32) -> Result<PreprocessConfig> {
    match entry {
        Some(entry) => entry.to_config(size),
        None => Ok(PreprocessConfig {
            size,
            ..PreprocessConfig::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids_are_classified() {
        assert_eq!(
            ModelSource::parse("ViT-B/32").unwrap(),
            ModelSource::OpenAiName("ViT-B/32".into())
        );
        assert_eq!(
            ModelSource::parse("openai/clip-vit-base-patch32").unwrap(),
            ModelSource::HfHub("openai/clip-vit-base-patch32".into())
        );
        assert_eq!(
            ModelSource::parse("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K").unwrap(),
            ModelSource::OpenClipHub("laion/CLIP-ViT-B-32-laion2B-s34B-b79K".into())
        );
        assert!(ModelSource::parse("hf-hub:not a repo").is_err());
        let err = ModelSource::parse("ViT-Q-99").unwrap_err().to_string();
        assert!(
            err.contains("ViT-B/32") && err.contains("ARCH:TAG"),
            "{err}"
        );
    }

    #[test]
    fn open_clip_pretrained_tags_resolve_to_their_repositories() {
        match ModelSource::parse("ViT-B-32:laion2b_s34b_b79k").unwrap() {
            ModelSource::OpenClipPretrained { arch, repo, .. } => {
                assert_eq!(arch, "ViT-B-32");
                assert_eq!(repo, "laion/CLIP-ViT-B-32-laion2B-s34B-b79K");
            }
            other => panic!("{other:?}"),
        }
        // open_clip's "openai" tag is OpenAI's own release.
        assert_eq!(
            ModelSource::parse("ViT-B-32-quickgelu:openai").unwrap(),
            ModelSource::OpenAiName("ViT-B/32".into())
        );
        let err = ModelSource::parse("ViT-B-32:no_such_tag")
            .unwrap_err()
            .to_string();
        assert!(err.contains("laion2b_s34b_b79k"), "{err}");
    }

    #[test]
    fn local_paths_are_classified_by_content() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
        let hf = root.join("models/hf_tiny_quickgelu");
        assert_eq!(
            ModelSource::parse(hf.to_str().unwrap()).unwrap(),
            ModelSource::HfDir(hf.clone())
        );
        let weights = hf.join("model.safetensors");
        let err = ModelSource::parse(weights.to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("ARCH:"), "{err}");
        let arch_and_file = format!("ViT-B-32:{}", weights.display());
        assert_eq!(
            ModelSource::parse(&arch_and_file).unwrap(),
            ModelSource::OpenClipFile {
                config: "ViT-B-32".into(),
                weights
            }
        );
    }
}
