//! The training run: the model and data opened, a resumed run's checkpoint read, the locked image tower's
//! features cached, then step after step with the next batches decoded on background threads, the log,
//! checkpoints and evaluations on their schedules, and the trained model written as a Hugging Face directory.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use candle_core::{Device, Tensor};
use clip_preprocess::PreprocessConfig;
use clip_tokenizer::Tokenizer;
use serde_json::json;

use crate::bundle::Clip;
use crate::error::{ClipError, Result};
use crate::formats::LOGIT_BIAS;
use crate::kernels::Precision;
use crate::model::clip::Trainable;
use crate::threads::parallel_map;
use crate::train::batches::{Group, Loader};
use crate::train::checkpoint::{self, initial_state, RunState, Settings, CHECKPOINT_DIR};
use crate::train::data::DataSet;
use crate::train::eval::{encode_pairs, retrieval_metrics, EncodedPairs, Metrics};
use crate::train::export::{write_model, write_tokenizer};
use crate::train::feature_cache::{image_key, tower_key, FeatureCache};
use crate::train::learner::{Learner, Recipe, StepBatch, LOGIT_SCALE};
use crate::train::log::RunLog;
use crate::train::loss::LossKind;
use crate::train::optim::{cosine_lr, AdamW, AdamWConfig};
use crate::train::options::{FeatureCacheMode, Length, Resume, TrainOptions};
use crate::train::start::load_start;
use crate::zeroshot::prompts::{classes_from_spec, templates_from_spec};
use crate::zeroshot::{evaluate, Classifier, Dataset};

/// Images encoded per forward pass while filling the feature cache.
const CACHE_CHUNK: usize = 64;

/// One optimizer step, as reported to an observer and written to the log.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRecord {
    /// 1-based.
    pub step: u64,
    pub steps: u64,
    pub epoch: u64,
    /// The loss before this step's update.
    pub loss: f64,
    /// The learning rate this step used.
    pub lr: f64,
    /// `exp(logit_scale)` in this step's forward pass.
    pub logit_scale: f64,
    pub samples_per_second: f64,
}

/// What a run reports as it goes (the CLI draws a progress bar; the default does nothing).
pub trait TrainObserver {
    /// A preparatory phase with `total` items (`caching image features`).
    fn phase(&mut self, _what: &str, _total: u64) {}
    fn phase_progress(&mut self, _done: u64) {}
    /// Training starts at step `first` (0 unless resumed) of `steps`.
    fn started(&mut self, _first: u64, _steps: u64) {}
    fn step(&mut self, _record: &StepRecord) {}
    /// A line worth showing: a skipped image, a checkpoint, an evaluation.
    fn message(&mut self, _line: &str) {}
    /// Asked after each step (and its checkpoint): `true` ends the run there with [`ClipError::Stopped`].
    fn should_stop(&mut self) -> bool {
        false
    }
}

/// An observer that ignores everything.
pub struct Silent;
impl TrainObserver for Silent {}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct TrainReport {
    /// The trained model's directory.
    pub output: PathBuf,
    pub steps: u64,
    /// The step the run resumed from, if it did.
    pub resumed_from: Option<u64>,
    pub last_loss: Option<f64>,
    /// Images skipped as unreadable (labels).
    pub unreadable: Vec<String>,
    /// Captions cut to the context length.
    pub truncated_captions: u64,
    pub checkpoints: Vec<PathBuf>,
    pub validation: Option<Metrics>,
    pub zeroshot_top1: Option<f64>,
    pub log: PathBuf,
    /// The image feature cache used (LiT fast path).
    pub feature_cache: Option<PathBuf>,
}

