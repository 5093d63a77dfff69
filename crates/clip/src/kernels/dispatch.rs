//! The kernel level of this process, chosen once from the CPU's features: AVX-512 (with AVX512-BF16 and VNNI
//! where present), AVX2 with FMA, or the portable loops. Every kernel with a SIMD path consults this one choice,
//! so a process never mixes levels and `clip bench` can name the kernels that ran.
//!
//! `CLIP_KERNELS=portable|avx2|avx512` (or `auto`) forces a lower level than the CPU has, so that each level can
//! be tested and benchmarked on one machine. A level the CPU lacks is never used: the request is clamped to the
//! CPU's best level, with a message on stderr.

use std::sync::OnceLock;

/// The environment variable that lowers the level.
pub const ENV: &str = "CLIP_KERNELS";

/// A family of kernels, lowest first (so `level >= Level::Avx2` reads "has at least AVX2").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Plain Rust loops, for any CPU.
    Portable,
    /// AVX2 and FMA: 16 registers of 8 f32 lanes (AMD Zen 2/3, Intel client cores).
    Avx2,
    /// AVX-512 F, BW and VL: 32 registers of 16 f32 lanes.
    Avx512,
}

impl Level {
    /// Every level, lowest first.
    #[cfg(test)]
    pub const ALL: [Level; 3] = [Level::Portable, Level::Avx2, Level::Avx512];

    /// Every level this CPU can run, lowest first, whatever `CLIP_KERNELS` says (the kernels' tests run each).
    #[cfg(test)]
    pub fn runnable() -> Vec<Level> {
        let best = Features::detect().level();
        Self::ALL.into_iter().filter(|&l| l <= best).collect()
    }

    /// The name `CLIP_KERNELS` takes.
    pub fn name(self) -> &'static str {
        match self {
            Level::Portable => "portable",
            Level::Avx2 => "avx2",
            Level::Avx512 => "avx512",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "portable" | "scalar" => Some(Level::Portable),
            "avx2" | "avx2_fma" => Some(Level::Avx2),
            "avx512" | "avx-512" | "avx512f" => Some(Level::Avx512),
            _ => None,
        }
    }
}

/// The CPU features the kernels are written for. A field is true only where the CPU has the extension (so the
/// `#[target_feature]` kernels it enables are safe to call) and the chosen level allows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Features {
    /// AVX2 and FMA.
    pub(crate) avx2_fma: bool,
    /// AVX-512 F, BW and VL, with AVX2 and FMA.
    pub(crate) avx512: bool,
    /// AVX512-BF16 (`vdpbf16ps`), with `avx512`.
    pub(crate) avx512_bf16: bool,
    /// AVX512-VNNI (`vpdpbusd`), with `avx512`.
    pub(crate) avx512_vnni: bool,
}

impl Features {
    /// What this CPU has.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            let avx2_fma = has!("avx2") && has!("fma");
            let avx512 = avx2_fma && has!("avx512f") && has!("avx512bw") && has!("avx512vl");
            Self {
                avx2_fma,
                avx512,
                avx512_bf16: avx512 && has!("avx512bf16"),
                avx512_vnni: avx512 && has!("avx512vnni"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            Self::default()
        }
    }

    /// The highest level these features allow.
    pub fn level(self) -> Level {
        if self.avx512 {
            Level::Avx512
        } else if self.avx2_fma {
            Level::Avx2
        } else {
            Level::Portable
        }
    }

    /// These features with everything above `level` switched off.
    pub fn up_to(self, level: Level) -> Self {
        let avx512 = self.avx512 && level >= Level::Avx512;
        Self {
            avx2_fma: self.avx2_fma && level >= Level::Avx2,
            avx512,
            avx512_bf16: self.avx512_bf16 && avx512,
            avx512_vnni: self.avx512_vnni && avx512,
        }
    }
}

