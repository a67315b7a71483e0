//! The tile configuration and the few tile operations the prompt panels need, as a trait with
//! two implementations: [`Hardware`] runs the instructions, [`super::Emulated`] computes what
//! they compute (for CPUs without AMX, where the kernels are tested through it).
//!
//! The kernels use two fixed sets of three tiles, set `S` being `tmm(3S)` (A: activations),
//! `tmm(3S + 1)` (B: weights) and `tmm(3S + 2)` (C: 32-bit sums): AMX has no renaming of tile
//! registers, so a second set lets one block's loads and product run while the other's sums
//! are stored.

/// Tiles in a set (A, B, C); sets in use.
pub const SETS: usize = 2;

/// The 64-byte operand of `ldtilecfg`, palette 1: byte 0 the palette, bytes 16.. the bytes per
/// row of each of the 16 tile slots (u16, little-endian), bytes 48.. their rows (u8). Slots
/// not described stay zero (unused).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(64))]
pub struct TileConfig {
    pub bytes: [u8; 64],
}

/// Most rows of a tile, and bytes per row.
pub const MAX_ROWS: usize = 16;
pub const MAX_ROW_BYTES: usize = 64;

impl TileConfig {
    /// Palette 1 with no tile described.
    pub fn new() -> TileConfig {
        let mut bytes = [0; 64];
        bytes[0] = 1;
        TileConfig { bytes }
    }

    /// Describes tile `t` (0..8) as `rows` rows of `row_bytes` bytes.
    pub fn set(&mut self, t: usize, rows: usize, row_bytes: usize) {
        assert!(t < 8 && rows <= MAX_ROWS && row_bytes <= MAX_ROW_BYTES);
        self.bytes[16 + 2 * t..18 + 2 * t].copy_from_slice(&(row_bytes as u16).to_le_bytes());
        self.bytes[48 + t] = rows as u8;
    }

    /// Rows of tile `t`.
    pub fn rows(&self, t: usize) -> usize {
        usize::from(self.bytes[48 + t])
    }

    /// Bytes per row of tile `t`.
    pub fn row_bytes(&self, t: usize) -> usize {
        usize::from(u16::from_le_bytes([
            self.bytes[16 + 2 * t],
            self.bytes[17 + 2 * t],
        ]))
    }

    /// The configuration of the panel kernels: per set, A `tokens` rows of `k` bytes, B `k / 4`
    /// rows of 64 bytes (16 weight rows' four quants each), C `tokens` rows of 16 sums.
    pub fn for_products(tokens: usize, k: usize) -> TileConfig {
        let mut cfg = TileConfig::new();
        for s in 0..SETS {
            cfg.set(3 * s, tokens, k);
            cfg.set(3 * s + 1, k / 4, MAX_ROW_BYTES);
            cfg.set(3 * s + 2, tokens, MAX_ROW_BYTES);
        }
        cfg
    }
}

impl Default for TileConfig {
    fn default() -> Self {
        TileConfig::new()
    }
}

/// The tile operations of the panel kernels, on set `S` (0 or 1). Each needs the tiles
/// (granted, for [`Hardware`]) and, but `configure` and `release`, a configuration loaded by
/// `configure`.
pub trait TileOps {
    /// Loads the configuration (`ldtilecfg`); every tile becomes zero.
    ///
    /// # Safety
    /// Tiles may be used here.
    unsafe fn configure(&mut self, cfg: &TileConfig);

    /// A of set `S` from `src` (`tileloadd`).
    ///
    /// # Safety
    /// The configured rows of A, `row_bytes` each, are readable at `src`, `stride` apart.
    unsafe fn load_a<const S: usize>(&mut self, src: *const u8, stride: usize);

    /// B of set `S` from `src`.
    ///
    /// # Safety
    /// As [`TileOps::load_a`], for B's rows.
    unsafe fn load_b<const S: usize>(&mut self, src: *const u8, stride: usize);

    /// C of set `S` = A x B: per row `m` of A and 4-byte column `n` of B, the sum over `k` of
    /// A's signed bytes `4k..4k + 4` of row `m` times B's unsigned bytes `4n..4n + 4` of row
    /// `k` (`tilezero`, `tdpbsud`).
    ///
    /// # Safety
    /// A configuration whose A, B and C shapes match is loaded.
    unsafe fn product<const S: usize>(&mut self);

    /// C of set `S` to `dst` (`tilestored`).
    ///
    /// # Safety
    /// C's configured rows, `row_bytes` each, are writable at `dst`, `stride` apart.
    unsafe fn store_c<const S: usize>(&mut self, dst: *mut u8, stride: usize);

    /// Returns the tiles to their initial state (`tilerelease`): the OS then saves none of it.
    ///
    /// # Safety
    /// Tiles may be used here.
    unsafe fn release(&mut self);
}

/// The AMX instructions themselves. Only where [`super::support`] says `Granted`.
pub struct Hardware;

