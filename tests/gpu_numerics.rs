//! The GPU backends on a real device, teacher-forced against llama.cpp's logits like
//! `numerics.rs`. Each test runs when its backend was built (`--features cuda`, `--features metal`)
//! and a device opens; otherwise it prints why it was skipped and passes, unless
//! `QWEN_REQUIRE_GPU=1` is set (as the GPU machine's `run.sh` does), where a missing device fails.
//!
//! Tolerances: f32 as the reference backend (`gpu_graph.rs`: 0.05, argmax where the top-2 gap
//! exceeds 0.1), since only the summation order differs from it. f16 keeps activations to about
//! three significant digits (logits of about ±20 move by up to ~0.03 from rounding alone, more
//! through the layers): 0.25, argmax where the gap exceeds 0.5. The f16 figures are estimates, not
//! yet measured on a device.

#[cfg(any(feature = "cuda", all(feature = "metal", target_os = "macos")))]
#[path = "common/mod.rs"]
mod common;

#[cfg(any(feature = "cuda", all(feature = "metal", target_os = "macos")))]
mod cases {
    use super::common::gpu::{teacher_forced, Tolerance};
    use qwen::backend::gpu_engine::GpuOptions;

    pub const F32: Tolerance = Tolerance {
        logit: 0.05,
        argmax_gap: 0.1,
    };
    pub const F16: Tolerance = Tolerance {
        logit: 0.25,
        argmax_gap: 0.5,
    };

    /// Every fixture model with its reference; `chunked` prefills a few tokens at a time.
    pub const MODELS: [(&str, &str); 6] = [
        ("tiny-f32.gguf", "tiny-f32.json"),
        ("tiny-f16.gguf", "tiny-f16.deq.json"),
        ("tiny-q8_0.gguf", "tiny-q8_0.deq.json"),
        ("tiny-q4_0.gguf", "tiny-q4_0.deq.json"),
        ("small-q4_k_m.gguf", "small-q4_k_m.deq.json"),
        ("tiny-qwen3vocab-q8_0.gguf", "tiny-qwen3vocab-q8_0.deq.json"),
    ];

    /// Runs every model with backends from `make`, whole and with chunked prefill.
    pub fn all<D: qwen::backend::device::Device + std::fmt::Debug>(
        make: impl Fn() -> D,
        tol: Tolerance,
    ) {
        for (model, reference) in MODELS {
            for budget in [GpuOptions::DEFAULT_ATTENTION_BUDGET, 64 * 80] {
                let options = GpuOptions {
                    max_context: 256,
                    attention_budget: budget,
                };
                teacher_forced(model, reference, options, make(), tol);
            }
        }
    }
}

/// Whether a missing device is a failure rather than a skip (`QWEN_REQUIRE_GPU=1`).
#[cfg(any(feature = "cuda", all(feature = "metal", target_os = "macos")))]
fn gpu_required() -> bool {
    std::env::var("QWEN_REQUIRE_GPU").is_ok_and(|v| v == "1")
}

#[cfg(feature = "cuda")]
mod cuda {
    use qwen::backend::cuda::{probe, Cuda};
    use qwen::backend::device::Precision;

    fn run(precision: Precision, tol: super::common::gpu::Tolerance) {
        if let Err(why) = probe() {
            assert!(!super::gpu_required(), "QWEN_REQUIRE_GPU=1 but {why}");
            eprintln!("skipped: no CUDA device ({why})");
            return;
        }
        let make = || Cuda::new(precision).expect("the probe found a device");
        super::cases::all(make, tol);
    }

    #[test]
    fn cuda_f32_matches_llama_cpp() {
        run(Precision::F32, super::cases::F32);
    }

    #[test]
    fn cuda_f16_matches_llama_cpp() {
        run(Precision::F16, super::cases::F16);
    }
}

#[cfg(all(feature = "metal", target_os = "macos"))]
mod metal {
    use qwen::backend::device::Precision;
    use qwen::backend::metal::Metal;

    fn run(precision: Precision, tol: super::common::gpu::Tolerance) {
        if let Err(why) = Metal::new(precision) {
            assert!(!super::gpu_required(), "QWEN_REQUIRE_GPU=1 but {why}");
            eprintln!("skipped: no Metal device ({why})");
            return;
        }
        let make = || Metal::new(precision).expect("a Metal device opened just before");
        super::cases::all(make, tol);
    }

    #[test]
    fn metal_f32_matches_llama_cpp() {
        run(Precision::F32, super::cases::F32);
    }

    #[test]
    fn metal_f16_matches_llama_cpp() {
        run(Precision::F16, super::cases::F16);
    }
}

/// Without a GPU backend built there is nothing to run; say so in the test output.
#[cfg(not(any(feature = "cuda", all(feature = "metal", target_os = "macos"))))]
#[test]
fn gpu_backends_not_built() {
    eprintln!(
        "skipped: no GPU backend in this build (run `cargo test --features cuda --test gpu_numerics` \
         on an NVIDIA machine, `--features metal` on macOS)"
    );
    let built = qwen::settings::BackendChoice::available();
    use qwen::settings::BackendChoice;
    assert_eq!(built, vec![BackendChoice::Cpu, BackendChoice::Reference]);
}
