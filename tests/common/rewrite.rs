//! A GGUF file read back into the test writer's form, to derive files from a fixture at test
//! time (tensors renamed, fused or removed) instead of shipping more fixtures.

use qwen::gguf::{GgufFile, MetadataArray, MetadataValue};

use super::{Gguf, T, V};

/// Every metadata entry and tensor of `file`, tensors with their encoded bytes.
pub fn read(file: &GgufFile) -> Gguf {
    let mut g = Gguf {
        version: file.version(),
        alignment: file.alignment() as usize,
        ..Gguf::default()
    };
    for (key, value) in file.metadata() {
        g.kv.push((key.clone(), value_of(value)));
    }
    for info in file.tensors() {
        g.tensors.push(T {
            name: info.name().to_string(),
            dims: info.dims().to_vec(),
            type_id: info.ggml_type().id(),
            data: file
                .data_of(info)
                .expect("tensor data in the file")
                .to_vec(),
        });
    }
    g
}

fn value_of(v: &MetadataValue) -> V {
    match v {
        MetadataValue::U8(x) => V::U8(*x),
        MetadataValue::I8(x) => V::I8(*x),
        MetadataValue::U16(x) => V::U16(*x),
        MetadataValue::I16(x) => V::I16(*x),
        MetadataValue::U32(x) => V::U32(*x),
        MetadataValue::I32(x) => V::I32(*x),
        MetadataValue::F32(x) => V::F32(*x),
        MetadataValue::Bool(x) => V::Bool(*x),
        MetadataValue::String(x) => V::Str(x.clone()),
        MetadataValue::Array(a) => array_of(a),
        MetadataValue::U64(x) => V::U64(*x),
        MetadataValue::I64(x) => V::I64(*x),
        MetadataValue::F64(x) => V::F64(*x),
    }
}

fn array_of(a: &MetadataArray) -> V {
    fn arr<X: Copy>(id: u32, xs: &[X], f: fn(X) -> V) -> V {
        V::Arr(id, xs.iter().map(|&x| f(x)).collect())
    }
    match a {
        MetadataArray::U8(x) => arr(0, x, V::U8),
        MetadataArray::I8(x) => arr(1, x, V::I8),
        MetadataArray::U16(x) => arr(2, x, V::U16),
        MetadataArray::I16(x) => arr(3, x, V::I16),
        MetadataArray::U32(x) => arr(4, x, V::U32),
        MetadataArray::I32(x) => arr(5, x, V::I32),
        MetadataArray::F32(x) => arr(6, x, V::F32),
        MetadataArray::Bool(x) => arr(7, x, V::Bool),
        MetadataArray::String(x) => V::Arr(8, x.iter().map(|s| V::s(s)).collect()),
        MetadataArray::Array(x) => V::Arr(9, x.iter().map(array_of).collect()),
        MetadataArray::U64(x) => arr(10, x, V::U64),
        MetadataArray::I64(x) => arr(11, x, V::I64),
        MetadataArray::F64(x) => arr(12, x, V::F64),
    }
}
