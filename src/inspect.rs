//! `qwen --inspect`: what a GGUF file holds, as text for a person or one JSON object.
//!
//! The report is built even when the file is not a valid Qwen3 model (another architecture, a
//! missing tensor): it then lists metadata and tensors, says why the config is invalid
//! (`config_error` in JSON), and [`run`] returns that error so the command exits non-zero.

use std::io::{ErrorKind, Write};
use std::path::Path;

use serde::Serialize;
use serde_json::Value;
use thiserror::Error;

use crate::gguf::{GgufError, GgufFile, MetadataValue};
use crate::model::config::{ConfigError, MtpBlock, Qwen3Config};
use crate::model::tensors::OUTPUT;
use crate::quant::GgmlType;

/// Strings longer than this are shortened in the text report (the chat template is kilobytes).
const TEXT_STRING_MAX: usize = 72;

#[derive(Debug, Error)]
pub enum InspectError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot write the report: {0}")]
    Output(std::io::Error),
}

/// Everything `--inspect` reports; serialised as is for `--json`.
#[derive(Debug, Serialize)]
pub struct Report {
    pub file: String,
    pub file_size: u64,
    pub gguf_version: u32,
    pub alignment: u64,
    pub architecture: Option<String>,
    pub name: Option<String>,
    pub config: Option<Qwen3Config>,
    pub config_error: Option<String>,
    /// Elements over all tensors.
    pub n_params: u64,
    /// Parameters one token's forward pass reads (a mixture of experts: only the routed experts,
    /// and the shared one where there is one; dense: all of them). Absent when the config is
    /// invalid.
    pub n_active_params: Option<u64>,
    /// A hybrid model's layer pattern and recurrent state (absent for Qwen3).
    pub hybrid: Option<HybridSummary>,
    pub type_counts: Vec<TypeCount>,
    pub tokenizer_embedded: bool,
    pub tokenizer: Option<TokenizerSummary>,
    pub chat_template_embedded: bool,
    pub metadata: Vec<MetadataEntry>,
    pub tensors: Vec<TensorEntry>,
}

/// What a hybrid model's layers are, and what state one sequence carries.
#[derive(Debug, Serialize)]
pub struct HybridSummary {
    /// One letter per trunk layer: `D` gated DeltaNet (recurrent), `A` gated attention.
    pub layer_pattern: String,
    pub recurrent_layer_count: usize,
    pub attention_layer_count: usize,
    /// f32 values of one DeltaNet layer's state: the convolution's last inputs and the
    /// `state x state` matrix of each value head.
    pub state_floats_per_layer: usize,
    /// Bytes of recurrent state per sequence, every DeltaNet layer together.
    pub state_bytes_per_sequence: u64,
    /// KV-cache bytes per position (f16 keys and values of the attention layers only).
    pub kv_bytes_per_position: u64,
    /// Multi-token-prediction blocks after the trunk (`--mtp` runs the first).
    pub mtp_layers: usize,
    /// The block `--mtp` runs: its index and which optional tensors of its own it has.
    pub mtp: Option<MtpBlock>,
    /// The first tensor a declared block lacks (a file converted without it): `--mtp` cannot
    /// run it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtp_missing_tensor: Option<String>,
}

impl HybridSummary {
    fn of(c: &Qwen3Config, file: &GgufFile) -> Option<Self> {
        let h = c.hybrid.as_ref()?;
        let pattern = h
            .recurrent_layers
            .iter()
            .map(|&r| if r { 'D' } else { 'A' })
            .collect();
        Some(HybridSummary {
            layer_pattern: pattern,
            recurrent_layer_count: h.recurrent_count(),
            attention_layer_count: c.attention_layers(),
            state_floats_per_layer: h.state_floats_per_layer(),
            state_bytes_per_sequence: h.state_bytes(),
            kv_bytes_per_position: 4 * (c.kv_dim() * c.attention_layers()) as u64,
            mtp_layers: h.mtp_layers,
            mtp: MtpBlock::of(file, c),
            mtp_missing_tensor: MtpBlock::missing_tensor(file, c).filter(|_| h.mtp_layers > 0),
        })
    }
}

#[derive(Debug, Serialize)]
pub struct TypeCount {
    #[serde(rename = "type")]
    pub ty: String,
    pub count: usize,
    pub bytes: u64,
    /// Whether this program computes on the type.
    pub supported: bool,
}

