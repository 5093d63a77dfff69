//! Which CPU this is and which kernel each precision runs on. Reported with every benchmark: speed ratios differ
//! between CPU families, and the extensions present (AVX2/FMA, AVX-512, AVX512-BF16, VNNI, AMX) decide which
//! kernels run ([`super::dispatch`] chooses them).

use super::dispatch::{self, Level};
use super::{bf16_gemm, int8_gemm, Precision};

/// The extensions the kernels (or PyTorch's) care about, by their `/proc/cpuinfo` names.
const REPORTED_FLAGS: [&str; 11] = [
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_bf16",
    "avx512_vnni",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
];

/// The CPU's model name and its reported extensions (Linux; "unknown" and none elsewhere).
pub fn describe() -> (String, Vec<String>) {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        info.lines()
            .find(|l| l.split(':').next().map(str::trim) == Some(name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    };
    let model = field("model name").unwrap_or_else(|| "unknown".into());
    let flags = field("flags").unwrap_or_default();
    let present: Vec<&str> = flags.split_whitespace().collect();
    let reported = REPORTED_FLAGS
        .iter()
        .filter(|f| present.contains(f))
        .map(|f| f.to_string())
        .collect();
    (model, reported)
}

/// The kernel `precision`'s matrix products run on in this process (the CPU's best, or what `CLIP_KERNELS`
/// lowered it to).
pub fn gemm_kernel(precision: Precision) -> &'static str {
    let features = dispatch::chosen();
    match precision {
        Precision::F32 => match features.level() {
            Level::Avx512 => "avx512f",
            Level::Avx2 => "avx2_fma",
            Level::Portable => "portable",
        },
        Precision::Bf16 => bf16_gemm::kernel_name(features),
        Precision::Int8 => int8_gemm::kernel_name(features),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_a_kernel_for_every_precision() {
        let (model, flags) = describe();
        assert!(!model.is_empty());
        for flag in &flags {
            assert!(REPORTED_FLAGS.contains(&flag.as_str()));
        }
        for precision in [Precision::F32, Precision::Bf16, Precision::Int8] {
            let kernel = gemm_kernel(precision);
            // A SIMD kernel is reported only where /proc/cpuinfo lists its extensions too.
            let needs: &[&str] = match kernel {
                "portable" => &[],
                "avx2" => &["avx2"],
                "avx2_fma" => &["avx2", "fma"],
                other => &[other][..],
            };
            if !flags.is_empty() {
                for flag in needs {
                    assert!(
                        flags.iter().any(|f| f == flag),
                        "{kernel}: {flag} not in {flags:?}"
                    );
                }
            }
        }
    }
}
