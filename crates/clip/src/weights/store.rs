//! Named tensors read from one checkpoint, each handed out once with its shape checked: the strict loading of
//! transformers' `from_pretrained` (missing / unexpected / mismatched keys are errors here, not warnings) with the
//! prefix-scoped access of candle's `VarBuilder::pp`, so the model's struct tree mirrors the key tree.
//!
//! A store is opened in one [`Precision`]: the model's linear layers pack their weights for it as they load
//! (candle's `VarBuilder` takes its dtype the same way). A format's names are mapped onto the model's with
//! [`TensorStore::remap`]: renames, and [`View`]s that read part of a stored tensor (the rows of a packed
//! q/k/v matrix) or its transpose, without copying anything until the model asks for the tensor.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Display;
use std::path::{Path, PathBuf};

use candle_core::safetensors::{Load, MmapedSafetensors};
use candle_core::{DType, Device, Tensor};

use crate::error::{one_line, ClipError, Result};
use crate::kernels::Precision;

/// How many unexpected tensor names an error lists before summarising the rest.
const MAX_LISTED: usize = 20;

pub(crate) enum Source {
    Safetensors(MmapedSafetensors),
    Memory(HashMap<String, Tensor>),
}

/// How a public tensor is read from a stored one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum View {
    /// The stored tensor as it is.
    Whole,
    /// Rows `start..start + len` of the first dimension (one of q, k, v in a packed `in_proj_weight`).
    Rows { start: usize, len: usize },
    /// The transpose of a stored matrix (`x @ P` projections stored `[in, out]`, read as `[out, in]`).
    Transposed,
}

/// What the index knows about a tensor before its data is read.
#[derive(Debug, Clone)]
struct Entry {
    /// Name in the underlying file (differs from the public name after [`TensorStore::remap`]).
    source_name: String,
    /// The shape the model sees (after the view).
    shape: Vec<usize>,
    view: View,
    /// `None` for dtypes candle cannot represent; such a tensor is an error only if the model asks for it.
    dtype: Option<DType>,
    dtype_name: String,
}

/// The tensors of one checkpoint, by name. Loading takes each one the model needs with [`TensorStore::take`]
/// (through [`Weights`]); [`TensorStore::finish`] then rejects whatever was left over.
pub(crate) struct TensorStore {
    path: PathBuf,
    device: Device,
    source: Source,
    entries: BTreeMap<String, Entry>,
    consumed: RefCell<BTreeSet<String>>,
    /// The precision linear layers pack their weights in as they load.
    precision: Precision,
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

impl TensorStore {
    /// Wraps tensors that are already in memory (e.g. read from a PyTorch archive). `path` labels errors.
    pub fn from_tensors(
        path: impl Into<PathBuf>,
        tensors: HashMap<String, Tensor>,
        precision: Precision,
    ) -> Self {
        let entries = tensors
            .iter()
            .map(|(name, t)| (name.clone(), Entry::whole(name, t.dims(), Some(t.dtype()))))
            .collect();
        Self::new(path.into(), Source::Memory(tensors), entries, precision)
    }

    /// A store over memory-mapped safetensors; `tensors` lists each stored tensor's name, shape and dtype.
    pub(crate) fn from_safetensors(
        path: PathBuf,
        st: MmapedSafetensors,
        precision: Precision,
    ) -> Self {
        let mut entries = BTreeMap::new();
        for (name, view) in st.tensors() {
            let dtype = DType::try_from(view.dtype()).ok();
            let mut entry = Entry::whole(&name, view.shape(), dtype);
            entry.dtype_name = format!("{:?}", view.dtype());
            entries.insert(name, entry);
        }
        Self::new(path, Source::Safetensors(st), entries, precision)
    }

    fn new(
        path: PathBuf,
        source: Source,
        entries: BTreeMap<String, Entry>,
        precision: Precision,
    ) -> Self {
        Self {
            path,
            device: Device::Cpu,
            source,
            entries,
            consumed: RefCell::new(BTreeSet::new()),
            precision,
        }
    }