#[derive(Debug, Serialize)]
pub struct TokenizerSummary {
    /// `tokenizer.ggml.model`, e.g. "gpt2" (byte-level BPE) or "none".
    pub model: String,
    pub pre: Option<String>,
    pub tokens: usize,
    pub merges: usize,
}

/// One metadata entry: scalars in full, arrays by element type and length only.
#[derive(Debug, Serialize)]
pub struct MetadataEntry {
    pub key: String,
    #[serde(rename = "type")]
    pub ty: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub len: Option<usize>,
}

#[derive(Debug, Serialize)]
pub struct TensorEntry {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: String,
    /// Outermost first, as PyTorch: [rows, cols].
    pub shape: Vec<u64>,
    /// Byte offset of the data from the start of the file.
    pub offset: u64,
    pub bytes: u64,
}

/// Reads `path`, writes the report to `out`, and fails if the file is unreadable or not a valid
/// Qwen3 model (after writing the report, in the second case).
pub fn run(path: &Path, json: bool, out: &mut impl Write) -> Result<(), InspectError> {
    let file = GgufFile::open(path)?;
    let config = Qwen3Config::from_gguf(&file);
    let report = Report::new(&file, config.as_ref().ok(), config.as_ref().err());
    let text = if json {
        let mut s =
            serde_json::to_string_pretty(&report).map_err(|e| InspectError::Output(e.into()))?;
        s.push('\n');
        s
    } else {
        report.to_text()
    };
    write_all(out, &text)?;
    config.map(|_| ()).map_err(InspectError::from)
}

/// Writes the report; a closed pipe (`qwen --inspect | head`) is not an error.
fn write_all(out: &mut impl Write, text: &str) -> Result<(), InspectError> {
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() != ErrorKind::BrokenPipe => Err(InspectError::Output(e)),
        _ => Ok(()),
    }
}

impl Report {
    pub fn new(
        file: &GgufFile,
        config: Option<&Qwen3Config>,
        error: Option<&ConfigError>,
    ) -> Report {
        let string = |key| file.get_str(key).ok().map(str::to_string);
        let tokenizer = tokenizer_summary(file);
        Report {
            file: file.source().to_string(),
            file_size: file.file_size(),
            gguf_version: file.version(),
            alignment: file.alignment(),
            architecture: string("general.architecture"),
            name: string("general.name"),
            config: config.cloned(),
            config_error: error.map(ToString::to_string),
            n_params: file.n_elements(),
            // The file's tensors, not the config's count: an MTP block's weights are in the
            // file, and only idle experts are not read.
            n_active_params: config.map(|c| file.n_elements() - c.idle_expert_params()),
            hybrid: config.and_then(|c| HybridSummary::of(c, file)),
            type_counts: type_counts(file),
            tokenizer_embedded: tokenizer
                .as_ref()
                .is_some_and(|t| t.model != "none" && t.tokens > 0),
            tokenizer,
            chat_template_embedded: file
                .get_str("tokenizer.chat_template")
                .is_ok_and(|t| !t.is_empty()),
            metadata: file
                .metadata()
                .iter()
                .map(|(k, v)| metadata_entry(k, v))
                .collect(),
            tensors: file.tensors().iter().map(tensor_entry).collect(),
        }
    }

    /// The report for a person.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let mut line = |l: String| {
            s.push_str(&l);
            s.push('\n');
        };
        line(format!("file:           {}", self.file));
        line(format!("size:           {}", human_bytes(self.file_size)));
        line(format!(
            "GGUF version:   {} (alignment {}, {} metadata keys, {} tensors)",
            self.gguf_version,
            self.alignment,
            self.metadata.len(),
            self.tensors.len()
        ));
        line(format!(
            "architecture:   {}",
            self.architecture.as_deref().unwrap_or("(none)")
        ));
        if let Some(name) = &self.name {
            line(format!("name:           {name}"));
        }
        line(format!(
            "parameters:     {} ({})",
            human_count(self.n_params),
            self.n_params
        ));
        if let Some(active) = self.n_active_params.filter(|&n| n != self.n_params) {
            let shared = self
                .config
                .as_ref()
                .and_then(|c| c.moe)
                .is_some_and(|m| m.shared_ffn.is_some());
            let which = if shared {
                "the routed experts and the shared one"
            } else {
                "the routed experts only"
            };
            line(format!(
                "active:         {} ({active}) per token, {which}",
                human_count(active)
            ));
        }
        config_lines(self, &mut line);
        line("tensor types:".to_string());
        for t in &self.type_counts {
            let note = if t.supported { "" } else { "  (not supported)" };
            line(format!(
                "  {:<8} {:>5} tensors  {:>11}{note}",
                t.ty,
                t.count,
                human_bytes(t.bytes)
            ));
        }
        line(format!("tokenizer:      {}", tokenizer_text(self)));
        line(format!(
            "chat template:  {}",
            if self.chat_template_embedded {
                "embedded"
            } else {
                "not embedded"
            }
        ));
        line("metadata:".to_string());
        for m in &self.metadata {
            line(format!("  {} = {}", m.key, metadata_text(m)));
        }
        line("tensors (shape outermost first):".to_string());
        for t in &self.tensors {
            line(format!("  {:<28} {:<6} {:?}", t.name, t.ty, t.shape));
        }
        s
    }
}

