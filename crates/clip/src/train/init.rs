//! Fresh parameters for `clip train --config NAME`, drawn as open_clip initialises a new model: its text
//! tower's scheme (`TextTransformer.init_parameters`: token embedding N(0, 0.02²), positions N(0, 0.01²),
//! attention inputs N(0, width⁻¹), output projections N(0, width⁻¹ / 2·layers), MLP inputs N(0, 1 / 2·width),
//! projection N(0, width⁻¹)), the image tower's (class token, positions and projection N(0, width⁻¹), blocks
//! with PyTorch's default layer initialisation), LayerNorms at 1 / 0, and `logit_scale = ln(1 / 0.07)`.

use candle_core::{Device, Tensor};

use crate::error::Result;
use crate::model::layout::parameters;
use crate::model::params::Params;
use crate::model::ClipConfig;
use crate::train::rng::{Rng, Stream};

/// How one tensor is drawn.
enum Draw {
    Normal(f64),
    Uniform(f64),
    Constant(f64),
}

fn draw_for(name: &str, shape: &[usize], config: &ClipConfig) -> Draw {
    let text = name.starts_with("text_");
    let (width, layers) = if text {
        (config.text.width, config.text.layers)
    } else {
        match &config.vision {
            crate::model::VisionTowerConfig::Vit(v) => (v.width, v.layers),
            crate::model::VisionTowerConfig::ResNet(r) => (r.embed_dim(), 1),
        }
    };
    let w = width as f64;
    let fan_in = shape
        .get(1..)
        .map_or(1, |rest| rest.iter().product::<usize>()) as f64;
    let attn_std = w.powf(-0.5);
    let proj_std = attn_std * (2.0 * layers as f64).powf(-0.5);
    let is = |suffix: &str| name.ends_with(suffix);
    if name == "logit_scale" {
        return Draw::Constant((1.0f64 / 0.07).ln());
    }
    if is("layer_norm1.weight")
        || is("layer_norm2.weight")
        || is("layrnorm.weight")
        || is("layernorm.weight")
        || is("final_layer_norm.weight")
    {
        return Draw::Constant(1.0);
    }
    if is("layer_norm1.bias")
        || is("layer_norm2.bias")
        || is("layrnorm.bias")
        || is("layernorm.bias")
        || is("final_layer_norm.bias")
        || is("q_proj.bias")
        || is("k_proj.bias")
        || is("v_proj.bias")
        || is("out_proj.bias")
    {
        return Draw::Constant(0.0);
    }
    if is("token_embedding.weight") {
        return Draw::Normal(0.02);
    }
    if text {
        if is("position_embedding.weight") {
            return Draw::Normal(0.01);
        }
        if is("q_proj.weight")
            || is("k_proj.weight")
            || is("v_proj.weight")
            || name == "text_projection.weight"
        {
            return Draw::Normal(attn_std);
        }
        if is("out_proj.weight") || is("fc2.weight") {
            return Draw::Normal(proj_std);
        }
        if is("fc1.weight") {
            return Draw::Normal((2.0 * w).powf(-0.5));
        }
    } else {
        if is("class_embedding")
            || is("position_embedding.weight")
            || name == "visual_projection.weight"
        {
            return Draw::Normal(attn_std);
        }
        if is("q_proj.weight") || is("k_proj.weight") || is("v_proj.weight") {
            // xavier_uniform over the packed [3 width, width] input projection.
            return Draw::Uniform((6.0 / (4.0 * w)).sqrt());
        }
    }
    // PyTorch's default for Linear / Conv2d weights and Linear biases: U(±1/sqrt(fan_in)).
    if is(".bias") {
        let fan_in = if is("fc1.bias") {
            w
        } else if text {
            config.text.intermediate_size as f64
        } else {
            match &config.vision {
                crate::model::VisionTowerConfig::Vit(v) => v.intermediate_size as f64,
                crate::model::VisionTowerConfig::ResNet(_) => w,
            }
        };
        return Draw::Uniform(fan_in.powf(-0.5));
    }
    Draw::Uniform(fan_in.powf(-0.5))
}

/// Every parameter of a ViT CLIP model with `config`'s architecture, freshly drawn from `seed`.
pub(crate) fn fresh_params(config: &ClipConfig, seed: u64) -> Result<Params> {
    let mut params = Params::new();
    for (number, (name, shape)) in parameters(config)?.into_iter().enumerate() {
        let count: usize = shape.iter().product();
        let mut rng = Rng::new(seed, Stream::Init, &[number as u64]);
        let values: Vec<f32> = match draw_for(&name, &shape, config) {
            Draw::Normal(std) => (0..count).map(|_| (std * rng.normal()) as f32).collect(),
            Draw::Uniform(bound) => (0..count)
                .map(|_| rng.range(-bound, bound) as f32)
                .collect(),
            Draw::Constant(c) => vec![c as f32; count],
        };
        params.insert(name, Tensor::from_vec(values, shape, &Device::Cpu)?);
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::open_clip::resolve_config;

    #[test]
    fn fresh_models_build_and_have_open_clip_statistics() {
        let (config, _) = resolve_config(
            r#"{"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
                "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}}"#,
        )
        .unwrap();
        let params = fresh_params(&config, 0).unwrap();
        let model =
            crate::model::ClipModel::from_params(&config, &params, crate::kernels::Precision::F32)
                .unwrap();
        assert!((model.logit_scale() - 1.0 / 0.07).abs() < 1e-3);
        let std = |name: &str| {
            let v = params
                .get(name)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let n = v.len() as f64;
            let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
            (v.iter()
                .map(|&x| (f64::from(x) - mean).powi(2))
                .sum::<f64>()
                / n)
                .sqrt()
        };
        assert!((std("text_model.embeddings.token_embedding.weight") - 0.02).abs() < 0.001);
        assert!(
            (std("text_model.encoder.layers.0.self_attn.q_proj.weight") - 32f64.powf(-0.5)).abs()
                < 0.02
        );
        assert_eq!(std("vision_model.pre_layrnorm.weight"), 0.0);
        assert_ne!(
            params
                .get("text_model.encoder.layers.0.mlp.fc1.weight")
                .unwrap()
                .to_vec2::<f32>()
                .unwrap(),
            params
                .get("text_model.encoder.layers.1.mlp.fc1.weight")
                .unwrap()
                .to_vec2::<f32>()
                .unwrap(),
        );
    }
}
