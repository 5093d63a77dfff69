//! Parameters and gradients by name, in the model's layout (see [`super`]): what training reads and updates.
//! Layers remember the name prefix they were loaded under, so a backward pass finds its weights here and
//! adds its gradients under the same names.

use std::collections::BTreeMap;

use candle_core::{DType, Tensor};

use crate::error::{ClipError, Result};
use crate::kernels::Precision;
use crate::weights::TensorStore;

/// Named f32 tensors (CPU).
#[derive(Debug, Clone, Default)]
pub(crate) struct Tensors {
    map: BTreeMap<String, Tensor>,
}

/// The model's parameters as the optimizer sees them.
pub(crate) type Params = Tensors;
/// Gradients of a loss with respect to [`Params`], summed over the backward passes that produced them.
pub(crate) type Grads = Tensors;

impl Tensors {
    pub fn new() -> Self {
        Self::default()
    }

    /// The tensor called `name`, or an error naming it.
    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.map
            .get(name)
            .ok_or_else(|| ClipError::InvalidInput(format!("no parameter named {name}")))
    }

    pub fn contains(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    pub fn insert(&mut self, name: impl Into<String>, tensor: Tensor) {
        self.map.insert(name.into(), tensor);
    }

    /// Adds `value` to the tensor called `name` (inserting it the first time): gradient accumulation.
    pub fn add(&mut self, name: &str, value: &Tensor) -> Result<()> {
        let value = value.to_dtype(DType::F32)?;
        let sum = match self.map.get(name) {
            Some(existing) => (existing + value)?,
            None => value,
        };
        self.map.insert(name.to_string(), sum);
        Ok(())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Tensor)> {
        self.map.iter()
    }

    pub fn remove(&mut self, name: &str) -> Option<Tensor> {
        self.map.remove(name)
    }

    /// A tensor store over these tensors (shared, not copied), for building a model from them; `label` names
    /// it in errors.
    pub fn store(&self, label: &str, precision: Precision) -> TensorStore {
        let tensors = self
            .map
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        TensorStore::from_tensors(label, tensors, precision)
    }

    /// The value of a scalar tensor.
    pub fn scalar(&self, name: &str) -> Result<f64> {
        Ok(f64::from(
            self.get(name)?.to_dtype(DType::F32)?.to_scalar::<f32>()?,
        ))
    }
}
