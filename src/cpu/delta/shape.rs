//! The geometry of one gated DeltaNet (GDN) layer, its per-layer parameters, inputs and state,
//! and the checks that tie the slices a caller passes to that geometry.

use std::ops::Range;

/// How a value head finds the key head (and query head) it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadMap {
    /// Value head `j` reads key head `j % k_heads` (qwen35 / qwen35moe: the converter reorders
    /// the value heads so that a plain repeat of the key heads lines up).
    Tiled,
    /// Value head `j` reads key head `j / (v_heads / k_heads)` (qwen3next: repeat-interleave).
    Grouped,
}

/// Shape of a GDN layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GdnShape {
    /// Key (and query) heads, `ssm.group_count`.
    pub k_heads: usize,
    /// Value heads, `ssm.time_step_rank`; a multiple of `k_heads`.
    pub v_heads: usize,
    /// Size `S` of every key, query and value head (`ssm.state_size`); each value head keeps an
    /// `S x S` state.
    pub head_dim: usize,
    /// Taps of the causal depthwise convolution (`ssm.conv_kernel`), at least 1.
    pub conv_kernel: usize,
    pub map: HeadMap,
    /// The model's RMS epsilon: of the output's gated RMSNorm and (as llama.cpp does) of the
    /// L2 norm of q and k.
    pub eps: f32,
}

/// A shape the kernels cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    #[error("a gated DeltaNet layer needs at least one key head, one value head, a head size and a convolution tap (got {k_heads} key heads, {v_heads} value heads, head size {head_dim}, {conv_kernel} taps)")]
    Empty {
        k_heads: usize,
        v_heads: usize,
        head_dim: usize,
        conv_kernel: usize,
    },
    #[error("{v_heads} value heads cannot share {k_heads} key heads evenly (ssm.time_step_rank must be a multiple of ssm.group_count)")]
    Uneven { k_heads: usize, v_heads: usize },
    #[error("{what} holds {got} values, expected {expected}")]
    Len {
        what: &'static str,
        expected: usize,
        got: usize,
    },
}

impl GdnShape {
    /// Checks that the heads fit together.
    pub fn check(&self) -> Result<(), ShapeError> {
        if self.k_heads == 0 || self.v_heads == 0 || self.head_dim == 0 || self.conv_kernel == 0 {
            return Err(ShapeError::Empty {
                k_heads: self.k_heads,
                v_heads: self.v_heads,
                head_dim: self.head_dim,
                conv_kernel: self.conv_kernel,
            });
        }
        if !self.v_heads.is_multiple_of(self.k_heads) {
            return Err(ShapeError::Uneven {
                k_heads: self.k_heads,
                v_heads: self.v_heads,
            });
        }
        Ok(())
    }

    /// Channels of q (and of k): `k_heads * S`.
    pub fn key_dim(&self) -> usize {
        self.k_heads * self.head_dim
    }

    /// Channels of v, of z and of the output: `v_heads * S` (`ssm.inner_size`).
    pub fn value_dim(&self) -> usize {
        self.v_heads * self.head_dim
    }

    /// Channels of the convolution, `[q | k | v]`.
    pub fn conv_dim(&self) -> usize {
        2 * self.key_dim() + self.value_dim()
    }

    /// Value heads per key head.
    pub fn ratio(&self) -> usize {
        self.v_heads / self.k_heads
    }

    /// Floats of the convolution state: the last `conv_kernel - 1` inputs.
    pub fn conv_state_len(&self) -> usize {
        (self.conv_kernel - 1) * self.conv_dim()
    }

    /// Floats of the recurrent state: `v_heads` matrices of `S x S`.
    pub fn ssm_state_len(&self) -> usize {
        self.v_heads * self.head_dim * self.head_dim
    }

    /// The key head value head `j` reads.
    pub fn key_head(&self, j: usize) -> usize {
        match self.map {
            HeadMap::Tiled => j % self.k_heads,
            HeadMap::Grouped => j / self.ratio(),
        }
    }

