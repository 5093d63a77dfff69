//! The model's parameters by name and shape, from its config: the one layout every format is mapped onto (see
//! [`super`]), listed in one place for what needs all of it at once (training, fresh initialisation, export).

use crate::error::{ClipError, Result};
use crate::model::config::{ClipConfig, VisionTowerConfig};

/// Every parameter of a ViT CLIP model, `(name, shape)`, towers in state-dict order. ModifiedResNet towers are
/// not listed (training them is not supported).
pub(crate) fn parameters(config: &ClipConfig) -> Result<Vec<(String, Vec<usize>)>> {
    let VisionTowerConfig::Vit(v) = &config.vision else {
        return Err(ClipError::InvalidInput(
            "only ViT image towers can be trained or exported to the Hugging Face layout; ModifiedResNet \
             towers are not supported yet"
                .into(),
        ));
    };
    let mut out = Vec::new();
    let t = &config.text;
    let mut add = |name: String, shape: Vec<usize>| out.push((name, shape));
    let p = v.patch_size;
    add(
        "vision_model.embeddings.class_embedding".into(),
        vec![v.width],
    );
    add(
        "vision_model.embeddings.patch_embedding.weight".into(),
        vec![v.width, 3, p, p],
    );
    add(
        "vision_model.embeddings.position_embedding.weight".into(),
        vec![v.num_positions(), v.width],
    );
    add("vision_model.pre_layrnorm.weight".into(), vec![v.width]);
    add("vision_model.pre_layrnorm.bias".into(), vec![v.width]);
    for i in 0..v.layers {
        encoder_layer(
            &mut add,
            &format!("vision_model.encoder.layers.{i}."),
            v.width,
            v.intermediate_size,
        );
    }
    add("vision_model.post_layernorm.weight".into(), vec![v.width]);
    add("vision_model.post_layernorm.bias".into(), vec![v.width]);
    add(
        "visual_projection.weight".into(),
        vec![config.projection_dim, v.width],
    );
    add(
        "text_model.embeddings.token_embedding.weight".into(),
        vec![t.vocab_size, t.width],
    );
    add(
        "text_model.embeddings.position_embedding.weight".into(),
        vec![t.context_length, t.width],
    );
    for i in 0..t.layers {
        encoder_layer(
            &mut add,
            &format!("text_model.encoder.layers.{i}."),
            t.width,
            t.intermediate_size,
        );
    }
    add("text_model.final_layer_norm.weight".into(), vec![t.width]);
    add("text_model.final_layer_norm.bias".into(), vec![t.width]);
    add(
        "text_projection.weight".into(),
        vec![config.projection_dim, t.width],
    );
    add("logit_scale".into(), vec![]);
    Ok(out)
}

fn encoder_layer(
    add: &mut impl FnMut(String, Vec<usize>),
    prefix: &str,
    width: usize,
    hidden: usize,
) {
    for norm in ["layer_norm1", "layer_norm2"] {
        add(format!("{prefix}{norm}.weight"), vec![width]);
        add(format!("{prefix}{norm}.bias"), vec![width]);
    }
    for proj in ["q_proj", "k_proj", "v_proj", "out_proj"] {
        add(
            format!("{prefix}self_attn.{proj}.weight"),
            vec![width, width],
        );
        add(format!("{prefix}self_attn.{proj}.bias"), vec![width]);
    }
    add(format!("{prefix}mlp.fc1.weight"), vec![hidden, width]);
    add(format!("{prefix}mlp.fc1.bias"), vec![hidden]);
    add(format!("{prefix}mlp.fc2.weight"), vec![width, hidden]);
    add(format!("{prefix}mlp.fc2.bias"), vec![width]);
}

/// Whether a parameter belongs to the image side (tower and projection), which `--lock-image` freezes.
pub(crate) fn is_image_side(name: &str) -> bool {
    name.starts_with("vision_model.") || name.starts_with("visual_projection.")
}

/// Whether a parameter belongs to the text side (tower and projection), which `--lock-text` freezes.
pub(crate) fn is_text_side(name: &str) -> bool {
    name.starts_with("text_model.") || name.starts_with("text_projection.")
}
