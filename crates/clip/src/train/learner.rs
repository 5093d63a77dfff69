//! One optimizer step as open_clip's `train_one_epoch` takes it: the loss of the step's samples and its
//! gradients, gradient clipping, AdamW over the trained parameters, and the clamp of `logit_scale` to
//! [0, ln 100]. With `accum_freq > 1` the loss is computed over all the step's batches at once (each batch's
//! features recomputed with gradients while the others' are held fixed, as open_clip does), so the gradient
//! of every tower parameter is the full batch's; `logit_scale` (and SigLIP's bias) gets one full gradient per
//! batch, `accum_freq` times in all, as in open_clip.

use std::collections::HashMap;

use candle_core::{Device, Tensor};

use crate::error::{ClipError, Result};
use crate::formats::LOGIT_BIAS;
use crate::kernels::Precision;
use crate::model::clip::Trainable;
use crate::model::layout::{is_image_side, is_text_side, parameters};
use crate::model::params::{Grads, Params};
use crate::model::{ClipConfig, ClipModel};
use crate::train::batches::Batch;
use crate::train::loss::{contrastive_loss, LossKind};
use crate::train::optim::{clip_grad_norm, AdamW, AdamWConfig};

pub(crate) const LOGIT_SCALE: &str = "logit_scale";

/// One batch in tensor form: pixels `[b, 3, s, s]` or image features already computed (a locked image tower's,
/// from the cache), and token ids `[b, context]`.
pub(crate) struct StepBatch {
    pub pixels: Option<Tensor>,
    pub image_features: Option<Tensor>,
    pub ids: Tensor,
}

impl StepBatch {
    /// The tensors of a loaded batch: its pixels, or (LiT fast path) its images' cached features.
    pub fn new(
        batch: &Batch,
        image_size: usize,
        context: usize,
        cached: Option<(&HashMap<usize, Vec<f32>>, usize)>,
    ) -> Result<Self> {
        let n = batch.indices.len();
        let ids: Vec<u32> = batch.ids.iter().flatten().copied().collect();
        let ids = Tensor::from_vec(ids, (n, context), &Device::Cpu)?;
        let (pixels, image_features) = match cached {
            Some((features, dim)) => {
                let mut flat = Vec::with_capacity(n * dim);
                for i in &batch.indices {
                    flat.extend_from_slice(features.get(i).ok_or_else(|| {
                        ClipError::InvalidInput(format!("no cached features for sample {i}"))
                    })?);
                }
                (None, Some(Tensor::from_vec(flat, (n, dim), &Device::Cpu)?))
            }
            None => (
                Some(Tensor::from_vec(
                    batch.pixels.clone(),
                    (n, 3, image_size, image_size),
                    &Device::Cpu,
                )?),
                None,
            ),
        };
        Ok(Self {
            pixels,
            image_features,
            ids,
        })
    }
}

/// What a step reports.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StepResult {
    /// The loss before the update.
    pub loss: f64,
    /// `exp(logit_scale)` used by the step's forward pass.
    pub logit_scale: f64,
    /// The gradients' norm before clipping (when clipping).
    pub grad_norm: Option<f64>,
}

/// How the model is trained: what a step computes, in which arithmetic, and how it updates.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Recipe {
    /// The forward pass's arithmetic (the parameters stay f32).
    pub precision: Precision,
    pub trainable: Trainable,
    pub loss: LossKind,
    pub adamw: AdamWConfig,
    pub grad_clip_norm: Option<f64>,
}

/// The model being trained: its parameters (f32, the master copy), the optimizer's state, and the model built
/// from the parameters for the next forward pass.
pub(crate) struct Learner {
    pub config: ClipConfig,
    pub params: Params,
    pub adam: AdamW,
    pub model: ClipModel,
    pub precision: Precision,
    pub trainable: Trainable,
    pub loss: LossKind,
    pub adamw: AdamWConfig,
    pub grad_clip_norm: Option<f64>,
    /// The parameters the optimizer updates.
    pub trained: Vec<String>,
}