    /// The `m`-th value head (of [`Self::ratio`]) that reads key head `kh`.
    pub fn value_head(&self, kh: usize, m: usize) -> usize {
        match self.map {
            HeadMap::Tiled => kh + m * self.k_heads,
            HeadMap::Grouped => kh * self.ratio() + m,
        }
    }

    /// Channels of query head `kh` in a `[q | k | v]` row.
    pub fn q_channels(&self, kh: usize) -> Range<usize> {
        kh * self.head_dim..(kh + 1) * self.head_dim
    }

    /// Channels of key head `kh` in a `[q | k | v]` row.
    pub fn k_channels(&self, kh: usize) -> Range<usize> {
        let at = self.key_dim() + kh * self.head_dim;
        at..at + self.head_dim
    }

    /// Channels of value head `j` in a `[q | k | v]` row.
    pub fn v_channels(&self, j: usize) -> Range<usize> {
        let at = 2 * self.key_dim() + j * self.head_dim;
        at..at + self.head_dim
    }
}

/// A layer's own parameters, as the GGUF file stores them (all F32).
#[derive(Debug, Clone, Copy)]
pub struct GdnWeights<'a> {
    /// `ssm_conv1d`, `[conv_dim][conv_kernel]` (GGUF `ne = {K, conv_dim}`): tap `K - 1`
    /// multiplies the current token, tap 0 the oldest.
    pub conv: &'a [f32],
    /// `ssm_dt.bias`, `[v_heads]`.
    pub dt_bias: &'a [f32],
    /// `ssm_a` = `-exp(A_log)`, `[v_heads]`.
    pub a: &'a [f32],
    /// `ssm_norm`, `[S]`, shared by all heads.
    pub norm: &'a [f32],
}

impl GdnWeights<'_> {
    pub fn check(&self, shape: &GdnShape) -> Result<(), ShapeError> {
        shape.check()?;
        len(
            "ssm_conv1d",
            self.conv,
            shape.conv_dim() * shape.conv_kernel,
        )?;
        len("ssm_dt.bias", self.dt_bias, shape.v_heads)?;
        len("ssm_a", self.a, shape.v_heads)?;
        len("ssm_norm", self.norm, shape.head_dim)
    }
}

/// One call's inputs for a run of `n_tokens` consecutive tokens of one sequence, token-major
/// (the layer's projections of the normed hidden state).
#[derive(Debug, Clone, Copy)]
pub struct GdnInputs<'a> {
    /// `x @ attn_qkv`, `[n_tokens][conv_dim]`, channels `[q | k | v]`.
    pub qkv: &'a [f32],
    /// `x @ attn_gate`, `[n_tokens][value_dim]`: the output gate.
    pub z: &'a [f32],
    /// `x @ ssm_alpha`, `[n_tokens][v_heads]`: the decay's input.
    pub alpha: &'a [f32],
    /// `x @ ssm_beta`, `[n_tokens][v_heads]`, before the sigmoid.
    pub beta: &'a [f32],
}

impl GdnInputs<'_> {
    /// Tokens in the run (from `alpha`, the smallest input).
    pub fn n_tokens(&self, shape: &GdnShape) -> usize {
        self.alpha.len() / shape.v_heads.max(1)
    }

    pub fn check(&self, shape: &GdnShape) -> Result<usize, ShapeError> {
        shape.check()?;
        let n = self.n_tokens(shape);
        len("alpha", self.alpha, n * shape.v_heads)?;
        len("beta", self.beta, n * shape.v_heads)?;
        len("qkv", self.qkv, n * shape.conv_dim())?;
        len("z", self.z, n * shape.value_dim())?;
        Ok(n)
    }
}

