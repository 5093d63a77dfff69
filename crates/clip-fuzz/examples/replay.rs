//! Runs one fuzz target on given files and reports the time each took and whether it panicked: how a
//! libFuzzer artifact (`fuzz/artifacts/<target>/...`) is reproduced on an ordinary release build.
//!     cargo run --release -p clip-fuzz --example replay -- <target> <file>...

use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(name) = args.next() else {
        eprintln!("usage: replay <target> <file>...");
        std::process::exit(2);
    };
    let Some(target) = clip_fuzz::target(&name) else {
        eprintln!("unknown target {name}");
        std::process::exit(2);
    };
    clip_fuzz::cap_memory(4 << 30);
    let mut failed = false;
    for file in args {
        let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{file}: {e}"));
        let start = Instant::now();
        let outcome = std::panic::catch_unwind(|| (target.run)(&bytes));
        let verdict = if outcome.is_ok() { "ok" } else { "PANIC" };
        failed |= outcome.is_err();
        println!(
            "{file}: {} bytes, {:.3} s, {verdict}",
            bytes.len(),
            start.elapsed().as_secs_f64()
        );
    }
    std::process::exit(i32::from(failed));
}
