//! Metadata reads that turn the reader's errors into config errors naming the file and key.

use super::super::tensors::TOKEN_EMBD;
use super::error::ConfigError;
use super::keys::Keys;
use crate::gguf::{GgufError, GgufFile, TensorInfo};

/// Metadata reads that turn reader errors into config errors naming the file.
pub(super) struct Meta<'a> {
    pub(super) file: &'a GgufFile,
    pub(super) keys: Keys,
}

impl Meta<'_> {
    pub(super) fn name(&self) -> String {
        self.file.source().to_string()
    }

    pub(super) fn optional<T>(
        &self,
        key: &str,
        read: Result<T, GgufError>,
    ) -> Result<Option<T>, ConfigError> {
        match read {
            Ok(v) => Ok(Some(v)),
            Err(GgufError::MissingKey { .. }) => Ok(None),
            Err(GgufError::KeyType {
                expected, found, ..
            }) => Err(ConfigError::KeyType {
                key: key.to_string(),
                expected,
                found,
                file: self.name(),
            }),
            Err(other) => Err(ConfigError::KeyType {
                key: key.to_string(),
                expected: "a readable value",
                found: other.to_string(),
                file: self.name(),
            }),
        }
    }

    pub(super) fn required<T>(
        &self,
        key: &str,
        read: Result<T, GgufError>,
    ) -> Result<T, ConfigError> {
        self.optional(key, read)?.ok_or_else(|| self.missing(key))
    }

    /// A size: a non-zero integer.
    pub(super) fn size(&self, key: &str) -> Result<usize, ConfigError> {
        let n = self.required(key, self.file.get_u32(key))?;
        self.non_zero(key, n as usize)
    }

    pub(super) fn non_zero(&self, key: &str, n: usize) -> Result<usize, ConfigError> {
        if n == 0 {
            return Err(ConfigError::ZeroSize {
                key: key.to_string(),
                file: self.name(),
            });
        }
        Ok(n)
    }

    pub(super) fn positive(&self, key: &str, value: f32) -> Result<f32, ConfigError> {
        if !(value.is_finite() && value > 0.0) {
            return Err(ConfigError::BadFloat {
                key: key.to_string(),
                value,
                file: self.name(),
            });
        }
        Ok(value)
    }

    pub(super) fn missing(&self, key: &str) -> ConfigError {
        ConfigError::MissingKey {
            key: key.to_string(),
            file: self.name(),
        }
    }

    /// (rows, cols) of the embedding table; rows is the vocabulary.
    pub(super) fn embedding_size(&self) -> Result<(usize, usize), ConfigError> {
        let t = self.tensor(TOKEN_EMBD)?;
        match t.shape()[..] {
            [rows, cols] if rows > 0 => Ok((rows as usize, cols as usize)),
            _ => Err(ConfigError::ShapeMismatch {
                tensor: TOKEN_EMBD.to_string(),
                file: self.name(),
                found: t.shape(),
                expected: format!("[vocab, {}]", self.keys.hidden),
                reason: "the embedding must be a non-empty 2-D table".to_string(),
            }),
        }
    }

    pub(super) fn tensor(&self, name: &str) -> Result<&TensorInfo, ConfigError> {
        self.file
            .tensor(name)
            .ok_or_else(|| ConfigError::MissingTensor {
                tensor: name.to_string(),
                file: self.name(),
            })
    }
}
