//! Parsing the GGUF header, metadata and tensor infos from bytes, validating every count,
//! length and offset before it is used (GGUF spec: ggml/docs/gguf.md).

use std::collections::HashMap;

use super::error::GgufError;
use super::tensor_info::TensorInfo;
use super::value::{MetadataArray, MetadataValue, ValueType};
use crate::quant::GgmlType;

/// GGML_MAX_DIMS: ggml tensors have at most four dimensions.
pub const MAX_DIMS: u32 = 4;
/// Deeper nesting is certainly corruption, and bounding it keeps recursion off the stack limit.
pub const MAX_ARRAY_NESTING: usize = 8;
/// A tensor info is at least a name length, n_dims, a type id and an offset.
const MIN_TENSOR_INFO_SIZE: u64 = 8 + 4 + 4 + 8;
/// A key-value pair is at least a key length, a value type and a one-byte value.
const MIN_KV_SIZE: u64 = 8 + 4 + 1;

/// The parsed header, metadata and tensor infos of a file.
pub struct Parsed {
    pub version: u32,
    pub alignment: u64,
    pub data_offset: u64,
    pub metadata: Vec<(String, MetadataValue)>,
    pub tensors: Vec<TensorInfo>,
}

/// Reads little-endian values from a byte slice, each read bounds-checked.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    fn offset(&self) -> u64 {
        self.pos as u64
    }

    fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&'a [u8], GgufError> {
        let available = self.remaining();
        if n > available {
            return Err(GgufError::Truncated {
                what: what(),
                offset: self.offset(),
                need: n,
                available,
            });
        }
        // n <= remaining <= usize::MAX, so the cast is exact.
        let bytes = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N], GgufError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N as u64, what)?);
        Ok(out)
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A GGUF string: u64 length, then that many UTF-8 bytes (no terminator).
    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String, GgufError> {
        let len_offset = self.offset();
        let len = self.u64(&|| format!("length of {}", what()))?;
        let available = self.remaining();
        if len > available {
            return Err(GgufError::StringTooLong {
                what: what(),
                len,
                offset: len_offset,
                available,
            });
        }
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| GgufError::InvalidUtf8 {
            what: what(),
            offset: len_offset,
        })
    }

    /// A count of items each at least `min_size` bytes, refused when the rest of the file could
    /// not hold them, so that no loop or allocation is sized by a corrupt count.
    fn count(&mut self, min_size: u64, what: &dyn Fn() -> String) -> Result<u64, GgufError> {
        let offset = self.offset();
        let count = self.u64(what)?;
        let available = self.remaining();
        let fits = count.checked_mul(min_size).is_some_and(|n| n <= available);
        if !fits {
            return Err(GgufError::CountTooLarge {
                what: what(),
                count,
                offset,
                available,
            });
        }
        Ok(count)
    }
}

/// Parses a whole GGUF file held in `buf`.
pub fn parse(buf: &[u8]) -> Result<Parsed, GgufError> {
    let mut cur = Cursor { buf, pos: 0 };
    let version = header(&mut cur)?;
    let tensor_count = cur.count(MIN_TENSOR_INFO_SIZE, &|| "tensor count".into())?;
    let kv_count = cur.count(MIN_KV_SIZE, &|| "metadata key count".into())?;
    let metadata = read_metadata(&mut cur, kv_count)?;
    let alignment = alignment(&metadata)?;
    let tensors = read_tensor_infos(&mut cur, tensor_count)?;
    let data_offset = align_up(cur.offset(), alignment).ok_or_else(|| GgufError::BadAlignment {
        value: alignment.to_string(),
    })?;
    let tensors = place_tensors(tensors, data_offset, alignment, buf.len() as u64)?;
    Ok(Parsed {
        version,
        alignment,
        data_offset,
        metadata,
        tensors,
    })
}

