//! Reading a model's configuration from GGUF metadata and checking it against the tensors.

use super::super::tensors::OUTPUT;
use super::error::ConfigError;
use super::keys::{Keys, ARCH_KEY};
use super::meta::Meta;
use super::types::{
    Arch, DeltaProjections, HybridConfig, KeyHeads, MoeConfig, Qwen3Config, DEFAULT_ROPE_THETA,
};
use crate::gguf::GgufFile;

impl Qwen3Config {
    /// Reads and checks the configuration of a GGUF file of one of the architectures this
    /// program runs ([`Arch`]).
    pub fn from_gguf(file: &GgufFile) -> Result<Qwen3Config, ConfigError> {
        let probe = Meta {
            file,
            keys: Keys::new(Arch::Qwen3.name()),
        };
        let name = probe.required(ARCH_KEY, file.get_str(ARCH_KEY))?;
        let Some(arch) = Arch::from_name(name) else {
            return Err(ConfigError::WrongArchitecture {
                found: name.to_string(),
                file: probe.name(),
            });
        };
        let meta = Meta {
            file,
            keys: Keys::new(name),
        };
        let config = meta.read_config(arch)?;
        meta.check_heads(&config)?;
        meta.check_tensors(&config)?;
        Ok(config)
    }
}

impl Meta<'_> {
    pub(super) fn read_config(&self, arch: Arch) -> Result<Qwen3Config, ConfigError> {
        let moe = arch.is_moe();
        let (file, k) = (self.file, &self.keys);
        let hidden = self.size(&k.hidden)?;
        let heads = self.size(&k.heads)?;
        let kv_heads = match self.optional(&k.kv_heads, file.get_u32(&k.kv_heads))? {
            Some(n) => self.non_zero(&k.kv_heads, n as usize)?,
            None => heads,
        };
        let head_dim = match self.optional(&k.key_length, file.get_u32(&k.key_length))? {
            Some(n) => self.non_zero(&k.key_length, n as usize)?,
            None => self.non_zero(&format!("{} / {}", k.hidden, k.heads), hidden / heads)?,
        };
        let rope_theta = self.optional(&k.rope_theta, file.get_f32(&k.rope_theta))?;
        let rms_eps = self.required(&k.rms_eps, file.get_f32(&k.rms_eps))?;
        let (vocab, _) = self.embedding_size()?;
        let ffn = match self.optional(&k.ffn, file.get_u32(&k.ffn))? {
            Some(n) => self.non_zero(&k.ffn, n as usize)?,
            None if moe => 0,
            None => self.size(&k.ffn)?,
        };
        let moe = moe.then(|| self.read_moe(arch, ffn)).transpose()?;
        let blocks = self.size(&k.layers)?;
        let hybrid = arch
            .is_hybrid()
            .then(|| self.read_hybrid(arch, blocks))
            .transpose()?;
        let layers = blocks - hybrid.as_ref().map_or(0, |h| h.mtp_layers);
        Ok(Qwen3Config {
            arch,
            hidden,
            layers,
            // A mixture of experts without feed_forward_length: the routed experts' width.
            ffn: match (ffn, moe) {
                (0, Some(m)) => m.expert_ffn * m.experts_used,
                _ => ffn,
            },
            heads,
            kv_heads,
            head_dim,
            rope_dims: self.rope_dims(head_dim)?,
            rope_sections: self.rope_sections(arch)?,
            rope_theta: self.positive(&k.rope_theta, rope_theta.unwrap_or(DEFAULT_ROPE_THETA))?,
            rms_eps: self.positive(&k.rms_eps, rms_eps)?,
            context_length: self.size(&k.context)?,
            vocab,
            tied_embeddings: file.tensor(OUTPUT).is_none(),
            moe,
            hybrid,
            deepstack_layers: self
                .optional(&k.deepstack_layers, file.get_u32(&k.deepstack_layers))?
                .unwrap_or(0) as usize,
        })
    }

    /// `rope.dimension_count`: the whole head where absent (Qwen3), else even and within it.
    fn rope_dims(&self, head_dim: usize) -> Result<usize, ConfigError> {
        let key = &self.keys.rope_dims;
        let Some(dims) = self.optional(key, self.file.get_u32(key))? else {
            return Ok(head_dim);
        };
        let dims = dims as usize;
        if dims == 0 || dims % 2 == 1 || dims > head_dim {
            return Err(ConfigError::BadRopeDims {
                dims,
                head_dim,
                key: key.clone(),
                file: self.name(),
            });
        }
        Ok(dims)
    }

    /// `rope.dimension_sections`: required by the Qwen3.5 and Qwen3-VL architectures (llama.cpp
    /// reads it with `required`), unused by the others.
    fn rope_sections(&self, arch: Arch) -> Result<Option<[usize; 4]>, ConfigError> {
        if !arch.has_rope_sections() {
            return Ok(None);
        }
        let key = &self.keys.rope_sections;
        let values = self.required(key, self.file.get_int_array(key))?;
        let sections: Option<[usize; 4]> = (values.len() == 4)
            .then(|| std::array::from_fn(|i| usize::try_from(values[i]).ok()))
            .and_then(|s: [Option<usize>; 4]| {
                s.iter()
                    .all(Option::is_some)
                    .then(|| s.map(Option::unwrap_or_default))
            });
        let Some(sections) = sections else {
            return Err(ConfigError::KeyType {
                key: key.clone(),
                expected: "four non-negative integers",
                found: format!("{values:?}"),
                file: self.name(),
            });
        };
        if sections[..3].iter().all(|&s| s == 0) {
            return Err(ConfigError::EmptyRopeSections {
                sections,
                key: key.clone(),
                file: self.name(),
            });
        }
        Ok(Some(sections))
    }

    /// The gated DeltaNet side of a hybrid model whose metadata says `blocks` blocks.
    fn read_hybrid(&self, arch: Arch, blocks: usize) -> Result<HybridConfig, ConfigError> {
        let k = &self.keys;
        let state_size = self.size(&k.state_size)?;
        let k_heads = self.size(&k.k_heads)?;
        let v_heads = self.size(&k.v_heads)?;
        if !v_heads.is_multiple_of(k_heads) {
            return Err(ConfigError::KeyHeadsNotDivisible {
                v_heads,
                k_heads,
                arch: arch.name(),
                file: self.name(),
            });
        }
        let inner = self.size(&k.inner_size)?;
        if inner != v_heads * state_size {
            return Err(ConfigError::StateSizeMismatch {
                inner,
                v_heads,
                state: state_size,
                arch: arch.name(),
                file: self.name(),
            });
        }
        let mtp_layers = self
            .optional(&k.mtp_layers, self.file.get_u32(&k.mtp_layers))?
            .unwrap_or(0) as usize;
        if mtp_layers >= blocks {
            return Err(ConfigError::TooManyMtpLayers {
                mtp: mtp_layers,
                layers: blocks,
                mtp_key: k.mtp_layers.clone(),
                layers_key: k.layers.clone(),
                file: self.name(),
            });
        }
        let trunk = blocks - mtp_layers;
        Ok(HybridConfig {
            recurrent_layers: self.recurrent_layers(blocks, trunk)?,
            conv_kernel: self.size(&k.conv_kernel)?,
            state_size,
            k_heads,
            v_heads,
            key_heads: match arch {
                Arch::Qwen3Next => KeyHeads::Grouped,
                _ => KeyHeads::Tiled,
            },
            projections: self.delta_projections(arch),
            mtp_layers,
        })
    }

    /// Which trunk layers are gated DeltaNet layers: `attention.recurrent_layers` when the file
    /// has it (one entry per block, MTP blocks included), else every layer but each
    /// `full_attention_interval`-th (llama.cpp's rule: recurrent iff `(i + 1) % interval != 0`).
    fn recurrent_layers(&self, blocks: usize, trunk: usize) -> Result<Vec<bool>, ConfigError> {
        let k = &self.keys;
        let explicit = self.optional(
            &k.recurrent_layers,
            self.file.get_bool_array(&k.recurrent_layers),
        )?;
        if let Some(list) = explicit {
            if list.len() != blocks {
                return Err(ConfigError::RecurrentLayersLength {
                    key: k.recurrent_layers.clone(),
                    found: list.len(),
                    expected: blocks,
                    file: self.name(),
                });
            }
            return Ok(list[..trunk].to_vec());
        }
        let interval = self.required(&k.interval, self.file.get_u32(&k.interval))? as usize;
        if interval == 0 {
            return Err(ConfigError::ZeroInterval {
                key: k.interval.clone(),
                file: self.name(),
            });
        }
        Ok((0..trunk).map(|i| (i + 1) % interval != 0).collect())
    }

    /// The DeltaNet input projections the file stores: qwen3next's fused beta/alpha, and its
    /// older files' fused `ssm_in`.
    fn delta_projections(&self, arch: Arch) -> DeltaProjections {
        let has = |name: &str| self.file.tensors().iter().any(|t| t.name().ends_with(name));
        match arch {
            Arch::Qwen3Next if has(".ssm_in.weight") => DeltaProjections::LegacyIn,
            Arch::Qwen3Next => DeltaProjections::FusedBetaAlpha,
            _ => DeltaProjections::Separate,
        }
    }

    /// The expert counts and width; `ffn` is `feed_forward_length` (0 when absent), from which
    /// llama.cpp derives the expert width when `expert_feed_forward_length` is absent.
    pub(super) fn read_moe(&self, arch: Arch, ffn: usize) -> Result<MoeConfig, ConfigError> {
        let k = &self.keys;
        let experts = self.size(&k.experts)?;
        let experts_used = self.size(&k.experts_used)?;
        if experts_used > experts {
            return Err(ConfigError::TooManyExpertsUsed {
                used: experts_used,
                experts,
                used_key: k.experts_used.clone(),
                experts_key: k.experts.clone(),
                file: self.name(),
            });
        }
        let expert_ffn = match self.optional(&k.expert_ffn, self.file.get_u32(&k.expert_ffn))? {
            Some(n) => self.non_zero(&k.expert_ffn, n as usize)?,
            None if ffn == 0 => return Err(self.missing(&k.expert_ffn)),
            None => {
                let from = format!("{} / {}", k.ffn, k.experts_used);
                self.non_zero(&from, ffn / experts_used)?
            }
        };
        // The shared expert of the hybrid MoE models; without its key llama.cpp takes the
        // feed-forward length.
        let shared_ffn = match arch {
            Arch::Qwen35Moe | Arch::Qwen3Next => {
                let key = &k.shared_ffn;
                Some(match self.optional(key, self.file.get_u32(key))? {
                    Some(n) => self.non_zero(key, n as usize)?,
                    None if ffn > 0 => ffn,
                    None => return Err(self.missing(key)),
                })
            }
            _ => None,
        };
        Ok(MoeConfig {
            experts,
            experts_used,
            expert_ffn,
            shared_ffn,
        })
    }

    pub(super) fn check_heads(&self, c: &Qwen3Config) -> Result<(), ConfigError> {
        let k = &self.keys;
        if !c.heads.is_multiple_of(c.kv_heads) {
            return Err(ConfigError::HeadsNotDivisible {
                heads: c.heads,
                kv_heads: c.kv_heads,
                heads_key: k.heads.clone(),
                kv_heads_key: k.kv_heads.clone(),
                file: self.name(),
            });
        }
        if let Some(v) = self.optional(&k.value_length, self.file.get_u32(&k.value_length))? {
            if v as usize != c.head_dim {
                return Err(ConfigError::ValueLengthMismatch {
                    key_length: c.head_dim,
                    value_length: v as usize,
                    key_key: k.key_length.clone(),
                    value_key: k.value_length.clone(),
                    file: self.name(),
                });
            }
        }
        if !c.head_dim.is_multiple_of(2) {
            return Err(ConfigError::OddHeadDim {
                head_dim: c.head_dim,
                file: self.name(),
            });
        }
        if let Some(n) = self.optional(&k.vocab_size, self.file.get_u64(&k.vocab_size))? {
            if n != c.vocab as u64 {
                return Err(ConfigError::VocabMismatch {
                    vocab_size: n,
                    rows: c.vocab as u64,
                    key: k.vocab_size.clone(),
                    file: self.name(),
                });
            }
        }
        Ok(())
    }
}
