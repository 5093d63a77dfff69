//! Named tensors read from one checkpoint, each handed out once with its shape checked: the strict loading of
//! transformers' `from_pretrained` (missing / unexpected / mismatched keys are errors here, not warnings) with the
//! prefix-scoped access of candle's `VarBuilder::pp`, so the model's struct tree mirrors the key tree.
//!
//! Sources: `.safetensors` (memory-mapped, optionally sharded) and in-memory maps (PyTorch zip checkpoints, read
//! by [`super::torchscript`] with the project's restricted unpickler; other formats' converters; tests).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Display;
use std::path::{Path, PathBuf};

use candle_core::safetensors::{Load, MmapedSafetensors};
use candle_core::{DType, Device, Tensor};

use crate::error::{ClipError, Result};
use crate::model::config::Precision;

/// How many unexpected tensor names an error lists before summarising the rest.
const MAX_LISTED: usize = 20;

enum Source {
    Safetensors(MmapedSafetensors),
    Memory(HashMap<String, Tensor>),
}

/// What the index knows about a tensor before its data is read.
#[derive(Debug, Clone)]
struct Entry {
    /// Name in the underlying file (differs from the public name after [`TensorStore::rename`]).
    source_name: String,
    shape: Vec<usize>,
    /// `None` for dtypes candle cannot represent; such a tensor is an error only if the model asks for it.
    dtype: Option<DType>,
    dtype_name: String,
}

/// The tensors of one checkpoint, by name. Loading takes each one the model needs with [`TensorStore::take`]
/// (through [`Weights`]); [`TensorStore::finish`] then rejects whatever was left over.
pub struct TensorStore {
    path: PathBuf,
    device: Device,
    source: Source,
    entries: BTreeMap<String, Entry>,
    consumed: RefCell<BTreeSet<String>>,
    /// The precision linear layers are packed in as they load (see [`TensorStore::set_precision`]).
    precision: Cell<Precision>,
}

impl std::fmt::Debug for TensorStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TensorStore")
            .field("path", &self.path)
            .field("tensors", &self.entries.len())
            .finish()
    }
}

/// One line of text from a candle error: its backtrace, path and context wrappers dropped or flattened.
pub(crate) fn candle_reason(err: &candle_core::Error) -> String {
    let text = match err {
        candle_core::Error::WithBacktrace { inner, .. }
        | candle_core::Error::WithPath { inner, .. } => return candle_reason(inner),
        candle_core::Error::Context { inner, context } => {
            format!("{context}: {}", candle_reason(inner))
        }
        other => other.to_string(),
    };
    one_line(&text)
}

