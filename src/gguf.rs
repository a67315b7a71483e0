//! GGUF reader (versions 2 and 3, little-endian) over a memory map: header, metadata, tensor
//! infos and tensor data as byte slices of the file, never a copy of it.
//!
//! Follows the GGUF spec (ggml/docs/gguf.md). Every count, length, dimension and offset is
//! validated before it is used; see [`GgufError`] for what can be wrong with a file.

mod digest;
mod error;
mod map_guard;
mod parse;
mod tensor_info;
mod value;

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use memmap2::Mmap;

pub use error::GgufError;
pub use parse::{MAX_ARRAY_NESTING, MAX_DIMS};
pub use tensor_info::TensorInfo;
pub use value::{MetadataArray, MetadataValue, ValueType};

/// The bytes of a GGUF file: a read-only memory map, or an owned buffer (tests, synthetic files).
/// Shared as `Arc<Storage>` so weights can point into it after the [`GgufFile`] is gone.
#[derive(Debug)]
pub enum Storage {
    Mapped(MappedFile),
    Owned(Vec<u8>),
}

/// A file's read-only map, guarded against the file being truncated under it
/// ([`map_guard`]: one error line instead of a crash).
pub struct MappedFile {
    // Declared first: unregistered before the map goes.
    _guard: Option<map_guard::MapGuard>,
    map: Mmap,
}

impl std::fmt::Debug for MappedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MappedFile({} bytes)", self.map.len())
    }
}

impl Storage {
    /// Whether the bytes are the file's map (not a copy in memory).
    pub fn is_mapped(&self) -> bool {
        matches!(self, Storage::Mapped(_))
    }

    pub fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mapped(file) => &file.map,
            Storage::Owned(vec) => vec,
        }
    }
}

impl AsRef<[u8]> for Storage {
    fn as_ref(&self) -> &[u8] {
        self.bytes()
    }
}

/// An open GGUF file: its metadata in file order, its tensor infos, and its bytes.
#[derive(Debug)]
pub struct GgufFile {
    storage: Arc<Storage>,
    source: String,
    version: u32,
    alignment: u64,
    data_offset: u64,
    metadata: Vec<(String, MetadataValue)>,
    key_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
}

