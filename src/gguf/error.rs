//! Everything that can be wrong with a GGUF file, each error saying what, where and what to do.

use thiserror::Error;

use crate::quant::GgmlType;

/// A GGUF file that cannot be read, or a metadata lookup that failed. Byte offsets are from the
/// start of the file.
#[derive(Debug, Error)]
pub enum GgufError {
    #[error("cannot read '{path}': {err}")]
    Io { path: String, err: std::io::Error },

    #[error("'{path}' is not a regular file (a directory?); pass a .gguf model file")]
    NotAFile { path: String },

    #[error(
        "not a GGUF file: it starts with bytes {found:02x?}, expected \"GGUF\" (47 47 55 46); \
         pass a .gguf model file"
    )]
    BadMagic { found: Vec<u8> },

    #[error(
        "GGUF version 1 is not supported (only 2 and 3); re-convert the model with a current llama.cpp"
    )]
    Version1,

    #[error(
        "GGUF version {version} is not supported (only 2 and 3); the file may come from a newer \
         tool, or be corrupt"
    )]
    UnsupportedVersion { version: u32 },

    #[error(
        "the GGUF file is big-endian (version {version} stored high byte first); only \
         little-endian files are supported: use the little-endian release of the model"
    )]
    BigEndian { version: u32 },

    #[error(
        "truncated file: {what} at byte {offset} needs {need} bytes but only {available} remain; \
         the file is incomplete (re-download or re-convert it)"
    )]
    Truncated {
        what: String,
        offset: u64,
        need: u64,
        available: u64,
    },

    #[error(
        "{what} at byte {offset} is {count}, more than the {available} bytes left in the file \
         could hold; the file is corrupt or truncated"
    )]
    CountTooLarge {
        what: String,
        count: u64,
        offset: u64,
        available: u64,
    },

    #[error(
        "{what} at byte {offset} declares {len} bytes, more than the {available} bytes left in \
         the file; the file is corrupt or truncated"
    )]
    StringTooLong {
        what: String,
        len: u64,
        offset: u64,
        available: u64,
    },

    #[error("{what} at byte {offset} is not valid UTF-8; the file is corrupt")]
    InvalidUtf8 { what: String, offset: u64 },

    #[error("{what} at byte {offset} has unknown value type id {id} (GGUF defines 0 to 12); the file is corrupt")]
    UnknownValueType { what: String, id: u32, offset: u64 },

    #[error(
        "{what} at byte {offset} is a bool stored as {value} (must be 0 or 1); the file is corrupt"
    )]
    InvalidBool {
        what: String,
        value: u8,
        offset: u64,
    },

    #[error("metadata key '{key}' nests arrays more than {max} deep at byte {offset}; the file is corrupt")]
    NestingTooDeep {
        key: String,
        max: usize,
        offset: u64,
    },

    #[error("metadata key '{key}' appears twice (second at byte {offset}); the file is corrupt")]
    DuplicateKey { key: String, offset: u64 },

    #[error("general.alignment is {value}; it must be a non-zero power of two that fits in u32")]
    BadAlignment { value: String },

    #[error("tensor '{tensor}' at byte {offset} has {n_dims} dimensions; GGUF allows at most 4")]
    TooManyDims {
        tensor: String,
        n_dims: u32,
        offset: u64,
    },

    #[error("tensor '{tensor}' has dims {dims:?} whose element count or byte size overflows; the file is corrupt")]
    SizeOverflow { tensor: String, dims: Vec<u64> },

    #[error(
        "tensor '{tensor}' at byte {offset} has unknown tensor type id {id}; the file may need a \
         newer program, or be corrupt"
    )]
    UnknownTensorType {
        tensor: String,
        id: u32,
        offset: u64,
    },

    #[error(
        "tensor '{tensor}' of type {ty} has rows of {row_len} elements, not a multiple of the \
         {ty} block size {block}; the file is corrupt"
    )]
    NotWholeBlocks {
        tensor: String,
        ty: GgmlType,
        row_len: u64,
        block: usize,
    },

    #[error(
        "tensor '{tensor}' has data offset {offset}, not a multiple of the alignment {alignment}; \
         the file is corrupt"
    )]
    MisalignedTensor {
        tensor: String,
        offset: u64,
        alignment: u64,
    },

    #[error(
        "tensor '{tensor}' needs bytes {start}..{end} but the file has {file_size} bytes; the \
         file is truncated or corrupt (re-download it)"
    )]
    DataOutOfBounds {
        tensor: String,
        start: u64,
        end: u64,
        file_size: u64,
    },

    #[error("tensor '{tensor}' appears twice (second at byte {offset}); the file is corrupt")]
    DuplicateTensor { tensor: String, offset: u64 },

    #[error("metadata key '{key}' not found")]
    MissingKey { key: String },

    #[error("metadata key '{key}' holds {found}, expected {expected}")]
    KeyType {
        key: String,
        expected: &'static str,
        found: String,
    },
}