/// Magic and version. Returns the version (2 or 3).
fn header(cur: &mut Cursor) -> Result<u32, GgufError> {
    let magic = cur
        .array::<4>(&|| "magic \"GGUF\"".into())
        .map_err(|_| GgufError::BadMagic {
            found: cur.buf[..cur.buf.len().min(4)].to_vec(),
        })?;
    if &magic != b"GGUF" {
        return Err(GgufError::BadMagic {
            found: magic.to_vec(),
        });
    }
    let bytes = cur.array::<4>(&|| "version".into())?;
    let version = u32::from_le_bytes(bytes);
    let swapped = u32::from_be_bytes(bytes);
    match version {
        2 | 3 => Ok(version),
        1 => Err(GgufError::Version1),
        // A big-endian writer stores e.g. 3 as 00 00 00 03.
        _ if (1..=3).contains(&swapped) => Err(GgufError::BigEndian { version: swapped }),
        _ => Err(GgufError::UnsupportedVersion { version }),
    }
}

fn read_metadata(
    cur: &mut Cursor,
    kv_count: u64,
) -> Result<Vec<(String, MetadataValue)>, GgufError> {
    let mut metadata = Vec::new();
    let mut seen = HashMap::new();
    for i in 0..kv_count {
        let key_offset = cur.offset();
        let key = cur.string(&|| format!("key of metadata entry {i}"))?;
        let what = || format!("value of metadata key '{key}'");
        let type_offset = cur.offset();
        let type_id = cur.u32(&|| format!("type of metadata key '{key}'"))?;
        let ty = value_type(type_id, type_offset, &what)?;
        let value = read_value(cur, ty, &key, 0)?;
        if seen.insert(key.clone(), ()).is_some() {
            return Err(GgufError::DuplicateKey {
                key,
                offset: key_offset,
            });
        }
        metadata.push((key, value));
    }
    Ok(metadata)
}

fn value_type(id: u32, offset: u64, what: &dyn Fn() -> String) -> Result<ValueType, GgufError> {
    ValueType::from_id(id).ok_or_else(|| GgufError::UnknownValueType {
        what: what(),
        id,
        offset,
    })
}

fn read_value(
    cur: &mut Cursor,
    ty: ValueType,
    key: &str,
    depth: usize,
) -> Result<MetadataValue, GgufError> {
    let what = || format!("value of metadata key '{key}'");
    Ok(match ty {
        ValueType::U8 => MetadataValue::U8(u8::from_le_bytes(cur.array(&what)?)),
        ValueType::I8 => MetadataValue::I8(i8::from_le_bytes(cur.array(&what)?)),
        ValueType::U16 => MetadataValue::U16(u16::from_le_bytes(cur.array(&what)?)),
        ValueType::I16 => MetadataValue::I16(i16::from_le_bytes(cur.array(&what)?)),
        ValueType::U32 => MetadataValue::U32(u32::from_le_bytes(cur.array(&what)?)),
        ValueType::I32 => MetadataValue::I32(i32::from_le_bytes(cur.array(&what)?)),
        ValueType::F32 => MetadataValue::F32(f32::from_le_bytes(cur.array(&what)?)),
        ValueType::U64 => MetadataValue::U64(u64::from_le_bytes(cur.array(&what)?)),
        ValueType::I64 => MetadataValue::I64(i64::from_le_bytes(cur.array(&what)?)),
        ValueType::F64 => MetadataValue::F64(f64::from_le_bytes(cur.array(&what)?)),
        ValueType::Bool => {
            let offset = cur.offset();
            MetadataValue::Bool(bool_from(cur.array::<1>(&what)?[0], offset, &what)?)
        }
        ValueType::String => MetadataValue::String(cur.string(&what)?),
        ValueType::Array => MetadataValue::Array(read_array(cur, key, depth + 1)?),
    })
}

fn bool_from(byte: u8, offset: u64, what: &dyn Fn() -> String) -> Result<bool, GgufError> {
    match byte {
        0 => Ok(false),
        1 => Ok(true),
        value => Err(GgufError::InvalidBool {
            what: what(),
            value,
            offset,
        }),
    }
}