fn check_options(o: &TrainOptions) -> Result<()> {
    let bad = |m: String| Err(ClipError::InvalidInput(m));
    if o.batch_size == 0 {
        return bad("--batch-size must be at least 1".into());
    }
    if o.accum_freq == 0 {
        return bad("--accum-freq must be at least 1".into());
    }
    match o.length {
        Length::Steps(0) => return bad("--steps must be at least 1".into()),
        Length::Epochs(0) => return bad("--epochs must be at least 1".into()),
        _ => {}
    }
    if !(o.lr.is_finite() && o.lr >= 0.0) {
        return bad(format!(
            "--lr {} must be a finite non-negative number",
            o.lr
        ));
    }
    if !(o.weight_decay.is_finite() && o.weight_decay >= 0.0) {
        return bad(format!(
            "--wd {} must be a finite non-negative number",
            o.weight_decay
        ));
    }
    for (flag, beta) in [("--beta1", o.beta1), ("--beta2", o.beta2)] {
        if !(0.0..1.0).contains(&beta) {
            return bad(format!("{flag} {beta} must be in [0, 1)"));
        }
    }
    if !(o.eps.is_finite() && o.eps > 0.0) {
        return bad(format!("--eps {} must be a positive number", o.eps));
    }
    if let Some(c) = o.grad_clip_norm {
        if !(c.is_finite() && c > 0.0) {
            return bad(format!("--grad-clip-norm {c} must be a positive number"));
        }
    }
    if o.val_every == Some(0) || o.save_every == Some(0) {
        return bad("--val-every and --save-every must be at least 1".into());
    }
    if o.precision == Precision::Int8 {
        return bad("training computes in f32 or bf16, not int8".into());
    }
    Ok(())
}

/// Creates the output folder and checks that it can be written; refuses one holding a run unless resuming.
fn prepare_output(out: &Path, resume: &Resume) -> Result<()> {
    let write_err = |path: &Path, source: std::io::Error| {
        ClipError::InvalidInput(format!(
            "cannot write to the output folder {}: {source}",
            path.display()
        ))
    };
    std::fs::create_dir_all(out.join(CHECKPOINT_DIR)).map_err(|e| write_err(out, e))?;
    let probe = out.join(".clip-train-write-test");
    std::fs::write(&probe, b"").map_err(|e| write_err(out, e))?;
    let _ = std::fs::remove_file(&probe);
    if *resume == Resume::No {
        let existing = checkpoint::list(&out.join(CHECKPOINT_DIR))?;
        if let Some((step, _)) = existing.last() {
            return Err(ClipError::InvalidInput(format!(
                "{} already holds a training run (checkpoints up to step {step}); pass --resume to continue it, \
                 or choose another --output",
                out.display()
            )));
        }
    }
    Ok(())
}

/// The zero-shot evaluation's classifier inputs and images.
struct ZeroShotSet {
    dataset: Dataset,
    classes: Vec<String>,
    templates: Vec<String>,
}

fn zeroshot_set(o: &TrainOptions) -> Result<Option<ZeroShotSet>> {
    let Some(z) = &o.zeroshot else {
        return Ok(None);
    };
    let dataset = Dataset::open(&z.data)?;
    let classes = match &z.classes {
        Some(spec) => classes_from_spec(spec)?,
        None => dataset.classes.clone(),
    };
    let templates = templates_from_spec(z.templates.as_deref().unwrap_or("openai"))?;
    let dataset = dataset.with_class_names(&classes)?;
    Ok(Some(ZeroShotSet {
        dataset,
        classes,
        templates,
    }))
}

/// Everything the step loop works with.
struct Run<'a> {
    options: &'a TrainOptions,
    learner: Learner,
    state: RunState,
    steps: u64,
    warmup: u64,
    preprocess: PreprocessConfig,
    tokenizer: Tokenizer,
    /// Where the tokenizer's files come from (`None`: OpenAI's built-in vocabulary).
    tokenizer_dir: Option<PathBuf>,
    log: RunLog,
    val: Option<DataSet>,
    zeroshot: Option<ZeroShotSet>,
    checkpoints: Vec<PathBuf>,
    /// Cached image features by sample index (LiT fast path).
    cached: Option<HashMap<usize, Vec<f32>>>,
    unreadable_seen: BTreeSet<usize>,
    truncated_seen: BTreeSet<usize>,
    data: Arc<DataSet>,
    last_loss: Option<f64>,
    last_val: Option<Metrics>,
    last_zeroshot: Option<f64>,
}

