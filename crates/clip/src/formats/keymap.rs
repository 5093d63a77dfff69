//! OpenAI's state-dict names (clip-anytorch `clip/model.py`; open_clip's `model.py` and the text encoders
//! inside Stable Diffusion checkpoints use the same ones) mapped onto the model's layout (see [`crate::model`]).
//! The one real transform is PyTorch `nn.MultiheadAttention`'s packed `in_proj_weight` / `in_proj_bias`,
//! read as the q, k and v rows; `x @ P` projections are read transposed. Everything else is a rename.

use crate::weights::View;

/// Which image tower the names belong to: both call their first convolution `visual.conv1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VisionKind {
    Vit,
    ResNet,
}

/// Whole names or prefixes (ending in `.`) of the text tower and the shared parts.
const TEXT: &[(&str, &str)] = &[
    (
        "token_embedding.weight",
        "text_model.embeddings.token_embedding.weight",
    ),
    (
        "positional_embedding",
        "text_model.embeddings.position_embedding.weight",
    ),
    ("transformer.resblocks.", "text_model.encoder.layers."),
    ("ln_final.", "text_model.final_layer_norm."),
    ("logit_scale", "logit_scale"),
];

/// The ViT tower (`visual.*`).
const VIT: &[(&str, &str)] = &[
    (
        "visual.conv1.weight",
        "vision_model.embeddings.patch_embedding.weight",
    ),
    (
        "visual.class_embedding",
        "vision_model.embeddings.class_embedding",
    ),
    (
        "visual.positional_embedding",
        "vision_model.embeddings.position_embedding.weight",
    ),
    ("visual.ln_pre.", "vision_model.pre_layrnorm."),
    (
        "visual.transformer.resblocks.",
        "vision_model.encoder.layers.",
    ),
    ("visual.ln_post.", "vision_model.post_layernorm."),
];

/// Inside a residual attention block (`resblocks.N.*`), except the packed projection.
const BLOCK: &[(&str, &str)] = &[
    ("ln_1.", "layer_norm1."),
    ("ln_2.", "layer_norm2."),
    ("attn.out_proj.", "self_attn.out_proj."),
    ("mlp.c_fc.", "mlp.fc1."),
    ("mlp.c_proj.", "mlp.fc2."),
];

/// `x @ P` matrices stored `[in, out]`, read as `nn.Linear` weights `[out, in]`.
const TRANSPOSED: &[(&str, &str)] = &[
    ("text_projection", "text_projection.weight"),
    ("visual.proj", "visual_projection.weight"),
];

/// Buffers OpenAI-layout files carry that no model reads: the first releases' scalar `input_resolution` /
/// `context_length` / `vocab_size` (deleted by `build_model` too) and causal attention masks.
const BUFFERS: &[&str] = &[
    "input_resolution",
    "context_length",
    "vocab_size",
    "attn_mask",
];

/// The model-layout names (and views) of `name`, a tensor of an OpenAI-layout tower stored under `prefix`
/// (`""` for a whole model, `"cond_stage_model.model."` for SD2's text encoder): the mapped names stay under
/// `prefix`. `None` leaves a name as it is (outside `prefix`, or unknown: the strict loader reports it); an
/// empty list drops a known unused buffer. `vision` says which image tower `visual.*` names belong to (`None`:
/// a text tower alone).
pub(crate) fn openai_to_model(
    name: &str,
    shape: &[usize],
    prefix: &str,
    vision: Option<VisionKind>,
) -> Option<Vec<(String, View)>> {
    let rest = name.strip_prefix(prefix)?;
    let under = |target: String| format!("{prefix}{target}");
    if BUFFERS.contains(&rest) || rest.ends_with(".attn_mask") {
        return Some(Vec::new());
    }
    if let Some(&(_, to)) = TRANSPOSED.iter().find(|(from, _)| *from == rest) {
        if to.starts_with("visual") && vision != Some(VisionKind::Vit) {
            return None;
        }
        return Some(vec![(under(to.to_string()), View::Transposed)]);
    }
    let renamed = match (vision, rest.strip_prefix("visual.")) {
        (Some(VisionKind::ResNet), Some(inner)) => format!("vision_model.{inner}"),
        (Some(VisionKind::Vit), Some(_)) => rename(rest, VIT)?,
        (None, Some(_)) => return None,
        (_, None) => rename(rest, TEXT)?,
    };
    // Inside an encoder block: `...layers.N.<block name>`.
    if let Some((head, block)) = split_block(&renamed) {
        if let Some(part) = block.strip_prefix("attn.in_proj_") {
            let rows = shape.first()? / 3;
            return Some(
                ["q_proj", "k_proj", "v_proj"]
                    .iter()
                    .enumerate()
                    .map(|(i, proj)| {
                        let view = View::Rows {
                            start: i * rows,
                            len: rows,
                        };
                        (under(format!("{head}self_attn.{proj}.{part}")), view)
                    })
                    .collect(),
            );
        }
        let inner = rename(block, BLOCK)?;
        return Some(vec![(under(format!("{head}{inner}")), View::Whole)]);
    }
    Some(vec![(under(renamed), View::Whole)])
}

