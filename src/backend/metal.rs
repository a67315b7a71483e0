//! The Metal backend (macOS): luminal_metal's `MetalQuantizedCompiler`, which runs the whole
//! `MetalCompiler` and then swaps the matmuls fed by Q8_0 weights for its quantized matvec kernel.
//!
//! Q8_0 matrices go to the GPU in their GGUF encoding (34-byte blocks, the layout of the kernel's
//! `block_q8_0`); every other weight is decoded on the host and stored in the compute type.
//! Weights are bound before compiling, as luminal_metal's own tests do: its copy-to-device op
//! passes buffers that are already on the device through. Written against luminal_metal 0.2.0's
//! source and not yet built or run on macOS.

use luminal::prelude::*;
use luminal_metal::{MetalBuffer, MetalQuantizedCompiler};
use metal::{Buffer, Device, MTLResourceOptions};

use crate::gguf::GgufFile;
use crate::quant::GgmlType;

use super::device::{Device, GpuError, Precision};
use super::gpu_weights::WeightSlot;

/// The system's default Metal device.
pub struct Metal {
    precision: Precision,
    device: Device,
}

impl std::fmt::Debug for Metal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Metal({})", self.precision.name())
    }
}

impl Metal {
    pub fn new(precision: Precision) -> Result<Self, GpuError> {
        let device = Device::system_default().ok_or_else(|| GpuError::NoDevice {
            backend: "metal",
            reason: "the system has no default Metal device".into(),
        })?;
        Ok(Self { precision, device })
    }

    /// `values` copied into a new shared buffer.
    fn buffer<T: Copy>(&self, values: &[T]) -> Buffer {
        self.device.new_buffer_with_data(
            values.as_ptr().cast(),
            std::mem::size_of_val(values) as u64,
            MTLResourceOptions::StorageModeShared,
        )
    }

    /// Weight `slot` on the device: raw Q8_0 blocks, or decoded values in the compute type.
    fn upload(&self, slot: &WeightSlot, file: &GgufFile) -> Result<Buffer, GpuError> {
        if quantized(slot) {
            return Ok(self.buffer(slot.raw(file)?));
        }
        let values = slot.decode(file)?;
        Ok(match self.precision {
            Precision::F32 => self.buffer(&values),
            Precision::F16 => {
                let halves: Vec<f16> = values.iter().map(|&v| f16::from_f32(v)).collect();
                self.buffer(&halves)
            }
        })
    }
}

/// Matrices stored as Q8_0 run on the quantized kernel (which only replaces matmuls).
fn quantized(slot: &WeightSlot) -> bool {
    slot.matrix && slot.ty == GgmlType::Q8_0
}

impl Device for Metal {
    fn name(&self) -> &'static str {
        "metal"
    }

    fn precision(&self) -> Precision {
        self.precision
    }

    fn compile_and_bind(
        &mut self,
        cx: &mut Graph,
        remap: Vec<&mut NodeIndex>,
        slots: &[WeightSlot],
        file: &GgufFile,
    ) -> Result<(), GpuError> {
        let mut q8 = Vec::new();
        for slot in slots {
            let buffer = self.upload(slot, file)?;
            cx.set_tensor(slot.node, 0, Tensor::new(MetalBuffer(buffer)));
            cx.keep_tensors(slot.node);
            if quantized(slot) {
                q8.push(slot.node);
            }
        }
        match self.precision {
            Precision::F32 => cx.compile(
                (
                    GenericCompiler::default(),
                    MetalQuantizedCompiler::<f32>::new(q8),
                ),
                remap,
            ),
            Precision::F16 => cx.compile(
                (
                    GenericCompiler::default(),
                    MetalQuantizedCompiler::<f16>::new(q8),
                ),
                remap,
            ),
        }
        Ok(())
    }

    fn passes(&self) -> Vec<&'static str> {
        vec![
            "GenericCompiler",
            "MetalCompiler",
            "MetalQuantizedCompiler (Q8_0 matvec)",
            "CommandBufferCompiler",
            "StorageBufferCompiler",
        ]
    }
}
