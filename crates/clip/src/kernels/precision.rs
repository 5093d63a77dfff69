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
