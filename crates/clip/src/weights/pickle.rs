//! A restricted unpickler for PyTorch tensor archives (the `data.pkl` of `torch.save` zip files and of
//! TorchScript archives), following Python's `pickle` protocol (Lib/pickletools.py documents each opcode) and
//! PyTorch's `torch/serialization.py` / `torch/jit` persistence conventions.
//!
//! It interprets opcodes into plain values and never executes anything: a `GLOBAL` is only *named*, and only
//! names from a fixed allow-list are accepted (the tensor rebuild function, `OrderedDict`, storage types,
//! TorchScript's list helpers, and `__torch__.*` module classes, which become plain attribute maps). Any other
//! global — `os.system`, `builtins.eval`, ... — is an error before anything else happens. Unsupported opcodes
//! are errors too. Container mutations (`SETITEMS`, `BUILD`, ...) apply to the value on the stack; the memo holds
//! copies, which is exact for the pickles PyTorch writes (it memoises containers only to reference leaves).
//! Hostile shapes are bounded: memo copies by a node budget, container nesting by a depth limit (a value
//! nested a million deep would overflow the stack when dropped).

use candle_core::DType;

/// A storage referenced by a persistent id: `('storage', <StorageType>, key, location, numel)`.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageRef {
    /// Element type of the storage class (`torch.HalfStorage` -> F16, ...); `None` for types candle lacks.
    pub dtype: Option<DType>,
    /// The storage class name, for error messages.
    pub type_name: String,
    /// File name of the storage's bytes under `data/` in the archive.
    pub key: String,
    pub numel: usize,
}

/// A tensor view onto a storage, as `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRef {
    pub storage: StorageRef,
    /// Offset in elements.
    pub offset: usize,
    pub shape: Vec<usize>,
    pub stride: Vec<usize>,
}

/// The allow-listed globals, each resolved to what it means for a tensor archive.
#[derive(Debug, Clone, PartialEq)]
pub enum Global {
    RebuildTensor,
    RebuildParameter,
    OrderedDict,
    /// A `torch.*Storage` class.
    StorageType {
        name: String,
        dtype: Option<DType>,
    },
    /// `torch.jit._pickle.build_*list` / `restore_type_tag`: return their first argument.
    Identity(String),
    /// A TorchScript module class (`__torch__.…`): instances are plain attribute maps.
    ModuleClass(String),
}

/// An unpickled value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    /// Dicts and `OrderedDict`s, in insertion order.
    Dict(Vec<(Value, Value)>),
    Global(Global),
    /// An instance of a TorchScript module class: its class name and attributes (set by `BUILD`).
    Object {
        class: String,
        attrs: Vec<(Value, Value)>,
    },
    Storage(StorageRef),
    Tensor(TensorRef),
    /// The stack marker pushed by `MARK`.
    Mark,
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    fn as_usize(&self) -> Option<usize> {
        match self {
            Value::Int(i) => usize::try_from(*i).ok(),
            _ => None,
        }
    }
}

/// The element type of a `torch.<Name>Storage` class, `Err` if the name is not a storage class.
fn storage_dtype(name: &str) -> Result<Option<DType>, ()> {
    Ok(match name {
        "HalfStorage" => Some(DType::F16),
        "FloatStorage" => Some(DType::F32),
        "DoubleStorage" => Some(DType::F64),
        "BFloat16Storage" => Some(DType::BF16),
        "LongStorage" => Some(DType::I64),
        "IntStorage" => Some(DType::I32),
        "ShortStorage" => Some(DType::I16),
        "ByteStorage" | "BoolStorage" => Some(DType::U8),
        "CharStorage" | "ComplexFloatStorage" | "ComplexDoubleStorage" => None,
        _ => return Err(()),
    })
}

