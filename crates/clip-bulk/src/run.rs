//! The run: for each partition of this slice that has no marker yet, read its samples a window at a time,
//! decode and encode the images (and captions), L2-normalise the rows, then write the partition's files and
//! finally its marker. A sample whose image fails is counted and left out of every file, so rows of the
//! arrays and of the metadata stay aligned.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clip::Clip;
use serde::Serialize;

use crate::error::{BulkError, Result};
use crate::inputs::{Part, PartSource, Plan};
use crate::layout::{Layout, Marker};
use crate::metadata::{write_parquet, MetadataRow};
use crate::samples::{read_shard, ImageSource, Sample};

/// Failures listed by name in a summary (the counts cover all of them).
const LISTED_FAILURES: usize = 100;

/// `--shard I/N`: this run takes the partitions whose number is `index` modulo `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardSlice {
    pub index: usize,
    pub count: usize,
}

impl std::str::FromStr for ShardSlice {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        let bad = || format!("{text:?}: expected I/N with 0 <= I < N, e.g. 0/4");
        let (index, count) = text.split_once('/').ok_or_else(bad)?;
        let index: usize = index.trim().parse().map_err(|_| bad())?;
        let count: usize = count.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub output_dir: PathBuf,
    /// Samples read, decoded and encoded per step (memory holds about one window of encoded images).
    pub window: usize,
    /// Also embed each sample's caption (`text_emb/`); samples without one are then left out.
    pub text: bool,
    /// Store embeddings as float16, as clip-retrieval does.
    pub float16: bool,
    pub slice: Option<ShardSlice>,
    /// How the model is named in markers.
    pub model_label: String,
    pub dtype_label: String,
}

/// One sample, shard or partition that failed.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Failure {
    pub input: String,
    pub key: Option<String>,
    pub error: String,
}

/// What a run did. `samples` counts samples embedded by this run (partitions already done are skipped).
#[derive(Debug, Clone, Serialize, Default)]
pub struct Summary {
    pub output_dir: String,
    /// Partitions of this run's slice.
    pub partitions: usize,
    pub written: usize,
    /// Partitions already committed by an earlier run.
    pub skipped: usize,
    pub samples: usize,
    pub failed: usize,
    pub damaged_members: usize,
    /// Shards that could not be read to their end (what was read before the damage is kept).
    pub damaged_shards: Vec<Failure>,
    /// Partitions not written at all (an unreadable input); a re-run retries them.
    pub unwritten: Vec<Failure>,
    /// The first failed samples, by name.
    pub failures: Vec<Failure>,
    pub seconds: f64,
    pub images_per_s: f64,
}

/// Progress after each window: partitions finished (written or skipped) of all, samples embedded so far.
pub trait Progress {
    fn update(&mut self, partitions_done: usize, partitions: usize, samples: usize);
}

impl<F: FnMut(usize, usize, usize)> Progress for F {
    fn update(&mut self, partitions_done: usize, partitions: usize, samples: usize) {
        self(partitions_done, partitions, samples)
    }
}

/// Embeds the partitions of `plan` that belong to this slice and are not committed yet.
pub fn run(
    clip: &Clip,
    plan: &Plan,
    options: &RunOptions,
    mut progress: impl Progress,
) -> Result<Summary> {
    let started = Instant::now();
    let window = options.window.max(1);
    let parts: Vec<&Part> = plan
        .parts
        .iter()
        .filter(|p| options.slice.is_none_or(|s| p.index % s.count == s.index))
        .collect();
    let layout = Layout::create(&options.output_dir, plan.width, options.text)?;
    let settings = Marker {
        input: String::new(),
        samples: 0,
        failed: 0,
        damaged: None,
        model: options.model_label.clone(),
        dtype: options.dtype_label.clone(),
        dim: clip.model().config().projection_dim,
        text: options.text,
        float16: options.float16,
    };
    let committed = layout.committed_compatible(plan.parts.iter().map(|p| p.index), &settings)?;
    let mut summary = Summary {
        output_dir: options.output_dir.display().to_string(),
        partitions: parts.len(),
        ..Summary::default()
    };
    for (done, part) in parts.iter().enumerate() {
        if committed.contains(&part.index) {
            summary.skipped += 1;
            progress.update(done + 1, parts.len(), summary.samples);
            continue;
        }
        layout.remove_leftovers(part.index);
        let mut on_window = |samples: usize| progress.update(done, parts.len(), samples);
        let embedded = embed_part(
            clip,
            part,
            window,
            options.text,
            summary.samples,
            &mut on_window,
        )?;
        summary.failed += embedded.failures.len();
        summary.damaged_members += embedded.damaged_members;
        for failure in &embedded.failures {
            if summary.failures.len() < LISTED_FAILURES {
                summary.failures.push(failure.clone());
            }
        }
        match embedded.unreadable {
            Some(error) => summary.unwritten.push(Failure {
                input: part.label(),
                key: None,
                error,
            }),
            None => {
                if let Some(error) = &embedded.damaged {
                    summary.damaged_shards.push(Failure {
                        input: part.label(),
                        key: None,
                        error: error.clone(),
                    });
                }
                summary.samples += embedded.rows.len();
                let marker = Marker {
                    input: part.label(),
                    samples: embedded.rows.len(),
                    failed: embedded.failures.len(),
                    damaged: embedded.damaged.clone(),
                    ..settings.clone()
                };
                write_part(&layout, part.index, &embedded, &marker, options.float16)?;
                summary.written += 1;
            }
        }
        progress.update(done + 1, parts.len(), summary.samples);
    }
    summary.seconds = started.elapsed().as_secs_f64();
    summary.images_per_s = if summary.seconds > 0.0 {
        summary.samples as f64 / summary.seconds
    } else {
        0.0
    };
    Ok(summary)
}

