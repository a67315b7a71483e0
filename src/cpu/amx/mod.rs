//! AMX (Advanced Matrix Extensions, Intel Xeon since Sapphire Rapids): whether this process may
//! use the tiles, and the tile operations the prompt panels run ([`tiles`]).
//!
//! Three things must hold: the CPU reports AMX-TILE and AMX-INT8 (cpuid leaf 7), the OS saves the
//! tile state (XCR0 bits 17 and 18), and Linux grants this process the tile data
//! (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`: without it the first tile
//! instruction faults). The answer is asked for once and kept.

pub mod emulated;
pub mod tiles;

use std::sync::OnceLock;

pub use emulated::Emulated;
pub use tiles::{Hardware, TileConfig, TileOps};

/// What this machine allows of AMX.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmxSupport {
    /// The CPU has no AMX-INT8 (or this is not x86-64).
    Absent,
    /// The CPU has it, the OS does not save the tile state or refused this process the tile
    /// data (an old kernel, or a signal stack too small for the tile state).
    NotGranted,
    /// Tiles may be used.
    Granted,
}

impl AmxSupport {
    pub fn name(self) -> &'static str {
        match self {
            AmxSupport::Absent => "absent",
            AmxSupport::NotGranted => "not granted by the OS",
            AmxSupport::Granted => "granted",
        }
    }
}

/// This machine's AMX support, asked for once (the first call requests the tile data).
pub fn support() -> AmxSupport {
    static S: OnceLock<AmxSupport> = OnceLock::new();
    *S.get_or_init(|| {
        if !in_cpu() {
            AmxSupport::Absent
        } else if os_saves_tiles() && request_tile_data() {
            AmxSupport::Granted
        } else {
            AmxSupport::NotGranted
        }
    })
}

/// Whether the CPU reports AMX-TILE and AMX-INT8 (cpuid leaf 7, EDX bits 24 and 25).
pub fn in_cpu() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::__cpuid_count;
        if __cpuid_count(0, 0).eax < 7 {
            return false;
        }
        let edx = __cpuid_count(7, 0).edx;
        edx & (1 << 24) != 0 && edx & (1 << 25) != 0
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Whether the OS has enabled the tile configuration and tile data state in XCR0.
fn os_saves_tiles() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{__cpuid_count, _xgetbv};
        // OSXSAVE (cpuid leaf 1, ECX bit 27): XGETBV may be executed.
        if __cpuid_count(1, 0).ecx & (1 << 27) == 0 {
            return false;
        }
        // SAFETY: OSXSAVE is set, so XGETBV with register 0 is defined.
        let xcr0 = unsafe { _xgetbv(0) };
        xcr0 & (0b11 << 17) == 0b11 << 17
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Asks Linux for the tile data state for this process (all its threads); true when granted.
fn request_tile_data() -> bool {
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    {
        const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
        const XFEATURE_XTILEDATA: libc::c_long = 18;
        // SAFETY: this arch_prctl only extends the set of state components the process may use;
        // it reads and writes no memory of ours.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_arch_prctl,
                ARCH_REQ_XCOMP_PERM,
                XFEATURE_XTILEDATA,
            )
        };
        rc == 0
    }
    #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn support_follows_the_cpu() {
        // Without AMX in the CPU nothing can grant it; with it, either answer is the OS's.
        let s = support();
        assert_eq!(s == AmxSupport::Absent, !in_cpu(), "{}", s.name());
        if s != AmxSupport::Granted {
            eprintln!(
                "AMX tiles {} here: the hardware tile paths are not run",
                s.name()
            );
        }
    }
}
