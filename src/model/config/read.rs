//! Reading a model's configuration from GGUF metadata and checking it against the tensors.

use super::super::tensors::OUTPUT;
use super::error::ConfigError;
use super::keys::{Keys, ARCHES, ARCH_KEY};
use super::meta::Meta;
use super::types::{MoeConfig, Qwen3Config, DEFAULT_ROPE_THETA};
use crate::gguf::GgufFile;

impl Qwen3Config {
    /// Reads and checks the configuration of a Qwen3 GGUF file.
    pub fn from_gguf(file: &GgufFile) -> Result<Qwen3Config, ConfigError> {
        let probe = Meta {
            file,
            keys: Keys::new(ARCHES[0]),
        };
        let arch = probe.required(ARCH_KEY, file.get_str(ARCH_KEY))?;
        if !ARCHES.contains(&arch) {
            return Err(ConfigError::WrongArchitecture {
                found: arch.to_string(),
                file: probe.name(),
            });
        }
        let meta = Meta {
            file,
            keys: Keys::new(arch),
        };
        let config = meta.read_config(arch == "qwen3moe")?;
        meta.check_heads(&config)?;
        meta.check_tensors(&config)?;
        Ok(config)
    }
}

impl Meta<'_> {
    pub(super) fn read_config(&self, moe: bool) -> Result<Qwen3Config, ConfigError> {
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
        let moe = moe.then(|| self.read_moe(ffn)).transpose()?;
        Ok(Qwen3Config {
            hidden,
            layers: self.size(&k.layers)?,
            // A mixture of experts without feed_forward_length: the routed experts' width.
            ffn: match (ffn, moe) {
                (0, Some(m)) => m.expert_ffn * m.experts_used,
                _ => ffn,
            },
            heads,
            kv_heads,
            head_dim,
            rope_theta: self.positive(&k.rope_theta, rope_theta.unwrap_or(DEFAULT_ROPE_THETA))?,
            rms_eps: self.positive(&k.rms_eps, rms_eps)?,
            context_length: self.size(&k.context)?,
            vocab,
            tied_embeddings: file.tensor(OUTPUT).is_none(),
            moe,
        })
    }

    /// The expert counts and width; `ffn` is `feed_forward_length` (0 when absent), from which
    /// llama.cpp derives the expert width when `expert_feed_forward_length` is absent.
    pub(super) fn read_moe(&self, ffn: usize) -> Result<MoeConfig, ConfigError> {
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
        Ok(MoeConfig {
            experts,
            experts_used,
            expert_ffn,
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