/// The OpenAI-layout name of the model-layout `name` (the inverse of [`openai_to_model`]), so that a tensor the
/// model needs but the file lacks is reported by the name the file would give it.
pub(crate) fn model_to_openai(
    name: &str,
    prefix: &str,
    vision: Option<VisionKind>,
) -> Option<String> {
    let rest = name.strip_prefix(prefix)?;
    let under = |stored: String| Some(format!("{prefix}{stored}"));
    if let Some(&(stored, _)) = TRANSPOSED.iter().find(|(_, to)| *to == rest) {
        return under(stored.to_string());
    }
    if let (Some(VisionKind::ResNet), Some(inner)) = (vision, rest.strip_prefix("vision_model.")) {
        return under(format!("visual.{inner}"));
    }
    let inverse = |table: &[(&'static str, &'static str)]| -> Vec<(&'static str, &'static str)> {
        table.iter().map(|&(from, to)| (to, from)).collect()
    };
    let (head, block) = match split_block(rest) {
        Some((head, block)) => (head, Some(block)),
        None => (rest, None),
    };
    let stored_head = rename(head, &inverse(VIT)).or_else(|| rename(head, &inverse(TEXT)))?;
    let Some(block) = block else {
        return under(stored_head);
    };
    let inner = match block.strip_prefix("self_attn.") {
        Some(p)
            if ["q_proj.", "k_proj.", "v_proj."]
                .iter()
                .any(|q| p.starts_with(q)) =>
        {
            format!("attn.in_proj_{}", &p["q_proj.".len()..])
        }
        _ => rename(block, &inverse(BLOCK))?,
    };
    under(format!("{stored_head}{inner}"))
}

/// The names of a transformers `CLIPTextModel` saved by transformers 5 (which drops the `text_model.` level of
/// published checkpoints) put back under `text_model.`; other names are left as they are.
pub(crate) fn standalone_text_model(name: &str) -> Option<Vec<(String, View)>> {
    let top = name.split('.').next()?;
    ["embeddings", "encoder", "final_layer_norm"]
        .contains(&top)
        .then(|| vec![(format!("text_model.{name}"), View::Whole)])
}

/// `from` names or prefixes (ending in `.`) replaced by `to`; `None` when no rule matches.
fn rename(name: &str, table: &[(&'static str, &'static str)]) -> Option<String> {
    table.iter().find_map(|(from, to)| {
        if from.ends_with('.') {
            name.strip_prefix(from).map(|rest| format!("{to}{rest}"))
        } else {
            (name == *from).then(|| to.to_string())
        }
    })
}

