//! Run-time CPU feature detection and the choice of SIMD path ("ISA") for the kernels.
//!
//! One binary serves every machine: each kernel family has a scalar version and SIMD versions
//! compiled with `#[target_feature]`, and [`CpuFeatures::detect`] picks the fastest the CPU has.

use std::fmt;
use std::sync::OnceLock;

/// A SIMD instruction set the kernels are written for, from slowest to fastest.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Isa {
    /// Portable Rust, no intrinsics; the reference every other path is tested against.
    Scalar,
    /// x86-64 AVX2 + FMA + F16C (256-bit, `vpmaddubsw` integer dots).
    Avx2,
    /// x86-64 AVX-512 F/BW/VL + VNNI (512-bit, `vpdpbusd`/`vpdpwssd` integer dots).
    Avx512Vnni,
    /// aarch64 NEON (128-bit), with `sdot` when the CPU has the dot-product extension.
    Neon,
}

impl Isa {
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512Vnni => "avx512vnni",
            Isa::Neon => "neon",
        }
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What this CPU offers the kernels, detected once at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuFeatures {
    pub avx2: bool,
    pub fma: bool,
    pub f16c: bool,
    pub avx512f: bool,
    pub avx512bw: bool,
    pub avx512vl: bool,
    pub avx512vnni: bool,
    /// Byte permutes across a whole vector (`vpermb`, `vpermt2b`, `vpmultishiftqb`).
    pub avx512vbmi: bool,
    /// Bit counts per byte (`vpopcntb`).
    pub avx512bitalg: bool,
    /// Bit gathers in general registers (`pext`).
    pub bmi2: bool,
    pub neon: bool,
    pub dotprod: bool,
}

impl CpuFeatures {
    /// Asks the CPU (cpuid on x86-64, the OS on aarch64).
    pub fn detect() -> Self {
        let mut f = CpuFeatures {
            avx2: false,
            fma: false,
            f16c: false,
            avx512f: false,
            avx512bw: false,
            avx512vl: false,
            avx512vnni: false,
            avx512vbmi: false,
            avx512bitalg: false,
            bmi2: false,
            neon: false,
            dotprod: false,
        };
        #[cfg(target_arch = "x86_64")]
        {
            f.avx2 = is_x86_feature_detected!("avx2");
            f.fma = is_x86_feature_detected!("fma");
            f.f16c = is_x86_feature_detected!("f16c");
            f.avx512f = is_x86_feature_detected!("avx512f");
            f.avx512bw = is_x86_feature_detected!("avx512bw");
            f.avx512vl = is_x86_feature_detected!("avx512vl");
            f.avx512vnni = is_x86_feature_detected!("avx512vnni");
            f.avx512vbmi = is_x86_feature_detected!("avx512vbmi");
            f.avx512bitalg = is_x86_feature_detected!("avx512bitalg");
            f.bmi2 = is_x86_feature_detected!("bmi2");
        }
        #[cfg(target_arch = "aarch64")]
        {
            f.neon = std::arch::is_aarch64_feature_detected!("neon");
            f.dotprod = std::arch::is_aarch64_feature_detected!("dotprod");
        }
        f
    }

    /// Whether the kernels for `isa` can run here.
    pub fn supports(&self, isa: Isa) -> bool {
        let avx2 = self.avx2 && self.fma && self.f16c;
        match isa {
            Isa::Scalar => true,
            Isa::Avx2 => avx2,
            Isa::Avx512Vnni => {
                avx2 && self.avx512f && self.avx512bw && self.avx512vl && self.avx512vnni
            }
            Isa::Neon => self.neon,
        }
    }

    /// Whether the AVX-512 kernels may also look grid points up by byte permutes (the i-quant
    /// decode tiles of `dot::iquant::avx512_vbmi`): VBMI and BITALG (and BMI2) beside AVX-512
    /// VNNI, as on Intel since Ice Lake and AMD since Zen 4.
    pub fn byte_permutes(&self) -> bool {
        self.supports(Isa::Avx512Vnni) && self.avx512vbmi && self.avx512bitalg && self.bmi2
    }

    /// Every path this CPU can run, slowest first (the tests run each against scalar).
    pub fn available(&self) -> Vec<Isa> {
        [Isa::Scalar, Isa::Avx2, Isa::Avx512Vnni, Isa::Neon]
            .into_iter()
            .filter(|&isa| self.supports(isa))
            .collect()
    }

    /// The fastest path this CPU can run.
    pub fn best(&self) -> Isa {
        self.available().last().copied().unwrap_or(Isa::Scalar)
    }

    /// A one-line description for timing reports, e.g. "avx512vnni (avx2 fma f16c avx512f ...)".
    pub fn describe(&self) -> String {
        let flags: Vec<&str> = [
            (self.avx2, "avx2"),
            (self.fma, "fma"),
            (self.f16c, "f16c"),
            (self.avx512f, "avx512f"),
            (self.avx512bw, "avx512bw"),
            (self.avx512vl, "avx512vl"),
            (self.avx512vnni, "avx512vnni"),
            (self.avx512vbmi, "avx512vbmi"),
            (self.avx512bitalg, "avx512bitalg"),
            (self.neon, "neon"),
            (self.dotprod, "dotprod"),
            (crate::cpu::amx::in_cpu(), "amx-int8"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        format!("{} kernels (cpu: {})", self.best(), flags.join(" "))
    }
}

/// This CPU's features, detected once.
pub fn cpu_features() -> &'static CpuFeatures {
    static F: OnceLock<CpuFeatures> = OnceLock::new();
    F.get_or_init(CpuFeatures::detect)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalar_is_always_available_and_best_is_supported() {
        let f = CpuFeatures::detect();
        assert!(f.supports(Isa::Scalar));
        assert!(f.supports(f.best()));
        assert_eq!(f.available()[0], Isa::Scalar);
        assert!(f.describe().starts_with(f.best().name()));
    }
}
