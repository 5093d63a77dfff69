//! Single-threaded throughput of `Tokenizer::encode` (cleaning + split + BPE), in tokens per
//! second, on a deterministic mix of captions. Run with
//! `cargo run --release -p clip-tokenizer --example bench`.

use std::time::Instant;

use clip_tokenizer::Tokenizer;

const WORDS: &[&str] = &[
    "a",
    "photo",
    "of",
    "the",
    "dog",
    "cat",
    "sitting",
    "on",
    "red",
    "couch",
    "in",
    "living",
    "room",
    "beautiful",
    "sunset",
    "over",
    "mountains",
    "with",
    "dramatic",
    "clouds",
    "and",
    "reflection",
    "lake",
    "portrait",
    "young",
    "woman",
    "wearing",
    "vintage",
    "hat",
    "street",
    "photography",
    "Tokyo",
    "night",
    "neon",
    "lights",
    "rain",
    "4k",
    "HDR",
    "detailed",
    "illustration",
    "by",
    "artstation",
    "it's",
    "café",
    "naïve",
    "São",
    "Paulo",
    "2024",
    "#1",
    "100%",
    "—",
    "“quoted”",
];

fn captions(n: usize) -> Vec<String> {
    // A small linear congruential generator keeps the workload fixed without dependencies.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as usize
    };
    (0..n)
        .map(|_| {
            let len = 4 + next() % 16;
            let words: Vec<&str> = (0..len).map(|_| WORDS[next() % WORDS.len()]).collect();
            let mut s = words.join(" ");
            s.push('.');
            s
        })
        .collect()
}

fn main() {
    let start = Instant::now();
    let tok = Tokenizer::openai();
    println!("load: {:.1} ms", start.elapsed().as_secs_f64() * 1e3);
    let start = Instant::now();
    let _ = tok.encode("cafÃ© naïve");
    println!(
        "first mojibake text (builds ftfy's regexes): {:.1} ms",
        start.elapsed().as_secs_f64() * 1e3
    );
    let texts = captions(100_000);
    for round in 0..3 {
        let start = Instant::now();
        let tokens: usize = texts.iter().map(|t| tok.encode(t).len()).sum();
        let secs = start.elapsed().as_secs_f64();
        println!(
            "round {round}: {} texts, {tokens} tokens in {:.3} s: {:.2} M tokens/s",
            texts.len(),
            secs,
            tokens as f64 / secs / 1e6
        );
    }
}
