//! OpenAI's released checkpoints (`RN50.pt` ... `ViT-L-14-336px.pt`): a TorchScript archive or a `torch.save`
//! state dict in OpenAI's layout. The names are mapped onto the model's ([`super::keymap`]) and the architecture
//! is inferred from the shapes as clip-anytorch 2.6's `build_model` does ([`super::infer`]): a ViT has
//! `visual.proj`, a ResNet `visual.attnpool`; heads are `width / 64`; every OpenAI model uses QuickGELU and
//! pools the text at the argmax id.

use std::path::Path;

use crate::error::{ClipError, Result};
use crate::formats::infer::{self, Unshaped};
use crate::formats::keymap::{openai_to_model, VisionKind};
use crate::formats::{stored_name, Opened, StoredNames};
use crate::kernels::Precision;
use crate::model::{Activation, TextPooling};
use crate::weights::pytorch::{self, ArchiveKind};
use crate::weights::TensorStore;

/// What OpenAI's models are, beyond their shapes.
const OPENAI: Unshaped = Unshaped {
    activation: Activation::QuickGelu,
    pooling: TextPooling::Argmax,
};

/// Which image tower an OpenAI-layout state dict holds.
pub(crate) fn vision_kind(store: &TensorStore) -> Result<VisionKind> {
    if store.contains("visual.proj") {
        Ok(VisionKind::Vit)
    } else if store.contains("visual.attnpool.positional_embedding") {
        Ok(VisionKind::ResNet)
    } else {
        Err(ClipError::Checkpoint {
            path: store.path().to_path_buf(),
            reason: "not an OpenAI CLIP checkpoint: neither visual.proj (ViT) nor visual.attnpool (ResNet) found"
                .into(),
        })
    }
}

/// Maps a whole OpenAI-layout model's names onto the model's layout.
pub(crate) fn to_model_layout(store: TensorStore, kind: VisionKind) -> Result<TensorStore> {
    store.remap(|name, shape| openai_to_model(name, shape, "", Some(kind)))
}

/// Opens an OpenAI `.pt` file in `precision`, its names mapped and its architecture inferred; also says
/// which kind of archive it was.
pub(crate) fn open(path: &Path, precision: Precision) -> Result<(Opened, ArchiveKind)> {
    let (kind, store) = pytorch::open(path, precision)?;
    let vision = vision_kind(&store)?;
    let store = to_model_layout(store, vision)?;
    let names = StoredNames::OpenAi(vision);
    let config = infer::clip_config(&store.root(), OPENAI).map_err(|e| stored_name(names, e))?;
    Ok((
        Opened {
            store,
            config,
            names,
        },
        kind,
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::PathBuf;

    use candle_core::{DType, Tensor};

    use super::*;
    use crate::model::text::TextTransformer;
    use crate::test_util::relative_error;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/openai")
            .join(name)
    }

    fn reference(name: &str) -> HashMap<String, Tensor> {
        candle_core::safetensors::load(
            fixture(name).join("reference.safetensors"),
            &candle_core::Device::Cpu,
        )
        .unwrap()
    }

    #[test]
    fn archive_kinds_are_told_apart() {
        for (file, kind) in [
            ("model.pt", ArchiveKind::TorchScript),
            ("state_dict.pt", ArchiveKind::StateDict),
        ] {
            let (opened, found) = open(&fixture("rn").join(file), Precision::F32).unwrap();
            assert_eq!(found, kind, "{file}");
            opened.build_towers(true).unwrap();
        }
    }

    #[test]
    fn archive_keeps_each_tensor_dtype() {
        let archive = pytorch::read_archive(&fixture("rn").join("model.pt")).unwrap();
        let t = &archive.tensors;
        // convert_weights: convs, linears, attention and projections f16; norms, embeddings, BN statistics f32.
        assert_eq!(t["visual.conv1.weight"].dtype(), DType::F16);
        assert_eq!(t["text_projection"].dtype(), DType::F16);
        assert_eq!(
            t["transformer.resblocks.0.attn.in_proj_weight"].dtype(),
            DType::F16
        );
        assert_eq!(t["visual.bn1.running_var"].dtype(), DType::F32);
        assert_eq!(t["token_embedding.weight"].dtype(), DType::F32);
        assert_eq!(t["ln_final.weight"].dtype(), DType::F32);
        assert_eq!(t["visual.bn1.num_batches_tracked"].dtype(), DType::I64);
    }

    /// The text tower alone under a key prefix (as inside Stable Diffusion checkpoints), mapped and inferred as
    /// the conditioning loader does: pooled output `@ text_projection` is clip-anytorch's `encode_text`.
    #[test]
    fn text_tower_under_a_prefix() {
        let archive = pytorch::read_archive(&fixture("vit").join("model.pt")).unwrap();
        let prefix = "cond_stage_model.model.";
        let tensors = archive
            .tensors
            .into_iter()
            .filter(|(k, _)| !k.starts_with("visual.") && k != "logit_scale")
            .map(|(k, v)| (format!("{prefix}{k}"), v))
            .collect();
        let store = TensorStore::from_tensors("mem", tensors, Precision::F32)
            .remap(|name, shape| openai_to_model(name, shape, prefix, None))
            .unwrap();
        let root = store.scoped(prefix);
        let config = infer::text(&root.pp("text_model"), None, OPENAI).unwrap();
        assert_eq!(
            (
                config.width,
                config.heads,
                config.layers,
                config.intermediate_size
            ),
            (64, 1, 1, 256)
        );
        let tower = TextTransformer::load(&root.pp("text_model"), &config).unwrap();
        let projection = root.take("text_projection.weight", &[32, 64]).unwrap();
        store.finish().unwrap();
        let refs = reference("vit");
        let ids = refs["input_ids"].to_dtype(DType::U32).unwrap();
        let pooled = tower.forward(&ids).unwrap();
        let text = pooled.matmul(&projection.t().unwrap()).unwrap();
        let e = relative_error(&text, &refs["text_features"]);
        assert!(e <= 1e-4, "relative error {e:e}");
    }
}
