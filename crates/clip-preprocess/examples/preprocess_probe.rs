//! Times each preprocessing stage over image files on one thread:
//! `cargo run --release -p clip-preprocess --example preprocess_probe -- FILE...`.

use std::time::{Duration, Instant};

fn main() {
    let paths: Vec<std::path::PathBuf> = std::env::args_os().skip(1).map(Into::into).collect();
    if paths.is_empty() {
        eprintln!("usage: preprocess_probe FILE...");
        std::process::exit(2);
    }
    let config = clip_preprocess::PreprocessConfig::default();
    let (mut read, mut decode, mut resize, mut normalize) = (
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
    );
    for path in &paths {
        let t0 = Instant::now();
        let bytes = std::fs::read(path).expect("read");
        let t1 = Instant::now();
        let image = clip_preprocess::decode(&bytes).expect("decode");
        let t2 = Instant::now();
        let rgb = clip_preprocess::resize_crop_rgb(&image, config.size).expect("resize");
        let t3 = Instant::now();
        let tensor = clip_preprocess::normalize(&rgb, config.mean, config.std);
        let t4 = Instant::now();
        std::hint::black_box(tensor);
        read += t1 - t0;
        decode += t2 - t1;
        resize += t3 - t2;
        normalize += t4 - t3;
    }
    let n = paths.len() as f64;
    let ms = |d: Duration| d.as_secs_f64() * 1e3 / n;
    println!(
        "{} images, ms per image: read {:.3}  decode {:.3}  resize+crop+rgb {:.3}  normalize {:.3}  total {:.3}",
        paths.len(),
        ms(read),
        ms(decode),
        ms(resize),
        ms(normalize),
        ms(read + decode + resize + normalize)
    );
}
