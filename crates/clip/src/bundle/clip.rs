//! The user-facing bundle, like OpenAI's `clip.load`: a model with the tokenizer and preprocessing that belong
//! to it (found by [`ModelSource`]), plus batched `encode_*` and zero-shot helpers.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use clip_preprocess::PreprocessConfig;
use clip_tokenizer::Tokenizer;

use crate::bundle::source::{tokenizer_for, LoadedModel, ModelSource};
use crate::error::{ClipError, Result};
use crate::hub::HubOptions;
use crate::kernels::Precision;
use crate::model::ClipModel;
use crate::threads::parallel_map;

/// The model `clip` uses when none is named.
pub const DEFAULT_MODEL: &str = "openai/clip-vit-base-patch32";

/// Images and texts are encoded in batches of this many to bound memory.
const IMAGE_BATCH: usize = 16;
const TEXT_BATCH: usize = 64;

/// How [`Clip::load`] finds and prepares a model. Everything runs on the CPU: the kernels are CPU kernels, and
/// no other device is offered.
#[derive(Clone, Default)]
pub struct LoadOptions {
    pub hub: HubOptions,
    /// Tokenizer file or directory overriding the one found with the model.
    pub vocab: Option<PathBuf>,
    /// The arithmetic to compute with (f32 unless asked otherwise), chosen once, when the weights are read.
    pub precision: Precision,
    /// Threads to compute with (default: `CLIP_THREADS`, else every core). It is fixed for the process by the
    /// first computation, so a later load asking for another count fails.
    pub threads: Option<usize>,
    /// Leave the image tower out (text embeddings only; `encode_image` then fails): a text-only user, such as
    /// a text search, loads in less than half the time and memory.
    pub text_only: bool,
}

/// A loaded CLIP model with its tokenizer and preprocessing.
pub struct Clip {
    model: ClipModel,
    tokenizer: Tokenizer,
    preprocess: PreprocessConfig,
    source: PathBuf,
    files: Vec<PathBuf>,
    device: Device,
}

impl Clip {
    /// Loads `spec` (see [`ModelSource`]): one of OpenAI's names (`ViT-B/32`), an OpenAI `.pt` file, a Hugging
    /// Face directory or Hub id (`openai/clip-vit-base-patch32`), an open_clip directory, `hf-hub:org/name`,
    /// `ARCH:TAG` or `ARCH:WEIGHTS`.
    pub fn load(spec: &str, options: &LoadOptions) -> Result<Self> {
        if let Some(n) = options.threads {
            crate::threads::set(n).map_err(ClipError::InvalidInput)?;
        }
        let source = ModelSource::parse(spec)?;
        let loaded = source.load_towers(&options.hub, options.precision, !options.text_only)?;
        Self::from_loaded(loaded, options.vocab.as_deref())
    }

    /// Loads a Hugging Face layout directory (`config.json`, weights, optional preprocessing and tokenizer files).
    pub fn from_dir(dir: &Path, vocab: Option<&Path>) -> Result<Self> {
        let loaded =
            ModelSource::HfDir(dir.to_path_buf()).load(&HubOptions::default(), Precision::F32)?;
        Self::from_loaded(loaded, vocab)
    }

    fn from_loaded(loaded: LoadedModel, vocab: Option<&Path>) -> Result<Self> {
        let tokenizer = tokenizer_for(loaded.tokenizer_dir.as_deref(), vocab)?;
        Ok(Self {
            device: Device::Cpu,
            model: loaded.model,
            tokenizer,
            preprocess: loaded.preprocess,
            source: loaded.origin,
            files: loaded.files,
        })
    }

    /// A bundle of parts already at hand (training evaluates the model it is updating).
    pub(crate) fn from_parts(
        model: ClipModel,
        tokenizer: Tokenizer,
        preprocess: PreprocessConfig,
        source: PathBuf,
    ) -> Self {
        Self {
            device: Device::Cpu,
            model,
            tokenizer,
            preprocess,
            source,
            files: Vec::new(),
        }
    }