fn config_lines(r: &Report, line: &mut impl FnMut(String)) {
    let Some(c) = &r.config else {
        let error = r.config_error.as_deref().unwrap_or("(none)");
        line(format!("config:         invalid: {error}"));
        return;
    };
    line("config:".to_string());
    line(format!("  hidden          {}", c.hidden));
    line(format!("  layers          {}", c.layers));
    line(format!(
        "  heads           {} (q width {})",
        c.heads,
        c.q_dim()
    ));
    line(format!(
        "  kv_heads        {} (kv width {})",
        c.kv_heads,
        c.kv_dim()
    ));
    line(format!("  head_dim        {}", c.head_dim));
    line(format!("  ffn             {}", c.ffn));
    if let Some(m) = c.moe {
        line(format!(
            "  experts         {} ({} used per token)",
            m.experts, m.experts_used
        ));
        line(format!("  expert_ffn      {}", m.expert_ffn));
        if let Some(width) = m.shared_ffn {
            line(format!(
                "  shared_ffn      {width} (one shared expert, every token)"
            ));
        }
    }
    line(format!("  vocab           {}", c.vocab));
    line(format!("  rope_theta      {}", c.rope_theta));
    line(format!("  rms_eps         {:e}", c.rms_eps));
    line(format!("  context_length  {}", c.context_length));
    let tied = if c.tied_embeddings {
        format!("yes (no {OUTPUT})")
    } else {
        "no".to_string()
    };
    line(format!("  tied_embeddings {tied}"));
    if c.rope_dims != c.head_dim || c.rope_sections.is_some() {
        let sections = c
            .rope_sections
            .map(|s| format!(", sections {s:?}"))
            .unwrap_or_default();
        line(format!(
            "  rope            first {} of {} dims of each head{sections}",
            c.rope_dims, c.head_dim
        ));
    }
    if c.arch.is_vision_language() {
        line(format!(
            "  images          not supported: text only ({} deepstack layers, which add image \
             features, add nothing to text)",
            c.deepstack_layers
        ));
    }
    if let (Some(h), Some(s)) = (&c.hybrid, &r.hybrid) {
        line(format!(
            "  layers by kind  {} (D gated DeltaNet: {}, A gated attention: {})",
            s.layer_pattern, s.recurrent_layer_count, s.attention_layer_count
        ));
        line(format!(
            "  deltanet        {} key / {} value heads of {}, conv {} taps, {:?} key heads",
            h.k_heads, h.v_heads, h.state_size, h.conv_kernel, h.key_heads
        ));
        line(format!(
            "  state           {} per sequence ({} f32 per DeltaNet layer); KV cache {} per position",
            human_bytes(s.state_bytes_per_sequence),
            s.state_floats_per_layer,
            human_bytes(s.kv_bytes_per_position)
        ));
        if let Some(missing) = &s.mtp_missing_tensor {
            line(format!(
                "  mtp             {} multi-token-prediction block(s) after the trunk, \
                 incomplete (no {missing}): --mtp cannot run it",
                s.mtp_layers
            ));
        }
        if let Some(m) = &s.mtp {
            let own = |has: bool, own: &str, trunk: &str| match has {
                true => format!("own {own}"),
                false => format!("trunk's {trunk}"),
            };
            line(format!(
                "  mtp             {} multi-token-prediction block(s) after the trunk: blk.{} \
                 (nextn.eh_proj, enorm, hnorm; gated attention + feed-forward; {}, {}, {}); \
                 run with --mtp N",
                s.mtp_layers,
                m.layer,
                own(m.own_embedding, "embed_tokens", "token_embd"),
                own(m.own_head_norm, "shared_head_norm", "output_norm"),
                own(m.own_head, "shared_head_head", "head"),
            ));
        }
    }
}