/// Resolves `module.name` against the allow-list.
fn resolve_global(module: &str, name: &str) -> Result<Global, String> {
    match (module, name) {
        ("torch._utils", "_rebuild_tensor_v2") => return Ok(Global::RebuildTensor),
        ("torch._utils", "_rebuild_parameter") => return Ok(Global::RebuildParameter),
        ("collections", "OrderedDict") => return Ok(Global::OrderedDict),
        (
            "torch.jit._pickle",
            "build_intlist" | "build_floatlist" | "build_boollist" | "build_doublelist"
            | "build_tensorlist" | "restore_type_tag",
        ) => return Ok(Global::Identity(name.to_string())),
        ("torch", n) => {
            if let Ok(dtype) = storage_dtype(n) {
                return Ok(Global::StorageType {
                    name: n.to_string(),
                    dtype,
                });
            }
        }
        _ => {}
    }
    if module == "__torch__" || module.starts_with("__torch__.") {
        return Ok(Global::ModuleClass(format!("{module}.{name}")));
    }
    Err(format!(
        "pickle references {module}.{name}, which is not allowed in a tensor archive (nothing was executed)"
    ))
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| "pickle data ends early (truncated file?)".to_string())?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn line(&mut self) -> Result<&'a str, String> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .position(|&c| c == b'\n')
            .ok_or_else(|| "pickle data ends early (truncated file?)".to_string())?;
        let s =
            std::str::from_utf8(&rest[..n]).map_err(|_| "invalid text in pickle".to_string())?;
        self.pos += n + 1;
        Ok(s)
    }
    fn string(&mut self, n: usize) -> Result<String, String> {
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| "invalid UTF-8 string in pickle".to_string())
    }
}

fn usize_of(n: u64) -> Result<usize, String> {
    usize::try_from(n).map_err(|_| "length too large".to_string())
}

/// How many value nodes memo lookups may copy in total. Real archives copy a few per tensor; the limit stops a
/// crafted pickle that doubles a value on every `BINGET` from exhausting memory.
const COPY_BUDGET: usize = 1 << 20;

/// Counts `v`'s nodes against `budget`; `false` once it is exhausted.
fn charge(v: &Value, budget: &mut usize) -> bool {
    if *budget == 0 {
        return false;
    }
    *budget -= 1;
    match v {
        Value::Tuple(items) | Value::List(items) => items.iter().all(|i| charge(i, budget)),
        Value::Dict(items) | Value::Object { attrs: items, .. } => items
            .iter()
            .all(|(k, v)| charge(k, budget) && charge(v, budget)),
        _ => true,
    }
}

/// Containers nest at most this deep. PyTorch's archives nest a handful of levels; the limit stops a crafted
/// pickle from building a value so deep that dropping or copying it (both recursive) would overflow the stack.
const MAX_NESTING: usize = 256;

/// A value on the unpickler's stack or in its memo, with how deeply containers nest inside it (0 for a leaf).
#[derive(Clone)]
struct Slot {
    value: Value,
    depth: usize,
}

impl Slot {
    fn leaf(value: Value) -> Self {
        Slot { value, depth: 0 }
    }

    /// A container holding `children` (already moved into `value` or about to be).
    fn container(value: Value, children: &[Slot]) -> Result<Self, String> {
        let mut slot = Slot { value, depth: 1 };
        slot.deepen(children)?;
        Ok(slot)
    }

    fn container_of(make: fn(Vec<Value>) -> Value, children: Vec<Slot>) -> Result<Self, String> {
        let mut slot = Self::container(Value::None, &children)?;
        slot.value = make(Self::values(children));
        Ok(slot)
    }

    /// Accounts for `children` being added to this container.
    fn deepen(&mut self, children: &[Slot]) -> Result<(), String> {
        let deepest = children.iter().map(|c| c.depth).max().unwrap_or(0);
        self.depth = self.depth.max(deepest + 1);
        if self.depth > MAX_NESTING {
            return Err(format!(
                "pickle nests values more than {MAX_NESTING} deep (malformed or hostile file)"
            ));
        }
        Ok(())
    }

    fn values(slots: Vec<Slot>) -> Vec<Value> {
        slots.into_iter().map(|s| s.value).collect()
    }

    /// A copy for the memo or a memo read, charged against the copy budget.
    fn copy(&self, budget: &mut usize) -> Result<Slot, String> {
        if !charge(&self.value, budget) {
            return Err("pickle copies too much data (malformed or hostile file)".into());
        }
        Ok(self.clone())
    }
}