/// A partition's rows, in sample order.
#[derive(Default)]
struct Embedded {
    image_rows: Vec<f32>,
    text_rows: Vec<f32>,
    rows: Vec<MetadataRow>,
    failures: Vec<Failure>,
    damaged_members: usize,
    damaged: Option<String>,
    /// The input could not be opened at all.
    unreadable: Option<String>,
}

fn embed_part(
    clip: &Clip,
    part: &Part,
    window: usize,
    text: bool,
    samples_before: usize,
    on_window: &mut dyn FnMut(usize),
) -> Result<Embedded> {
    let mut embedded = Embedded::default();
    let label = part.label();
    let mut embed_window = |samples: Vec<Sample>| -> Result<()> {
        embed_window(clip, samples, text, &label, &mut embedded)?;
        on_window(samples_before + embedded.rows.len());
        Ok(())
    };
    match &part.source {
        PartSource::Shard(path) => match read_shard(path, window, &mut embed_window)? {
            Ok(report) => {
                embedded.damaged_members = report.damaged_members.len();
                embedded.damaged = report.damaged;
            }
            Err(error) => embedded.unreadable = Some(error),
        },
        PartSource::Files(samples) => {
            for chunk in samples.chunks(window) {
                embed_window(chunk.to_vec())?;
            }
        }
    }
    Ok(embedded)
}

fn embed_window(
    clip: &Clip,
    samples: Vec<Sample>,
    text: bool,
    label: &str,
    out: &mut Embedded,
) -> Result<()> {
    let results = clip.encode_images_with(
        &samples,
        |sample| match &sample.image {
            ImageSource::Bytes { name, bytes } => {
                clip.preprocess_bytes(bytes, Path::new(name)).map(Some)
            }
            ImageSource::File(path) => clip.preprocess_path(path).map(Some),
            ImageSource::Missing => Err(clip::ClipError::InvalidInput(
                "the sample has no image".into(),
            )),
        },
        |_| {},
    );
    let mut captions = Vec::new();
    for (sample, result) in samples.into_iter().zip(results) {
        let fail = |error: String| Failure {
            input: label.to_string(),
            key: Some(sample.key.clone()),
            error,
        };
        let mut row = match result {
            Ok(Some(row)) => row,
            Ok(None) => continue,
            Err(e) => {
                out.failures.push(fail(e.to_string()));
                continue;
            }
        };
        if text {
            match &sample.caption {
                Some(caption) => captions.push(caption.clone()),
                None => {
                    out.failures
                        .push(fail("no caption (.txt) for --text".into()));
                    continue;
                }
            }
        }
        clip::normalize_rows(std::slice::from_mut(&mut row));
        out.image_rows.extend_from_slice(&row);
        out.rows.push(MetadataRow {
            image_path: sample.image_path,
            key: sample.key,
            caption: sample.caption,
            fields: sample.meta.unwrap_or_default(),
        });
    }
    if text && !captions.is_empty() {
        // Captions longer than the context are cut, as clip-retrieval's `tokenize(..., truncate=True)` does.
        let mut rows = clip.encode_texts(&captions, true)?;
        clip::normalize_rows(&mut rows);
        out.text_rows.extend(rows.into_iter().flatten());
    }
    Ok(())
}

fn write_part(
    layout: &Layout,
    index: usize,
    part: &Embedded,
    marker: &Marker,
    float16: bool,
) -> Result<()> {
    let count = part.rows.len();
    // An empty partition has no files but its marker (clip-retrieval writes nothing for an empty batch, and
    // embedding readers do not expect zero-row arrays).
    if count > 0 {
        let dim = marker.dim;
        let array = |rows: &[f32]| -> Result<Vec<u8>> {
            let shape = [count, dim];
            Ok(if float16 {
                clip::npy::to_bytes_f16(&shape, rows)?
            } else {
                clip::npy::to_bytes(&shape, rows)?
            })
        };
        clip::io::write_output(&layout.image_embeddings(index), &array(&part.image_rows)?)?;
        if marker.text {
            clip::io::write_output(&layout.text_embeddings(index), &array(&part.text_rows)?)?;
        }
        let parquet = write_parquet(&part.rows).map_err(|e| BulkError::Output {
            path: layout.metadata(index),
            reason: e.to_string(),
        })?;
        clip::io::write_output(&layout.metadata(index), &parquet)?;
    }
    let marker_json = serde_json::to_vec_pretty(marker).map_err(|e| BulkError::Output {
        path: layout.marker(index),
        reason: e.to_string(),
    })?;
    clip::io::write_output(&layout.marker(index), &marker_json)?;
    Ok(())
}
