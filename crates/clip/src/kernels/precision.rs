//! The arithmetic of the linear layers, chosen once when weights are opened: each precision is a packed weight
//! format with its own GEMM kernel.

/// The arithmetic a model computes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// Full f32, as the reference implementations compute.
    #[default]
    F32,
    /// bf16 weights and activations in the linear layers, f32 accumulation and everything else f32.
    Bf16,
    /// int8 weights (per output channel) and dynamically quantised u8 activations (per row) in the linear
    /// layers, i32 accumulation and everything else f32.
    Int8,
}

impl Precision {
    /// What `--dtype auto` means: the fastest precision whose embeddings stay within their cosine bar (bf16
    /// >= 0.9995, int8 >= 0.995 to f32; `tests/precision.rs`) on the kernels this process runs.
    pub fn fastest() -> Self {
        Self::fastest_for(super::dispatch::chosen())
    }

    /// [`Self::fastest`] for a given set of kernel features. Measured with `clip bench` on ViT-B/32 at every
    /// level (BENCHMARKS.md, "--dtype auto"): int8 is the fastest on each — VNNI's `vpdpbusd`, AVX2's exact
    /// `vpmaddwd` and even the portable integer loop out-run their f32 kernels, and bf16 without a native dot
    /// product (AVX2) or beside VNNI (AVX512-BF16 issues at half the FMA rate) never wins. A CPU whose bf16 kernel
    /// out-runs its int8 one (AMX-BF16 without AMX-INT8, none known) would get a row here.
    pub fn fastest_for(_features: super::dispatch::Features) -> Self {
        Self::Int8
    }

    /// A `--dtype` value: a precision by name, or `auto` for [`Self::fastest`].
    pub fn parse_or_auto(s: &str) -> std::result::Result<Self, String> {
        if s.trim().eq_ignore_ascii_case("auto") {
            Ok(Self::fastest())
        } else {
            s.parse().map_err(|e: String| format!("{e} (or auto)"))
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(Self::F32),
            "bf16" | "bfloat16" => Ok(Self::Bf16),
            "int8" | "i8" | "qint8" => Ok(Self::Int8),
            other => Err(format!(
                "unknown dtype {other:?}: expected f32, bf16 or int8"
            )),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
            Self::Int8 => "int8",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::dispatch::{Features, Level};

    #[test]
    fn auto_is_a_precision_within_its_bar_on_every_level() {
        let detected = Features::detect();
        for level in [Level::Portable, Level::Avx2, Level::Avx512] {
            // The measured table: int8 is the fastest on every level this project has kernels for.
            assert_eq!(
                Precision::fastest_for(detected.up_to(level)),
                Precision::Int8,
                "{level:?}"
            );
        }
        assert_eq!(Precision::parse_or_auto(" AUTO "), Ok(Precision::fastest()));
        assert_eq!(Precision::parse_or_auto("bf16"), Ok(Precision::Bf16));
        let error = Precision::parse_or_auto("f16").unwrap_err();
        assert!(
            error.contains("f32, bf16 or int8") && error.contains("auto"),
            "{error}"
        );
    }
}
