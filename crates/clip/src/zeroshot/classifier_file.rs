//! Classifiers on disk: a safetensors file (the format of Hugging Face checkpoints) holding `weights`
//! `[classes, dim]` float32 (and `bias` `[classes]` for a linear probe), with the class names, templates, head
//! and model identity in the header's string metadata, so a classifier built once (say 1,000 classes x 80
//! templates) is reused without the text tower and is refused by a model it does not belong to.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::error::{ClipError, Result};
use crate::zeroshot::classifier::{Classifier, Head};
use crate::zeroshot::identity::ModelIdentity;

/// `format` metadata value marking our classifier files.
pub const FORMAT: &str = "clip-rs-classifier";
const VERSION: &str = "1";
const INFO_PREFIX: &str = "info.";

fn bad(path: &Path, reason: impl Into<String>) -> ClipError {
    ClipError::Checkpoint {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

impl Classifier {
    /// Writes the classifier; it must record its model (see [`Classifier::bind_to`]).
    pub fn save(&self, path: &Path) -> Result<()> {
        self.validate()?;
        let model = self.model.as_ref().ok_or_else(|| {
            ClipError::InvalidInput("cannot save a classifier without its model identity".into())
        })?;
        let json = |v: &[String]| serde_json::to_string(v).unwrap_or_default();
        let mut meta = HashMap::new();
        meta.insert("format".to_string(), FORMAT.to_string());
        meta.insert("version".to_string(), VERSION.to_string());
        meta.insert("class_names".to_string(), json(&self.class_names));
        meta.insert("templates".to_string(), json(&self.templates));
        meta.insert("model_name".to_string(), model.name.clone());
        meta.insert("model_sha256".to_string(), model.sha256.clone());
        match &self.head {
            Head::ZeroShot { logit_scale } => {
                meta.insert("head".to_string(), "zero-shot".to_string());
                meta.insert("logit_scale".to_string(), format!("{logit_scale:e}"));
            }
            Head::Linear { .. } => {
                meta.insert("head".to_string(), "linear".to_string());
            }
        }
        for (k, v) in &self.info {
            meta.insert(format!("{INFO_PREFIX}{k}"), v.clone());
        }
        let weights: Vec<f32> = self.weights.iter().flatten().copied().collect();
        let weight_bytes = f32_bytes(&weights);
        let shape = vec![self.num_classes(), self.embed_dim()];
        let mut tensors = vec![(
            "weights".to_string(),
            TensorView::new(Dtype::F32, shape, &weight_bytes),
        )];
        let bias_bytes = match &self.head {
            Head::Linear { bias } => f32_bytes(bias),
            Head::ZeroShot { .. } => Vec::new(),
        };
        if let Head::Linear { bias } = &self.head {
            tensors.push((
                "bias".to_string(),
                TensorView::new(Dtype::F32, vec![bias.len()], &bias_bytes),
            ));
        }
        let tensors = tensors
            .into_iter()
            .map(|(name, view)| view.map(|v| (name, v)))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| bad(path, e.to_string()))?;
        let bytes = safetensors::tensor::serialize(tensors, Some(meta))
            .map_err(|e| bad(path, e.to_string()))?;
        Ok(clip_io::write_output(path, &bytes)?)
    }

    /// Reads a classifier written by [`Classifier::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = clip_io::read_input(path, clip_io::Input::Data)?;
        let file = SafeTensors::deserialize(&bytes)
            .map_err(|e| bad(path, format!("not a safetensors file: {e}")))?;
        let (_, header) =
            SafeTensors::read_metadata(&bytes).map_err(|e| bad(path, e.to_string()))?;
        let meta = header.metadata().clone().unwrap_or_default();
        if meta.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(bad(
                path,
                "not a classifier file (no format=clip-rs-classifier metadata)",
            ));
        }
        let get = |key: &str| {
            meta.get(key)
                .ok_or_else(|| bad(path, format!("metadata {key:?} is missing")))
        };
        let list = |key: &str| -> Result<Vec<String>> {
            serde_json::from_str(get(key)?).map_err(|e| bad(path, format!("metadata {key:?}: {e}")))
        };
        let class_names = list("class_names")?;
        let templates = list("templates")?;
        let weights = read_f32(path, &file, "weights")?;
        let dims = weights.0;
        if dims.len() != 2 || dims[0] != class_names.len() {
            return Err(bad(
                path,
                format!(
                    "weights have shape {dims:?} for {} class names",
                    class_names.len()
                ),
            ));
        }
        let rows: Vec<Vec<f32>> = weights
            .1
            .chunks(dims[1].max(1))
            .map(<[f32]>::to_vec)
            .collect();
        let head = match get("head")?.as_str() {
            "zero-shot" => Head::ZeroShot {
                logit_scale: get("logit_scale")?
                    .parse()
                    .map_err(|_| bad(path, "metadata \"logit_scale\" is not a number"))?,
            },
            "linear" => Head::Linear {
                bias: read_f32(path, &file, "bias")?.1,
            },
            other => return Err(bad(path, format!("unknown head {other:?}"))),
        };
        let info: BTreeMap<String, String> = meta
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix(INFO_PREFIX)
                    .map(|k| (k.to_string(), v.clone()))
            })
            .collect();
        let classifier = Self {
            class_names,
            templates,
            weights: rows,
            head,
            model: Some(ModelIdentity {
                name: get("model_name")?.clone(),
                sha256: get("model_sha256")?.clone(),
            }),
            info,
        };
        classifier
            .validate()
            .map_err(|e| bad(path, e.to_string()))?;
        Ok(classifier)
    }
}

fn read_f32(path: &Path, file: &SafeTensors, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
    let view = file
        .tensor(name)
        .map_err(|_| bad(path, format!("tensor {name} is missing")))?;
    if view.dtype() != Dtype::F32 {
        return Err(bad(
            path,
            format!("tensor {name} is {:?}, expected F32", view.dtype()),
        ));
    }
    let values = view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok((view.shape().to_vec(), values))
}