/// Reads fixed-size little-endian elements in one bounds check (arrays of numbers can be long).
fn fixed<const N: usize, T>(
    cur: &mut Cursor,
    count: u64,
    what: &dyn Fn() -> String,
    from_le: fn([u8; N]) -> T,
) -> Result<Vec<T>, GgufError> {
    // count * N <= remaining was checked by `Cursor::count`.
    let bytes = cur.take(count * N as u64, what)?;
    Ok(bytes
        .chunks_exact(N)
        .map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            from_le(a)
        })
        .collect())
}

fn read_array(cur: &mut Cursor, key: &str, depth: usize) -> Result<MetadataArray, GgufError> {
    if depth > MAX_ARRAY_NESTING {
        return Err(GgufError::NestingTooDeep {
            key: key.to_string(),
            max: MAX_ARRAY_NESTING,
            offset: cur.offset(),
        });
    }
    let what = || format!("array of metadata key '{key}'");
    let type_offset = cur.offset();
    let ty = value_type(cur.u32(&what)?, type_offset, &what)?;
    let count = cur.count(ty.min_encoded_size(), &|| format!("length of {}", what()))?;
    Ok(match ty {
        ValueType::U8 => MetadataArray::U8(fixed(cur, count, &what, u8::from_le_bytes)?),
        ValueType::I8 => MetadataArray::I8(fixed(cur, count, &what, i8::from_le_bytes)?),
        ValueType::U16 => MetadataArray::U16(fixed(cur, count, &what, u16::from_le_bytes)?),
        ValueType::I16 => MetadataArray::I16(fixed(cur, count, &what, i16::from_le_bytes)?),
        ValueType::U32 => MetadataArray::U32(fixed(cur, count, &what, u32::from_le_bytes)?),
        ValueType::I32 => MetadataArray::I32(fixed(cur, count, &what, i32::from_le_bytes)?),
        ValueType::F32 => MetadataArray::F32(fixed(cur, count, &what, f32::from_le_bytes)?),
        ValueType::U64 => MetadataArray::U64(fixed(cur, count, &what, u64::from_le_bytes)?),
        ValueType::I64 => MetadataArray::I64(fixed(cur, count, &what, i64::from_le_bytes)?),
        ValueType::F64 => MetadataArray::F64(fixed(cur, count, &what, f64::from_le_bytes)?),
        ValueType::Bool => {
            let offset = cur.offset();
            let bytes = cur.take(count, &what)?;
            let bools = bytes.iter().enumerate();
            MetadataArray::Bool(
                bools
                    .map(|(i, &b)| bool_from(b, offset + i as u64, &what))
                    .collect::<Result<_, _>>()?,
            )
        }
        ValueType::String => {
            let mut strings = Vec::with_capacity(count as usize);
            for _ in 0..count {
                strings.push(cur.string(&what)?);
            }
            MetadataArray::String(strings)
        }
        ValueType::Array => {
            let mut arrays = Vec::with_capacity(count as usize);
            for _ in 0..count {
                arrays.push(read_array(cur, key, depth + 1)?);
            }
            MetadataArray::Array(arrays)
        }
    })
}

/// `general.alignment`: 32 when absent, else a non-zero power of two.
fn alignment(metadata: &[(String, MetadataValue)]) -> Result<u64, GgufError> {
    const DEFAULT: u64 = 32;
    let Some((_, value)) = metadata.iter().find(|(k, _)| k == "general.alignment") else {
        return Ok(DEFAULT);
    };
    match value.as_i128().and_then(|v| u32::try_from(v).ok()) {
        Some(a) if a.is_power_of_two() => Ok(a.into()),
        _ => Err(GgufError::BadAlignment {
            value: format!("{value} ({})", value.type_description()),
        }),
    }
}

