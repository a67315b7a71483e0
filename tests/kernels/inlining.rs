//! Every SIMD intrinsic of the kernels is inlined into its kernel. An intrinsic that becomes a
//! function call costs a call, a spill and a reload per instruction: it happens silently when
//! a closure (`array::from_fn`, `Option::map_or`) around intrinsics is left out of line, where
//! the kernel's `#[target_feature]`s do not reach. Twice a pack of K-quant panels ran 6-10x
//! slower so, with every test green; this test reads this binary's own machine code.
//! So does the second: the AVX-512 integer dots read their broadcast activations from the
//! activation tables, never from vectors the compiler built and spilled to the stack.

use std::process::Command;

/// Calls into `core::arch` that are functions by design (std's CPU feature detection).
const EXPECTED_CALLS: [&str; 1] = ["_xgetbv"];

/// This test binary's disassembly, or None (with a message) where it cannot be read.
fn disassembly() -> Option<String> {
    if cfg!(debug_assertions) {
        eprintln!("skipped: a debug build inlines nothing; run with --release");
        return None;
    }
    let exe = std::env::current_exe().expect("this test's executable");
    match Command::new("objdump")
        .args(["-d", "-C", "--no-show-raw-insn"])
        .arg(&exe)
        .output()
    {
        Ok(out) if out.status.success() => Some(String::from_utf8_lossy(&out.stdout).into_owned()),
        _ => {
            eprintln!(
                "skipped: objdump (binutils) is not installed, nothing to read the code with"
            );
            None
        }
    }
}

/// The lines of `dump` that `bad` flags (given the line and its function's header line), each
/// after the name of its function.
fn flagged(dump: &str, bad: impl Fn(&str, &str) -> bool) -> Vec<String> {
    let mut function = "";
    let mut lines = vec![];
    for line in dump.lines() {
        if line.ends_with(">:") {
            function = line;
        } else if bad(line, function) {
            lines.push(format!("{function} {}", line.trim()));
        }
    }
    lines
}

#[test]
fn no_simd_intrinsic_is_called_as_a_function() {
    let Some(dump) = disassembly() else { return };
    let calls = flagged(&dump, |line, _| {
        line.contains("call")
            && line.contains("core_arch::")
            && !EXPECTED_CALLS.iter().any(|name| line.contains(name))
    });
    assert!(
        dump.contains("qwen::cpu::dot::panel"),
        "the panel kernels are not in this binary: nothing was checked"
    );
    assert!(
        calls.is_empty(),
        "{} intrinsics called as functions (replace the closure around them with a loop):\n{}",
        calls.len(),
        calls[..calls.len().min(20)].join("\n")
    );
}

/// A `vpdpbusd` reading the stack: its broadcast activations (or its weights) were built in
/// vectors and spilled, two more instructions per dot. It happened when a runtime branch inside
/// a panel kernel's block loop split the block's code: the kernels with a min term ran at half
/// the rate of the others.
#[test]
fn no_integer_dot_reads_a_spilled_vector() {
    let Some(dump) = disassembly() else { return };
    if !dump.contains("vpdpbusd") {
        eprintln!("skipped: no AVX-512 VNNI code in this binary");
        return;
    }
    let spilled = flagged(&dump, |line, _| {
        line.contains("vpdpbusd") && line.contains("(%rsp)")
    });
    assert!(
        spilled.is_empty(),
        "{} vpdpbusd read the stack (a branch in a kernel's loop? too many live vectors?):\n{}",
        spilled.len(),
        spilled[..spilled.len().min(20)].join("\n")
    );
}

/// The one helper a tile kernel calls by design: the f32 tiles' scalar reading of a row's last
/// few weights (fewer than a vector), once per row and call.
const ONCE_PER_ROW: &str = "float::avx2::tail_weights";

/// A tile kernel that calls a helper of the kernels (a closure it builds its rows with, a
/// lookup method) pays a call and the vectors' trip through memory per helper and step: the
/// i-quant byte-permute tiles once ran at half their rate so (closures from `array::from_fn`
/// and a table method left out of line). Everything a tile kernel needs is inlined into it.
#[test]
fn no_tile_kernel_calls_a_kernel_helper() {
    let Some(dump) = disassembly() else { return };
    let calls = flagged(&dump, |line, function| {
        function.contains("qwen::cpu::dot::")
            && function.contains("::tile")
            && line.contains("call")
            && line.contains("qwen::cpu::dot::")
            && !line.contains(ONCE_PER_ROW)
    });
    assert!(
        dump.contains("qwen::cpu::dot::iquant::avx512::tile"),
        "the i-quant tile kernels are not in this binary: nothing was checked"
    );
    assert!(
        calls.is_empty(),
        "{} calls from tile kernels into kernel helpers:\n{}",
        calls.len(),
        calls[..calls.len().min(20)].join("\n")
    );
}