/// The features to run with, for the `CLIP_KERNELS` value `request` (None: not set) on a CPU with `detected`,
/// and a message for the user when the request cannot be honoured as written. A pure function, so the override is
/// testable without touching the environment.
pub fn choose(request: Option<&str>, detected: Features) -> (Features, Option<String>) {
    let best = detected.level();
    let request = match request.map(str::trim) {
        None | Some("") => return (detected, None),
        Some(r) if r.eq_ignore_ascii_case("auto") => return (detected, None),
        Some(r) => r,
    };
    match Level::parse(request) {
        Some(level) if level <= best => (detected.up_to(level), None),
        // Never above the CPU: its instructions would fault.
        Some(level) => (
            detected,
            Some(format!(
                "{ENV}={request} asks for {} kernels, which this CPU cannot run; using {}",
                level.name(),
                best.name()
            )),
        ),
        None => (
            detected,
            Some(format!(
                "{ENV}={request} is not a kernel level (expected portable, avx2, avx512 or auto); using {}",
                best.name()
            )),
        ),
    }
}

/// The features this process runs with: detected, lowered by `CLIP_KERNELS`, fixed on the first call.
pub fn chosen() -> Features {
    static CHOSEN: OnceLock<Features> = OnceLock::new();
    *CHOSEN.get_or_init(|| {
        let request = std::env::var(ENV).ok();
        let (features, note) = choose(request.as_deref(), Features::detect());
        if let Some(note) = note {
            // Kernels cannot fail, and a silently ignored override would mislabel a benchmark.
            eprintln!("clip: {note}");
        }
        features
    })
}

/// The level this process runs at.
pub fn level() -> Level {
    chosen().level()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: Features = Features {
        avx2_fma: true,
        avx512: true,
        avx512_bf16: true,
        avx512_vnni: true,
    };
    const AVX2_ONLY: Features = Features {
        avx2_fma: true,
        avx512: false,
        avx512_bf16: false,
        avx512_vnni: false,
    };

    #[test]
    fn unset_or_auto_keeps_every_detected_feature() {
        for request in [None, Some(""), Some("auto"), Some(" AUTO ")] {
            assert_eq!(choose(request, ALL), (ALL, None), "{request:?}");
            assert_eq!(choose(request, AVX2_ONLY), (AVX2_ONLY, None), "{request:?}");
        }
    }

    #[test]
    fn a_lower_level_switches_off_everything_above_it() {
        let (f, note) = choose(Some("avx2"), ALL);
        assert_eq!((f, note), (AVX2_ONLY, None));
        assert_eq!(f.level(), Level::Avx2);
        let (f, note) = choose(Some("Portable"), ALL);
        assert_eq!((f, note), (Features::default(), None));
        assert_eq!(f.level(), Level::Portable);
        // The level the CPU has keeps its sub-features.
        assert_eq!(choose(Some("avx512"), ALL), (ALL, None));
        assert_eq!(choose(Some("avx2"), AVX2_ONLY), (AVX2_ONLY, None));
    }

    #[test]
    fn a_higher_level_is_clamped_with_a_message() {
        let (f, note) = choose(Some("avx512"), AVX2_ONLY);
        assert_eq!(f, AVX2_ONLY);
        let note = note.expect("a message");
        assert!(
            note.contains("avx512") && note.contains("using avx2"),
            "{note}"
        );
        let (f, note) = choose(Some("avx2"), Features::default());
        assert_eq!(f, Features::default());
        assert!(note.expect("a message").contains("using portable"));
    }

    #[test]
    fn an_unknown_value_keeps_the_detected_level_with_a_message() {
        let (f, note) = choose(Some("amx"), ALL);
        assert_eq!(f, ALL);
        assert!(note.expect("a message").contains("not a kernel level"));
    }

    #[test]
    fn features_are_consistent_with_their_level() {
        let detected = Features::detect();
        for level in Level::ALL {
            let f = detected.up_to(level);
            assert!(f.level() <= level && f.level() <= detected.level());
            assert!(!f.avx512 || f.avx2_fma);
            assert!(!(f.avx512_bf16 || f.avx512_vnni) || f.avx512);
        }
        assert!(chosen().level() <= detected.level());
    }
}
