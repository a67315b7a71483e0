//! Every SIMD intrinsic of the kernels is inlined into its kernel. An intrinsic that becomes a
//! function call costs a call, a spill and a reload per instruction: it happens silently when
//! a closure (`array::from_fn`, `Option::map_or`) around intrinsics is left out of line, where
//! the kernel's `#[target_feature]`s do not reach. Twice a pack of K-quant panels ran 6-10x
//! slower so, with every test green; this test reads this binary's own machine code.

use std::process::Command;

/// Calls into `core::arch` that are functions by design (std's CPU feature detection).
const EXPECTED_CALLS: [&str; 1] = ["_xgetbv"];

#[test]
fn no_simd_intrinsic_is_called_as_a_function() {
    if cfg!(debug_assertions) {
        eprintln!("skipped: a debug build inlines nothing; run with --release");
        return;
    }
    let exe = std::env::current_exe().expect("this test's executable");
    let dump = match Command::new("objdump")
        .args(["-d", "-C", "--no-show-raw-insn"])
        .arg(&exe)
        .output()
    {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
        _ => {
            eprintln!(
                "skipped: objdump (binutils) is not installed, nothing to read the code with"
            );
            return;
        }
    };
    let mut function = "";
    let mut calls = vec![];
    for line in dump.lines() {
        if line.ends_with(">:") {
            function = line;
        } else if line.contains("call")
            && line.contains("core_arch::")
            && !EXPECTED_CALLS.iter().any(|name| line.contains(name))
        {
            calls.push(format!("{function} {}", line.trim()));
        }
    }
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
