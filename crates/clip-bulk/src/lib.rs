//! Bulk embedding of datasets, as clip-retrieval's `clip_inference` does it: WebDataset tar shards (img2dataset's
//! `{key}.jpg` + `{key}.txt` + `{key}.json`), a folder of images or a CSV file in; clip-retrieval's layout out
//! (`img_emb/img_emb_{i}.npy`, `text_emb/text_emb_{i}.npy`, `metadata/metadata_{i}.parquet`), one output
//! partition per input shard so that a run can be split across machines (`shard`) and restarted: a partition
//! is committed by its marker in `done/`, written after its files.

mod error;
mod fields;
mod inputs;
mod layout;
mod metadata;
mod run;
mod samples;

pub use error::{BulkError, Result};
pub use fields::Fields;
pub use inputs::{plan, Part, PartSource, Plan, PlanOptions};
pub use layout::{Layout, Marker};
pub use metadata::{write_parquet, MetadataRow};
pub use run::{run, Failure, Progress, RunOptions, ShardSlice, Summary};
pub use samples::{ImageSource, Sample};