/// A tensor info as stored: sizes checked, data not yet placed in the file.
fn read_tensor_infos(cur: &mut Cursor, count: u64) -> Result<Vec<TensorInfo>, GgufError> {
    let mut tensors = Vec::with_capacity(count as usize);
    let mut seen = HashMap::new();
    for i in 0..count {
        let name_offset = cur.offset();
        let name = cur.string(&|| format!("name of tensor info {i}"))?;
        if seen.insert(name.clone(), ()).is_some() {
            return Err(GgufError::DuplicateTensor {
                tensor: name,
                offset: name_offset,
            });
        }
        tensors.push(read_tensor_info(cur, name)?);
    }
    Ok(tensors)
}

fn read_tensor_info(cur: &mut Cursor, name: String) -> Result<TensorInfo, GgufError> {
    let what = || format!("info of tensor '{name}'");
    let dims_offset = cur.offset();
    let n_dims = cur.u32(&what)?;
    if n_dims > MAX_DIMS {
        return Err(GgufError::TooManyDims {
            tensor: name,
            n_dims,
            offset: dims_offset,
        });
    }
    let dims = (0..n_dims)
        .map(|_| cur.u64(&what))
        .collect::<Result<Vec<_>, _>>()?;
    let type_offset = cur.offset();
    let type_id = cur.u32(&what)?;
    let offset = cur.u64(&what)?;
    let ggml_type = GgmlType::from_id(type_id).ok_or_else(|| GgufError::UnknownTensorType {
        tensor: name.clone(),
        id: type_id,
        offset: type_offset,
    })?;
    let (n_elements, n_bytes) = tensor_size(&name, &dims, ggml_type)?;
    Ok(TensorInfo {
        name,
        ggml_type,
        dims,
        relative_offset: offset,
        file_offset: 0,
        n_elements,
        n_bytes,
    })
}

/// Element count and byte size, as ggml computes them: every dim fits i64, the row length (dim 0)
/// is a whole number of blocks, and nothing overflows.
fn tensor_size(name: &str, dims: &[u64], ty: GgmlType) -> Result<(u64, u64), GgufError> {
    let overflow = || GgufError::SizeOverflow {
        tensor: name.to_string(),
        dims: dims.to_vec(),
    };
    let mut n_elements: u64 = 1;
    for &d in dims {
        n_elements = n_elements.checked_mul(d).ok_or_else(overflow)?;
    }
    if n_elements > i64::MAX as u64 {
        return Err(overflow());
    }
    let row_len = dims.first().copied().unwrap_or(1);
    let block = ty.block_size();
    if row_len % block as u64 != 0 {
        return Err(GgufError::NotWholeBlocks {
            tensor: name.to_string(),
            ty,
            row_len,
            block,
        });
    }
    let n_bytes = ty.bytes_for(n_elements).ok_or_else(overflow)?;
    Ok((n_elements, n_bytes))
}

/// Sets each tensor's absolute offset, checking it is aligned and its data lies in the file.
fn place_tensors(
    mut tensors: Vec<TensorInfo>,
    data_offset: u64,
    alignment: u64,
    file_size: u64,
) -> Result<Vec<TensorInfo>, GgufError> {
    for t in &mut tensors {
        if t.relative_offset % alignment != 0 {
            return Err(GgufError::MisalignedTensor {
                tensor: t.name.clone(),
                offset: t.relative_offset,
                alignment,
            });
        }
        let start = data_offset.checked_add(t.relative_offset);
        let end = start.and_then(|s| s.checked_add(t.n_bytes));
        match (start, end) {
            (Some(start), Some(end)) if end <= file_size => t.file_offset = start,
            _ => {
                return Err(GgufError::DataOutOfBounds {
                    tensor: t.name.clone(),
                    start: data_offset.saturating_add(t.relative_offset),
                    end: data_offset
                        .saturating_add(t.relative_offset)
                        .saturating_add(t.n_bytes),
                    file_size,
                })
            }
        }
    }
    Ok(tensors)
}

fn align_up(offset: u64, alignment: u64) -> Option<u64> {
    offset.checked_next_multiple_of(alignment)
}
