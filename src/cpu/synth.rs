//! Random but valid weight matrices and activations, seeded, for tests and benchmarks.

use crate::quant::GgmlType;

/// xorshift64*: small and seeded; quality is ample for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32)
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next_u64() >> 56) as u8).collect()
    }
}

fn put_f16(b: &mut [u8], off: usize, v: f32) {
    b[off..off + 2].copy_from_slice(&half::f16::from_f32(v).to_bits().to_le_bytes());
}

/// `rows x cols` weights of type `ty` (a kernel type): random quants, finite scales of
/// realistic size. `cols` must be a whole number of blocks.
pub fn random_weights(rng: &mut Rng, ty: GgmlType, rows: usize, cols: usize) -> Vec<u8> {
    let n_blocks = rows * cols / ty.block_size();
    let ts = ty.type_size();
    let mut data = rng.bytes(n_blocks * ts);
    for b in data.chunks_exact_mut(ts) {
        match ty {
            GgmlType::F32 => b.copy_from_slice(&rng.uniform(-1.0, 1.0).to_le_bytes()),
            GgmlType::F16 => put_f16(b, 0, rng.uniform(-1.0, 1.0)),
            GgmlType::BF16 => {
                let bits = rng.uniform(-1.0, 1.0).to_bits() >> 16;
                b.copy_from_slice(&(bits as u16).to_le_bytes());
            }
            GgmlType::Q4_1 | GgmlType::Q5_1 => {
                put_f16(b, 0, rng.uniform(0.0, 0.05));
                put_f16(b, 2, rng.uniform(-0.5, 0.0));
            }
            GgmlType::Q4_K | GgmlType::Q5_K => {
                put_f16(b, 0, rng.uniform(0.0, 0.01));
                put_f16(b, 2, rng.uniform(0.0, 0.01));
            }
            GgmlType::Q6_K => put_f16(b, 208, rng.uniform(-0.01, 0.01)),
            GgmlType::Q2_K => {
                put_f16(b, 80, rng.uniform(0.0, 0.02));
                put_f16(b, 82, rng.uniform(0.0, 0.01));
            }
            GgmlType::Q3_K => put_f16(b, 108, rng.uniform(-0.01, 0.01)),
            // Levels up to 127 times sub-block scales up to 32.
            GgmlType::IQ4_XS => put_f16(b, 0, rng.uniform(-0.0005, 0.0005)),
            // Grid levels up to 62 (IQ3_S: 15, IQ1: 9 eighths) times odd scales up to 31.
            GgmlType::IQ2_XXS | GgmlType::IQ2_XS | GgmlType::IQ2_S => {
                put_f16(b, 0, rng.uniform(-0.002, 0.002))
            }
            GgmlType::IQ3_XXS => put_f16(b, 0, rng.uniform(-0.001, 0.001)),
            GgmlType::IQ3_S => put_f16(b, 0, rng.uniform(-0.0005, 0.0005)),
            GgmlType::IQ1_S => put_f16(b, 0, rng.uniform(-0.01, 0.01)),
            GgmlType::IQ1_M => {
                // The f16 scale's four nibbles are the top nibbles of the four scale words.
                let bits = half::f16::from_f32(rng.uniform(-0.01, 0.01)).to_bits();
                for w in 0..4 {
                    let top = ((bits >> (4 * w)) & 0xF) as u8;
                    b[49 + 2 * w] = (b[49 + 2 * w] & 0x0F) | (top << 4);
                }
            }
            // E8M0: 2^(e - 128) times values up to 12.
            GgmlType::MXFP4 => b[0] = 118 + (rng.next_u64() % 6) as u8,
            // Q8_0, Q4_0, Q5_0 and anything else with a leading f16 scale.
            _ => put_f16(b, 0, rng.uniform(-0.05, 0.05)),
        }
    }
    data
}

/// Activations in [-1, 1) with an outlier every 97 values, as real hidden states have.
pub fn random_input(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let v = rng.uniform(-1.0, 1.0);
            if i % 97 == 5 {
                v * 20.0
            } else {
                v
            }
        })
        .collect()
}
