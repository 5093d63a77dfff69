//! Where `clip embed` sends its rows: a `.npy` file and/or a JSON list on stdout, streamed row by row so that
//! memory does not grow with the number of inputs. A failed input keeps its place: a row of NaN in the
//! `.npy`, `null` in the JSON.

use std::path::Path;

use anyhow::Context;
use clip::npy::NpyWriter;

use crate::json_list::JsonList;

pub struct RowSink {
    npy: Option<NpyWriter>,
    json: Option<JsonList>,
    dim: usize,
    written: usize,
}

impl RowSink {
    /// Opens the outputs for `rows` rows of `dim` values. The `.npy` becomes visible only at [`RowSink::finish`].
    pub fn create(
        output: Option<&Path>,
        json: bool,
        rows: usize,
        dim: usize,
    ) -> anyhow::Result<Self> {
        let npy = output
            .map(|path| {
                NpyWriter::create(path, &[rows, dim])
                    .with_context(|| format!("cannot write {}", path.display()))
            })
            .transpose()?;
        let json = json.then(JsonList::start).transpose()?;
        Ok(RowSink {
            npy,
            json,
            dim,
            written: 0,
        })
    }

    /// The next row: its values, or `None` for an input that failed.
    pub fn push(&mut self, row: Option<&[f32]>) -> anyhow::Result<()> {
        if let Some(values) = row {
            anyhow::ensure!(
                values.len() == self.dim,
                "an embedding has {} values, expected {}",
                values.len(),
                self.dim
            );
        }
        if let Some(npy) = &mut self.npy {
            match row {
                Some(values) => npy.write(values)?,
                None => npy.write(&vec![f32::NAN; self.dim])?,
            }
        }
        if let Some(json) = &mut self.json {
            json.push(&row)?;
        }
        self.written += 1;
        Ok(())
    }

    /// Closes the JSON list and makes the `.npy` visible, unless `keep_npy` is false (then an existing file at
    /// the output path is left as it was).
    pub fn finish(self, keep_npy: bool) -> anyhow::Result<()> {
        if let Some(json) = self.json {
            json.finish()?;
        }
        match self.npy {
            Some(npy) if keep_npy => Ok(npy.finish()?),
            _ => Ok(()),
        }
    }
}
