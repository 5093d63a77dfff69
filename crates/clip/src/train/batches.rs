//! The order training reads its data in, and the batches made from it. An epoch visits every sample once, in
//! file order (`--no-shuffle`) or in a permutation drawn from the seed and the epoch number; each optimizer step
//! takes `accum_freq` batches of `batch_size` consecutive readable samples; when the rest of an epoch cannot
//! fill a step, it is dropped (open_clip drops the incomplete last batch) and the next epoch begins. A
//! [`Position`] (epoch, index into the epoch's order) is therefore all a checkpoint needs to continue the same
//! sequence. Unreadable images are skipped, reported once each, and never end a run.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use clip_preprocess::PreprocessConfig;
use clip_tokenizer::{Tokenizer, TokenizerError};
use serde::{Deserialize, Serialize};

use crate::error::{ClipError, Result};
use crate::threads::parallel_map;
use crate::train::augment::augment;
use crate::train::data::DataSet;
use crate::train::rng::{Rng, Stream};

/// Where the data stream stands: the next sample is `order(epoch)[cursor]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Position {
    pub epoch: u64,
    pub cursor: usize,
}

/// One batch: the samples' indices, their pixels (unless image features come from a cache) and token rows.
#[derive(Debug)]
pub(crate) struct Batch {
    pub indices: Vec<usize>,
    /// `[len, 3, size, size]` flattened, or empty when pixels are not decoded.
    pub pixels: Vec<f32>,
    pub ids: Vec<Vec<u32>>,
}

/// The batches of one optimizer step and what reading them found.
#[derive(Debug)]
pub(crate) struct Group {
    pub batches: Vec<Batch>,
    /// The position after this group: where a checkpoint taken after its step resumes.
    pub end: Position,
    /// Images skipped while reading (sample index, reason).
    pub skipped: Vec<(usize, String)>,
    /// Samples whose caption was longer than the context and was cut.
    pub truncated: Vec<usize>,
}

/// What the loader does with each sample.
#[derive(Clone)]
pub(crate) struct Loader {
    pub data: Arc<DataSet>,
    pub tokenizer: Tokenizer,
    pub context_length: usize,
    pub preprocess: PreprocessConfig,
    pub batch_size: usize,
    pub accum_freq: usize,
    pub shuffle: bool,
    pub augment: bool,
    /// Decode images (false when image features come from a cache).
    pub decode: bool,
    pub seed: u64,
    /// Samples known to be unreadable: skipped without trying again (the loader adds those it finds).
    pub unreadable: Arc<RwLock<HashSet<usize>>>,
}

impl Loader {
    /// Samples per optimizer step.
    pub fn per_step(&self) -> usize {
        self.batch_size * self.accum_freq
    }

    /// The samples of `epoch` in the order they are read.
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.data.len()).collect();
        if self.shuffle {
            Rng::new(self.seed, Stream::EpochOrder, &[epoch]).shuffle(&mut order);
        }
        order
    }

    /// The next step's batches from `position`.
    pub fn next_group(&self, mut position: Position) -> Result<Group> {
        let need = self.per_step();
        let mut skipped = Vec::new();
        let mut truncated = Vec::new();
        let mut order = self.order(position.epoch);
        loop {
            let mut got: Vec<(usize, Vec<f32>, Vec<u32>)> = Vec::with_capacity(need);
            let mut cursor = position.cursor;
            while got.len() < need && cursor < order.len() {
                let end = (cursor + need - got.len()).min(order.len());
                let chunk: Vec<usize> = {
                    let known = self.unreadable.read().unwrap_or_else(|p| p.into_inner());
                    order[cursor..end]
                        .iter()
                        .copied()
                        .filter(|i| !known.contains(i))
                        .collect()
                };
                cursor = end;
                for (index, result) in chunk
                    .iter()
                    .zip(parallel_map(&chunk, |&i| self.read(i, position.epoch)))
                {
                    match result {
                        Ok((pixels, ids, cut)) => {
                            if cut {
                                truncated.push(*index);
                            }
                            got.push((*index, pixels, ids));
                        }
                        Err(e) => {
                            self.unreadable
                                .write()
                                .unwrap_or_else(|p| p.into_inner())
                                .insert(*index);
                            skipped.push((*index, e.to_string()))
                        }
                    }
                }
            }
            if got.len() == need {
                let mut batches = Vec::with_capacity(self.accum_freq);
                let mut rest = got.into_iter();
                for _ in 0..self.accum_freq {
                    let mut batch = Batch {
                        indices: Vec::with_capacity(self.batch_size),
                        pixels: Vec::new(),
                        ids: Vec::with_capacity(self.batch_size),
                    };
                    for (index, pixels, ids) in rest.by_ref().take(self.batch_size) {
                        batch.indices.push(index);
                        batch.pixels.extend(pixels);
                        batch.ids.push(ids);
                    }
                    batches.push(batch);
                }
                return Ok(Group {
                    batches,
                    end: Position {
                        epoch: position.epoch,
                        cursor,
                    },
                    skipped,
                    truncated,
                });
            }
            // The epoch cannot fill another step: the rest is dropped and the next epoch begins. A whole epoch
            // that cannot fill one never will.
            if position.cursor == 0 {
                return Err(self.too_few());
            }
            position = Position {
                epoch: position.epoch + 1,
                cursor: 0,
            };
            order = self.order(position.epoch);
        }
    }

    fn too_few(&self) -> ClipError {
        ClipError::Data {
            name: self.data.name.clone(),
            reason: format!(
                "fewer than {} readable image-caption pairs (batch size {} x accumulation {}); {} of its {} images \
                 could not be read",
                self.per_step(),
                self.batch_size,
                self.accum_freq,
                self.unreadable.read().map_or(0, |u| u.len()),
                self.data.len()
            ),
        }
    }

    /// One sample: its pixels (augmented or as inference preprocesses them; none when not decoding), its token
    /// row, and whether its caption was cut to the context.
    fn read(&self, index: usize, epoch: u64) -> Result<(Vec<f32>, Vec<u32>, bool)> {
        let sample = &self.data.samples[index];
        let pixels = if self.decode {
            crate::priority::lower_current_thread();
            let bytes = sample.image.read()?;
            let image = clip_preprocess::decode(&bytes)
                .map_err(|e| ClipError::InvalidInput(format!("{}: {e}", sample.image.label())))?;
            if self.augment {
                let mut rng = Rng::new(self.seed, Stream::Augment, &[epoch, index as u64]);
                augment(&image, &self.preprocess, &mut rng)?
            } else {
                clip_preprocess::preprocess_image(&image, &self.preprocess)?
            }
        } else {
            Vec::new()
        };
        let (ids, cut) = tokenize_caption(&self.tokenizer, &sample.caption, self.context_length)?;
        Ok((pixels, ids, cut))
    }
}

