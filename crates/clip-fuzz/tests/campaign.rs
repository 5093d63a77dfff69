//! CI's slice of the fuzz suite: every target on its committed corpus (which holds the hostile-input campaign's
//! reproducers) and a bounded number of mutations of it, in a process capped at 4 GiB of address space, so
//! that an unbounded allocation is a failure here and not an OOM kill of the machine.

use std::time::Duration;

use clip_fuzz::{campaign, cap_memory, TARGETS};

const MEMORY_CAP: u64 = 4 << 30;

/// Mutated inputs per target (the seeds come on top), and a time budget per target.
fn runs() -> usize {
    std::env::var("CLIP_FUZZ_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

fn budget() -> Duration {
    Duration::from_secs(
        std::env::var("CLIP_FUZZ_SECONDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(15),
    )
}

fn run(name: &str) {
    cap_memory(MEMORY_CAP);
    let target = clip_fuzz::target(name).expect("a known target");
    let report = campaign(target, 0x5eed_0000 ^ name.len() as u64, runs(), budget());
    println!(
        "{name}: {} seeds, {} mutated inputs",
        report.seeds, report.runs
    );
    assert!(report.seeds > 0);
}

#[test]
fn every_target_has_a_test_and_a_corpus() {
    let here = include_str!("campaign.rs");
    for t in TARGETS {
        assert!(
            here.contains(&format!("fn {}()", t.name)),
            "no test for {}",
            t.name
        );
        assert!(
            !clip_fuzz::files_in(&clip_fuzz::corpus_dir(t.name)).is_empty(),
            "no corpus for {}",
            t.name
        );
    }
}

#[test]
fn image() {
    run("image");
}

#[test]
fn tokenizer() {
    run("tokenizer");
}

#[test]
fn vocabulary() {
    run("vocabulary");
}

#[test]
fn safetensors() {
    run("safetensors");
}

#[test]
fn pytorch() {
    run("pytorch");
}

#[test]
fn pickle() {
    run("pickle");
}

#[test]
fn config() {
    run("config");
}

#[test]
fn npy() {
    run("npy");
}

#[test]
fn classifier() {
    run("classifier");
}
