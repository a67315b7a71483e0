//! The tile operations in software, as Intel's manual defines them (`ldtilecfg`, `tileloadd`,
//! `tilezero`, `tdpbsud`, `tilestored`, `tilerelease`), with its shape checks as panics where
//! the instructions fault. The panel kernels run through it in the tests of CPUs without AMX,
//! which then check everything of the AMX path but the instructions themselves.

use super::tiles::{TileConfig, TileOps, MAX_ROWS, MAX_ROW_BYTES};

/// Eight tiles of 16 rows x 64 bytes and the configuration loaded.
pub struct Emulated {
    cfg: Option<TileConfig>,
    tiles: [[[u8; MAX_ROW_BYTES]; MAX_ROWS]; 8],
}

impl Emulated {
    pub fn new() -> Emulated {
        Emulated {
            cfg: None,
            tiles: [[[0; MAX_ROW_BYTES]; MAX_ROWS]; 8],
        }
    }

    fn cfg(&self) -> &TileConfig {
        self.cfg
            .as_ref()
            .expect("a tile instruction before ldtilecfg faults")
    }

    /// Tile `t` from `src`: its configured rows and bytes; the rest of the tile zero.
    unsafe fn load_tile(&mut self, t: usize, src: *const u8, stride: usize) {
        let (rows, bytes) = (self.cfg().rows(t), self.cfg().row_bytes(t));
        assert!(rows > 0 && bytes > 0, "tmm{t} is not configured");
        self.tiles[t] = [[0; MAX_ROW_BYTES]; MAX_ROWS];
        for r in 0..rows {
            // SAFETY: the caller's contract: row `r` holds `bytes` readable bytes.
            let row = unsafe { std::slice::from_raw_parts(src.add(r * stride), bytes) };
            self.tiles[t][r][..bytes].copy_from_slice(row);
        }
    }

    /// `tilezero c; tdpbsud c, a, b`, with the instruction's shape checks.
    fn multiply(&mut self, c: usize, a: usize, b: usize) {
        let cfg = *self.cfg();
        let (m, k, n) = (cfg.rows(a), cfg.row_bytes(a) / 4, cfg.row_bytes(b) / 4);
        assert_eq!(cfg.rows(c), m, "rows of C and A differ");
        assert_eq!(cfg.row_bytes(c), 4 * n, "row bytes of C and B differ");
        assert_eq!(cfg.rows(b), k, "rows of B differ from A's row bytes / 4");
        let mut sums = [[0i32; MAX_ROWS]; MAX_ROWS];
        for (i, row) in sums.iter_mut().enumerate().take(m) {
            for (j, sum) in row.iter_mut().enumerate().take(n) {
                for kk in 0..k {
                    for e in 0..4 {
                        let x = i32::from(self.tiles[a][i][4 * kk + e] as i8);
                        let w = i32::from(self.tiles[b][kk][4 * j + e]);
                        *sum = sum.wrapping_add(x * w);
                    }
                }
            }
        }
        self.tiles[c] = [[0; MAX_ROW_BYTES]; MAX_ROWS];
        for (i, row) in sums.iter().enumerate().take(m) {
            for (j, sum) in row.iter().enumerate().take(n) {
                self.tiles[c][i][4 * j..4 * j + 4].copy_from_slice(&sum.to_le_bytes());
            }
        }
    }

    unsafe fn store_tile(&self, t: usize, dst: *mut u8, stride: usize) {
        let (rows, bytes) = (self.cfg().rows(t), self.cfg().row_bytes(t));
        for r in 0..rows {
            // SAFETY: the caller's contract: row `r` has `bytes` writable bytes.
            let row = unsafe { std::slice::from_raw_parts_mut(dst.add(r * stride), bytes) };
            row.copy_from_slice(&self.tiles[t][r][..bytes]);
        }
    }
}

impl Default for Emulated {
    fn default() -> Self {
        Emulated::new()
    }
}

impl TileOps for Emulated {
    unsafe fn configure(&mut self, cfg: &TileConfig) {
        assert_eq!(cfg.bytes[0], 1, "only palette 1 is defined");
        self.cfg = Some(*cfg);
        self.tiles = [[[0; MAX_ROW_BYTES]; MAX_ROWS]; 8];
    }

    unsafe fn load_a<const S: usize>(&mut self, src: *const u8, stride: usize) {
        // SAFETY: the caller's contract.
        unsafe { self.load_tile(3 * S, src, stride) }
    }

    unsafe fn load_b<const S: usize>(&mut self, src: *const u8, stride: usize) {
        // SAFETY: the caller's contract.
        unsafe { self.load_tile(3 * S + 1, src, stride) }
    }

    unsafe fn product<const S: usize>(&mut self) {
        self.multiply(3 * S + 2, 3 * S, 3 * S + 1);
    }

    unsafe fn store_c<const S: usize>(&mut self, dst: *mut u8, stride: usize) {
        // SAFETY: the caller's contract.
        unsafe { self.store_tile(3 * S + 2, dst, stride) }
    }

    unsafe fn release(&mut self) {
        self.cfg = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::synth::Rng;

    #[test]
    fn the_product_is_signed_activations_times_unsigned_weights() {
        let mut rng = Rng::new(11);
        let (m, k) = (7, 32);
        let (mut a, mut b) = (rng.bytes(m * k), rng.bytes(k / 4 * 64));
        // The extremes: -128 x 255 must stay a negative product.
        a[0] = 0x80;
        b[0] = 0xFF;
        let mut ops = Emulated::new();
        let mut c = vec![0i32; m * 16];
        // SAFETY: the buffers hold the configured rows.
        unsafe {
            ops.configure(&TileConfig::for_products(m, k));
            ops.load_a::<1>(a.as_ptr(), k);
            ops.load_b::<1>(b.as_ptr(), 64);
            ops.product::<1>();
            ops.store_c::<1>(c.as_mut_ptr() as *mut u8, 64);
        }
        for i in 0..m {
            for j in 0..16 {
                let want: i32 = (0..k)
                    .map(|kk| {
                        i32::from(a[i * k + kk] as i8) * i32::from(b[kk / 4 * 64 + 4 * j + kk % 4])
                    })
                    .sum();
                assert_eq!(c[i * 16 + j], want, "row {i} column {j}");
            }
        }
    }

    #[test]
    #[should_panic(expected = "rows of B")]
    fn a_shape_the_instruction_refuses_panics() {
        let mut cfg = TileConfig::for_products(4, 32);
        cfg.set(1, 4, 64);
        let mut ops = Emulated::new();
        // SAFETY: no memory is touched before the shape check.
        unsafe {
            ops.configure(&cfg);
            ops.product::<0>();
        }
    }
}