/// Joins the lines of a message so every error prints as one line.
pub(crate) fn one_line(text: &str) -> String {
    text.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

impl TensorStore {
    /// Memory-maps one or more `.safetensors` files (shards of one checkpoint). Errors name `paths[0]`.
    pub fn open_safetensors(paths: &[PathBuf], device: &Device) -> Result<Self> {
        let Some(first) = paths.first() else {
            return Err(ClipError::Checkpoint {
                path: PathBuf::new(),
                reason: "no safetensors file given".into(),
            });
        };
        for p in paths {
            check_readable(p)?;
        }
        // SAFETY: the map is read-only; like every mmap-based loader (candle, safetensors, transformers) we rely on
        // the file not being truncated or rewritten by another process while the model loads. The data is copied
        // out of the map before the store is dropped, so the model never aliases the file.
        let st = unsafe { MmapedSafetensors::multi(paths) }.map_err(|e| ClipError::Checkpoint {
            path: first.clone(),
            reason: candle_reason(&e),
        })?;
        let mut entries = BTreeMap::new();
        for (name, view) in st.tensors() {
            let dtype = DType::try_from(view.dtype()).ok();
            entries.insert(
                name.clone(),
                Entry {
                    source_name: name,
                    shape: view.shape().to_vec(),
                    dtype,
                    dtype_name: format!("{:?}", view.dtype()),
                },
            );
        }
        Ok(Self::new(
            first.clone(),
            device,
            Source::Safetensors(st),
            entries,
        ))
    }

    /// Wraps tensors that are already in memory (e.g. converted from another format). `path` labels errors.
    pub fn from_tensors(
        path: impl Into<PathBuf>,
        tensors: HashMap<String, Tensor>,
        device: &Device,
    ) -> Self {
        let entries = tensors
            .iter()
            .map(|(name, t)| {
                let entry = Entry {
                    source_name: name.clone(),
                    shape: t.dims().to_vec(),
                    dtype: Some(t.dtype()),
                    dtype_name: format!("{:?}", t.dtype()),
                };
                (name.clone(), entry)
            })
            .collect();
        Self::new(path.into(), device, Source::Memory(tensors), entries)
    }

    fn new(
        path: PathBuf,
        device: &Device,
        source: Source,
        entries: BTreeMap<String, Entry>,
    ) -> Self {
        Self {
            path,
            device: device.clone(),
            source,
            entries,
            consumed: RefCell::new(BTreeSet::new()),
            precision: Cell::new(Precision::F32),
        }
    }

    /// Makes the model's linear layers pack their weights for `precision` straight from the checkpoint
    /// (instead of an f32 copy converted afterwards). Layers that a model keeps in f32 are unaffected.
    pub fn set_precision(&self, precision: Precision) {
        self.precision.set(precision);
    }

    /// Renames tensors: `f` maps a stored name to the name the model asks for (`None` keeps it). This is where a
    /// format's rename table plugs in. Two names mapping to one is an error.
    pub fn rename(mut self, f: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut renamed = BTreeMap::new();
        for (name, entry) in std::mem::take(&mut self.entries) {
            let new_name = f(&name).unwrap_or(name);
            if renamed.contains_key(&new_name) {
                return Err(ClipError::Checkpoint {
                    path: self.path.clone(),
                    reason: format!("two tensors are both named {new_name} after renaming"),
                });
            }
            renamed.insert(new_name, entry);
        }
        self.entries = renamed;
        Ok(self)
    }

    /// The file this store reads (the first shard for sharded checkpoints).
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// All tensor names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// A tensor's stored shape, without reading its data.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.entries.get(name).map(|e| e.shape.as_slice())
    }

    /// Root accessor for prefix-scoped loading.
    pub fn root(&self) -> Weights<'_> {
        Weights {
            store: self,
            prefix: String::new(),
            precision: self.precision.get(),
        }
    }

    /// Calls `f` with the values of tensor `name` (exactly `expected` shape) as f32, and marks it consumed.
    /// f32 safetensors data is read in place from the memory map (no copy: a weight that is repacked for the
    /// kernels goes from the file to its packed form directly); anything else goes through [`Self::take`].
    pub fn with_values<R>(
        &self,
        name: &str,
        expected: &[usize],
        f: impl FnOnce(&[f32]) -> R,
    ) -> Result<R> {
        if let (Some(entry), Source::Safetensors(st)) = (self.entries.get(name), &self.source) {
            if entry.shape == expected
                && entry.dtype == Some(DType::F32)
                && cfg!(target_endian = "little")
            {
                if let Ok(view) = st.get(&entry.source_name) {
                    // SAFETY: any 4 bytes are a valid f32; `align_to` only yields the aligned middle.
                    let (head, values, tail) = unsafe { view.data().align_to::<f32>() };
                    let count: usize = expected.iter().product();
                    if head.is_empty() && tail.is_empty() && values.len() == count {
                        self.consumed.borrow_mut().insert(name.to_string());
                        return Ok(f(values));
                    }
                }
            }
        }
        let tensor = self.take(name, expected)?.flatten_all()?;
        Ok(f(&tensor.to_vec1::<f32>()?))
    }

    /// Reads tensor `name`, which must have exactly `expected` shape, as f32 on the store's device, and marks it
    /// consumed. f16/bf16/f64 tensors are converted: the model computes in f32.
    pub fn take(&self, name: &str, expected: &[usize]) -> Result<Tensor> {
        let entry = self
            .entries
            .get(name)
            .ok_or_else(|| ClipError::MissingTensor {
                path: self.path.clone(),
                name: name.to_string(),
            })?;
        if entry.shape != expected {
            return Err(ClipError::ShapeMismatch {
                path: self.path.clone(),
                name: name.to_string(),
                expected: expected.to_vec(),
                found: entry.shape.clone(),
            });
        }
        let bad = |reason: String| ClipError::Checkpoint {
            path: self.path.clone(),
            reason: format!("tensor {name}: {reason}"),
        };
        match entry.dtype {
            Some(DType::F16 | DType::BF16 | DType::F32 | DType::F64) => {}
            _ => {
                return Err(bad(format!(
                    "dtype {} is not a floating-point type",
                    entry.dtype_name
                )))
            }
        }
        let tensor = match &self.source {
            Source::Safetensors(st) => st
                .get(&entry.source_name)
                .and_then(|view| view.load(&self.device))
                .map_err(|e| bad(candle_reason(&e)))?,
            Source::Memory(map) => map
                .get(&entry.source_name)
                .cloned()
                .ok_or_else(|| bad("listed in the index but not present".into()))?,
        };
        if tensor.dims() != expected {
            return Err(bad(format!(
                "read shape {:?}, expected {expected:?}",
                tensor.dims()
            )));
        }
        let tensor = tensor
            .to_device(&self.device)
            .and_then(|t| t.to_dtype(DType::F32))
            .map_err(|e| bad(candle_reason(&e)))?;
        self.consumed.borrow_mut().insert(name.to_string());
        Ok(tensor)
    }

    /// Marks a tensor that is known to be harmless and unused (e.g. `position_ids` buffers) as consumed, if present.
    pub fn skip(&self, name: &str) {
        if self.entries.contains_key(name) {
            self.consumed.borrow_mut().insert(name.to_string());
        }
    }

    /// Names not taken or skipped so far, sorted.
    pub fn unconsumed(&self) -> Vec<String> {
        let consumed = self.consumed.borrow();
        self.entries
            .keys()
            .filter(|n| !consumed.contains(*n))
            .cloned()
            .collect()
    }

    /// Fails with [`ClipError::UnexpectedTensors`] if any tensor was neither taken nor skipped.
    pub fn finish(&self) -> Result<()> {
        let left = self.unconsumed();
        if left.is_empty() {
            return Ok(());
        }
        let mut names = left
            .iter()
            .take(MAX_LISTED)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if left.len() > MAX_LISTED {
            names.push_str(&format!(" (and {} more)", left.len() - MAX_LISTED));
        }
        Err(ClipError::UnexpectedTensors {
            path: self.path.clone(),
            names,
        })
    }
}

