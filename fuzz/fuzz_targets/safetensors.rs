#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| (clip_fuzz::target("safetensors").expect("target").run)(data));
