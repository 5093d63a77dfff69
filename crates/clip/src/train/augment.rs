//! open_clip's training augmentation: torchvision's `RandomResizedCrop(size, scale=(0.9, 1.0),
//! ratio=(3/4, 4/3), interpolation=BICUBIC)` on the decoded image, then RGB, `ToTensor` and `Normalize`. The
//! crop box is drawn by torchvision's `get_params` rule (ten tries at a random area and aspect ratio, else the
//! largest centred box within the ratio range); the random numbers are this project's own.

use clip_preprocess::{PilImage, PreprocessConfig};

use crate::error::Result;
use crate::train::rng::Rng;

/// open_clip's `AugmentationCfg` defaults.
pub(crate) const SCALE: (f64, f64) = (0.9, 1.0);
pub(crate) const RATIO: (f64, f64) = (3.0 / 4.0, 4.0 / 3.0);

/// A crop box: `(left, top, width, height)` in pixels.
pub(crate) type CropBox = (u32, u32, u32, u32);

/// `RandomResizedCrop.get_params(img, scale, ratio)`.
pub(crate) fn crop_box(width: u32, height: u32, rng: &mut Rng) -> CropBox {
    let area = f64::from(width) * f64::from(height);
    let (log_lo, log_hi) = (RATIO.0.ln(), RATIO.1.ln());
    for _ in 0..10 {
        let target_area = area * rng.range(SCALE.0, SCALE.1);
        let aspect = rng.range(log_lo, log_hi).exp();
        // Python's round(): halves to even.
        let w = (target_area * aspect).sqrt().round_ties_even();
        let h = (target_area / aspect).sqrt().round_ties_even();
        if w > 0.0 && h > 0.0 && w <= f64::from(width) && h <= f64::from(height) {
            let (w, h) = (w as u32, h as u32);
            let top = rng.below(u64::from(height - h) + 1) as u32;
            let left = rng.below(u64::from(width - w) + 1) as u32;
            return (left, top, w, h);
        }
    }
    let in_ratio = f64::from(width) / f64::from(height);
    let (w, h) = if in_ratio < RATIO.0 {
        (width, (f64::from(width) / RATIO.0).round_ties_even() as u32)
    } else if in_ratio > RATIO.1 {
        (
            (f64::from(height) * RATIO.1).round_ties_even() as u32,
            height,
        )
    } else {
        (width, height)
    };
    ((width - w) / 2, (height - h) / 2, w, h)
}

/// The training transform of one image: a random resized crop, RGB, normalised CHW floats.
pub(crate) fn augment(
    image: &PilImage,
    config: &PreprocessConfig,
    rng: &mut Rng,
) -> Result<Vec<f32>> {
    config.validate()?;
    let (left, top, w, h) = crop_box(image.width(), image.height(), rng);
    let rgb = clip_preprocess::crop_resize_rgb(image, left, top, w, h, config.size)?;
    Ok(clip_preprocess::normalize(&rgb, config.mean, config.std))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::rng::Stream;

    #[test]
    fn boxes_lie_inside_and_cover_most_of_the_image() {
        for (w, h) in [(640, 480), (32, 32), (1, 1), (1000, 10), (10, 1000), (3, 7)] {
            for i in 0..200 {
                let mut rng = Rng::new(3, Stream::Augment, &[i]);
                let (l, t, bw, bh) = crop_box(w, h, &mut rng);
                assert!(
                    bw > 0 && bh > 0 && l + bw <= w && t + bh <= h,
                    "{w}x{h}: {l} {t} {bw} {bh}"
                );
                let ratio = f64::from(bw) / f64::from(bh);
                if w >= 32 && h >= 32 && ratio > 0.7 && ratio < 1.4 {
                    let share = f64::from(bw * bh) / f64::from(w * h);
                    assert!(share > 0.85, "{w}x{h}: area share {share}");
                }
            }
        }
        // An extreme aspect falls back to the largest centred box within 3:4 .. 4:3.
        let mut rng = Rng::new(0, Stream::Augment, &[]);
        assert_eq!(crop_box(1000, 10, &mut rng), (493, 0, 13, 10));
    }
}