/// Fails early for a missing, unreadable or non-regular file (a FIFO would block the map) and with
/// `Checkpoint` for an empty one; returns the length.
fn check_readable(path: &Path) -> Result<u64> {
    let (_, len) = clip_io::open_input(path, clip_io::Input::Checkpoint)?;
    if len == 0 {
        return Err(ClipError::Checkpoint {
            path: path.to_path_buf(),
            reason: "file is empty".into(),
        });
    }
    Ok(len)
}

/// A view of a [`TensorStore`] under a key prefix, like candle's `VarBuilder`: `w.pp("encoder").pp(3)` reads
/// `encoder.3.*`. Each model struct's `load` takes one and names its own tensors relative to it.
#[derive(Clone)]
pub struct Weights<'a> {
    store: &'a TensorStore,
    prefix: String,
    precision: Precision,
}

impl<'a> Weights<'a> {
    /// Descends into `name` (appends `name.` to the prefix).
    pub fn pp(&self, name: impl Display) -> Weights<'a> {
        Weights {
            store: self.store,
            prefix: self.key(name),
            precision: self.precision,
        }
    }

    /// The precision linear layers under this view pack their weights in.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The full tensor name for `name` under this prefix.
    pub fn key(&self, name: impl Display) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// [`TensorStore::take`] of `prefix.name`.
    pub fn take(&self, name: &str, expected: &[usize]) -> Result<Tensor> {
        self.store.take(&self.key(name), expected)
    }

    /// [`TensorStore::with_values`] of `prefix.name`.
    pub fn with_values<R>(
        &self,
        name: &str,
        expected: &[usize],
        f: impl FnOnce(&[f32]) -> R,
    ) -> Result<R> {
        self.store.with_values(&self.key(name), expected, f)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.store.contains(&self.key(name))
    }

    pub fn store(&self) -> &'a TensorStore {
        self.store
    }

    pub fn device(&self) -> &'a Device {
        &self.store.device
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> TensorStore {
        let dev = Device::Cpu;
        let mut map = HashMap::new();
        map.insert(
            "a.w".to_string(),
            Tensor::zeros((2, 3), DType::F16, &dev).unwrap(),
        );
        map.insert(
            "a.b".to_string(),
            Tensor::zeros(3, DType::F32, &dev).unwrap(),
        );
        map.insert(
            "ids".to_string(),
            Tensor::zeros(3, DType::I64, &dev).unwrap(),
        );
        TensorStore::from_tensors("mem", map, &dev)
    }

    #[test]
    fn take_checks_and_converts() {
        let s = store();
        let w = s.root().pp("a");
        let t = w.take("w", &[2, 3]).unwrap();
        assert_eq!(t.dtype(), DType::F32);
        match w.take("b", &[4]) {
            Err(ClipError::ShapeMismatch {
                name,
                expected,
                found,
                ..
            }) => {
                assert_eq!((name.as_str(), expected, found), ("a.b", vec![4], vec![3]));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(w.take("c", &[1]), Err(ClipError::MissingTensor { name, .. }) if name == "a.c")
        );
        assert!(matches!(
            s.root().take("ids", &[3]),
            Err(ClipError::Checkpoint { .. })
        ));
        match s.finish() {
            Err(ClipError::UnexpectedTensors { names, .. }) => assert_eq!(names, "a.b, ids"),
            other => panic!("{other:?}"),
        }
        s.skip("ids");
        s.root().take("a.b", &[3]).unwrap();
        s.finish().unwrap();
    }

    #[test]
    fn rename_maps_names() {
        let s = store()
            .rename(|n| n.strip_prefix("a.").map(|r| format!("x.{r}")))
            .unwrap();
        assert!(s.contains("x.w") && !s.contains("a.w"));
        assert_eq!(s.root().take("x.w", &[2, 3]).unwrap().dims(), &[2, 3]);
        assert!(store().rename(|_| Some("same".into())).is_err());
    }

    #[test]
    fn one_line_messages() {
        assert_eq!(one_line("a\n  b\n\nc"), "a; b; c");
    }
}
