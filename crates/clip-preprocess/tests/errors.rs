//! Bad input gives a clear one-line error naming the file, never a panic: missing, empty and
//! unrecognised files, truncations of every fixture (an error wherever Pillow refuses the same cut),
//! corrupted bytes, random data behind each format's magic, and decompression bombs.

use std::path::{Path, PathBuf};

use clip_preprocess::{decode, open, preprocess_path, PreprocessConfig, PreprocessError};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/images")
}

fn manifest() -> Vec<Value> {
    let text = std::fs::read_to_string(fixtures().join("manifest.json")).unwrap();
    serde_json::from_str::<Value>(&text)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("clip-preprocess-errors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// xorshift64*: deterministic bytes without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn missing_file_is_an_io_error_naming_the_path() {
    let path = Path::new("photos/does-not-exist.jpg");
    let err = open(path).unwrap_err();
    assert!(matches!(err, PreprocessError::File(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with("cannot read image photos/does-not-exist.jpg: "),
        "{msg}"
    );
    assert!(!msg.contains('\n'));
}

#[test]
fn empty_and_unrecognised_files_are_errors() {
    let empty = scratch("empty.jpg");
    std::fs::write(&empty, b"").unwrap();
    let err = open(&empty).unwrap_err();
    assert!(matches!(err, PreprocessError::Empty { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("cannot decode image {}: the file is empty", empty.display())
    );

    let text = scratch("notes.png");
    std::fs::write(&text, b"this is not an image at all\n").unwrap();
    let err = open(&text).unwrap_err();
    assert!(
        matches!(err, PreprocessError::UnsupportedFormat { .. }),
        "{err:?}"
    );
    assert!(err
        .to_string()
        .starts_with(&format!("cannot decode image {}: ", text.display())));

    // Formats Pillow reads but this crate does not (e.g. ICO / JPEG 2000) are refused, not misread.
    for bytes in [
        &b"\x00\x00\x01\x00\x01\x00\x10\x10"[..],
        &b"\x00\x00\x00\x0cjP  \r\n\x87\n"[..],
        &b"\xFF\xD8"[..],
    ] {
        assert!(matches!(
            decode(bytes),
            Err(PreprocessError::UnsupportedFormat { .. })
        ));
    }
    let err = preprocess_path(&text, &PreprocessConfig::default()).unwrap_err();
    assert!(err.to_string().contains("notes.png"));
}

#[test]
fn truncated_fixtures_are_errors_where_pillow_refuses_them() {
    let (mut cuts, mut refused) = (0, 0);
    for case in manifest() {
        let name = case["name"].as_str().unwrap();
        let bytes = std::fs::read(
            fixtures()
                .join("inputs")
                .join(case["file"].as_str().unwrap()),
        )
        .unwrap();
        for cut in case["truncated_fails"].as_array().unwrap() {
            let (len, pillow_fails) =
                (cut[0].as_u64().unwrap() as usize, cut[1].as_bool().unwrap());
            let result = decode(&bytes[..len]);
            cuts += 1;
            if pillow_fails {
                refused += 1;
                let err = result
                    .err()
                    .unwrap_or_else(|| panic!("{name} cut at {len} decoded, Pillow refuses it"));
                assert!(!err.to_string().contains('\n'));
            }
        }
        // Other cuts: an error or an image, never a panic.
        for len in [1, 2, 8, 16, 33, bytes.len().saturating_sub(1)] {
            let _ = decode(&bytes[..len.min(bytes.len())]);
        }
    }
    println!("{cuts} truncations checked, {refused} refused by Pillow and by us");
}

#[test]
fn corrupted_fixtures_never_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut decoded = 0;
    let mut total = 0;
    for case in manifest() {
        let bytes = std::fs::read(
            fixtures()
                .join("inputs")
                .join(case["file"].as_str().unwrap()),
        )
        .unwrap();
        for round in 0..6 {
            let mut b = bytes.clone();
            // Flip a few bytes anywhere after the magic (headers included).
            for _ in 0..(1 + round * 3) {
                let i = 8 + (rng.next() as usize) % (b.len().saturating_sub(8).max(1));
                if i < b.len() {
                    b[i] ^= (rng.next() as u8) | 1;
                }
            }
            total += 1;
            if let Ok(image) = decode(&b) {
                decoded += 1;
                // Whatever decodes must also preprocess without panicking.
                let _ = clip_preprocess::resize_crop_rgb(&image, 8);
            }
        }
    }
    println!(
        "{total} corrupted files: {decoded} still decodable, {} errors",
        total - decoded
    );
}

#[test]
fn random_bytes_behind_each_magic_are_errors() {
    let mut rng = Rng(42);
    let magics: [&[u8]; 8] = [
        b"\xFF\xD8\xFF",
        b"\x89PNG\r\n\x1a\n",
        b"GIF89a",
        b"RIFF\x00\x10\x00\x00WEBPVP8 ",
        b"RIFF\x00\x10\x00\x00WEBPVP8L",
        b"BM",
        b"II*\0",
        b"MM\0*",
    ];
    for magic in magics {
        for len in [0usize, 1, 7, 30, 100, 1000, 5000] {
            for _ in 0..20 {
                let mut data = magic.to_vec();
                data.extend(rng.bytes(len));
                if let Ok(im) = decode(&data) {
                    // Random data may by chance form a tiny valid image; it must still be consistent.
                    assert!(im.width() > 0 && im.height() > 0);
                }
            }
        }
    }
}

fn assert_too_large(bytes: &[u8], what: &str) {
    match decode(bytes) {
        Err(PreprocessError::TooLarge { pixels, .. }) => {
            assert!(pixels > clip_preprocess::PIXEL_LIMIT, "{what}")
        }
        other => panic!("{what}: expected a decompression-bomb error, got {other:?}"),
    }
}

fn png_chunk(kind: &[u8], data: &[u8]) -> Vec<u8> {
    // The CRC is not checked before the size is (IHDR is read first); a zero CRC is enough here.
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc32(kind, data).to_be_bytes());
    out
}

fn crc32(kind: &[u8], data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in kind.iter().chain(data) {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn decompression_bombs_are_refused_before_decoding() {
    // PNG 100000 x 100000 RGB.
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(png_chunk(b"IHDR", &ihdr));
    png.extend(png_chunk(
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    ));
    png.extend(png_chunk(b"IEND", &[]));
    assert_too_large(&png, "PNG");

    // JPEG SOF0 65000 x 65000, 3 components.
    let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xDB, 0x00, 0x43, 0x00];
    jpeg.extend([1u8; 64]);
    jpeg.extend([0xFF, 0xC0, 0x00, 0x11, 0x08, 0xFD, 0xE8, 0xFD, 0xE8, 0x03]);
    jpeg.extend([1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0]);
    jpeg.extend([
        0xFF, 0xC4, 0x00, 0x14, 0x00, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    jpeg.extend([
        0xFF, 0xDA, 0x00, 0x0C, 0x03, 1, 0, 2, 0, 3, 0, 0, 63, 0, 0, 0, 0xFF, 0xD9,
    ]);
    assert_too_large(&jpeg, "JPEG");

    // GIF logical screen 65535 x 65535.
    let mut gif = b"GIF89a\xFF\xFF\xFF\xFF\x80\x00\x00".to_vec();
    gif.extend([0, 0, 0, 255, 255, 255]);
    gif.extend(b",\x00\x00\x00\x00\xFF\xFF\xFF\xFF\x00\x02\x02\x4C\x01\x00;");
    assert_too_large(&gif, "GIF");

    // BMP 100000 x 100000 x 24-bit with no pixel data.
    let mut bmp = b"BM".to_vec();
    bmp.extend(0u32.to_le_bytes());
    bmp.extend(0u32.to_le_bytes());
    bmp.extend(54u32.to_le_bytes());
    bmp.extend(40u32.to_le_bytes());
    bmp.extend(100_000i32.to_le_bytes());
    bmp.extend(100_000i32.to_le_bytes());
    bmp.extend(1u16.to_le_bytes());
    bmp.extend(24u16.to_le_bytes());
    bmp.extend([0u8; 24]);
    assert_too_large(&bmp, "BMP");

    // WebP lossless 16384 x 16384.
    let bits: u32 = 16383 | (16383 << 14);
    let mut vp8l = vec![0x2F];
    vp8l.extend(bits.to_le_bytes());
    vp8l.extend([0u8; 8]);
    let mut webp = b"RIFF".to_vec();
    webp.extend(((4 + 8 + vp8l.len()) as u32).to_le_bytes());
    webp.extend(b"WEBPVP8L");
    webp.extend((vp8l.len() as u32).to_le_bytes());
    webp.extend(vp8l);
    assert_too_large(&webp, "WebP");

    // TIFF 100000 x 100000 grey.
    let mut tiff = b"II*\0\x08\0\0\0".to_vec();
    let entries: [(u16, u16, u32, u32); 6] = [
        (256, 4, 1, 100_000),
        (257, 4, 1, 100_000),
        (258, 3, 1, 8),
        (262, 3, 1, 1),
        (273, 4, 1, 0),
        (279, 4, 1, 0),
    ];
    tiff.extend((entries.len() as u16).to_le_bytes());
    for (tag, kind, count, value) in entries {
        tiff.extend(tag.to_le_bytes());
        tiff.extend(kind.to_le_bytes());
        tiff.extend(count.to_le_bytes());
        tiff.extend(value.to_le_bytes());
    }
    tiff.extend(0u32.to_le_bytes());
    assert_too_large(&tiff, "TIFF");

    let msg = decode(&png).unwrap_err().to_string();
    assert!(
        msg.contains("decompression bomb") && msg.contains("100000x100000"),
        "{msg}"
    );
}