impl Learner {
    pub fn new(config: ClipConfig, params: Params, adam: AdamW, recipe: Recipe) -> Result<Self> {
        let Recipe {
            precision,
            trainable,
            loss,
            adamw,
            grad_clip_norm,
        } = recipe;
        let mut trained: Vec<String> = parameters(&config)?
            .into_iter()
            .map(|(name, _)| name)
            .filter(|name| {
                name == LOGIT_SCALE
                    || (is_image_side(name) && trainable.vision)
                    || (is_text_side(name) && trainable.text)
            })
            .collect();
        if loss == LossKind::SigLip {
            if !params.contains(LOGIT_BIAS) {
                return Err(ClipError::InvalidInput(
                    "the sigmoid loss needs a logit_bias parameter".into(),
                ));
            }
            trained.push(LOGIT_BIAS.to_string());
        }
        let model = ClipModel::from_params(&config, &params, precision)?;
        Ok(Self {
            config,
            params,
            adam,
            model,
            precision,
            trainable,
            loss,
            adamw,
            grad_clip_norm,
            trained,
        })
    }

    fn bias(&self) -> Result<f64> {
        match self.loss {
            LossKind::SigLip => self.params.scalar(LOGIT_BIAS),
            LossKind::Clip => Ok(0.0),
        }
    }

    /// Image and text features of a batch without gradients.
    fn features(&self, batch: &StepBatch) -> Result<(Tensor, Tensor)> {
        let image = match (&batch.image_features, &batch.pixels) {
            (Some(f), _) => f.clone(),
            (None, Some(p)) => self.model.encode_image(p)?,
            (None, None) => return Err(ClipError::InvalidInput("a batch without images".into())),
        };
        Ok((image, self.model.encode_text(&batch.ids)?))
    }

    /// Adds the towers' gradients for the feature gradients `dimage`, `dtext` of `batch`.
    fn backward(
        &self,
        batch: &StepBatch,
        dimage: &Tensor,
        dtext: &Tensor,
        grads: &mut Grads,
    ) -> Result<()> {
        let trainable = Trainable {
            vision: self.trainable.vision && batch.image_features.is_none(),
            text: self.trainable.text,
        };
        if !trainable.vision && !trainable.text {
            return Ok(());
        }
        let pixels = if trainable.vision {
            batch.pixels.as_ref()
        } else {
            None
        };
        let (_, _, cache) = self.model.forward_train(pixels, &batch.ids, trainable)?;
        self.model.backward(
            &cache,
            trainable.vision.then_some(dimage),
            dtext,
            &self.params,
            grads,
        )
    }

    /// The loss of the step's batches and the gradient of every trained parameter.
    pub fn gradients(&self, batches: &[StepBatch]) -> Result<(f64, Grads)> {
        let log_scale = self.params.scalar(LOGIT_SCALE)?;
        let bias = self.bias()?;
        let mut grads = Grads::new();
        let trainable = Trainable {
            vision: self.trainable.vision && batches.iter().all(|b| b.image_features.is_none()),
            text: self.trainable.text,
        };
        let loss = if let ([batch], true) = (batches, trainable.vision || trainable.text) {
            // One batch: one forward pass keeps what the backward pass needs.
            let pixels = if trainable.vision {
                batch.pixels.as_ref()
            } else {
                None
            };
            let (image, text, cache) = self.model.forward_train(pixels, &batch.ids, trainable)?;
            let image = match (image, &batch.image_features) {
                (Some(i), _) => i,
                (None, Some(f)) => f.clone(),
                (None, None) => {
                    self.model
                        .encode_image(batch.pixels.as_ref().ok_or_else(|| {
                            ClipError::InvalidInput("a batch without images".into())
                        })?)?
                }
            };
            let lg = contrastive_loss(self.loss, &image, &text, log_scale, bias)?;
            self.model.backward(
                &cache,
                trainable.vision.then_some(&lg.dimage),
                &lg.dtext,
                &self.params,
                &mut grads,
            )?;
            self.scalar_grads(&mut grads, lg.dlog_scale, lg.dbias, 1)?;
            lg.loss
        } else {
            let mut images = Vec::with_capacity(batches.len());
            let mut texts = Vec::with_capacity(batches.len());
            for batch in batches {
                let (i, t) = self.features(batch)?;
                images.push(i);
                texts.push(t);
            }
            let lg = contrastive_loss(
                self.loss,
                &Tensor::cat(&images, 0)?,
                &Tensor::cat(&texts, 0)?,
                log_scale,
                bias,
            )?;
            let mut offset = 0;
            for (batch, image) in batches.iter().zip(&images) {
                let n = image.dim(0)?;
                let dimage = lg.dimage.narrow(0, offset, n)?;
                let dtext = lg.dtext.narrow(0, offset, n)?;
                self.backward(batch, &dimage, &dtext, &mut grads)?;
                offset += n;
            }
            self.scalar_grads(&mut grads, lg.dlog_scale, lg.dbias, batches.len())?;
            lg.loss
        };
        Ok((loss, grads))
    }

