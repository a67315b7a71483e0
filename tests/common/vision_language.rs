//! Qwen3-VL language models (`qwen3vl`, `qwen3vlmoe`) derived at test time from the tiny Qwen3
//! fixtures, exactly as `tools/vl_fixtures.py` derives them for llama.cpp's references
//! (`refs/tiny-qwen3vl-f32.json`, `refs/tiny-qwen3vlmoe-f32.json`): the architecture and the
//! prefix of every key renamed, `rope.dimension_sections` and `n_deepstack_layers` added,
//! tensors untouched.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use qwen::gguf::GgufFile;

use super::fixture_file::{fixture, write_atomically};
use super::rewrite;
use super::synthetic::synthetic_dir;
use super::{Gguf, V};

/// A vision-language model made from a fixture.
#[derive(Debug, Clone, Copy)]
pub struct VisionLanguage {
    /// The fixture it is made from.
    pub source: &'static str,
    pub arch: &'static str,
    pub sections: [i32; 4],
}

/// Dense: five of the eight rotary pairs of its 16-wide heads fall to the fourth axis, which
/// a text position does not turn (a reader ignoring the sections gives other tokens).
pub const QWEN3VL: VisionLanguage = VisionLanguage {
    source: "tiny-f32.gguf",
    arch: "qwen3vl",
    sections: [1, 1, 1, 5],
};

/// Mixture of experts: the sections cover every pair, as real files' do.
pub const QWEN3VLMOE: VisionLanguage = VisionLanguage {
    source: "tiny-moe-f32.gguf",
    arch: "qwen3vlmoe",
    sections: [3, 3, 2, 0],
};

/// `n_deepstack_layers` of both (a real Qwen3-VL file has three).
pub const DEEPSTACK_LAYERS: u32 = 1;

impl VisionLanguage {
    /// The reference file name (`tiny-qwen3vl-f32.json`).
    pub fn reference(&self) -> String {
        format!("tiny-{}-f32.json", self.arch)
    }

    /// The derived file, written on first use in this test process.
    pub fn path(&self) -> PathBuf {
        static WRITTEN: Mutex<BTreeMap<&str, PathBuf>> = Mutex::new(BTreeMap::new());
        let mut written = WRITTEN.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(path) = written.get(self.arch) {
            return path.clone();
        }
        let path = synthetic_dir().join(format!("tiny-{}-f32.gguf", self.arch));
        write_atomically(&path, &self.gguf().build());
        written.insert(self.arch, path.clone());
        path
    }

    /// The derived file in the test writer's form, to alter further.
    pub fn gguf(&self) -> Gguf {
        let path = fixture(&format!("models/{}", self.source));
        let file = GgufFile::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut g = rewrite::read(&file);
        let old = file.get_str("general.architecture").unwrap().to_string();
        for (key, value) in &mut g.kv {
            if key == "general.architecture" {
                *value = V::s(self.arch);
            } else if let Some(rest) = key.strip_prefix(&format!("{old}.")) {
                *key = format!("{}.{rest}", self.arch);
            }
        }
        let sections = self.sections.iter().map(|&s| V::I32(s)).collect();
        g.kv(
            &format!("{}.rope.dimension_sections", self.arch),
            V::Arr(5, sections),
        )
        .kv(
            &format!("{}.n_deepstack_layers", self.arch),
            V::U32(DEEPSTACK_LAYERS),
        )
    }
}
