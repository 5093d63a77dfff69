//! Parity with the reference pipeline on every fixture image (fixtures/images, made by
//! scripts/fixtures/gen_images.py with Pillow 13.0.0 + torchvision 0.29.2 + clip-anytorch 2.6.0):
//! decoded pixels equal Pillow's (`Image.open`: mode, size, sha256 of the pixels, palette), the uint8 image
//! after Resize(n, BICUBIC) -> CenterCrop(n) -> convert("RGB") equals clip's byte for byte, and the
//! normalised tensor of `clip.clip._transform(n)` matches within 1e-6.

use std::path::{Path, PathBuf};

use clip_preprocess::{open, preprocess_image, resize_crop_rgb, PixelData, PreprocessConfig};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/images")
}

fn manifest() -> Vec<Value> {
    let text = std::fs::read_to_string(fixtures().join("manifest.json")).expect("manifest.json");
    serde_json::from_str::<Value>(&text)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// Reads an 8-bit RGB PNG reference (written by Pillow).
fn read_png_rgb(path: &Path) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::Cursor::new(std::fs::read(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb, "{}", path.display());
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

/// Reads a little-endian float32 C-order .npy file.
fn read_npy_f32(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(
        header.contains("'descr': '<f4'") && header.contains("'fortran_order': False"),
        "{header}"
    );
    let shape_str = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    let shape: Vec<usize> = shape_str
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let data = bytes[10 + header_len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (shape, data)
}

fn pixel_bytes(p: &PixelData) -> Vec<u8> {
    match p {
        PixelData::U8(v) => v.clone(),
        PixelData::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        PixelData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn decode_matches_pillow() {
    let mut failures = Vec::new();
    let cases = manifest();
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let path = fixtures()
            .join("inputs")
            .join(case["file"].as_str().unwrap());
        let image = match open(&path) {
            Ok(im) => im,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        let mode = case["mode"].as_str().unwrap();
        let (w, h) = (
            case["width"].as_u64().unwrap() as u32,
            case["height"].as_u64().unwrap() as u32,
        );
        if image.mode().name() != mode || image.width() != w || image.height() != h {
            failures.push(format!(
                "{name}: got {} {}x{}, Pillow {mode} {w}x{h}",
                image.mode(),
                image.width(),
                image.height()
            ));
            continue;
        }
        let digest = hex(&Sha256::digest(pixel_bytes(image.pixels())));
        if digest != case["pixels_sha256"].as_str().unwrap() {
            failures.push(format!("{name}: decoded pixels differ from Pillow's"));
        }
        if let Some(pal) = case.get("palette") {
            let expected: Vec<u8> = pal
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u8)
                .collect();
            let ours: Vec<u8> = image.palette().unwrap().iter().flatten().copied().collect();
            if ours != expected {
                failures.push(format!("{name}: palette differs"));
            }
        }
    }
    println!(
        "decoded {} fixture images: {} mismatches",
        cases.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn resize_crop_rgb_matches_clip_transform() {
    let mut failures = Vec::new();
    let (mut crops, mut bytes_total, mut bytes_diff) = (0usize, 0usize, 0usize);
    for case in manifest() {
        let name = case["name"].as_str().unwrap();
        let image = open(
            &fixtures()
                .join("inputs")
                .join(case["file"].as_str().unwrap()),
        )
        .unwrap();
        for n in case["sizes"].as_array().unwrap() {
            let n = n.as_u64().unwrap() as u32;
            let (rw, rh, reference) =
                read_png_rgb(&fixtures().join("refs").join(format!("{name}_n{n}.png")));
            assert_eq!((rw, rh), (n, n));
            let ours = resize_crop_rgb(&image, n).unwrap();
            assert_eq!((ours.width, ours.height), (n, n));
            let diff = ours
                .data
                .iter()
                .zip(&reference)
                .filter(|(a, b)| a != b)
                .count();
            crops += 1;
            bytes_total += reference.len();
            bytes_diff += diff;
            if diff > 0 {
                let max = ours
                    .data
                    .iter()
                    .zip(&reference)
                    .map(|(a, b)| (i32::from(*a) - i32::from(*b)).abs())
                    .max()
                    .unwrap();
                failures.push(format!(
                    "{name} n={n}: {diff} of {} bytes differ (max {max})",
                    reference.len()
                ));
            }
        }
    }
    println!("{crops} crops, {bytes_total} bytes compared, {bytes_diff} differ");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn normalized_tensor_matches_clip_transform() {
    let mut tensors = 0;
    let mut max_diff = 0.0f32;
    for case in manifest() {
        let name = case["name"].as_str().unwrap();
        let image = open(
            &fixtures()
                .join("inputs")
                .join(case["file"].as_str().unwrap()),
        )
        .unwrap();
        for n in case["normalized"].as_array().unwrap() {
            let n = n.as_u64().unwrap() as u32;
            let (shape, reference) =
                read_npy_f32(&fixtures().join("refs").join(format!("{name}_n{n}.npy")));
            assert_eq!(shape, vec![3, n as usize, n as usize]);
            let config = PreprocessConfig {
                size: n,
                ..PreprocessConfig::default()
            };
            let ours = preprocess_image(&image, &config).unwrap();
            assert_eq!(ours.len(), reference.len());
            let diff = ours
                .iter()
                .zip(&reference)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(diff <= 1e-6, "{name} n={n}: max |diff| {diff}");
            max_diff = max_diff.max(diff);
            tensors += 1;
        }
    }
    println!("{tensors} normalised tensors, max |diff| {max_diff:e}");
    assert!(tensors > 0);
}
