//! The model's identity for `qwen compare`: a SHA-256 over what tells two model files apart,
//! cheap enough for every run (a full hash of a 4 GB file would cost seconds).
//!
//! Hashed, in order: every byte before the tensor data (header, metadata, tensor table: names,
//! shapes, types and offsets), then for each tensor in table order the first and the last
//! [`SAMPLE`] bytes of its data (all of it when shorter). Two files that differ in any of those
//! get different digests; two that differ only inside a tensor, away from both ends of it, do
//! not. Requantizing, another fine-tune or another conversion changes the first block of nearly
//! every tensor, so in practice equal digests mean equal weights.

use sha2::{Digest, Sha256};

use super::tensor_info::TensorInfo;

/// Bytes hashed at each end of every tensor's data.
pub const SAMPLE: usize = 4096;

/// The digest as 64 lower-case hex digits, of a file's `bytes` whose tensor data starts at
/// `data_offset` and whose table lists `tensors`.
pub fn model_digest(bytes: &[u8], data_offset: u64, tensors: &[TensorInfo]) -> String {
    let mut hash = Sha256::new();
    let header_end = usize::try_from(data_offset).map_or(bytes.len(), |o| o.min(bytes.len()));
    hash.update(&bytes[..header_end]);
    for info in tensors {
        // The parser checked that every tensor lies in the file; one that does not is skipped
        // rather than trusted.
        let Some(data) = data_of(bytes, info) else {
            continue;
        };
        let head = data.len().min(SAMPLE);
        hash.update(&data[..head]);
        let tail_start = data.len().saturating_sub(SAMPLE).max(head);
        hash.update(&data[tail_start..]);
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn data_of<'a>(bytes: &'a [u8], info: &TensorInfo) -> Option<&'a [u8]> {
    let start = usize::try_from(info.file_offset()).ok()?;
    let end = start.checked_add(usize::try_from(info.n_bytes()).ok()?)?;
    bytes.get(start..end)
}

#[cfg(test)]
mod tests {
    use crate::gguf::GgufFile;

    fn fixture() -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/models/tiny-q8_0.gguf");
        std::fs::read(path).expect("the tiny fixture")
    }

    fn digest(bytes: Vec<u8>) -> String {
        GgufFile::from_bytes(bytes).expect("parses").digest()
    }

    #[test]
    fn digest_is_stable_and_sees_header_and_tensor_ends() {
        let bytes = fixture();
        let file = GgufFile::from_bytes(bytes.clone()).unwrap();
        let d = file.digest();
        assert_eq!(d.len(), 64);
        assert!(d.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(digest(bytes.clone()), d, "same bytes, same digest");

        // A changed first weight byte of a tensor changes the digest.
        let first = &file.tensors()[0];
        let at = first.file_offset() as usize;
        let mut changed = bytes.clone();
        changed[at] ^= 1;
        assert_ne!(digest(changed), d);

        // So does the last byte of the last tensor.
        let last = file.tensors().last().unwrap();
        let end = (last.file_offset() + last.n_bytes()) as usize - 1;
        let mut changed = bytes.clone();
        changed[end] ^= 1;
        assert_ne!(digest(changed), d);

        // And a metadata byte (the header is hashed whole): the first byte of the tensor table's
        // first name is inside the header.
        let name_at = bytes
            .windows(first.name().len())
            .position(|w| w == first.name().as_bytes())
            .unwrap();
        assert!((name_at as u64) < file.data_offset());
        let mut changed = bytes;
        changed[name_at] = changed[name_at].to_ascii_uppercase();
        assert_ne!(digest(changed), d);
    }
}