/// Unpickles `data`, returning the top-level value. `Err` is a one-line reason.
pub fn unpickle(data: &[u8]) -> Result<Value, String> {
    let mut budget = COPY_BUDGET;
    let mut r = Reader { data, pos: 0 };
    let mut stack: Vec<Slot> = Vec::new();
    let mut memo: std::collections::HashMap<u64, Slot> = std::collections::HashMap::new();

    fn pop(stack: &mut Vec<Slot>) -> Result<Slot, String> {
        stack
            .pop()
            .ok_or_else(|| "malformed pickle (stack underflow)".to_string())
    }
    fn pop_mark(stack: &mut Vec<Slot>) -> Result<Vec<Slot>, String> {
        let at = stack
            .iter()
            .rposition(|s| matches!(s.value, Value::Mark))
            .ok_or_else(|| "malformed pickle (missing MARK)".to_string())?;
        let items = stack.split_off(at + 1);
        stack.pop();
        Ok(items)
    }
    fn top(stack: &mut [Slot]) -> Result<&mut Slot, String> {
        stack
            .last_mut()
            .ok_or_else(|| "malformed pickle (stack underflow)".to_string())
    }
    fn set_items(target: &mut Value, items: Vec<Value>) -> Result<(), String> {
        if !items.len().is_multiple_of(2) {
            return Err("malformed pickle (odd SETITEMS)".into());
        }
        let Value::Dict(d) = target else {
            return Err("malformed pickle (SETITEM on a non-dict)".into());
        };
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            if let Some(slot) = d.iter_mut().find(|(key, _)| *key == k) {
                slot.1 = v;
            } else {
                d.push((k, v));
            }
        }
        Ok(())
    }

    loop {
        let op = r.u8()?;
        match op {
            0x80 => {
                // PROTO
                let v = r.u8()?;
                if v > 5 {
                    return Err(format!("unsupported pickle protocol {v}"));
                }
            }
            0x95 => {
                // FRAME: a length hint only.
                r.u64()?;
            }
            b'.' => return pop(&mut stack).map(|s| s.value), // STOP
            b'(' => stack.push(Slot::leaf(Value::Mark)),
            b'0' => {
                pop(&mut stack)?;
            }
            b'1' => {
                pop_mark(&mut stack)?;
            }
            b'2' => {
                let v = top(&mut stack)?.copy(&mut budget)?;
                stack.push(v);
            }
            b'N' => stack.push(Slot::leaf(Value::None)),
            0x88 => stack.push(Slot::leaf(Value::Bool(true))),
            0x89 => stack.push(Slot::leaf(Value::Bool(false))),
            b'J' => stack.push(Slot::leaf(Value::Int(i64::from(r.u32()? as i32)))),
            b'K' => stack.push(Slot::leaf(Value::Int(i64::from(r.u8()?)))),
            b'M' => stack.push(Slot::leaf(Value::Int(i64::from(r.u16()?)))),
            0x8a => {
                // LONG1: little-endian two's complement of n bytes.
                let n = usize::from(r.u8()?);
                let b = r.take(n)?;
                if n > 8 {
                    return Err("integer too large in pickle".into());
                }
                let mut v: i64 = 0;
                for (i, &byte) in b.iter().enumerate() {
                    v |= i64::from(byte) << (8 * i);
                }
                if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                    v -= 1i64 << (8 * n);
                }
                stack.push(Slot::leaf(Value::Int(v)));
            }
            b'G' => {
                let b = r.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                stack.push(Slot::leaf(Value::Float(f64::from_be_bytes(a))));
            }
            b'X' => {
                let n = usize_of(u64::from(r.u32()?))?;
                stack.push(Slot::leaf(Value::Str(r.string(n)?)));
            }
            0x8c => {
                let n = usize::from(r.u8()?);
                stack.push(Slot::leaf(Value::Str(r.string(n)?)));
            }
            0x8d => {
                let n = usize_of(r.u64()?)?;
                stack.push(Slot::leaf(Value::Str(r.string(n)?)));
            }
            b'C' => {
                let n = usize::from(r.u8()?);
                stack.push(Slot::leaf(Value::Bytes(r.take(n)?.to_vec())));
            }
            b'B' => {
                let n = usize_of(u64::from(r.u32()?))?;
                stack.push(Slot::leaf(Value::Bytes(r.take(n)?.to_vec())));
            }
            b')' => stack.push(Slot::container(Value::Tuple(Vec::new()), &[])?),
            b']' => stack.push(Slot::container(Value::List(Vec::new()), &[])?),
            b'}' => stack.push(Slot::container(Value::Dict(Vec::new()), &[])?),
            b't' => {
                let items = pop_mark(&mut stack)?;
                stack.push(Slot::container_of(Value::Tuple, items)?);
            }
            0x85 => {
                let a = pop(&mut stack)?;
                stack.push(Slot::container_of(Value::Tuple, vec![a])?);
            }
            0x86 => {
                let b = pop(&mut stack)?;
                let a = pop(&mut stack)?;
                stack.push(Slot::container_of(Value::Tuple, vec![a, b])?);
            }
            0x87 => {
                let c = pop(&mut stack)?;
                let b = pop(&mut stack)?;
                let a = pop(&mut stack)?;
                stack.push(Slot::container_of(Value::Tuple, vec![a, b, c])?);
            }
            b'l' => {
                let items = pop_mark(&mut stack)?;
                stack.push(Slot::container_of(Value::List, items)?);
            }
            b'd' => {
                let items = pop_mark(&mut stack)?;
                let mut d = Slot::container(Value::Dict(Vec::new()), &items)?;
                set_items(&mut d.value, Slot::values(items))?;
                stack.push(d);
            }
            b'a' => {
                let v = pop(&mut stack)?;
                let list = top(&mut stack)?;
                list.deepen(std::slice::from_ref(&v))?;
                match &mut list.value {
                    Value::List(l) => l.push(v.value),
                    _ => return Err("malformed pickle (APPEND to a non-list)".into()),
                }
            }
            b'e' => {
                let items = pop_mark(&mut stack)?;
                let list = top(&mut stack)?;
                list.deepen(&items)?;
                match &mut list.value {
                    Value::List(l) => l.extend(Slot::values(items)),
                    _ => return Err("malformed pickle (APPENDS to a non-list)".into()),
                }
            }
            b's' => {
                let v = pop(&mut stack)?;
                let k = pop(&mut stack)?;
                let dict = top(&mut stack)?;
                let items = vec![k, v];
                dict.deepen(&items)?;
                set_items(&mut dict.value, Slot::values(items))?;
            }
            b'u' => {
                let items = pop_mark(&mut stack)?;
                let dict = top(&mut stack)?;
                dict.deepen(&items)?;
                set_items(&mut dict.value, Slot::values(items))?;
            }
            b'q' => {
                let i = u64::from(r.u8()?);
                let v = top(&mut stack)?.copy(&mut budget)?;
                memo.insert(i, v);
            }
            b'r' => {
                let i = u64::from(r.u32()?);
                let v = top(&mut stack)?.copy(&mut budget)?;
                memo.insert(i, v);
            }
            0x94 => {
                let i = memo.len() as u64;
                let v = top(&mut stack)?.copy(&mut budget)?;
                memo.insert(i, v);
            }
            b'h' | b'j' => {
                let i = if op == b'h' {
                    u64::from(r.u8()?)
                } else {
                    u64::from(r.u32()?)
                };
                let v = memo
                    .get(&i)
                    .ok_or_else(|| format!("malformed pickle (memo {i} unset)"))?
                    .copy(&mut budget)?;
                stack.push(v);
            }
            b'c' => {
                let module = r.line()?.to_string();
                let name = r.line()?.to_string();
                stack.push(Slot::leaf(Value::Global(resolve_global(&module, &name)?)));
            }
            0x93 => {
                // STACK_GLOBAL
                let name = pop(&mut stack)?;
                let module = pop(&mut stack)?;
                match (module.value.as_str(), name.value.as_str()) {
                    (Some(m), Some(n)) => {
                        stack.push(Slot::leaf(Value::Global(resolve_global(m, n)?)))
                    }
                    _ => return Err("malformed pickle (STACK_GLOBAL of non-strings)".into()),
                }
            }
            b'Q' => {
                let pid = pop(&mut stack)?;
                stack.push(Slot::leaf(Value::Storage(persistent_storage(pid.value)?)));
            }
            b'R' => {
                let args = pop(&mut stack)?;
                let func = pop(&mut stack)?;
                // The result is a leaf or one of the arguments: no deeper than they are.
                let depth = args.depth;
                stack.push(Slot {
                    value: reduce(func.value, args.value)?,
                    depth,
                });
            }
            0x81 => {
                // NEWOBJ: cls.__new__(cls, *args); only module classes (attribute maps) are allowed.
                let _args = pop(&mut stack)?;
                match pop(&mut stack)?.value {
                    Value::Global(Global::ModuleClass(class)) => stack.push(Slot::container(
                        Value::Object {
                            class,
                            attrs: Vec::new(),
                        },
                        &[],
                    )?),
                    Value::Global(Global::OrderedDict) => {
                        stack.push(Slot::container(Value::Dict(Vec::new()), &[])?)
                    }
                    other => {
                        return Err(format!(
                            "pickle instantiates {}, which is not allowed in a tensor archive",
                            describe(&other)
                        ))
                    }
                }
            }
            b'b' => {
                // BUILD: sets an object's state. Module objects take their attribute dict; the state PyTorch
                // attaches to OrderedDicts (`_metadata`) and tensors is not needed.
                let state = pop(&mut stack)?;
                let target = top(&mut stack)?;
                // The object takes the state dict's items: it nests as deep as that dict.
                target.depth = target.depth.max(state.depth);
                match &mut target.value {
                    Value::Object { attrs, .. } => match state.value {
                        Value::Dict(d) => attrs.extend(d),
                        Value::None => {}
                        _ => return Err("unsupported object state in pickle".into()),
                    },
                    Value::Dict(_) | Value::Tensor(_) => {}
                    _ => return Err("malformed pickle (BUILD on an unsupported value)".into()),
                }
            }
            other => {
                return Err(format!(
                    "unsupported pickle opcode 0x{other:02x} at byte {}",
                    r.pos - 1
                ))
            }
        }
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Global(g) => format!("{g:?}"),
        other => format!("a {}", kind(other)),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::None => "None",
        Value::Bool(_) => "bool",
        Value::Int(_) => "int",
        Value::Float(_) => "float",
        Value::Str(_) => "str",
        Value::Bytes(_) => "bytes",
        Value::Tuple(_) => "tuple",
        Value::List(_) => "list",
        Value::Dict(_) => "dict",
        Value::Global(_) => "global",
        Value::Object { .. } => "object",
        Value::Storage(_) => "storage",
        Value::Tensor(_) => "tensor",
        Value::Mark => "mark",
    }
}

