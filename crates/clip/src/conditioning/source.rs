//! Where Stable Diffusion text encoders are read from:
//! - a diffusers directory (`model_index.json`, `text_encoder/` + `tokenizer/`, for SDXL also `text_encoder_2/` +
//!   `tokenizer_2/`), each encoder a transformers `CLIPTextModel` / `CLIPTextModelWithProjection` (`config.json`
//!   and `model.safetensors`, with or without the `text_model.` key level that transformers 5.x drops);
//! - an original single-file checkpoint (`.safetensors`), memory-mapped: only the text-encoder tensors are read,
//!   under the prefixes of diffusers' `single_file_utils` (`cond_stage_model.transformer.text_model.*` for SD1,
//!   the open_clip tower `cond_stage_model.model.*` for SD2, `conditioner.embedders.0.transformer.text_model.*`
//!   and `conditioner.embedders.1.model.*` for SDXL). UNet, VAE and other tensors are neither read nor reported.
//!   Architectures come from a diffusers directory given as `config` (as `from_single_file(config=...)`), else
//!   from tensor shapes with 64-wide heads (every published SD text encoder: ViT-L 12, ViT-H 16, bigG 20 heads).

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::conditioning::encoder::SdTextEncoder;
use crate::conditioning::preset::{EncoderRule, Preset, SingleFileLayout};
use crate::conditioning::prompt::{read_json, PromptTokenizer};
use crate::error::{ClipError, Result};
use crate::formats::hf;
use crate::formats::infer::{self, Unshaped};
use crate::formats::keymap::{openai_to_model, standalone_text_model};
use crate::kernels::Precision;
use crate::model::nn::Linear;
use crate::model::text::TextTransformer;
use crate::model::{TextConfig, TextPooling};
use crate::weights::{safetensors, TensorStore};

const MODEL_INDEX: &str = "model_index.json";
const CONFIG_FILE: &str = "config.json";
const FP16_VARIANT: &str = "model.fp16.safetensors";
/// Unused buffers published files carry (recomputed by the model).
const POSITION_IDS: &str = "embeddings.position_ids";
/// The encoders compute in f32, as diffusers' pipelines do on a CPU.
const PRECISION: Precision = Precision::F32;

/// The loaded encoders of one model and its pipeline settings.
pub(crate) struct Loaded {
    pub encoders: Vec<SdTextEncoder>,
    pub force_zeros_for_empty_prompt: bool,
}

/// Loads from `path`: a diffusers directory or a `.safetensors` single file.
pub(crate) fn load(
    preset: Preset,
    path: &Path,
    config_dir: Option<&Path>,
    force_zeros: Option<bool>,
) -> Result<Loaded> {
    if path.is_dir() {
        if config_dir.is_some() {
            return Err(ClipError::InvalidInput(format!(
                "{} is a diffusers directory; a separate config directory only applies to single-file checkpoints",
                path.display()
            )));
        }
        return load_diffusers(preset, path, force_zeros);
    }
    if !path.exists() {
        return Err(ClipError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
        });
    }
    let is_safetensors = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
    if !is_safetensors {
        return Err(ClipError::InvalidInput(format!(
            "{}: single-file checkpoints must be .safetensors (convert .ckpt files first), or give a diffusers directory",
            path.display()
        )));
    }
    load_single_file(preset, path, config_dir, force_zeros)
}

/// `model_index.json` of a diffusers directory: checks the pipeline class fits the preset and reads
/// `force_zeros_for_empty_prompt`.
fn read_model_index(preset: Preset, dir: &Path) -> Result<Option<bool>> {
    let path = dir.join(MODEL_INDEX);
    if !path.is_file() {
        return Ok(None);
    }
    let index = read_json(&path)?;
    if let Some(class) = index.get("_class_name").and_then(Value::as_str) {
        let is_xl = class.starts_with("StableDiffusionXL");
        // SD3 pipelines (three encoders, T5 included) have a different conditioning.
        if class.starts_with("StableDiffusion3") {
            return Err(ClipError::Config {
                path,
                reason: format!("a {class} is not a Stable Diffusion 1, 2 or XL model"),
            });
        }
        let sd = class.starts_with("StableDiffusion");
        if sd && is_xl != (preset == Preset::Sdxl) {
            let fit = if is_xl { "sdxl" } else { "sd1 or sd2" };
            return Err(ClipError::Config {
                path,
                reason: format!("a {class} does not fit preset {preset}; use preset {fit}"),
            });
        }
    }
    Ok(index
        .get("force_zeros_for_empty_prompt")
        .and_then(Value::as_bool))
}

