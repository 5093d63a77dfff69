//! Tensor stores: the named tensors of a checkpoint file, each read once with its shape checked, in the
//! precision chosen when the store is opened. Sources: safetensors (memory-mapped, sharded), PyTorch zip
//! archives (TorchScript and `torch.save`, through the restricted unpickler) and tensors in memory.

pub(crate) mod pickle;
pub(crate) mod pytorch;
pub(crate) mod safetensors;
pub(crate) mod store;

pub(crate) use store::{TensorStore, View, Weights};