    pub fn model(&self) -> &ClipModel {
        &self.model
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn preprocess_config(&self) -> &PreprocessConfig {
        &self.preprocess
    }

    /// The directory or file the model was loaded from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// The files (config and weights) that determine the model's outputs.
    pub fn model_files(&self) -> &[PathBuf] {
        &self.files
    }

    pub fn context_length(&self) -> usize {
        self.model.config().text.context_length
    }

    /// Decodes and preprocesses one image file into `3 x size x size` floats.
    pub fn preprocess_path(&self, path: &Path) -> Result<Vec<f32>> {
        Ok(clip_preprocess::preprocess_path(path, &self.preprocess)?)
    }

    /// Token ids for `texts`, padded to the model's context length.
    pub fn tokenize<S: AsRef<str>>(&self, texts: &[S], truncate: bool) -> Result<Vec<Vec<u32>>> {
        Ok(self
            .tokenizer
            .tokenize_batch(texts, self.context_length(), truncate)?)
    }

    /// `encode_image` over preprocessed images (each `3 x size x size`), in batches; raw (unnormalised) features.
    pub fn encode_pixels(&self, images: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
        let size = self.preprocess.size as usize;
        let per_image = 3 * size * size;
        let mut features = Vec::with_capacity(images.len());
        for batch in images.chunks(IMAGE_BATCH) {
            if let Some(bad) = batch.iter().find(|im| im.len() != per_image) {
                return Err(ClipError::InvalidInput(format!(
                    "an image tensor has {} values, expected 3 x {size} x {size}",
                    bad.len()
                )));
            }
            let flat: Vec<f32> = batch.iter().flatten().copied().collect();
            let pixels = Tensor::from_vec(flat, (batch.len(), 3, size, size), &self.device)?;
            features.extend(self.model.encode_image(&pixels)?.to_vec2::<f32>()?);
        }
        Ok(features)
    }

    /// Decodes, preprocesses and encodes image files batch by batch, returning one result per path in order:
    /// a bad file fails alone. Decoding of the next batch (on all cores) overlaps with the model's work on the
    /// current one. `on_progress` is called with the number of files done.
    pub fn encode_image_files(
        &self,
        paths: &[PathBuf],
        on_progress: impl FnMut(usize),
    ) -> Vec<Result<Vec<f32>>> {
        self.encode_images_with(
            paths,
            |path| self.preprocess_path(path).map(Some),
            on_progress,
        )
        .into_iter()
        .map(|r| {
            r.and_then(|row| {
                row.ok_or_else(|| ClipError::InvalidInput("missing feature row".into()))
            })
        })
        .collect()
    }

    /// The pipeline of [`Clip::encode_image_files`] over any items: `prepare` (run on every core, at low
    /// priority) turns an item into preprocessed pixels ([`Clip::preprocess_bytes`]), or `None` when the item
    /// needs no encoding (its result is then `Ok(None)`), or an error that fails that item alone.
    pub fn encode_images_with<T: Sync>(
        &self,
        items: &[T],
        prepare: impl Fn(&T) -> Result<Option<Vec<f32>>> + Sync,
        mut on_progress: impl FnMut(usize),
    ) -> Vec<Result<Option<Vec<f32>>>> {
        let mut results = Vec::with_capacity(items.len());
        std::thread::scope(|scope| {
            // One decoded batch waits while the model runs: memory stays bounded to two batches.
            let (sender, receiver) = std::sync::mpsc::sync_channel(1);
            let prepare = &prepare;
            scope.spawn(move || {
                for chunk in items.chunks(IMAGE_BATCH) {
                    let pixels = parallel_map(chunk, |item| {
                        // Decoding yields the cores to the model (see `priority`).
                        crate::priority::lower_current_thread();
                        prepare(item)
                    });
                    if sender.send(pixels).is_err() {
                        break;
                    }
                }
            });
            for pixels in receiver {
                self.encode_decoded_batch(pixels, &mut results);
                on_progress(results.len());
            }
        });
        results
    }

    /// Decodes and preprocesses an image file's bytes (`name` is used in error messages).
    pub fn preprocess_bytes(&self, bytes: &[u8], name: &Path) -> Result<Vec<f32>> {
        Ok(clip_preprocess::preprocess_bytes(
            bytes,
            name,
            &self.preprocess,
        )?)
    }

    /// Encodes the prepared images of one batch, keeping each failed or skipped item in its place.
    fn encode_decoded_batch(
        &self,
        pixels: Vec<Result<Option<Vec<f32>>>>,
        results: &mut Vec<Result<Option<Vec<f32>>>>,
    ) {
        let mut good = Vec::with_capacity(pixels.len());
        let mut slots = Vec::with_capacity(pixels.len());
        for item in pixels {
            match item {
                Ok(Some(p)) => {
                    good.push(p);
                    slots.push(None);
                }
                Ok(None) => slots.push(Some(Ok(None))),
                Err(e) => slots.push(Some(Err(e))),
            }
        }
        let mut features: Box<dyn Iterator<Item = Result<Vec<f32>>>> =
            match self.encode_pixels(&good) {
                Ok(rows) => Box::new(rows.into_iter().map(Ok)),
                Err(e) => {
                    let message = e.to_string();
                    Box::new(
                        (0..good.len()).map(move |_| Err(ClipError::InvalidInput(message.clone()))),
                    )
                }
            };
        for slot in slots {
            results.push(match slot {
                Some(done) => done,
                None => features
                    .next()
                    .unwrap_or_else(|| Err(ClipError::InvalidInput("missing feature row".into())))
                    .map(Some),
            });
        }
    }

    /// `encode_text` over texts, in batches; raw (unnormalised) features.
    pub fn encode_texts<S: AsRef<str>>(
        &self,
        texts: &[S],
        truncate: bool,
    ) -> Result<Vec<Vec<f32>>> {
        let ids = self.tokenize(texts, truncate)?;
        self.encode_ids(&ids)
    }

    /// `encode_text` over already tokenized rows of equal length.
    pub fn encode_ids(&self, ids: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        let mut features = Vec::with_capacity(ids.len());
        for batch in ids.chunks(TEXT_BATCH) {
            let len = batch.first().map_or(0, Vec::len);
            if batch.iter().any(|row| row.len() != len) {
                return Err(ClipError::InvalidInput(
                    "token rows differ in length".into(),
                ));
            }
            let flat: Vec<u32> = batch.iter().flatten().copied().collect();
            let tensor = Tensor::from_vec(flat, (batch.len(), len), &self.device)?;
            features.extend(self.model.encode_text(&tensor)?.to_vec2::<f32>()?);
        }
        Ok(features)
    }

    /// `softmax(logits_per_image)`: one row of label probabilities per image.
    pub fn probabilities(
        &self,
        image_features: &[Vec<f32>],
        text_features: &[Vec<f32>],
    ) -> Result<Vec<Vec<f32>>> {
        if text_features.is_empty() {
            return Err(ClipError::InvalidInput(
                "no labels to classify against".into(),
            ));
        }
        if image_features.is_empty() {
            return Ok(Vec::new());
        }
        let to_tensor = |rows: &[Vec<f32>]| -> Result<Tensor> {
            let dim = rows[0].len();
            let flat: Vec<f32> = rows.iter().flatten().copied().collect();
            Ok(Tensor::from_vec(flat, (rows.len(), dim), &self.device)?)
        };
        let (per_image, _) = self
            .model
            .logits(&to_tensor(image_features)?, &to_tensor(text_features)?)?;
        Ok(per_image
            .to_vec2::<f32>()?
            .iter()
            .map(|row| softmax(row))
            .collect())
    }

    /// Zero-shot classification of image files against label prompts, as in OpenAI's README:
    /// one probability row per image, in label order.
    pub fn classify_paths<S: AsRef<str>>(
        &self,
        images: &[PathBuf],
        labels: &[S],
    ) -> Result<Vec<Vec<f32>>> {
        let text_features = self.encode_texts(labels, false)?;
        let pixels = images
            .iter()
            .map(|p| self.preprocess_path(p))
            .collect::<Result<Vec<_>>>()?;
        let image_features = self.encode_pixels(&pixels)?;
        self.probabilities(&image_features, &text_features)
    }
}

/// Numerically stable softmax in f32.
pub fn softmax(row: &[f32]) -> Vec<f32> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = row.iter().map(|v| (v - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.iter().map(|e| e / sum).collect()
}

/// L2-normalises each row (zero rows stay zero).
pub fn normalize_rows(rows: &mut [Vec<f32>]) {
    for row in rows {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm > 0.0 {
            row.iter_mut().for_each(|v| *v /= norm);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_matches_definition() {
        let p = softmax(&[1.0, 2.0, 3.0]);
        // numpy: exp([1,2,3]) / sum(exp([1,2,3]))
        let expected = [0.09003057, 0.24472847, 0.66524096];
        for (a, b) in p.iter().zip(expected) {
            assert!((a - b).abs() < 1e-7, "{a} vs {b}");
        }
        let big = softmax(&[1000.0, 1000.0]);
        assert_eq!(big, vec![0.5, 0.5]);
    }

    #[test]
    fn normalize_rows_gives_unit_norm() {
        let mut rows = vec![vec![3.0, 4.0], vec![0.0, 0.0]];
        normalize_rows(&mut rows);
        assert_eq!(rows[0], vec![0.6, 0.8]);
        assert_eq!(rows[1], vec![0.0, 0.0]);
    }

    #[test]
    fn a_text_only_load_gives_the_same_text_embeddings_and_refuses_images() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/models/hf_tiny_quickgelu"
        );
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures");
        // Hugging Face layout, and OpenAI .pt files with a ViT and a ModifiedResNet image tower.
        for spec in [
            dir.to_string(),
            format!("{root}/openai/vit/model.pt"),
            format!("{root}/openai/rn/model.pt"),
        ] {
            let whole = Clip::load(&spec, &LoadOptions::default()).unwrap();
            let text_only = LoadOptions {
                text_only: true,
                ..Default::default()
            };
            let text = Clip::load(&spec, &text_only).unwrap();
            // Ids inside every fixture's vocabulary (the tiny ones have 100 tokens; the largest id ends a text).
            let ids: Vec<Vec<u32>> = (0..2u32)
                .map(|t| {
                    (0..text.context_length() as u32)
                        .map(|i| (i * 7 + t) % 50 + 1)
                        .chain([99])
                        .take(text.context_length())
                        .collect()
                })
                .collect();
            assert_eq!(
                whole.encode_ids(&ids).unwrap(),
                text.encode_ids(&ids).unwrap()
            );
            let size = text.preprocess_config().size as usize;
            let error = text
                .encode_pixels(&[vec![0.0; 3 * size * size]])
                .unwrap_err();
            assert!(error.to_string().contains("text only"), "{error}");
        }
    }

    #[test]
    fn unknown_specs_are_rejected_without_network() {
        let err = Clip::load("no-such-model", &LoadOptions::default())
            .err()
            .unwrap();
        assert!(err.to_string().contains("no-such-model"), "{err}");
    }
}
