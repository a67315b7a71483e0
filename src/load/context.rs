//! How many positions the KV cache holds: `--ctx-size`, else the model's context length, lowered
//! (with a notice) when its KV cache would not fit in the memory the system has available.
//!
//! The cache ([`crate::ops::cached_attention::KvCache`]) stores keys and values as f16 for every
//! layer, `2 * layers * kv_heads * head_dim * 2` bytes per position, allocated for the whole
//! context up front (pages are committed as they are written, but an allocation larger than
//! memory can still fail outright). A hybrid model has a KV cache only in its attention layers,
//! and a recurrent state in the others that does not grow with the context. The budget is 3/4
//! of the memory figure after the model file, whose mapped pages must stay resident, and the
//! recurrent states; the rest is left for activations. The figure is
//! `QWEN_MEM_AVAILABLE` (bytes, to try a smaller machine), else `MemAvailable` (Linux
//! `/proc/meminfo`), else the total memory (`MemTotal`, or the OS's page count, as on macOS),
//! never more than the address space the process may use (`ulimit -v`, and what a Rust
//! allocation can span): with no figure at all, the cache is still checked against that.

use thiserror::Error;

use crate::backend::SAVED_STATES;
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

/// Where the memory figure of the budget comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemorySource {
    /// `QWEN_MEM_AVAILABLE`.
    Override,
    /// `MemAvailable` in `/proc/meminfo`.
    Available,
    /// The machine's total memory (no `MemAvailable`).
    Total,
    /// The address-space limit of the process (`ulimit -v` or `ulimit -d`).
    AddressLimit,
    /// Nothing known but what one allocation can span.
    AddressSpace,
}

impl MemorySource {
    fn describe(self) -> &'static str {
        match self {
            MemorySource::Override => "QWEN_MEM_AVAILABLE",
            MemorySource::Available => "MemAvailable",
            MemorySource::Total => "the total memory (MemAvailable is unknown)",
            MemorySource::AddressLimit => "the address-space limit (ulimit -v)",
            MemorySource::AddressSpace => "the address space",
        }
    }
}

/// The memory a KV cache may take a share of, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    pub bytes: u64,
    pub source: MemorySource,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ContextError {
    #[error(
        "--ctx-size {requested} needs a {need} KV cache but only {budget} of memory is available \
         for it (3/4 of {figure} after the model file): lower --ctx-size (at most {fits} fits)"
    )]
    TooLarge {
        requested: usize,
        need: String,
        budget: String,
        figure: &'static str,
        fits: usize,
    },

    #[error(
        "not enough memory for any KV cache: {per_position} bytes per position, {budget} bytes \
         available after the model ({figure}); free some memory or use a smaller model"
    )]
    NoRoom {
        per_position: u64,
        budget: u64,
        figure: &'static str,
    },

    #[error(
        "{MEM_AVAILABLE_ENV}='{value}' is not a byte count: give bytes, optionally with a K, M, \
         G, T, P or E suffix (powers of 1024), e.g. {MEM_AVAILABLE_ENV}=8G, or unset it"
    )]
    BadMemoryFigure { value: String },
}

/// Bytes of KV cache per position of context: the attention layers' (all of Qwen3's, one in a
/// few of a hybrid model's).
pub fn kv_bytes_per_position(config: &Qwen3Config) -> u64 {
    // Keys and values, f16.
    let per_layer = 2 * config.kv_heads as u64 * config.head_dim as u64 * 2;
    per_layer * config.attention_layers() as u64
}

/// Bytes of recurrent state a hybrid model holds whatever the context: the state the DeltaNet
/// layers carry and the states the engine saves to rewind to (0 for Qwen3).
pub fn state_bytes(config: &Qwen3Config) -> u64 {
    let per_copy = config.hybrid.as_ref().map_or(0, |h| h.state_bytes());
    per_copy * (1 + SAVED_STATES as u64)
}

/// The memory figure a run budgets with: `QWEN_MEM_AVAILABLE` (an error when it cannot be
/// read), else `MemAvailable`, else the total memory, each capped at the address space.
pub fn memory() -> Result<Memory, ContextError> {
    let figure = match std::env::var_os(MEM_AVAILABLE_ENV) {
        Some(v) if !v.is_empty() => {
            let text = v.to_string_lossy();
            let bytes = parse_bytes(&text).ok_or_else(|| ContextError::BadMemoryFigure {
                value: text.to_string(),
            })?;
            Some((bytes, MemorySource::Override))
        }
        _ => {
            let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
            meminfo_bytes(&meminfo, "MemAvailable:")
                .map(|b| (b, MemorySource::Available))
                .or_else(|| total_memory(&meminfo).map(|b| (b, MemorySource::Total)))
        }
    };
    Ok(capped(figure, address_space()))
}