fn tokenizer_text(r: &Report) -> String {
    match &r.tokenizer {
        Some(t) if r.tokenizer_embedded => {
            let pre = t
                .pre
                .as_deref()
                .map(|p| format!(", pre {p}"))
                .unwrap_or_default();
            format!(
                "embedded: {}{pre}, {} tokens, {} merges",
                t.model, t.tokens, t.merges
            )
        }
        Some(t) => format!("not embedded (tokenizer.ggml.model = {:?})", t.model),
        None => "not embedded".to_string(),
    }
}

fn tokenizer_summary(file: &GgufFile) -> Option<TokenizerSummary> {
    let model = file.get_str("tokenizer.ggml.model").ok()?;
    let len = |key| {
        file.get(key)
            .and_then(MetadataValue::as_array)
            .map_or(0, |a| a.len())
    };
    Some(TokenizerSummary {
        model: model.to_string(),
        pre: file.get_str("tokenizer.ggml.pre").ok().map(str::to_string),
        tokens: len("tokenizer.ggml.tokens"),
        merges: len("tokenizer.ggml.merges"),
    })
}

/// Tensor types by total bytes, largest first.
fn type_counts(file: &GgufFile) -> Vec<TypeCount> {
    let mut counts: Vec<(GgmlType, usize, u64)> = Vec::new();
    for t in file.tensors() {
        match counts.iter_mut().find(|c| c.0 == t.ggml_type()) {
            Some(c) => {
                c.1 += 1;
                c.2 += t.n_bytes();
            }
            None => counts.push((t.ggml_type(), 1, t.n_bytes())),
        }
    }
    counts.sort_by_key(|c| std::cmp::Reverse(c.2));
    let entry = |(ty, count, bytes): (GgmlType, usize, u64)| TypeCount {
        ty: ty.name().to_string(),
        count,
        bytes,
        supported: ty.is_supported(),
    };
    counts.into_iter().map(entry).collect()
}

fn metadata_entry(key: &str, value: &MetadataValue) -> MetadataEntry {
    let (value_json, len) = match value {
        MetadataValue::Array(a) => (None, Some(a.len())),
        scalar => (Some(scalar_json(scalar)), None),
    };
    MetadataEntry {
        key: key.to_string(),
        ty: value.type_description(),
        value: value_json,
        len,
    }
}

fn scalar_json(value: &MetadataValue) -> Value {
    match value {
        MetadataValue::String(s) => Value::from(s.as_str()),
        MetadataValue::Bool(b) => Value::from(*b),
        // The shortest decimal that reads back as the same f32 (1e-6, not 9.99999997e-7).
        MetadataValue::F32(f) => Value::from(f.to_string().parse::<f64>().unwrap_or(f64::NAN)),
        MetadataValue::F64(f) => Value::from(*f),
        other => match other.as_i128().map(i64::try_from) {
            Some(Ok(n)) => Value::from(n),
            // u64 values above i64::MAX
            _ => Value::from(other.as_i128().and_then(|n| u64::try_from(n).ok())),
        },
    }
}

fn metadata_text(m: &MetadataEntry) -> String {
    match (&m.value, m.len) {
        (_, Some(len)) => format!("[{len} x {}]", m.ty.trim_start_matches("array of ")),
        (Some(Value::String(s)), _) if s.chars().count() > TEXT_STRING_MAX => {
            let head: String = s.chars().take(TEXT_STRING_MAX).collect();
            format!("{head:?}... ({} chars)", s.chars().count())
        }
        (Some(v), _) => v.to_string(),
        (None, None) => String::new(),
    }
}

fn tensor_entry(t: &crate::gguf::TensorInfo) -> TensorEntry {
    TensorEntry {
        name: t.name().to_string(),
        ty: t.ggml_type().name().to_string(),
        shape: t.shape(),
        offset: t.file_offset(),
        bytes: t.n_bytes(),
    }
}

/// "596.0M", "4.02B".
pub fn human_count(n: u64) -> String {
    let f = n as f64;
    match n {
        0..=999 => n.to_string(),
        1_000..=999_999 => format!("{:.1}K", f / 1e3),
        1_000_000..=999_999_999 => format!("{:.1}M", f / 1e6),
        _ => format!("{:.2}B", f / 1e9),
    }
}

/// "1.22 MiB (1280864 bytes)".
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = "bytes";
    for u in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = u;
    }
    if unit == "bytes" {
        format!("{n} bytes")
    } else {
        format!("{value:.2} {unit} ({n} bytes)")
    }
}