    /// Maps the stored names onto the model's: `f` returns, for a stored name and shape, the names it becomes, each
    /// with the [`View`] that reads it (`None` keeps the name as it is; an empty list drops the tensor). This is
    /// where a format's key map plugs in. Two names mapping to one, or a view that does not fit the stored
    /// shape, is an error.
    pub fn remap(
        mut self,
        f: impl Fn(&str, &[usize]) -> Option<Vec<(String, View)>>,
    ) -> Result<Self> {
        let mut mapped = BTreeMap::new();
        for (name, entry) in std::mem::take(&mut self.entries) {
            let targets =
                f(&name, &entry.shape).unwrap_or_else(|| vec![(name.clone(), View::Whole)]);
            for (new_name, view) in targets {
                let shape = view_shape(&entry.shape, view).ok_or_else(|| ClipError::Checkpoint {
                    path: self.path.clone(),
                    reason: format!(
                        "tensor {name} has shape {:?}, which cannot be read as {new_name} ({view:?})",
                        entry.shape
                    ),
                })?;
                if mapped.contains_key(&new_name) {
                    return Err(ClipError::Checkpoint {
                        path: self.path.clone(),
                        reason: format!("two tensors are both named {new_name} after renaming"),
                    });
                }
                let new_entry = Entry {
                    shape,
                    view,
                    ..entry.clone()
                };
                mapped.insert(new_name, new_entry);
            }
        }
        self.entries = mapped;
        Ok(self)
    }

    /// The precision linear layers loaded from this store pack their weights in.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The file this store reads (the first shard for sharded checkpoints).
    pub fn path(&self) -> &Path {
        &self.path
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
        }
    }