fn load_diffusers(preset: Preset, dir: &Path, force_zeros: Option<bool>) -> Result<Loaded> {
    let from_index = read_model_index(preset, dir)?;
    let mut encoders = Vec::new();
    for rule in preset.encoders() {
        let enc_dir = dir.join(rule.encoder_dir);
        if !enc_dir.is_dir() {
            return Err(ClipError::Checkpoint {
                path: dir.to_path_buf(),
                reason: format!(
                    "no {}/ directory: preset {preset} needs {}",
                    rule.encoder_dir,
                    needed_dirs(preset)
                ),
            });
        }
        let (config, projection_dim) = hf::read_text_config(&enc_dir.join(CONFIG_FILE))?;
        let store = open_encoder_weights(&enc_dir)?;
        let tower = TextTransformer::load(&store.scoped("text_model"), &config)?;
        let projection = if rule.pooled {
            Some(Linear::load_no_bias(
                &store.root().pp("text_projection"),
                config.width,
                projection_dim,
            )?)
        } else {
            None
        };
        store.skip(&store.scoped("text_model").key(POSITION_IDS));
        store.finish()?;
        let tokenizer = PromptTokenizer::load(
            Some(&dir.join(rule.tokenizer_dir)),
            rule.default_pad,
            config.context_length,
        )?;
        encoders.push(SdTextEncoder::new(*rule, tokenizer, tower, projection));
    }
    Ok(Loaded {
        encoders,
        force_zeros_for_empty_prompt: force_zeros
            .or(from_index)
            .unwrap_or(preset.default_force_zeros()),
    })
}

/// An encoder directory's weights as transformers finds them, else the half-precision variant that diffusers
/// repositories also publish (`model.fp16.safetensors`, loaded with `variant="fp16"`). Files saved by
/// transformers 5 lack the `text_model.` level of published ones; it is put back.
fn open_encoder_weights(dir: &Path) -> Result<TensorStore> {
    let fp16 = dir.join(FP16_VARIANT);
    let store = if !dir.join(hf::SAFETENSORS_FILE).is_file()
        && !dir.join(hf::SAFETENSORS_INDEX_FILE).is_file()
        && !dir.join(hf::PYTORCH_FILE).is_file()
        && fp16.is_file()
    {
        safetensors::open(&[fp16], PRECISION)?
    } else {
        hf::open_weights(dir, PRECISION)?
    };
    store.remap(|name, _| standalone_text_model(name))
}

fn needed_dirs(preset: Preset) -> String {
    preset
        .encoders()
        .iter()
        .map(|r| format!("{}/ and {}/", r.encoder_dir, r.tokenizer_dir))
        .collect::<Vec<_>>()
        .join(", ")
}

fn load_single_file(
    preset: Preset,
    path: &Path,
    config_dir: Option<&Path>,
    force_zeros: Option<bool>,
) -> Result<Loaded> {
    // Memory-mapped: only the header is read here; `take` copies each text-encoder tensor it is asked for. The
    // open_clip towers' OpenAI names are mapped onto the model's, each under its own prefix.
    let store = safetensors::open(&[path.to_path_buf()], PRECISION)?;
    let open_clip_prefixes: Vec<String> = preset
        .encoders()
        .iter()
        .filter_map(|r| match r.single_file {
            SingleFileLayout::OpenClip(prefix) => Some(format!("{prefix}.")),
            SingleFileLayout::Transformers(_) => None,
        })
        .collect();
    let store = store.remap(|name, shape| {
        open_clip_prefixes
            .iter()
            .find_map(|prefix| openai_to_model(name, shape, prefix, None))
    })?;
    let from_index = match config_dir {
        Some(d) => read_model_index(preset, d)?,
        None => None,
    };
    let mut encoders = Vec::new();
    for rule in preset.encoders() {
        let encoder_config = config_dir.map(|d| d.join(rule.encoder_dir).join(CONFIG_FILE));
        let tokenizer_dir: Option<PathBuf> = config_dir.map(|d| d.join(rule.tokenizer_dir));
        let (tower, projection, root) = match rule.single_file {
            SingleFileLayout::Transformers(prefixes) => {
                load_transformers_layout(preset, &store, rule, prefixes, encoder_config.as_deref())?
            }
            SingleFileLayout::OpenClip(prefix) => {
                load_open_clip_layout(preset, &store, rule, prefix, encoder_config.as_deref())?
            }
        };
        reject_leftovers(&store, root)?;
        let tokenizer = PromptTokenizer::load(
            tokenizer_dir.as_deref(),
            rule.default_pad,
            tower.config().context_length,
        )?;
        encoders.push(SdTextEncoder::new(*rule, tokenizer, tower, projection));
    }
    Ok(Loaded {
        encoders,
        force_zeros_for_empty_prompt: force_zeros
            .or(from_index)
            .unwrap_or(preset.default_force_zeros()),
    })
}

/// The error for a single file that lacks the preset's text encoder, naming the family it seems to be.
fn missing_encoder(preset: Preset, store: &TensorStore, expected: &str) -> ClipError {
    let mut reason = format!("no {preset} text encoder: no tensors under {expected}.*");
    if let Some(found) = detect_preset(store).filter(|&p| p != preset) {
        reason.push_str(&format!(
            "; the file holds the text encoder of an {found} checkpoint (use preset {found})"
        ));
    }
    ClipError::Checkpoint {
        path: store.path().to_path_buf(),
        reason,
    }
}

