//! The preprocessing parameters and their validation: a size, mean or std that would allocate without bound
//! or give non-finite pixels is refused before any image is touched.

use crate::error::PreprocessError;

/// The largest crop size accepted (pixels per side). CLIP models use 224 to 448, SigLIP-style ones up to 512;
/// one 4096 x 4096 image is already 201 MB of float32.
pub const MAX_SIZE: u32 = 4096;

/// CLIP preprocessing parameters: crop size and per-channel mean / std (RGB order).
#[derive(Clone, Debug, PartialEq)]
pub struct PreprocessConfig {
    pub size: u32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

/// OpenAI's normalisation constants, as torch turns the Python floats into float32 (double -> float).
pub const OPENAI_MEAN: [f32; 3] = [
    0.48145466_f64 as f32,
    0.4578275_f64 as f32,
    0.40821073_f64 as f32,
];
pub const OPENAI_STD: [f32; 3] = [
    0.26862954_f64 as f32,
    0.26130258_f64 as f32,
    0.27577711_f64 as f32,
];

impl Default for PreprocessConfig {
    /// 224 pixels with OpenAI's mean and std.
    fn default() -> Self {
        PreprocessConfig {
            size: 224,
            mean: OPENAI_MEAN,
            std: OPENAI_STD,
        }
    }
}

impl PreprocessConfig {
    /// Checks that the size is within 1..=[`MAX_SIZE`] and that every normalised value `(x - mean) / std`
    /// for x in [0, 1] is finite (mean finite, std positive and not so small that the quotient overflows).
    pub fn validate(&self) -> Result<(), PreprocessError> {
        check_size(self.size)?;
        for c in 0..3 {
            let (mean, std) = (self.mean[c], self.std[c]);
            let bad = |what: &str| {
                Err(PreprocessError::InvalidArgument(format!(
                    "{what} (channel {c}: mean {mean:e}, std {std:e})"
                )))
            };
            if !mean.is_finite() {
                return bad("the mean must be a finite number");
            }
            if !(std.is_finite() && std > 0.0) {
                return bad("the std must be a positive finite number");
            }
            // The extremes of (x - mean) / std over x in [0, 1], computed as `normalize` computes them.
            if !((0.0 - mean) / std).is_finite() || !((1.0 - mean) / std).is_finite() {
                return bad("the std is so small that normalised pixels overflow float32");
            }
        }
        Ok(())
    }
}

/// A crop size within 1..=[`MAX_SIZE`].
pub(crate) fn check_size(size: u32) -> Result<(), PreprocessError> {
    if size == 0 || size > MAX_SIZE {
        return Err(PreprocessError::InvalidArgument(format!(
            "image size {size} is out of range: it must be between 1 and {MAX_SIZE} pixels"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_defaults_are_valid() {
        assert!(PreprocessConfig::default().validate().is_ok());
    }

    #[test]
    fn sizes_and_normalisation_out_of_range_are_refused() {
        let with = |size, mean, std| PreprocessConfig { size, mean, std }.validate();
        let err = with(65536, OPENAI_MEAN, OPENAI_STD)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "invalid preprocessing argument: image size 65536 is out of range: it must be between 1 and 4096 pixels"
        );
        assert!(with(0, OPENAI_MEAN, OPENAI_STD).is_err());
        assert!(with(MAX_SIZE, OPENAI_MEAN, OPENAI_STD).is_ok());
        let tiny = [1e-45, 0.5, 0.5];
        let err = with(224, OPENAI_MEAN, tiny).unwrap_err().to_string();
        assert!(err.contains("overflow float32"), "{err}");
        assert!(with(224, OPENAI_MEAN, [0.5, 0.0, 0.5]).is_err());
        assert!(with(224, OPENAI_MEAN, [0.5, -1.0, 0.5]).is_err());
        assert!(with(224, [f32::NAN, 0.0, 0.0], OPENAI_STD).is_err());
        assert!(with(224, [0.5; 3], [f32::INFINITY, 0.5, 0.5]).is_err());
        // Small but representable: the quotients stay finite.
        assert!(with(224, [0.5; 3], [1e-30, 1e-30, 1e-30]).is_ok());
    }
}