/// Trains as `options` says; see the module documentation.
pub fn train(options: &TrainOptions, observer: &mut dyn TrainObserver) -> Result<TrainReport> {
    check_options(options)?;
    let out = &options.output;
    prepare_output(out, &options.resume)?;
    let checkpoint_root = out.join(CHECKPOINT_DIR);
    checkpoint::remove_partials(&checkpoint_root);

    let data = Arc::new(DataSet::open(&options.train_data, &options.data_format)?);
    let per_step = options.batch_size * options.accum_freq;
    if per_step > data.len() {
        return Err(ClipError::Data {
            name: data.name.clone(),
            reason: format!(
                "batch size {} x accumulation {} needs {per_step} pairs per step, but the data has only {}",
                options.batch_size,
                options.accum_freq,
                data.len()
            ),
        });
    }
    let steps = match options.length {
        Length::Steps(s) => s,
        Length::Epochs(e) => e * (data.len() / per_step) as u64,
    };
    let warmup = options.warmup.unwrap_or(steps / 10);
    let val = options
        .val_data
        .as_deref()
        .map(|spec| {
            let format = match &options.data_format {
                fmt @ crate::train::data::DataFormat::Csv { .. }
                    if !crate::train::data::looks_like_shards(spec) =>
                {
                    fmt.clone()
                }
                _ => crate::train::data::DataFormat::auto(spec),
            };
            DataSet::open(spec, &format)
        })
        .transpose()?;
    let zeroshot = zeroshot_set(options)?;
    let start = load_start(
        &options.model,
        &options.hub,
        options.vocab.as_deref(),
        options.seed,
    )?;
    let settings = Settings {
        train_data: options.train_data.clone(),
        batch_size: options.batch_size,
        accum_freq: options.accum_freq,
        steps,
        lr: options.lr,
        weight_decay: options.weight_decay,
        warmup,
        beta1: options.beta1,
        beta2: options.beta2,
        eps: options.eps,
        grad_clip_norm: options.grad_clip_norm,
        lock_image: options.lock_image,
        lock_text: options.lock_text,
        siglip: options.siglip,
        shuffle: options.shuffle,
        augment: options.augments(),
        seed: options.seed,
        precision: format!("{:?}", options.precision),
    };

    let resume_from = match &options.resume {
        Resume::No => None,
        Resume::Latest => checkpoint::list(&checkpoint_root)?
            .pop()
            .map(|(_, dir)| dir),
        Resume::From(dir) => Some(dir.clone()),
    };
    if options.resume == Resume::Latest && resume_from.is_none() {
        observer.message(&format!(
            "no checkpoint in {}: starting at step 0",
            checkpoint_root.display()
        ));
    }
    let (mut params, adam, state, resumed_from) = match &resume_from {
        Some(dir) => {
            let c = checkpoint::load(dir)?;
            if c.config != start.config {
                return Err(ClipError::InvalidInput(format!(
                    "checkpoint {} is of another architecture than --model",
                    dir.display()
                )));
            }
            if let Some(diff) = c.state.settings.difference(&settings) {
                return Err(ClipError::InvalidInput(format!(
                    "checkpoint {} was made with other settings ({diff}); resume with the same ones",
                    dir.display()
                )));
            }
            observer.message(&format!(
                "resuming from {} (step {})",
                dir.display(),
                c.state.step
            ));
            let step = c.state.step;
            (c.params, c.adam, c.state, Some(step))
        }
        None => (
            start.params,
            AdamW::default(),
            initial_state(settings),
            None,
        ),
    };
    if options.siglip && !params.contains(LOGIT_BIAS) {
        // open_clip's SigLIP initialisation: t = ln 10, b = -10.
        params.insert(LOGIT_SCALE, Tensor::new(10f32.ln(), &Device::Cpu)?);
        params.insert(LOGIT_BIAS, Tensor::new(-10f32, &Device::Cpu)?);
    }
    if !options.siglip {
        params.remove(LOGIT_BIAS);
    }
    let recipe = Recipe {
        precision: options.precision,
        trainable: Trainable {
            vision: !options.lock_image,
            text: !options.lock_text,
        },
        loss: if options.siglip {
            LossKind::SigLip
        } else {
            LossKind::Clip
        },
        adamw: AdamWConfig {
            beta1: options.beta1,
            beta2: options.beta2,
            eps: options.eps,
            weight_decay: options.weight_decay,
        },
        grad_clip_norm: options.grad_clip_norm,
    };
    let learner = Learner::new(start.config, params, adam, recipe)?;
    let log_path = options
        .log_json
        .clone()
        .unwrap_or_else(|| out.join("log.jsonl"));
    let log = RunLog::open(&log_path, resumed_from)?;
    let mut run = Run {
        options,
        learner,
        steps,
        warmup,
        preprocess: start.preprocess,
        tokenizer: start.tokenizer,
        tokenizer_dir: start.tokenizer_dir,
        log,
        val,
        zeroshot,
        checkpoints: Vec::new(),
        cached: None,
        unreadable_seen: state.unreadable.iter().copied().collect(),
        truncated_seen: state.truncated.iter().copied().collect(),
        data: data.clone(),
        state,
        last_loss: None,
        last_val: None,
        last_zeroshot: None,
    };
    if resumed_from.is_none() {
        for note in &data.notes {
            run.log.write(&json!({"step": 0, "data_note": note}))?;
            observer.message(&format!("note: {note}"));
        }
    }
    let use_cache =
        options.lock_image && !options.augments() && options.feature_cache != FeatureCacheMode::Off;
    let cache_path = if use_cache {
        Some(run.fill_feature_cache(observer)?)
    } else {
        None
    };
    run.train_steps(observer)?;

    write_model(
        out,
        &run.learner.config,
        &run.learner.params,
        &run.preprocess,
    )?;
    write_tokenizer(out, run.tokenizer_dir.as_deref())?;
    observer.message(&format!("wrote the trained model to {}", out.display()));
    let unreadable = run
        .unreadable_seen
        .iter()
        .map(|&i| run.data.samples[i].image.label())
        .collect();
    Ok(TrainReport {
        output: out.clone(),
        steps: run.state.step,
        resumed_from,
        last_loss: run.last_loss,
        unreadable,
        truncated_captions: run.truncated_seen.len() as u64,
        checkpoints: run.checkpoints,
        validation: run.last_val,
        zeroshot_top1: run.last_zeroshot,
        log: log_path,
        feature_cache: cache_path,
    })
}