    fn scalar_grads(
        &self,
        grads: &mut Grads,
        dlog_scale: f64,
        dbias: f64,
        times: usize,
    ) -> Result<()> {
        let scalar = |v: f64| Tensor::new((v * times as f64) as f32, &Device::Cpu);
        grads.insert(LOGIT_SCALE, scalar(dlog_scale)?);
        if self.loss == LossKind::SigLip {
            grads.insert(LOGIT_BIAS, scalar(dbias)?);
        }
        Ok(())
    }

    /// One optimizer step at learning rate `lr`.
    pub fn step(&mut self, batches: &[StepBatch], lr: f64) -> Result<StepResult> {
        let logit_scale = self.params.scalar(LOGIT_SCALE)?.exp();
        let (loss, mut grads) = self.gradients(batches)?;
        if !loss.is_finite() {
            return Err(ClipError::InvalidInput(format!(
                "the loss is {loss}: training diverged (try a lower --lr or --grad-clip-norm)"
            )));
        }
        let grad_norm = match self.grad_clip_norm {
            Some(max) => Some(clip_grad_norm(&mut grads, &self.trained, max)?),
            None => None,
        };
        self.adam
            .step(&mut self.params, &grads, &self.trained, lr, &self.adamw)?;
        // open_clip: `logit_scale.clamp_(0, math.log(100))` after every step.
        let t = self.params.scalar(LOGIT_SCALE)? as f32;
        let clamped = t.clamp(0.0, 100f64.ln() as f32);
        self.params
            .insert(LOGIT_SCALE, Tensor::new(clamped, &Device::Cpu)?);
        self.model = ClipModel::from_params(&self.config, &self.params, self.precision)?;
        Ok(StepResult {
            loss,
            logit_scale,
            grad_norm,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::{Arc, RwLock};

    use super::*;
    use crate::bundle::source::ModelSource;
    use crate::hub::HubOptions;
    use crate::test_util::{abs_sum, max_abs, relative_error};
    use crate::train::batches::{Loader, Position};
    use crate::train::data::{DataFormat, DataSet};
    use crate::train::optim::AdamW;

    pub fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
    }

    /// The tiny HF model of the training fixtures as a learner, and the first `steps` groups of 4 pairs of
    /// `train.csv` (file order, inference preprocessing).
    pub fn tiny(trainable: Trainable, loss: LossKind) -> (Learner, Vec<Vec<StepBatch>>) {
        let (learner, preprocess) = fixture_learner("hf_tiny_quickgelu", trainable, loss);
        let data = DataSet::open(
            fixtures().join("train/train.csv").to_str().unwrap(),
            &DataFormat::Csv {
                separator: b',',
                image_key: "filepath".into(),
                caption_key: "title".into(),
            },
        )
        .unwrap();
        let loader = Loader {
            data: Arc::new(data),
            tokenizer: clip_tokenizer::Tokenizer::openai(),
            context_length: 77,
            preprocess,
            batch_size: 4,
            accum_freq: 1,
            shuffle: false,
            augment: false,
            decode: true,
            seed: 0,
            unreadable: Arc::new(RwLock::new(Default::default())),
        };
        let group = loader.next_group(Position::default()).unwrap();
        let batches = group
            .batches
            .iter()
            .map(|b| StepBatch::new(b, 32, 77, None).unwrap())
            .collect();
        (learner, vec![batches])
    }

    /// A fixture model (`fixtures/models/NAME`) as a learner with open_clip's AdamW settings, and its
    /// preprocessing.
    fn fixture_learner(
        name: &str,
        trainable: Trainable,
        loss: LossKind,
    ) -> (Learner, clip_preprocess::PreprocessConfig) {
        let opened = ModelSource::HfDir(fixtures().join("models").join(name))
            .open(&HubOptions::default(), Precision::F32)
            .unwrap();
        let config = opened.opened.config.clone();
        let mut params = Params::new();
        for (name, shape) in parameters(&config).unwrap() {
            params.insert(
                name.clone(),
                opened.opened.store.take(&name, &shape).unwrap(),
            );
        }
        let adamw = AdamWConfig::OPEN_CLIP;
        let recipe = Recipe {
            precision: Precision::F32,
            trainable,
            loss,
            adamw,
            grad_clip_norm: None,
        };
        let learner = Learner::new(config, params, AdamW::default(), recipe).unwrap();
        (learner, opened.preprocess)
    }

    #[test]
    fn one_step_loss_and_every_gradient_equal_pytorch() {
        let reference = candle_core::safetensors::load(
            fixtures().join("train/one_step.safetensors"),
            &Device::Cpu,
        )
        .unwrap();
        let (learner, groups) = tiny(
            Trainable {
                vision: true,
                text: true,
            },
            LossKind::Clip,
        );
        let (loss, grads) = learner.gradients(&groups[0]).unwrap();
        check_step("one step", &reference, loss, &grads, &learner);
    }

    /// One step's loss and every gradient against PyTorch's (max relative error <= 1e-4 each).
    fn check_step(
        label: &str,
        reference: &std::collections::HashMap<String, Tensor>,
        loss: f64,
        grads: &Grads,
        learner: &Learner,
    ) {
        let want_loss = f64::from(reference["loss"].to_vec1::<f32>().unwrap()[0]);
        let loss_error = (loss - want_loss).abs() / want_loss.abs();
        println!("{label}: loss {loss} vs {want_loss}, relative error {loss_error:.2e}");
        assert!(loss_error <= 1e-4, "loss {loss} vs {want_loss}");
        let token = "text_model.embeddings.token_embedding.weight";
        let mut worst = (0f64, String::new());
        let mut compared = 0;
        for (name, want) in reference {
            if name == "loss" || name.starts_with(token) || name.starts_with("input.") {
                continue;
            }
            let got = grads
                .get(name)
                .unwrap_or_else(|_| panic!("no gradient for {name}"));
            let e = if let Some(layer) = name.strip_suffix("k_proj.bias") {
                // Mathematically zero (softmax over keys ignores a bias added to every key): PyTorch's value is
                // rounding noise, so the scale is that of the layer's query bias gradient.
                let scale = max_abs(&reference[&format!("{layer}q_proj.bias")]);
                f64::from(max_abs(&(got - want).unwrap()) / scale)
            } else {
                relative_error(got, want)
            };
            if e > worst.0 {
                worst = (e, name.clone());
            }
            compared += 1;
        }
        // The token embedding's gradient: the rows of the ids used, zero elsewhere.
        let ids = reference[&format!("{token}.ids")]
            .to_dtype(candle_core::DType::U32)
            .unwrap();
        let got_rows = grads.get(token).unwrap().index_select(&ids, 0).unwrap();
        let e = relative_error(&got_rows, &reference[&format!("{token}.rows")]);
        let dense = abs_sum(grads.get(token).unwrap());
        let rows = abs_sum(&got_rows);
        assert!(
            (dense - rows).abs() <= 1e-6 * dense,
            "gradient outside the used rows"
        );
        println!(
            "{label}: {compared} gradients + token rows; worst {:.2e} ({}), token rows {e:.2e}",
            worst.0, worst.1
        );
        assert_eq!(compared, parameters(&learner.config).unwrap().len() - 1);
        assert!(
            worst.0 <= 1e-4 && e <= 1e-4,
            "worst {:.3e} at {}, token rows {e:.3e}",
            worst.0,
            worst.1
        );
    }

    #[test]
    fn one_step_with_erf_and_tanh_gelu_equals_pytorch() {
        let reference = candle_core::safetensors::load(
            fixtures().join("train/one_step_gelu.safetensors"),
            &Device::Cpu,
        )
        .unwrap();
        let (learner, _) = fixture_learner(
            "hf_odd_gelu",
            Trainable {
                vision: true,
                text: true,
            },
            LossKind::Clip,
        );
        let ids: Vec<Vec<u32>> = reference["input.ids"]
            .to_dtype(candle_core::DType::U32)
            .unwrap()
            .to_vec2()
            .unwrap();
        let batch = Batch {
            indices: (0..ids.len()).collect(),
            pixels: reference["input.pixels"]
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap(),
            ids,
        };
        let step = StepBatch::new(&batch, 40, 16, None).unwrap();
        let (loss, grads) = learner.gradients(&[step]).unwrap();
        check_step("erf/tanh GELU step", &reference, loss, &grads, &learner);
    }
}