/// The state one sequence carries through one GDN layer between calls.
///
/// - `conv`: the last `conv_kernel - 1` rows of qkv inputs, `[K - 1][conv_dim]`, oldest first
///   (zeros before the first token). Token-major so that one step's shift and the convolution
///   run along contiguous channels.
/// - `ssm`: per value head `j` an `S x S` matrix stored `[j][v][k]`: row `v` (a value
///   dimension) runs over the key dimensions. Every step reads a row against the key and the
///   query (two dot products) and adds a multiple of the key to it, so each row is one
///   contiguous vector, and the rows are independent (llama.cpp's layout too, which lets the
///   standard path follow its order exactly).
#[derive(Debug, Clone, PartialEq)]
pub struct GdnState {
    pub conv: Vec<f32>,
    pub ssm: Vec<f32>,
}

impl GdnState {
    /// The state at the start of a sequence (all zeros).
    pub fn new(shape: &GdnShape) -> Self {
        GdnState {
            conv: vec![0.0; shape.conv_state_len()],
            ssm: vec![0.0; shape.ssm_state_len()],
        }
    }

    /// Back to the start of a sequence.
    pub fn reset(&mut self) {
        self.conv.fill(0.0);
        self.ssm.fill(0.0);
    }

    /// Bytes of state per sequence (conv and recurrent, f32).
    pub fn bytes(shape: &GdnShape) -> usize {
        (shape.conv_state_len() + shape.ssm_state_len()) * std::mem::size_of::<f32>()
    }

    pub fn check(&self, shape: &GdnShape) -> Result<(), ShapeError> {
        len("conv state", &self.conv, shape.conv_state_len())?;
        len("recurrent state", &self.ssm, shape.ssm_state_len())
    }
}

/// `Ok` when `slice` holds exactly `expected` values.
pub(crate) fn len(what: &'static str, slice: &[f32], expected: usize) -> Result<(), ShapeError> {
    if slice.len() == expected {
        Ok(())
    } else {
        Err(ShapeError::Len {
            what,
            expected,
            got: slice.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(k: usize, v: usize, map: HeadMap) -> GdnShape {
        GdnShape {
            k_heads: k,
            v_heads: v,
            head_dim: 4,
            conv_kernel: 4,
            map,
            eps: 1e-6,
        }
    }

    #[test]
    fn tiled_and_grouped_maps_differ_and_invert() {
        let t = shape(2, 6, HeadMap::Tiled);
        let g = shape(2, 6, HeadMap::Grouped);
        let tiled: Vec<usize> = (0..6).map(|j| t.key_head(j)).collect();
        let grouped: Vec<usize> = (0..6).map(|j| g.key_head(j)).collect();
        assert_eq!(tiled, [0, 1, 0, 1, 0, 1]);
        assert_eq!(grouped, [0, 0, 0, 1, 1, 1]);
        for s in [t, g] {
            for kh in 0..2 {
                for m in 0..3 {
                    assert_eq!(s.key_head(s.value_head(kh, m)), kh);
                }
            }
        }
    }

    #[test]
    fn channels_and_sizes() {
        let s = shape(2, 4, HeadMap::Tiled);
        assert_eq!((s.key_dim(), s.value_dim(), s.conv_dim()), (8, 16, 32));
        assert_eq!(s.q_channels(1), 4..8);
        assert_eq!(s.k_channels(1), 12..16);
        assert_eq!(s.v_channels(3), 28..32);
        assert_eq!(GdnState::bytes(&s), (3 * 32 + 4 * 16) * 4);
    }

    #[test]
    fn bad_shapes_are_refused() {
        assert!(matches!(
            shape(3, 4, HeadMap::Tiled).check(),
            Err(ShapeError::Uneven { .. })
        ));
        assert!(matches!(
            shape(0, 4, HeadMap::Tiled).check(),
            Err(ShapeError::Empty { .. })
        ));
        let s = shape(2, 4, HeadMap::Tiled);
        let w = GdnWeights {
            conv: &[0.0; 10],
            dt_bias: &[0.0; 4],
            a: &[0.0; 4],
            norm: &[0.0; 4],
        };
        assert!(matches!(
            w.check(&s),
            Err(ShapeError::Len {
                what: "ssm_conv1d",
                ..
            })
        ));
    }
}
