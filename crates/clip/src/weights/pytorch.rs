//! PyTorch zip archives, as `torch/serialization.py` (`torch.save`) and `torch/jit` (`torch.jit.save`, the
//! format of OpenAI's published `.pt` files) write them: a zip with one top folder `<name>/` holding `data.pkl`
//! and the raw little-endian storages `data/<key>`. A TorchScript archive also holds `code/`, `constants.pkl`
//! and friends, which are ignored: only the pickled module tree is read.
//!
//! `data.pkl` is read with the restricted unpickler in [`super::pickle`]. A `torch.save` state dict unpickles to
//! a dict of tensors; a TorchScript archive to a tree of module objects, whose tensor attributes become state-dict
//! keys by their attribute path (`visual.transformer.resblocks.0.attn.in_proj_weight`), as
//! `ScriptModule.state_dict()` names them. Each tensor keeps its own stored dtype (f16 and f32 mixed).

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::error::{ClipError, Result};
use crate::kernels::Precision;
use crate::weights::pickle::{unpickle, TensorRef, Value};
use crate::weights::TensorStore;

/// Which kind of archive a `.pt` file was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArchiveKind {
    /// `torch.jit.save` of a module (OpenAI's published files).
    TorchScript,
    /// `torch.save` of a state dict (optionally wrapped as `{"state_dict": ...}`).
    StateDict,
}

/// The tensors of one archive, by state-dict name.
#[derive(Debug)]
pub(crate) struct PtArchive {
    pub kind: ArchiveKind,
    pub tensors: HashMap<String, Tensor>,
}

