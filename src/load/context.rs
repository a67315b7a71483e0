//! How many positions the KV cache holds: `--ctx-size`, else the model's context length, lowered
//! (with a notice) when its KV cache would not fit in the memory the system has available.
//!
//! The cache ([`crate::ops::cached_attention::KvCache`]) stores keys and values as f32 for every
//! layer, `2 * layers * kv_heads * head_dim * 4` bytes per position, allocated for the whole
//! context up front (pages are committed as they are written, but an allocation larger than
//! memory can still fail outright). The budget is 3/4 of `MemAvailable` (Linux `/proc/meminfo`)
//! after the model file, whose mapped pages must stay resident; the rest is left for activations.
//! `QWEN_MEM_AVAILABLE` (bytes) replaces `MemAvailable`, to try a smaller machine. Where neither
//! is known the context is not lowered.

use thiserror::Error;

use crate::model::config::Qwen3Config;

/// Environment variable that replaces `/proc/meminfo`'s `MemAvailable`, in bytes.
pub const MEM_AVAILABLE_ENV: &str = "QWEN_MEM_AVAILABLE";

/// Lowered contexts are rounded down to a multiple of this (when at least this large).
const ROUND_TO: usize = 256;

/// The context a run uses, and the notice to print when it is not what was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextChoice {
    pub size: usize,
    pub notice: Option<String>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ContextError {
    #[error(
        "--ctx-size {requested} needs a {need} KV cache but only {budget} of memory is available \
         for it: lower --ctx-size (at most {fits} fits)"
    )]
    TooLarge {
        requested: usize,
        need: String,
        budget: String,
        fits: usize,
    },

    #[error(
        "not enough memory for any KV cache: {per_position} bytes per position, {budget} bytes \
         available after the model; free some memory or use a smaller model"
    )]
    NoRoom { per_position: u64, budget: u64 },
}

/// Bytes of KV cache per position of context.
pub fn kv_bytes_per_position(config: &Qwen3Config) -> u64 {
    // Keys and values, f16.
    let per_layer = 2 * config.kv_heads as u64 * config.head_dim as u64 * 2;
    per_layer * config.layers as u64
}

/// Memory available to new allocations, in bytes, if known.
pub fn available_memory() -> Option<u64> {
    if let Ok(value) = std::env::var(MEM_AVAILABLE_ENV) {
        return value.trim().parse().ok();
    }
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    mem_available(&meminfo)
}

/// `MemAvailable` of a `/proc/meminfo` text, in bytes.
fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Chooses the context: `requested` (an error when its cache cannot fit), else the model's
/// context length, lowered to what fits in `available` memory after `model_bytes`.
pub fn choose(
    requested: Option<usize>,
    config: &Qwen3Config,
    model_bytes: u64,
    available: Option<u64>,
) -> Result<ContextChoice, ContextError> {
    let wanted = requested.unwrap_or(config.context_length);
    let Some(available) = available else {
        return Ok(ContextChoice {
            size: wanted,
            notice: None,
        });
    };
    let per_position = kv_bytes_per_position(config).max(1);
    let budget = available.saturating_sub(model_bytes) / 4 * 3;
    let fits = usize::try_from(budget / per_position).unwrap_or(usize::MAX);
    if wanted <= fits {
        return Ok(ContextChoice {
            size: wanted,
            notice: None,
        });
    }
    if let Some(requested) = requested {
        return Err(ContextError::TooLarge {
            requested,
            need: mib(requested as u64 * per_position),
            budget: mib(budget),
            fits,
        });
    }
    let size = round_down(fits);
    if size == 0 {
        return Err(ContextError::NoRoom {
            per_position,
            budget,
        });
    }
    let notice = format!(
        "notice: context lowered from the model's {wanted} to {size} positions: a KV cache for \
         {wanted} needs {}, more than the {} of memory available for it (set --ctx-size to choose)",
        mib(wanted as u64 * per_position),
        mib(budget)
    );
    Ok(ContextChoice {
        size,
        notice: Some(notice),
    })
}

fn round_down(n: usize) -> usize {
    if n >= ROUND_TO {
        n / ROUND_TO * ROUND_TO
    } else {
        n
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(
        layers: usize,
        kv_heads: usize,
        head_dim: usize,
        context_length: usize,
    ) -> Qwen3Config {
        Qwen3Config {
            hidden: 64,
            layers,
            ffn: 128,
            heads: kv_heads * 2,
            kv_heads,
            head_dim,
            rope_theta: 1e6,
            rms_eps: 1e-6,
            context_length,
            vocab: 512,
            tied_embeddings: true,
        }
    }

    #[test]
    fn bytes_per_position_of_qwen3_4b() {
        // 36 layers, 8 KV heads of 128: keys and values in f16.
        assert_eq!(kv_bytes_per_position(&config(36, 8, 128, 40960)), 147_456);
    }

    #[test]
    fn reads_mem_available_in_bytes() {
        let text = "MemTotal:       24684084 kB\nMemFree: 1 kB\nMemAvailable:   24070684 kB\n";
        assert_eq!(mem_available(text), Some(24_070_684 * 1024));
        assert_eq!(mem_available("MemTotal: 5 kB\n"), None);
    }

    #[test]
    fn default_context_is_kept_when_it_fits() {
        let c = config(2, 2, 32, 40960); // 512 bytes per position: 20 MiB
        let choice = choose(None, &c, 0, Some(1 << 30)).unwrap();
        assert_eq!(
            choice,
            ContextChoice {
                size: 40960,
                notice: None
            }
        );
        assert_eq!(choose(None, &c, 0, None).unwrap().size, 40960);
    }

    #[test]
    fn default_context_is_lowered_with_a_notice() {
        let c = config(2, 2, 32, 40960);
        // 4 MiB + 1 MiB model: budget 3 MiB = 6144 positions of 512 bytes.
        let choice = choose(None, &c, 1 << 20, Some(5 << 20)).unwrap();
        assert_eq!(choice.size, 6144);
        let notice = choice.notice.unwrap();
        assert!(
            notice.contains("from the model's 40960 to 6144"),
            "{notice}"
        );
        // Below one rounding step, the exact count.
        let choice = choose(None, &c, 0, Some(100 * 1024)).unwrap();
        assert_eq!(choice.size, 150);
    }

    #[test]
    fn an_explicit_context_that_cannot_fit_is_an_error() {
        let c = config(2, 2, 32, 40960);
        let err = choose(Some(8192), &c, 0, Some(4 << 20)).unwrap_err();
        assert!(
            matches!(err, ContextError::TooLarge { fits: 6144, .. }),
            "{err}"
        );
        assert_eq!(choose(Some(6144), &c, 0, Some(4 << 20)).unwrap().size, 6144);
        assert!(matches!(
            choose(None, &c, 10 << 20, Some(4 << 20)),
            Err(ContextError::NoRoom { .. })
        ));
    }
}