impl GgufFile {
    /// Maps the file at `path` and reads its header, metadata and tensor infos.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile, GgufError> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let io = |err| GgufError::Io {
            path: shown.clone(),
            err,
        };
        // Checked before opening: opening a FIFO would block until something writes to it.
        if !std::fs::metadata(path).map_err(io)?.is_file() {
            return Err(GgufError::NotAFile { path: shown });
        }
        let file = File::open(path).map_err(io)?;
        // SAFETY: the map is read-only; like every mmap-based model loader we assume the file is
        // not rewritten by another process while the program runs (docs/errors.md says so). A
        // truncation, which would crash a read past the new end, is caught by the guard.
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        let guard = map_guard::register(&map, &shown);
        let mapped = MappedFile { _guard: guard, map };
        Self::from_storage(Arc::new(Storage::Mapped(mapped)), shown)
    }

    /// Reads a GGUF file held in memory (synthetic files in tests).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<GgufFile, GgufError> {
        Self::from_storage(Arc::new(Storage::Owned(bytes)), "<memory>".to_string())
    }

    /// Reads a GGUF file from its bytes; `source` names it in messages.
    pub fn from_storage(storage: Arc<Storage>, source: String) -> Result<GgufFile, GgufError> {
        let parsed = parse::parse(storage.bytes())?;
        let key_index = index(parsed.metadata.iter().map(|(k, _)| k));
        let tensor_index = index(parsed.tensors.iter().map(|t| &t.name));
        Ok(GgufFile {
            storage,
            source,
            version: parsed.version,
            alignment: parsed.alignment,
            data_offset: parsed.data_offset,
            metadata: parsed.metadata,
            key_index,
            tensors: parsed.tensors,
            tensor_index,
        })
    }

    /// The file's bytes, shared: tensors bound to a graph keep this alive.
    pub fn storage(&self) -> Arc<Storage> {
        Arc::clone(&self.storage)
    }

    /// The path the file was opened from, or "<memory>".
    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Start of the tensor data section, from the start of the file.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    pub fn file_size(&self) -> u64 {
        self.storage.bytes().len() as u64
    }

    /// Every metadata entry, in file order.
    pub fn metadata(&self) -> &[(String, MetadataValue)] {
        &self.metadata
    }

    pub fn get(&self, key: &str) -> Option<&MetadataValue> {
        self.key_index.get(key).map(|&i| &self.metadata[i].1)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.key_index.contains_key(key)
    }

    /// Every tensor info, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The raw bytes of tensor `name`, a slice of the map.
    pub fn tensor_data(&self, name: &str) -> Option<&[u8]> {
        self.tensor(name).and_then(|t| self.data_of(t))
    }

    /// The raw bytes of `info`; `None` if `info` does not lie in this file.
    pub fn data_of(&self, info: &TensorInfo) -> Option<&[u8]> {
        let start = usize::try_from(info.file_offset).ok()?;
        let end = start.checked_add(usize::try_from(info.n_bytes).ok()?)?;
        self.storage.bytes().get(start..end)
    }

    /// SHA-256 of the header, metadata, tensor table and both ends of every tensor's data, as
    /// 64 hex digits: what tells two model files apart (see [`digest`]).
    pub fn digest(&self) -> String {
        digest::model_digest(self.storage.bytes(), self.data_offset, &self.tensors)
    }

    /// Total elements over all tensors: the parameter count.
    pub fn n_elements(&self) -> u64 {
        self.tensors.iter().map(|t| t.n_elements).sum()
    }

    /// An integer of any GGUF integer type whose value fits in u32.
    pub fn get_u32(&self, key: &str) -> Result<u32, GgufError> {
        self.typed(key, "an integer that fits in u32", |v| {
            v.as_i128().and_then(|n| u32::try_from(n).ok())
        })
    }

    /// An integer of any GGUF integer type whose value fits in u64.
    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        self.typed(key, "an integer that fits in u64", |v| {
            v.as_i128().and_then(|n| u64::try_from(n).ok())
        })
    }

    /// An f32 or f64 value (f64 rounded to the nearest f32).
    pub fn get_f32(&self, key: &str) -> Result<f32, GgufError> {
        self.typed(key, "a float (f32 or f64)", |v| {
            v.as_f64().map(|f| f as f32)
        })
    }

    pub fn get_bool(&self, key: &str) -> Result<bool, GgufError> {
        self.typed(key, "a bool", MetadataValue::as_bool)
    }

    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        self.typed(key, "a string", MetadataValue::as_str)
    }

    pub fn get_str_array(&self, key: &str) -> Result<&[String], GgufError> {
        self.typed(key, "an array of string", |v| match v.as_array()? {
            MetadataArray::String(s) => Some(s.as_slice()),
            _ => None,
        })
    }

    pub fn get_bool_array(&self, key: &str) -> Result<&[bool], GgufError> {
        self.typed(key, "an array of bool", |v| match v.as_array()? {
            MetadataArray::Bool(a) => Some(a.as_slice()),
            _ => None,
        })
    }

    /// An array of any GGUF integer type, each element as i128.
    pub fn get_int_array(&self, key: &str) -> Result<Vec<i128>, GgufError> {
        self.typed(key, "an array of integers", |v| {
            let ints: Vec<i128> = match v.as_array()? {
                MetadataArray::U8(a) => a.iter().map(|&x| x.into()).collect(),
                MetadataArray::I8(a) => a.iter().map(|&x| x.into()).collect(),
                MetadataArray::U16(a) => a.iter().map(|&x| x.into()).collect(),
                MetadataArray::I16(a) => a.iter().map(|&x| x.into()).collect(),
                MetadataArray::U32(a) => a.iter().map(|&x| x.into()).collect(),
                MetadataArray::I32(a) => a.iter().map(|&x| x.into()).collect(),
                MetadataArray::U64(a) => a.iter().map(|&x| x.into()).collect(),
                MetadataArray::I64(a) => a.iter().map(|&x| x.into()).collect(),
                _ => return None,
            };
            Some(ints)
        })
    }

    pub fn get_i32_array(&self, key: &str) -> Result<&[i32], GgufError> {
        self.typed(key, "an array of i32", |v| match v.as_array()? {
            MetadataArray::I32(a) => Some(a.as_slice()),
            _ => None,
        })
    }

    fn typed<'a, T>(
        &'a self,
        key: &str,
        expected: &'static str,
        convert: impl Fn(&'a MetadataValue) -> Option<T>,
    ) -> Result<T, GgufError> {
        let value = self.get(key).ok_or_else(|| GgufError::MissingKey {
            key: key.to_string(),
        })?;
        convert(value).ok_or_else(|| GgufError::KeyType {
            key: key.to_string(),
            expected,
            found: format!("{} {value}", value.type_description()),
        })
    }
}

fn index<'a>(names: impl Iterator<Item = &'a String>) -> HashMap<String, usize> {
    names.enumerate().map(|(i, n)| (n.clone(), i)).collect()
}
