//! torchvision's `ToTensor()` + `Normalize(mean, std)` on an RGB uint8 image, in float32 with torch's
//! operation order: `x = v / 255` (a true float32 division), then `(x - mean) / std` (`sub_` then `div_`),
//! HWC bytes to CHW floats.

/// An 8-bit RGB image, row-major HWC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

/// CHW float32, `(x / 255 - mean) / std` per channel.
pub fn normalize(image: &RgbImage, mean: [f32; 3], std: [f32; 3]) -> Vec<f32> {
    let plane = image.width as usize * image.height as usize;
    let mut out = vec![0.0f32; 3 * plane];
    for (i, px) in image.data.chunks_exact(3).take(plane).enumerate() {
        for c in 0..3 {
            let x = f32::from(px[c]) / 255.0;
            out[c * plane + i] = (x - mean[c]) / std[c];
        }
    }
    out
}