/// `tileloadd` into tile `tmm` (0, 1, 3 or 4: the A and B tiles of the two sets); the register
/// is part of the instruction, so each has its own line (the match folds away when inlined).
///
/// # Safety
/// As [`TileOps::load_a`], for tile `tmm`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn tile_load(tmm: usize, src: *const u8, stride: usize) {
    use std::arch::asm;
    // SAFETY: the caller's contract.
    unsafe {
        match tmm {
            0 => asm!("tileloadd tmm0, [{} + {}*1]", in(reg) src, in(reg) stride,
                options(nostack, readonly, preserves_flags)),
            1 => asm!("tileloadd tmm1, [{} + {}*1]", in(reg) src, in(reg) stride,
                options(nostack, readonly, preserves_flags)),
            3 => asm!("tileloadd tmm3, [{} + {}*1]", in(reg) src, in(reg) stride,
                options(nostack, readonly, preserves_flags)),
            _ => asm!("tileloadd tmm4, [{} + {}*1]", in(reg) src, in(reg) stride,
                options(nostack, readonly, preserves_flags)),
        }
    }
}

#[cfg(target_arch = "x86_64")]
impl TileOps for Hardware {
    #[inline(always)]
    unsafe fn configure(&mut self, cfg: &TileConfig) {
        // SAFETY: the caller's contract (AMX granted); `cfg` is 64 readable bytes.
        unsafe {
            std::arch::asm!("ldtilecfg [{}]", in(reg) cfg.bytes.as_ptr(),
                options(nostack, readonly, preserves_flags))
        }
    }

    #[inline(always)]
    unsafe fn load_a<const S: usize>(&mut self, src: *const u8, stride: usize) {
        // SAFETY: the caller's contract: the configured rows of A lie at `src`, `stride` apart.
        unsafe { tile_load(3 * S, src, stride) }
    }

    #[inline(always)]
    unsafe fn load_b<const S: usize>(&mut self, src: *const u8, stride: usize) {
        // SAFETY: as `load_a`, for B.
        unsafe { tile_load(3 * S + 1, src, stride) }
    }

    #[inline(always)]
    unsafe fn product<const S: usize>(&mut self) {
        // SAFETY: tiles only; the configuration gives A, B and C matching shapes.
        unsafe {
            if S == 0 {
                std::arch::asm!(
                    "tilezero tmm2",
                    "tdpbsud tmm2, tmm0, tmm1",
                    options(nomem, nostack, preserves_flags)
                )
            } else {
                std::arch::asm!(
                    "tilezero tmm5",
                    "tdpbsud tmm5, tmm3, tmm4",
                    options(nomem, nostack, preserves_flags)
                )
            }
        }
    }

    #[inline(always)]
    unsafe fn store_c<const S: usize>(&mut self, dst: *mut u8, stride: usize) {
        // SAFETY: the caller's contract: C's configured rows fit at `dst`, `stride` apart.
        unsafe {
            if S == 0 {
                std::arch::asm!("tilestored [{} + {}*1], tmm2", in(reg) dst, in(reg) stride,
                    options(nostack, preserves_flags))
            } else {
                std::arch::asm!("tilestored [{} + {}*1], tmm5", in(reg) dst, in(reg) stride,
                    options(nostack, preserves_flags))
            }
        }
    }

    #[inline(always)]
    unsafe fn release(&mut self) {
        // SAFETY: tilerelease only resets the tile state.
        unsafe { std::arch::asm!("tilerelease", options(nomem, nostack, preserves_flags)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_is_palette_one_with_each_tiles_shape_in_place() {
        let cfg = TileConfig::for_products(5, 32);
        assert_eq!(cfg.bytes[0], 1, "palette");
        assert!(
            cfg.bytes[1..16].iter().all(|&b| b == 0),
            "start row and reserved bytes"
        );
        // Set 0: tmm0 A 5 x 32, tmm1 B 8 x 64, tmm2 C 5 x 64; set 1 likewise in tmm3..tmm5.
        for (t, rows, bytes) in [(0, 5, 32), (1, 8, 64), (2, 5, 64), (3, 5, 32), (4, 8, 64)] {
            assert_eq!(cfg.bytes[48 + t], rows, "rows of tmm{t}");
            assert_eq!(cfg.bytes[16 + 2 * t], bytes, "row bytes of tmm{t}");
            assert_eq!(cfg.bytes[17 + 2 * t], 0, "row bytes of tmm{t}, high byte");
        }
        assert_eq!((cfg.rows(5), cfg.row_bytes(5)), (5, 64));
        assert!(
            cfg.bytes[16 + 12..48].iter().all(|&b| b == 0),
            "tiles 6.. unused"
        );
        assert!(
            cfg.bytes[48 + 6..].iter().all(|&b| b == 0),
            "tiles 6.. unused"
        );
        assert_eq!(std::mem::align_of::<TileConfig>(), 64);
    }
}