/// `open_clip.tokenize(caption)` (too-long captions cut, with the end token last), and whether it was cut.
pub(crate) fn tokenize_caption(
    tokenizer: &Tokenizer,
    caption: &str,
    context_length: usize,
) -> Result<(Vec<u32>, bool)> {
    match tokenizer.tokenize(caption, context_length, false) {
        Ok(ids) => Ok((ids, false)),
        Err(TokenizerError::TooLong { .. }) => {
            Ok((tokenizer.tokenize(caption, context_length, true)?, true))
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::data::{ImageRef, Sample};

    fn loader(n: usize, batch: usize, accum: usize, shuffle: bool, bad: &[usize]) -> Loader {
        let samples = (0..n)
            .map(|i| Sample {
                image: ImageRef::File(format!("{i}.jpg").into()),
                caption: format!("caption {i}"),
            })
            .collect();
        Loader {
            data: Arc::new(DataSet {
                name: "test".into(),
                samples,
                notes: Vec::new(),
            }),
            tokenizer: Tokenizer::openai(),
            context_length: 77,
            preprocess: PreprocessConfig::default(),
            batch_size: batch,
            accum_freq: accum,
            shuffle,
            augment: false,
            decode: false,
            seed: 5,
            unreadable: Arc::new(RwLock::new(bad.iter().copied().collect())),
        }
    }

    fn indices(group: &Group) -> Vec<Vec<usize>> {
        group.batches.iter().map(|b| b.indices.clone()).collect()
    }

    #[test]
    fn file_order_drops_the_incomplete_end_and_wraps() {
        let l = loader(7, 3, 1, false, &[]);
        let g1 = l.next_group(Position::default()).unwrap();
        assert_eq!(indices(&g1), [[0, 1, 2]]);
        let g2 = l.next_group(g1.end).unwrap();
        assert_eq!(indices(&g2), [[3, 4, 5]]);
        let g3 = l.next_group(g2.end).unwrap();
        assert_eq!(indices(&g3), [[0, 1, 2]]);
        assert_eq!(
            g3.end,
            Position {
                epoch: 1,
                cursor: 3
            }
        );
    }

    #[test]
    fn accumulation_groups_batches_and_skips_unreadable_samples() {
        let l = loader(9, 2, 2, false, &[1]);
        let g = l.next_group(Position::default()).unwrap();
        assert_eq!(indices(&g), [[0, 2], [3, 4]]);
        // 5..9 has four readable samples: one more step, then the epoch ends.
        let g = l.next_group(g.end).unwrap();
        assert_eq!(indices(&g), [[5, 6], [7, 8]]);
        assert_eq!(l.next_group(g.end).unwrap().end.epoch, 1);
    }

    #[test]
    fn shuffled_epochs_differ_and_repeat_from_the_seed() {
        let l = loader(20, 4, 1, true, &[]);
        assert_ne!(l.order(0), l.order(1));
        assert_eq!(l.order(3), loader(20, 4, 1, true, &[]).order(3));
        assert_ne!(l.order(0), (0..20).collect::<Vec<_>>());
    }

    #[test]
    fn too_few_readable_samples_is_an_error() {
        let l = loader(4, 3, 1, false, &[0, 1]);
        let e = l.next_group(Position::default()).unwrap_err().to_string();
        assert!(e.contains("fewer than 3 readable"), "{e}");
    }

    #[test]
    fn over_long_captions_are_cut_and_counted() {
        let t = Tokenizer::openai();
        let long = "word ".repeat(100);
        let (ids, cut) = tokenize_caption(&t, &long, 77).unwrap();
        assert!(cut);
        assert_eq!(ids.len(), 77);
        assert_eq!(ids[76], t.eot_id());
        assert!(!tokenize_caption(&t, "short", 77).unwrap().1);
    }
}
