//! `qwen`: run Qwen3 GGUF models on luminal.

fn main() {
    println!("qwen");
}