fn bad(path: &Path, reason: impl Into<String>) -> ClipError {
    ClipError::Checkpoint {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Reads every tensor of a PyTorch zip archive (TorchScript or `torch.save`).
pub(crate) fn read_archive(path: &Path) -> Result<PtArchive> {
    let device = &Device::Cpu;
    let (file, file_len) = clip_io::open_input(path, clip_io::Input::Checkpoint)?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| {
        bad(
            path,
            format!("not a readable PyTorch zip archive (truncated or corrupt download?): {e}"),
        )
    })?;
    let pkl = zip
        .file_names()
        .filter_map(|n| n.ok().map(|n| n.into_owned()))
        .find(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
        .ok_or_else(|| bad(path, "no <name>/data.pkl in the archive"))?;
    let root = pkl.trim_end_matches("data.pkl").to_string();
    let pickle = read_entry(&mut zip, &pkl, path, file_len)?;
    let value = unpickle(&pickle).map_err(|reason| bad(path, format!("{pkl}: {reason}")))?;

    let mut refs: Vec<(String, TensorRef)> = Vec::new();
    let kind = match value {
        Value::Object { attrs, .. } => {
            collect_object(&attrs, "", &mut refs);
            ArchiveKind::TorchScript
        }
        Value::Dict(items) => {
            // Training checkpoints wrap the weights: {"state_dict": {...}, "epoch": ...}.
            let inner = items.iter().find_map(|(k, v)| match (k.as_str(), v) {
                (Some("state_dict"), Value::Dict(d)) => Some(d),
                _ => None,
            });
            collect_dict(inner.unwrap_or(&items), "", &mut refs);
            ArchiveKind::StateDict
        }
        _ => {
            return Err(bad(
                path,
                "data.pkl holds neither a module nor a state dict",
            ))
        }
    };
    if refs.is_empty() {
        return Err(bad(path, "no tensors found in the archive"));
    }

    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    let mut tensors = HashMap::new();
    for (name, t) in refs {
        let Some(dtype) = t.storage.dtype else {
            // Dtypes candle cannot hold never belong to a CLIP model; the strict loader reports them as
            // unexpected if they sit where weights should.
            continue;
        };
        if !storages.contains_key(&t.storage.key) {
            let entry = format!("{root}data/{}", t.storage.key);
            let bytes = read_entry(&mut zip, &entry, path, file_len)?;
            let need = t.storage.numel.checked_mul(dtype.size_in_bytes());
            if need.is_none_or(|n| bytes.len() < n) {
                return Err(bad(
                    path,
                    format!("{entry}: storage is shorter than its recorded size"),
                ));
            }
            storages.insert(t.storage.key.clone(), bytes);
        }
        let bytes = &storages[&t.storage.key];
        let tensor = materialise(&t, dtype, bytes, device)
            .map_err(|reason| bad(path, format!("tensor {name}: {reason}")))?;
        tensors.insert(name, tensor);
    }
    Ok(PtArchive { kind, tensors })
}

/// Reads a PyTorch zip archive into a strict [`TensorStore`] in `precision`.
pub(crate) fn open(path: &Path, precision: Precision) -> Result<(ArchiveKind, TensorStore)> {
    let archive = read_archive(path)?;
    Ok((
        archive.kind,
        TensorStore::from_tensors(path, archive.tensors, precision),
    ))
}

/// One archive entry, at most its declared size, which must fit the memory budget (a crafted header cannot
/// make the reader allocate more than the file holds up front, nor inflate without bound).
fn read_entry<R: std::io::Read + std::io::Seek>(
    zip: &mut zip::ZipArchive<R>,
    name: &str,
    path: &Path,
    file_len: u64,
) -> Result<Vec<u8>> {
    let f = zip
        .by_name(name)
        .map_err(|e| bad(path, format!("{name}: {e}")))?;
    let declared = f.size();
    crate::limits::check_memory(&format!("{name} of {}", path.display()), declared)?;
    let mut out = Vec::with_capacity(usize::try_from(declared.min(file_len)).unwrap_or(0));
    f.take(declared).read_to_end(&mut out).map_err(|e| {
        bad(
            path,
            format!("{name}: {e} (truncated or corrupt download?)"),
        )
    })?;
    Ok(out)
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// A module's attributes: tensors become keys, sub-modules recurse; flags and other values are skipped.
fn collect_object(attrs: &[(Value, Value)], prefix: &str, out: &mut Vec<(String, TensorRef)>) {
    for (k, v) in attrs {
        let Some(k) = k.as_str() else { continue };
        match v {
            Value::Tensor(t) => out.push((join(prefix, k), t.clone())),
            Value::Object { attrs, .. } => collect_object(attrs, &join(prefix, k), out),
            _ => {}
        }
    }
}

fn collect_dict(items: &[(Value, Value)], prefix: &str, out: &mut Vec<(String, TensorRef)>) {
    for (k, v) in items {
        let Some(k) = k.as_str() else { continue };
        match v {
            Value::Tensor(t) => out.push((join(prefix, k), t.clone())),
            Value::Dict(d) => collect_dict(d, &join(prefix, k), out),
            _ => {}
        }
    }
}

/// Copies a (possibly strided) view out of its storage bytes.
fn materialise(
    t: &TensorRef,
    dtype: DType,
    bytes: &[u8],
    device: &Device,
) -> std::result::Result<Tensor, String> {
    let es = dtype.size_in_bytes();
    let numel = t
        .shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("shape too large")?;
    // Highest element index the view touches must lie inside the storage.
    if numel > 0 {
        let last = t
            .shape
            .iter()
            .zip(&t.stride)
            .try_fold(t.offset, |a, (&d, &s)| {
                (d - 1).checked_mul(s).and_then(|x| a.checked_add(x))
            })
            .ok_or("view out of bounds")?;
        if last >= t.storage.numel {
            return Err(format!(
                "view reaches element {last} of a storage of {}",
                t.storage.numel
            ));
        }
        // The storage's file may hold fewer bytes than its declared size (found by fuzzing).
        let needed = (last + 1).checked_mul(es).ok_or("view out of bounds")?;
        if needed > bytes.len() {
            return Err(format!(
                "view needs {needed} bytes of a storage file of {} bytes",
                bytes.len()
            ));
        }
    }
    let mut contiguous = vec![0usize; t.shape.len()];
    let mut acc = 1usize;
    for i in (0..t.shape.len()).rev() {
        contiguous[i] = acc;
        acc *= t.shape[i];
    }
    let data: std::borrow::Cow<[u8]> = if numel == 0 {
        std::borrow::Cow::Owned(Vec::new())
    } else if t
        .shape
        .iter()
        .zip(t.stride.iter().zip(&contiguous))
        .all(|(&d, (&s, &c))| d == 1 || s == c)
    {
        std::borrow::Cow::Borrowed(&bytes[t.offset * es..(t.offset + numel) * es])
    } else {
        let mut out = Vec::with_capacity(numel * es);
        let mut index = vec![0usize; t.shape.len()];
        for _ in 0..numel {
            let e = t.offset
                + index
                    .iter()
                    .zip(&t.stride)
                    .map(|(&i, &s)| i * s)
                    .sum::<usize>();
            out.extend_from_slice(&bytes[e * es..(e + 1) * es]);
            for d in (0..index.len()).rev() {
                index[d] += 1;
                if index[d] < t.shape[d] {
                    break;
                }
                index[d] = 0;
            }
        }
        std::borrow::Cow::Owned(out)
    };
    Tensor::from_raw_buffer(&data, dtype, &t.shape, device).map_err(|e| e.to_string())
}