impl Run<'_> {
    /// Computes the image features of every training image the cache lacks (the LiT fast path) and keeps all of
    /// them in memory for the run; unreadable images are recorded and skipped.
    fn fill_feature_cache(&mut self, observer: &mut dyn TrainObserver) -> Result<PathBuf> {
        let dir = match &self.options.feature_cache {
            FeatureCacheMode::Dir(d) => d.clone(),
            _ => crate::hub::clip_cache_dir().join("features"),
        };
        let key = tower_key(&self.learner.params, &self.preprocess)?;
        let dim = self.learner.config.projection_dim;
        let mut cache = FeatureCache::open(&dir, &key, dim)?;
        let n = self.data.len();
        let indices: Vec<usize> = (0..n).collect();
        let keys: Vec<Result<[u8; 32]>> =
            parallel_map(&indices, |&i| image_key(&self.data.samples[i].image));
        let mut features = HashMap::with_capacity(n);
        let mut missing = Vec::new();
        for (i, key) in keys.into_iter().enumerate() {
            match key {
                Ok(k) => match cache.get(&k) {
                    Some(f) => {
                        features.insert(i, f.to_vec());
                    }
                    None => missing.push((i, k)),
                },
                Err(e) => self.note_unreadable(i, &e.to_string(), observer)?,
            }
        }
        let from_cache = features.len();
        if !missing.is_empty() {
            observer.phase("caching image features", missing.len() as u64);
            let size = self.preprocess.size as usize;
            let mut done = 0u64;
            for chunk in missing.chunks(CACHE_CHUNK) {
                let decoded = parallel_map(chunk, |&(i, _)| -> Result<Vec<f32>> {
                    crate::priority::lower_current_thread();
                    let image = clip_preprocess::decode(&self.data.samples[i].image.read()?)?;
                    Ok(clip_preprocess::preprocess_image(&image, &self.preprocess)?)
                });
                let mut pixels = Vec::new();
                let mut good = Vec::new();
                for (&(i, k), result) in chunk.iter().zip(decoded) {
                    match result {
                        Ok(p) => {
                            pixels.extend(p);
                            good.push((i, k));
                        }
                        Err(e) => self.note_unreadable(i, &e.to_string(), observer)?,
                    }
                }
                if !good.is_empty() {
                    let pixels =
                        Tensor::from_vec(pixels, (good.len(), 3, size, size), &Device::Cpu)?;
                    let rows = self.learner.model.encode_image(&pixels)?.to_vec2::<f32>()?;
                    let mut records = Vec::with_capacity(rows.len());
                    for ((i, k), row) in good.into_iter().zip(rows) {
                        features.insert(i, row.clone());
                        records.push((k, row));
                    }
                    cache.append(records)?;
                }
                done += chunk.len() as u64;
                observer.phase_progress(done);
            }
        }
        observer.message(&format!(
            "image features: {from_cache} from the cache, {} computed ({})",
            features.len() - from_cache,
            cache.path().display()
        ));
        self.cached = Some(features);
        Ok(cache.path().to_path_buf())
    }

    fn note_unreadable(
        &mut self,
        index: usize,
        reason: &str,
        observer: &mut dyn TrainObserver,
    ) -> Result<()> {
        if self.unreadable_seen.insert(index) {
            let label = self.data.samples[index].image.label();
            self.log
                .write(&json!({"step": self.state.step, "skipped": label, "reason": reason}))?;
            observer.message(&format!("skipped unreadable image {label}: {reason}"));
        }
        Ok(())
    }

    fn loader(&self) -> Loader {
        let mut unreadable: HashSet<usize> = self.unreadable_seen.iter().copied().collect();
        if let Some(cached) = &self.cached {
            unreadable.extend((0..self.data.len()).filter(|i| !cached.contains_key(i)));
        }
        Loader {
            data: self.data.clone(),
            tokenizer: self.tokenizer.clone(),
            context_length: self.learner.config.text.context_length,
            preprocess: self.preprocess.clone(),
            batch_size: self.options.batch_size,
            accum_freq: self.options.accum_freq,
            shuffle: self.options.shuffle,
            augment: self.options.augments(),
            decode: self.cached.is_none(),
            seed: self.options.seed,
            unreadable: Arc::new(RwLock::new(unreadable)),
        }
    }

    /// The step's batches as tensors.
    fn step_batches(&self, group: &Group) -> Result<Vec<StepBatch>> {
        let cached = self
            .cached
            .as_ref()
            .map(|c| (c, self.learner.config.projection_dim));
        group
            .batches
            .iter()
            .map(|b| {
                StepBatch::new(
                    b,
                    self.preprocess.size as usize,
                    self.learner.config.text.context_length,
                    cached,
                )
            })
            .collect()
    }

    fn train_steps(&mut self, observer: &mut dyn TrainObserver) -> Result<()> {
        let first = self.state.step;
        observer.started(first, self.steps);
        if first >= self.steps {
            return Ok(());
        }
        let loader = self.loader();
        let start_position = self.state.position;
        let remaining = self.steps - first;
        std::thread::scope(|scope| -> Result<()> {
            // The next step's batches are decoded while this one computes.
            let (sender, receiver) = std::sync::mpsc::sync_channel::<Result<Group>>(1);
            scope.spawn(move || {
                let mut position = start_position;
                for _ in 0..remaining {
                    let group = loader.next_group(position);
                    if let Ok(g) = &group {
                        position = g.end;
                    }
                    let failed = group.is_err();
                    if sender.send(group).is_err() || failed {
                        break;
                    }
                }
            });
            let mut clock = Instant::now();
            for group in receiver {
                let group = group?;
                self.one_step(group, &mut clock, observer)?;
                if self.state.step < self.steps && observer.should_stop() {
                    return Err(ClipError::Stopped {
                        step: self.state.step,
                    });
                }
            }
            Ok(())
        })?;
        if self.state.step < self.steps {
            return Err(ClipError::InvalidInput(format!(
                "the data loader stopped after step {} of {}",
                self.state.step, self.steps
            )));
        }
        Ok(())
    }

    fn one_step(
        &mut self,
        group: Group,
        clock: &mut Instant,
        observer: &mut dyn TrainObserver,
    ) -> Result<()> {
        for (index, reason) in &group.skipped {
            self.note_unreadable(*index, reason, observer)?;
        }
        for &index in &group.truncated {
            if self.truncated_seen.insert(index) {
                let sample = &self.data.samples[index];
                let preview: String = sample.caption.chars().take(60).collect();
                self.log.write(&json!({
                    "step": self.state.step,
                    "truncated_caption": preview,
                    "image": sample.image.label(),
                }))?;
            }
        }
        let batches = self.step_batches(&group)?;
        let lr = cosine_lr(self.options.lr, self.warmup, self.steps, self.state.step);
        let result = self.learner.step(&batches, lr)?;
        self.state.step += 1;
        self.state.position = group.end;
        let per_step = (self.options.batch_size * self.options.accum_freq) as u64;
        self.state.samples_seen += per_step;
        let elapsed = clock.elapsed().as_secs_f64();
        *clock = Instant::now();
        let record = StepRecord {
            step: self.state.step,
            steps: self.steps,
            epoch: group.end.epoch,
            loss: result.loss,
            lr,
            logit_scale: result.logit_scale,
            samples_per_second: per_step as f64 / elapsed.max(1e-9),
        };
        let mut line = json!({
            "step": record.step,
            "loss": record.loss,
            "lr": record.lr,
            "logit_scale": record.logit_scale,
            "epoch": record.epoch,
            "samples_per_second": record.samples_per_second,
        });
        if let Some(norm) = result.grad_norm {
            line["grad_norm"] = json!(norm);
        }
        self.log.write(&line)?;
        self.last_loss = Some(result.loss);
        observer.step(&record);
        let last = self.state.step == self.steps;
        let step = self.state.step;
        let due = |every: Option<u64>| every.is_some_and(|e| step.is_multiple_of(e));
        if (self.val.is_some() || self.options.zeroshot.is_some())
            && (last || due(self.options.val_every))
        {
            self.evaluate(observer)?;
        }
        if self.options.save_every.is_some() && (last || due(self.options.save_every)) {
            self.save(observer)?;
        }
        // Evaluation and checkpoints are not training time.
        *clock = Instant::now();
        Ok(())
    }

    fn evaluate(&mut self, observer: &mut dyn TrainObserver) -> Result<()> {
        let step = self.state.step;
        let model = &self.learner.model;
        if let Some(val) = &self.val {
            let EncodedPairs {
                images,
                texts,
                failed,
            } = encode_pairs(model, val, &self.tokenizer, &self.preprocess)?;
            let metrics = retrieval_metrics(
                &images,
                &texts,
                f64::from(model.logit_scale()),
                self.options.batch_size,
            )?;
            self.log
                .write(&json!({"step": step, "val": metrics, "val_unreadable": failed.len()}))?;
            observer.message(&format!(
                "step {step} validation: image->text R@1 {:.3}, text->image R@1 {:.3}, loss {:.4} ({} pairs)",
                metrics.get("image_to_text_R@1").copied().unwrap_or(0.0),
                metrics.get("text_to_image_R@1").copied().unwrap_or(0.0),
                metrics.get("clip_val_loss").copied().unwrap_or(f64::NAN),
                images.len()
            ));
            self.last_val = Some(metrics);
        }
        if let Some(z) = &self.zeroshot {
            let clip = Clip::from_parts(
                model.clone(),
                self.tokenizer.clone(),
                self.preprocess.clone(),
                self.options.output.clone(),
            );
            let classifier = Classifier::zero_shot(&clip, &z.classes, &z.templates, |_, _| {})?;
            let report = evaluate(&clip, &classifier, &z.dataset, |_, _| {})?;
            self.log.write(&json!({
                "step": step,
                "zeroshot_top1": report.top1(),
                "zeroshot_top5": report.top5(),
                "zeroshot_images": report.evaluated(),
            }))?;
            observer.message(&format!(
                "step {step} zero-shot: top-1 {:.2}%, top-{} {:.2}% ({} images)",
                report.top1() * 100.0,
                report.k,
                report.top5() * 100.0,
                report.evaluated()
            ));
            self.last_zeroshot = Some(report.top1());
        }
        Ok(())
    }

    fn save(&mut self, observer: &mut dyn TrainObserver) -> Result<()> {
        self.state.unreadable = self.unreadable_seen.iter().copied().collect();
        self.state.truncated = self.truncated_seen.iter().copied().collect();
        let root = self.options.output.join(CHECKPOINT_DIR);
        let dir = checkpoint::save(
            &root,
            &self.learner.config,
            &self.learner.params,
            &self.learner.adam,
            &self.preprocess,
            self.tokenizer_dir.as_deref(),
            &self.state,
        )?;
        if self.options.delete_previous_checkpoint {
            for (step, old) in checkpoint::list(&root)? {
                if step != self.state.step {
                    let _ = std::fs::remove_dir_all(&old);
                }
            }
            self.checkpoints.clear();
        }
        observer.message(&format!("checkpoint {}", dir.display()));
        self.checkpoints.push(dir);
        Ok(())
    }
}
