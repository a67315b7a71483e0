//! Mixture-of-experts feed-forward (Qwen3-MoE) on the CPU kernels: the router as llama.cpp
//! computes it ([`route`], with ggml's tie order from [`sort`]) and the routed experts'
//! SwiGLU feed-forward on the 3-D expert tensors in place ([`experts`]).

pub mod experts;
pub mod route;
pub mod sort;

pub use experts::{
    moe_experts, ExpertTensor, ExpertWeights, MoePlan, MoeScratch, SharedExpert, MAX_PASS_TOKENS,
};
pub use route::{route, Groups, Routing};
