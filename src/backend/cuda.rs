//! The CUDA backend: luminal_cuda's `CudaCompiler` (f32 or f16; cuBLAS for the weight matmuls,
//! NVRTC-compiled kernels for the rest), weights uploaded once at load.
//!
//! `CudaCompiler` puts a copy-to-device op behind every graph input. Weights go through that op
//! once, by hand, at load: its output is kept on the device and the host-side weight node is
//! deleted, so a step uploads only its small inputs (embedding rows, rotary tables, mask). The
//! KV caches never leave the device (see `graph`). Requirements of luminal_cuda 0.2.0 itself: the
//! CUDA driver library to start the program, a device of compute capability 7.5 or newer (kernels
//! are built for `sm_75`), and the toolkit's headers at `/usr/local/cuda/include` (NVRTC includes
//! `cuda_fp16.h` from there).

use luminal::op::InputTensor;
use luminal::prelude::petgraph::Direction;
use luminal::prelude::*;
use luminal_cuda::CudaCompiler;
use luminal_cudarc::driver::result as driver;

use crate::gguf::GgufFile;

use super::device::{Device, GpuError, Precision};
use super::gpu_weights::WeightSlot;

/// CUDA device 0.
#[derive(Debug)]
pub struct Cuda {
    precision: Precision,
}

impl Cuda {
    /// Checks that device 0 can be used. luminal_cuda opens the device inside its compiler passes
    /// and panics if it cannot, so the engine asks the driver first and reports the reason.
    pub fn new(precision: Precision) -> Result<Self, GpuError> {
        probe()?;
        Ok(Self { precision })
    }
}

/// Whether the driver sees a CUDA device; the error says why not.
pub fn probe() -> Result<(), GpuError> {
    let no_device = |reason: String| GpuError::NoDevice {
        backend: "cuda",
        reason,
    };
    driver::init()
        .map_err(|e| no_device(format!("the CUDA driver did not start ({})", describe(&e))))?;
    let count = driver::device::get_count().map_err(|e| {
        no_device(format!(
            "the driver could not count devices ({})",
            describe(&e)
        ))
    })?;
    if count < 1 {
        return Err(no_device("the driver sees no CUDA device".into()));
    }
    Ok(())
}

/// The error's code and the driver's text for it. Not `DriverError`'s `Debug`, which panics when
/// the driver cannot give the text (as a stub driver library may not).
fn describe(e: &driver::DriverError) -> String {
    match e.error_string() {
        Ok(text) => format!("{:?}: {}", e.0, text.to_string_lossy()),
        Err(_) => format!("{:?}", e.0),
    }
}

impl Device for Cuda {
    fn name(&self) -> &'static str {
        "cuda"
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
        match self.precision {
            Precision::F32 => cx.compile(
                (GenericCompiler::default(), CudaCompiler::<f32>::default()),
                remap,
            ),
            Precision::F16 => cx.compile(
                (GenericCompiler::default(), CudaCompiler::<f16>::default()),
                remap,
            ),
        }
        upload_weights(cx, slots, file)
    }

    fn passes(&self) -> Vec<&'static str> {
        vec![
            "GenericCompiler",
            "CudaPrimitiveCompiler",
            "CudaSubtractionCompiler",
            "CudaEqualCompiler",
            "ARangeCompiler",
            "GatherCompiler",
            "CudaMatMulCompiler (cuBLAS)",
            "CopyCompiler",
        ]
    }
}

/// Runs each weight through its copy-to-device op, keeps the result on the device and deletes
/// the host-side weight nodes. One weight is decoded at a time.
fn upload_weights(cx: &mut Graph, slots: &[WeightSlot], file: &GgufFile) -> Result<(), GpuError> {
    let mut uploaded = Vec::with_capacity(slots.len());
    for slot in slots {
        let copy = upload_op(cx, slot)?;
        let data = slot.decode(file)?;
        let input = vec![(
            InputTensor::Owned(Tensor::new(data)),
            ShapeTracker::new(&[]),
        )];
        let tensor = cx
            .graph
            .node_weight_mut(copy)
            .and_then(|op| op.process(input).pop())
            .ok_or_else(|| GpuError::Unbindable {
                name: slot.name.clone(),
                found: "an upload op with no output".into(),
            })?;
        cx.set_tensor(copy, 0, tensor);
        cx.keep_tensors(copy);
        uploaded.push(copy);
    }
    // Also refreshes the execution order, which still lists the deleted nodes.
    delete_inputs(uploaded, cx);
    Ok(())
}

/// The copy-to-device op that `CudaCompiler` put behind weight `slot` (luminal_cuda does not
/// export the type, so it is recognised by its debug name).
fn upload_op(cx: &Graph, slot: &WeightSlot) -> Result<NodeIndex, GpuError> {
    let dests: Vec<NodeIndex> = cx
        .graph
        .neighbors_directed(slot.node, Direction::Outgoing)
        .collect();
    let unbindable = |found: String| GpuError::Unbindable {
        name: slot.name.clone(),
        found,
    };
    let [dest] = dests[..] else {
        return Err(unbindable(format!("{} consumers", dests.len())));
    };
    let op = cx
        .graph
        .node_weight(dest)
        .map(|op| format!("{op:?}"))
        .unwrap_or_default();
    if op.starts_with("CudaCopyToDevice") {
        Ok(dest)
    } else {
        Err(unbindable(op))
    }
}