/// The figure, or the address space when there is none or it is smaller.
fn capped(figure: Option<(u64, MemorySource)>, space: Memory) -> Memory {
    match figure {
        Some((bytes, source)) if bytes <= space.bytes => Memory { bytes, source },
        _ => space,
    }
}

/// A byte count: digits, then optionally K, M, G, T, P or E (powers of 1024, with or without
/// "B" or "iB", any case, spaces allowed before it).
pub fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(digits);
    let number: u64 = number.parse().ok()?;
    let suffix = suffix.trim_start().to_ascii_lowercase();
    let unit = suffix
        .strip_suffix("ib")
        .or_else(|| suffix.strip_suffix('b'))
        .unwrap_or(&suffix);
    let power = match unit {
        "" => 0,
        "k" => 1,
        "m" => 2,
        "g" => 3,
        "t" => 4,
        "p" => 5,
        "e" => 6,
        _ => return None,
    };
    if suffix == "ib" {
        return None;
    }
    number.checked_mul(1u64.checked_shl(10 * power)?)
}

/// A `/proc/meminfo` field (`MemAvailable:`, `MemTotal:`), in bytes.
fn meminfo_bytes(meminfo: &str, field: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// `MemTotal`, else physical pages times the page size (systems without `/proc`).
fn total_memory(meminfo: &str) -> Option<u64> {
    meminfo_bytes(meminfo, "MemTotal:").or_else(physical_memory)
}

#[cfg(unix)]
fn physical_memory() -> Option<u64> {
    // SAFETY: sysconf only reads system constants.
    let (pages, page) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let (pages, page) = (u64::try_from(pages).ok()?, u64::try_from(page).ok()?);
    pages.checked_mul(page).filter(|&b| b > 0)
}

#[cfg(not(unix))]
fn physical_memory() -> Option<u64> {
    None
}

/// The most one allocation can span (`isize::MAX` bytes), lowered to the process's
/// address-space and data limits where they are set.
fn address_space() -> Memory {
    let most = Memory {
        bytes: isize::MAX as u64,
        source: MemorySource::AddressSpace,
    };
    match address_limit() {
        Some(limit) if limit < most.bytes => Memory {
            bytes: limit,
            source: MemorySource::AddressLimit,
        },
        _ => most,
    }
}

#[cfg(unix)]
fn address_limit() -> Option<u64> {
    let soft = |resource| {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes the struct it is given.
        let ok = unsafe { libc::getrlimit(resource, &mut limit) } == 0;
        // rlim_t is u64 on Linux and macOS, but not everywhere.
        #[allow(clippy::unnecessary_cast)]
        let bytes = limit.rlim_cur as u64;
        (ok && limit.rlim_cur != libc::RLIM_INFINITY).then_some(bytes)
    };
    [soft(libc::RLIMIT_AS), soft(libc::RLIMIT_DATA)]
        .into_iter()
        .flatten()
        .min()
}

#[cfg(not(unix))]
fn address_limit() -> Option<u64> {
    None
}

/// Chooses the context: `requested` (an error when its cache cannot fit), else the model's
/// context length, lowered to what fits in `memory` after `model_bytes`.
pub fn choose(
    requested: Option<usize>,
    config: &Qwen3Config,
    model_bytes: u64,
    memory: Memory,
) -> Result<ContextChoice, ContextError> {
    let wanted = requested.unwrap_or(config.context_length);
    let source = memory.source.describe();
    let per_position = kv_bytes_per_position(config).max(1);
    let fixed = model_bytes.saturating_add(state_bytes(config));
    let budget = memory.bytes.saturating_sub(fixed) / 4 * 3;
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
            need: mib(requested as u128 * per_position as u128),
            budget: mib(budget as u128),
            figure: source,
            fits,
        });
    }
    let size = round_down(fits);
    if size == 0 {
        return Err(ContextError::NoRoom {
            per_position,
            budget,
            figure: source,
        });
    }
    let notice = format!(
        "notice: context lowered from the model's {wanted} to {size} positions: a KV cache for \
         {wanted} needs {}, more than the {} of memory available for it (3/4 of {source} after \
         the model file; set --ctx-size to choose)",
        mib(wanted as u128 * per_position as u128),
        mib(budget as u128)
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

fn mib(bytes: u128) -> String {
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
            arch: crate::model::config::Arch::Qwen3,
            hidden: 64,
            layers,
            ffn: 128,
            heads: kv_heads * 2,
            kv_heads,
            head_dim,
            rope_dims: head_dim,
            rope_sections: None,
            rope_theta: 1e6,
            rms_eps: 1e-6,
            context_length,
            vocab: 512,
            tied_embeddings: true,
            moe: None,
            hybrid: None,
            deepstack_layers: 0,
        }
    }

    #[test]
    fn bytes_per_position_of_qwen3_4b() {
        // 36 layers, 8 KV heads of 128: keys and values in f16.
        assert_eq!(kv_bytes_per_position(&config(36, 8, 128, 40960)), 147_456);
    }

    fn known(bytes: u64) -> Memory {
        Memory {
            bytes,
            source: MemorySource::Available,
        }
    }

    #[test]
    fn reads_mem_available_in_bytes() {
        let text = "MemTotal:       24684084 kB\nMemFree: 1 kB\nMemAvailable:   24070684 kB\n";
        assert_eq!(
            meminfo_bytes(text, "MemAvailable:"),
            Some(24_070_684 * 1024)
        );
        assert_eq!(meminfo_bytes("MemTotal: 5 kB\n", "MemAvailable:"), None);
        assert_eq!(total_memory("MemTotal: 5 kB\n"), Some(5 * 1024));
        // No /proc (macOS): the OS's page count.
        #[cfg(unix)]
        assert!(total_memory("").is_some_and(|b| b > 1 << 20));
    }

    #[test]
    fn byte_counts_take_binary_suffixes() {
        assert_eq!(parse_bytes("300000000"), Some(300_000_000));
        assert_eq!(parse_bytes(" 8G "), Some(8 << 30));
        assert_eq!(parse_bytes("8 GiB"), Some(8 << 30));
        assert_eq!(parse_bytes("512mb"), Some(512 << 20));
        assert_eq!(parse_bytes("1E"), Some(1 << 60));
        assert_eq!(parse_bytes("16E"), None, "overflows");
        for bad in [
            "",
            "eight",
            "8X",
            "-1",
            "1.5G",
            "G",
            "8 iB",
            "99999999999999999999999",
        ] {
            assert_eq!(parse_bytes(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn without_a_figure_the_address_space_is_the_limit() {
        let space = Memory {
            bytes: 1 << 30,
            source: MemorySource::AddressLimit,
        };
        assert_eq!(capped(None, space), space);
        assert_eq!(
            capped(Some((2 << 30, MemorySource::Override)), space),
            space
        );
        let small = capped(Some((1 << 20, MemorySource::Total)), space);
        assert_eq!(small.source, MemorySource::Total);
        // A cache larger than the address space is refused, whatever else is known.
        let c = config(2, 2, 32, 40960);
        let err = choose(Some(4_000_000_000), &c, 0, space).unwrap_err();
        assert!(err.to_string().contains("address-space limit"), "{err}");
        assert!(address_space().bytes <= isize::MAX as u64);
    }

    #[test]
    fn default_context_is_kept_when_it_fits() {
        let c = config(2, 2, 32, 40960); // 512 bytes per position: 20 MiB
        let choice = choose(None, &c, 0, known(1 << 30)).unwrap();
        assert_eq!(
            choice,
            ContextChoice {
                size: 40960,
                notice: None
            }
        );
    }

    #[test]
    fn default_context_is_lowered_with_a_notice() {
        let c = config(2, 2, 32, 40960);
        // 4 MiB + 1 MiB model: budget 3 MiB = 6144 positions of 512 bytes.
        let choice = choose(None, &c, 1 << 20, known(5 << 20)).unwrap();
        assert_eq!(choice.size, 6144);
        let notice = choice.notice.unwrap();
        assert!(
            notice.contains("from the model's 40960 to 6144"),
            "{notice}"
        );
        // Below one rounding step, the exact count.
        let choice = choose(None, &c, 0, known(100 * 1024)).unwrap();
        assert_eq!(choice.size, 150);
    }

    #[test]
    fn an_explicit_context_that_cannot_fit_is_an_error() {
        let c = config(2, 2, 32, 40960);
        let err = choose(Some(8192), &c, 0, known(4 << 20)).unwrap_err();
        assert!(
            matches!(err, ContextError::TooLarge { fits: 6144, .. }),
            "{err}"
        );
        assert_eq!(
            choose(Some(6144), &c, 0, known(4 << 20)).unwrap().size,
            6144
        );
        assert!(matches!(
            choose(None, &c, 10 << 20, known(4 << 20)),
            Err(ContextError::NoRoom { .. })
        ));
    }
}