/// `("text_model.encoder.layers.3.", "ln_1.weight")` for a name inside an encoder block.
fn split_block(name: &str) -> Option<(&str, &str)> {
    let at = name.find(".encoder.layers.")? + ".encoder.layers.".len();
    let digits = name[at..].find('.')?;
    name[at..at + digits].parse::<usize>().ok()?;
    let split = at + digits + 1;
    Some((&name[..split], &name[split..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(name: &str, shape: &[usize], vision: Option<VisionKind>) -> Vec<(String, View)> {
        openai_to_model(name, shape, "", vision).expect(name)
    }

    #[test]
    fn vit_and_text_names_map_onto_the_model_layout() {
        let vit = Some(VisionKind::Vit);
        assert_eq!(
            one("visual.conv1.weight", &[768, 3, 32, 32], vit),
            [(
                "vision_model.embeddings.patch_embedding.weight".into(),
                View::Whole
            )]
        );
        assert_eq!(
            one(
                "visual.transformer.resblocks.11.mlp.c_fc.bias",
                &[3072],
                vit
            ),
            [(
                "vision_model.encoder.layers.11.mlp.fc1.bias".into(),
                View::Whole
            )]
        );
        assert_eq!(
            one(
                "transformer.resblocks.0.attn.in_proj_weight",
                &[1536, 512],
                vit
            ),
            [
                (
                    "text_model.encoder.layers.0.self_attn.q_proj.weight".into(),
                    View::Rows { start: 0, len: 512 }
                ),
                (
                    "text_model.encoder.layers.0.self_attn.k_proj.weight".into(),
                    View::Rows {
                        start: 512,
                        len: 512
                    }
                ),
                (
                    "text_model.encoder.layers.0.self_attn.v_proj.weight".into(),
                    View::Rows {
                        start: 1024,
                        len: 512
                    }
                ),
            ]
        );
        assert_eq!(
            one("visual.proj", &[768, 512], vit),
            [("visual_projection.weight".into(), View::Transposed)]
        );
        assert_eq!(
            one("ln_final.weight", &[512], vit),
            [("text_model.final_layer_norm.weight".into(), View::Whole)]
        );
        assert!(one("transformer.resblocks.0.attn_mask", &[77, 77], vit).is_empty());
        assert!(openai_to_model("visual.something_else", &[1], "", vit).is_none());
    }

    #[test]
    fn model_names_map_back_to_the_file_names() {
        let vit = Some(VisionKind::Vit);
        for (stored, shape) in [
            ("visual.conv1.weight", vec![768, 3, 32, 32]),
            ("visual.transformer.resblocks.3.ln_2.bias", vec![768]),
            (
                "transformer.resblocks.0.attn.in_proj_weight",
                vec![1536, 512],
            ),
            (
                "transformer.resblocks.0.attn.out_proj.weight",
                vec![512, 512],
            ),
            ("ln_final.weight", vec![512]),
            ("text_projection", vec![512, 512]),
            ("visual.proj", vec![768, 512]),
            ("logit_scale", vec![]),
        ] {
            for (model, _) in one(stored, &shape, vit) {
                assert_eq!(
                    model_to_openai(&model, "", vit).as_deref(),
                    Some(stored),
                    "{model}"
                );
            }
        }
        assert_eq!(
            model_to_openai(
                "vision_model.layer2.0.bn1.weight",
                "",
                Some(VisionKind::ResNet)
            )
            .as_deref(),
            Some("visual.layer2.0.bn1.weight")
        );
    }

    #[test]
    fn resnet_names_keep_their_openai_names_under_vision_model() {
        let rn = Some(VisionKind::ResNet);
        assert_eq!(
            one("visual.layer1.0.downsample.0.weight", &[256, 64, 1, 1], rn),
            [(
                "vision_model.layer1.0.downsample.0.weight".into(),
                View::Whole
            )]
        );
        assert_eq!(
            one("visual.attnpool.q_proj.bias", &[2048], rn),
            [("vision_model.attnpool.q_proj.bias".into(), View::Whole)]
        );
    }

    #[test]
    fn prefixed_text_towers_stay_under_their_prefix() {
        let p = "cond_stage_model.model.";
        assert_eq!(
            openai_to_model("cond_stage_model.model.ln_final.bias", &[1024], p, None).unwrap(),
            [(
                "cond_stage_model.model.text_model.final_layer_norm.bias".into(),
                View::Whole
            )]
        );
        assert!(openai_to_model("model.diffusion_model.x", &[1], p, None).is_none());
        assert_eq!(
            standalone_text_model("encoder.layers.0.mlp.fc1.weight").unwrap()[0].0,
            "text_model.encoder.layers.0.mlp.fc1.weight"
        );
        assert!(standalone_text_model("text_projection.weight").is_none());
    }
}