    /// A view under `prefix` (trailing dot optional, empty for the root).
    pub fn scoped(&self, prefix: &str) -> Weights<'_> {
        let p = prefix.trim_end_matches('.');
        if p.is_empty() {
            self.root()
        } else {
            self.root().pp(p)
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
                && entry.view != View::Transposed
                && cfg!(target_endian = "little")
            {
                if let Ok(view) = st.get(&entry.source_name) {
                    // SAFETY: any 4 bytes are a valid f32; `align_to` only yields the aligned middle.
                    let (head, values, tail) = unsafe { view.data().align_to::<f32>() };
                    let count: usize = expected.iter().product();
                    // Rows of a row-major matrix are one contiguous range of its values.
                    let first = match entry.view {
                        View::Rows { start, .. } => start * count / entry.shape[0].max(1),
                        _ => 0,
                    };
                    if head.is_empty() && tail.is_empty() && values.len() >= first + count {
                        self.consumed.borrow_mut().insert(name.to_string());
                        return Ok(f(&values[first..first + count]));
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
                name: entry.stored_name(name),
                expected: expected.to_vec(),
                found: entry.shape.clone(),
            });
        }
        let shown = entry.stored_name(name);
        let bad = |reason: String| ClipError::Checkpoint {
            path: self.path.clone(),
            reason: format!("tensor {shown}: {reason}"),
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
        let tensor = match entry.view {
            View::Whole => tensor,
            View::Rows { start, len } => tensor.narrow(0, start, len)?,
            View::Transposed => tensor.t()?.contiguous()?,
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

    /// Marks every tensor whose name starts with `prefix` as consumed (a tower left out on purpose).
    pub fn skip_prefix(&self, prefix: &str) {
        let mut consumed = self.consumed.borrow_mut();
        for name in self.entries.keys().filter(|n| n.starts_with(prefix)) {
            consumed.insert(name.clone());
        }
    }

    /// Tensors not taken or skipped so far, by their names in the file, sorted.
    pub fn unconsumed(&self) -> Vec<String> {
        let consumed = self.consumed.borrow();
        let stored: BTreeSet<&str> = self
            .entries
            .iter()
            .filter(|(n, _)| !consumed.contains(*n))
            .map(|(_, e)| e.source_name.as_str())
            .collect();
        stored.into_iter().map(str::to_string).collect()
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

impl Entry {
    /// How messages name the tensor: as the file names it, with the part read when it is a view.
    fn stored_name(&self, public: &str) -> String {
        match self.view {
            View::Whole if self.source_name == public => public.to_string(),
            View::Whole => self.source_name.clone(),
            View::Rows { start, len } => {
                format!("{} (rows {start}..{})", self.source_name, start + len)
            }
            View::Transposed => format!("{} (transposed)", self.source_name),
        }
    }

    fn whole(name: &str, shape: &[usize], dtype: Option<DType>) -> Self {
        Entry {
            source_name: name.to_string(),
            shape: shape.to_vec(),
            view: View::Whole,
            dtype,
            dtype_name: dtype.map_or_else(|| "unknown".into(), |d| format!("{d:?}")),
        }
    }
}

/// The shape `view` gives a stored tensor of `shape`, when it fits.
fn view_shape(shape: &[usize], view: View) -> Option<Vec<usize>> {
    match (view, shape) {
        (View::Whole, _) => Some(shape.to_vec()),
        (View::Rows { start, len }, [rows, rest @ ..]) if start.checked_add(len)? <= *rows => {
            let mut out = vec![len];
            out.extend_from_slice(rest);
            Some(out)
        }
        (View::Transposed, [a, b]) => Some(vec![*b, *a]),
        _ => None,
    }
}

/// Fails early for a missing, unreadable or non-regular file (a FIFO would block the map) and with
/// `Checkpoint` for an empty one; returns the length.
pub(crate) fn check_readable(path: &Path) -> Result<u64> {
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
pub(crate) struct Weights<'a> {
    store: &'a TensorStore,
    prefix: String,
}

impl<'a> Weights<'a> {
    /// Descends into `name` (appends `name.` to the prefix).
    pub fn pp(&self, name: impl Display) -> Weights<'a> {
        Weights {
            store: self.store,
            prefix: self.key(name),
        }
    }

    /// The precision linear layers under this view pack their weights in.
    pub fn precision(&self) -> Precision {
        self.store.precision()
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

    /// The stored shape of `name`, or a "missing tensor" error naming it.
    pub fn shape(&self, name: &str) -> Result<Vec<usize>> {
        let key = self.key(name);
        self.store
            .shape(&key)
            .map(<[usize]>::to_vec)
            .ok_or_else(|| ClipError::MissingTensor {
                path: self.store.path().to_path_buf(),
                name: key,
            })
    }

    /// Number of blocks `{prefix}.{group}.N.*`: the largest `N` plus one, requiring every index below it to be
    /// present (the references count distinct indices; a gap would make that count name the wrong blocks).
    pub fn count_blocks(&self, group: &str) -> Result<usize> {
        let head = format!("{}.", self.key(group));
        let mut seen = BTreeSet::new();
        for name in self.store.names() {
            if let Some(rest) = name.strip_prefix(&head) {
                if let Some(Ok(i)) = rest.split('.').next().map(str::parse::<usize>) {
                    seen.insert(i);
                }
            }
        }
        let n = seen.len();
        if seen.iter().next_back().is_some_and(|&last| last + 1 != n) {
            return Err(ClipError::Checkpoint {
                path: self.store.path().to_path_buf(),
                reason: format!("blocks under {head}* are not numbered 0..{n}"),
            });
        }
        Ok(n)
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
        TensorStore::from_tensors("mem", map, Precision::F32)
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
    fn remap_renames_splits_and_transposes() {
        let s = store()
            .remap(|n, _| match n {
                "a.w" => Some(vec![
                    ("x.first".into(), View::Rows { start: 0, len: 1 }),
                    ("x.second".into(), View::Rows { start: 1, len: 1 }),
                    ("x.t".into(), View::Transposed),
                ]),
                "ids" => Some(Vec::new()),
                _ => None,
            })
            .unwrap();
        assert!(s.contains("x.first") && !s.contains("a.w") && !s.contains("ids"));
        assert_eq!(s.root().take("x.second", &[1, 3]).unwrap().dims(), &[1, 3]);
        assert_eq!(s.root().take("x.t", &[3, 2]).unwrap().dims(), &[3, 2]);
        assert!(store()
            .remap(|_, _| Some(vec![("same".into(), View::Whole)]))
            .is_err());
        let err = store()
            .remap(|n, _| (n == "a.b").then(|| vec![("b".into(), View::Rows { start: 2, len: 2 })]))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("cannot be read as b"), "{err}");
    }
}