/// The model family whose text-encoder keys a single file holds, if any.
pub(crate) fn detect_preset(store: &TensorStore) -> Option<Preset> {
    let has = |prefix: &str| store.names().any(|n| n.starts_with(prefix));
    if has("conditioner.embedders.1.model.") {
        Some(Preset::Sdxl)
    } else if has("cond_stage_model.model.") {
        Some(Preset::Sd2)
    } else if has("cond_stage_model.transformer.") {
        Some(Preset::Sd1)
    } else {
        None
    }
}

type LoadedTower = (TextTransformer, Option<Linear>, &'static str);

/// A transformers-layout `CLIPTextModel` inside a single file (SD1, SDXL's first encoder).
fn load_transformers_layout(
    preset: Preset,
    store: &TensorStore,
    rule: &EncoderRule,
    prefixes: &'static [&'static str],
    config_json: Option<&Path>,
) -> Result<LoadedTower> {
    let Some(&prefix) = prefixes
        .iter()
        .find(|p| store.contains(&format!("{p}.embeddings.token_embedding.weight")))
    else {
        return Err(missing_encoder(preset, store, prefixes[0]));
    };
    let w = store.scoped(prefix);
    let config = match config_json {
        Some(p) => hf::read_text_config(p)?.0,
        // Published SD text encoders have 64-wide heads and LayerNorm eps 1e-5; the activation is the preset's.
        None => infer::text(&w, None, unshaped(rule))?,
    };
    let tower = TextTransformer::load(&w, &config)?;
    store.skip(&w.key(POSITION_IDS));
    // Both prefixes share the root `...transformer`; leftovers are checked under it.
    Ok((tower, None, prefixes[prefixes.len() - 1]))
}

/// What a single file's shapes do not say about its encoder.
fn unshaped(rule: &EncoderRule) -> Unshaped {
    Unshaped {
        activation: rule.activation,
        pooling: TextPooling::Argmax,
    }
}

/// An open_clip text tower inside a single file (SD2, SDXL's second encoder), its names already mapped onto the
/// model's under `prefix`.
fn load_open_clip_layout(
    preset: Preset,
    store: &TensorStore,
    rule: &EncoderRule,
    prefix: &'static str,
    config_json: Option<&Path>,
) -> Result<LoadedTower> {
    let root = store.scoped(prefix);
    let w = root.pp("text_model");
    if !w.contains("embeddings.token_embedding.weight") {
        return Err(missing_encoder(preset, store, prefix));
    }
    let stored: TextConfig = infer::text(&w, None, unshaped(rule))?;
    let expected_layers = stored.layers.saturating_sub(rule.unused_last_layers);
    let config = match config_json {
        Some(p) => hf::read_text_config(p)?.0,
        None => TextConfig {
            layers: expected_layers,
            ..stored.clone()
        },
    };
    if config.layers != expected_layers {
        return Err(ClipError::Checkpoint {
            path: store.path().to_path_buf(),
            reason: format!(
                "{prefix}.transformer has {} layers; the {preset} text encoder config wants {} of them, expected {expected_layers}",
                stored.layers, config.layers
            ),
        });
    }
    let tower = TextTransformer::load(&w, &config)?;
    // Tensors the conditioning does not use: the dropped last layer(s) (SD2), the contrastive temperature and,
    // where no pooled output is wanted, the projection.
    for i in config.layers..stored.layers {
        let head = format!("{}.", w.pp("encoder.layers").key(i));
        let names: Vec<String> = store
            .names()
            .filter(|n| n.starts_with(&head))
            .map(str::to_string)
            .collect();
        for n in names {
            store.skip(&n);
        }
    }
    store.skip(&root.key("logit_scale"));
    let projection = if rule.pooled {
        let shape = root.shape("text_projection.weight")?;
        let embed = shape.first().copied().unwrap_or(0);
        Some(Linear::load_no_bias(
            &root.pp("text_projection"),
            config.width,
            embed,
        )?)
    } else {
        store.skip(&root.key("text_projection.weight"));
        None
    };
    Ok((tower, projection, prefix))
}

/// Strict loading scoped to one encoder: every tensor under `root.` must have been read or skipped; tensors of
/// other components (UNet, VAE, other encoders) are not this loader's business.
fn reject_leftovers(store: &TensorStore, root: &str) -> Result<()> {
    let head = format!("{root}.");
    let left: Vec<String> = store
        .unconsumed()
        .into_iter()
        .filter(|n| n.starts_with(&head))
        .collect();
    if left.is_empty() {
        return Ok(());
    }
    const LISTED: usize = 20;
    let mut names = left
        .iter()
        .take(LISTED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if left.len() > LISTED {
        names.push_str(&format!(" (and {} more)", left.len() - LISTED));
    }
    Err(ClipError::UnexpectedTensors {
        path: store.path().to_path_buf(),
        names,
    })
}
