//! The building blocks both towers are made of, mirroring PyTorch's `nn.LayerNorm` / `nn.Linear` and
//! transformers' `CLIPAttention`, `CLIPMLP`, `CLIPEncoderLayer` and `CLIPEncoder` (pre-LayerNorm residual
//! blocks). Each reads its tensors under the names of the one layout the model loads (see [`super`]).

mod activation;
mod attention;
mod encoder;
mod layer_norm;
mod linear;
mod mlp;

pub(crate) use activation::activate;
pub(crate) use attention::{causal_mask, Attention};
pub(crate) use encoder::{Encoder, EncoderCache, EncoderShape};
pub(crate) use layer_norm::LayerNorm;
pub(crate) use linear::Linear;
pub(crate) use mlp::Mlp;

use candle_core::{Storage, Tensor};

use crate::error::{ClipError, Result};

/// Calls `f` with the values of a contiguous f32 CPU tensor, without copying them out.
pub(crate) fn with_f32_values<R>(x: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let (storage, layout) = x.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        return Err(ClipError::InvalidInput(
            "the CPU kernels need tensors on the CPU".into(),
        ));
    };
    let values = cpu.as_slice::<f32>()?;
    let Some((start, end)) = layout.contiguous_offsets() else {
        return Err(ClipError::InvalidInput("non-contiguous tensor".into()));
    };
    Ok(f(&values[start..end]))
}