/// `('storage', StorageType, key, location, numel)` -> [`StorageRef`].
fn persistent_storage(pid: Value) -> Result<StorageRef, String> {
    let Value::Tuple(items) = pid else {
        return Err("unsupported persistent id in pickle".into());
    };
    match items.as_slice() {
        [Value::Str(tag), Value::Global(Global::StorageType { name, dtype }), key, _location, numel]
            if tag == "storage" =>
        {
            let key = match key {
                Value::Str(s) => s.clone(),
                Value::Int(i) => i.to_string(),
                _ => return Err("unsupported storage key in pickle".into()),
            };
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("invalid storage key {key:?} in pickle"));
            }
            Ok(StorageRef {
                dtype: *dtype,
                type_name: name.clone(),
                key,
                numel: numel
                    .as_usize()
                    .ok_or_else(|| "invalid storage size in pickle".to_string())?,
            })
        }
        _ => Err("unsupported persistent id in pickle (expected a storage reference)".into()),
    }
}

fn usize_tuple(v: &Value) -> Option<Vec<usize>> {
    match v {
        Value::Tuple(items) | Value::List(items) => items.iter().map(Value::as_usize).collect(),
        _ => None,
    }
}

/// Applies an allow-listed callable.
fn reduce(func: Value, args: Value) -> Result<Value, String> {
    let Value::Global(g) = func else {
        return Err(format!(
            "pickle calls {}, which is not callable here",
            describe(&func)
        ));
    };
    let Value::Tuple(mut args) = args else {
        return Err("malformed pickle (REDUCE arguments are not a tuple)".into());
    };
    match g {
        Global::RebuildTensor => {
            // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
            if args.len() < 4 {
                return Err("malformed tensor record in pickle".into());
            }
            let Value::Storage(storage) = args[0].clone() else {
                return Err("malformed tensor record in pickle (no storage)".into());
            };
            let offset = args[1].as_usize();
            let shape = usize_tuple(&args[2]);
            let stride = usize_tuple(&args[3]);
            match (offset, shape, stride) {
                (Some(offset), Some(shape), Some(stride)) if shape.len() == stride.len() => {
                    Ok(Value::Tensor(TensorRef {
                        storage,
                        offset,
                        shape,
                        stride,
                    }))
                }
                _ => Err("malformed tensor record in pickle (offset/size/stride)".into()),
            }
        }
        Global::RebuildParameter => match args.first() {
            Some(Value::Tensor(_)) => Ok(args.swap_remove(0)),
            _ => Err("malformed parameter record in pickle".into()),
        },
        Global::OrderedDict => {
            if args.is_empty() {
                Ok(Value::Dict(Vec::new()))
            } else {
                Err("unsupported OrderedDict construction in pickle".into())
            }
        }
        Global::Identity(_) => args
            .into_iter()
            .next()
            .ok_or_else(|| "malformed pickle (missing argument)".to_string()),
        Global::StorageType { name, .. } => Err(format!(
            "pickle calls torch.{name}, which is not allowed in a tensor archive"
        )),
        Global::ModuleClass(c) => Err(format!(
            "pickle calls {c}, which is not allowed in a tensor archive"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_os_system() {
        // pickle.dumps of an object whose __reduce__ is (os.system, ('echo hi',)), protocol 2.
        let data = b"\x80\x02cposix\nsystem\nq\x00X\x07\x00\x00\x00echo hiq\x01\x85q\x02Rq\x03.";
        let err = unpickle(data).unwrap_err();
        assert!(err.contains("posix.system"), "{err}");
        assert!(!err.contains('\n'));
    }

    #[test]
    fn reads_basic_values() {
        // pickle.dumps({'a': [1, 2.5, None, True], 'b': (-3, 'x')}, protocol=2)
        let data = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01G@\x04\x00\x00\x00\x00\x00\x00N\x88eX\x01\x00\x00\x00bq\x03J\xfd\xff\xff\xffX\x01\x00\x00\x00xq\x04\x86q\x05u.";
        let v = unpickle(data).unwrap();
        assert_eq!(
            v,
            Value::Dict(vec![
                (
                    Value::Str("a".into()),
                    Value::List(vec![
                        Value::Int(1),
                        Value::Float(2.5),
                        Value::None,
                        Value::Bool(true)
                    ])
                ),
                (
                    Value::Str("b".into()),
                    Value::Tuple(vec![Value::Int(-3), Value::Str("x".into())])
                ),
            ])
        );
    }

    #[test]
    fn doubling_copies_are_bounded() {
        // [] then 64 x (BINGET 0, BINGET 0, TUPLE2, BINPUT 0): a value of 2^64 nodes if copied naively.
        let mut data = b"\x80\x02]q\x00".to_vec();
        for _ in 0..64 {
            data.extend_from_slice(b"h\x00h\x00\x86q\x00");
        }
        data.push(b'.');
        let err = unpickle(&data).unwrap_err();
        assert!(err.contains("too much"), "{err}");
    }

    #[test]
    fn nesting_is_bounded_before_it_can_overflow_the_stack() {
        // None wrapped in a 1-tuple a million times: dropping such a value recursively would overflow the stack.
        let mut data = b"\x80\x02N".to_vec();
        data.extend(std::iter::repeat_n(0x85u8, 1_000_000));
        data.push(b'.');
        let err = unpickle(&data).unwrap_err();
        assert!(err.contains("nests values more than"), "{err}");
        // Lists appended into lists nest too: [[[...]]] through EMPTY_LIST / APPEND pairs read inside out.
        let mut data = b"\x80\x02".to_vec();
        data.extend(std::iter::repeat_n(b']', 100_000));
        data.extend(std::iter::repeat_n(b'a', 99_999));
        data.push(b'.');
        let err = unpickle(&data).unwrap_err();
        assert!(err.contains("nests values more than"), "{err}");
        // Within the limit the same shapes read normally.
        let mut data = b"\x80\x02N".to_vec();
        data.extend(std::iter::repeat_n(0x85u8, MAX_NESTING));
        data.push(b'.');
        let mut v = unpickle(&data).unwrap();
        for _ in 0..MAX_NESTING {
            let Value::Tuple(mut items) = v else {
                panic!("not a tuple")
            };
            v = items.pop().unwrap();
        }
        assert_eq!(v, Value::None);
    }

    #[test]
    fn truncated_is_an_error() {
        assert!(unpickle(b"\x80\x02}q\x00(X\x01\x00").is_err());
        assert!(unpickle(b"").is_err());
    }
}
