//! The metadata keys of each architecture this program runs (`{arch}.embedding_length`, ...).

pub(super) const ARCH_KEY: &str = "general.architecture";

/// The metadata keys of one architecture, `{arch}.embedding_length` and so on.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    pub(super) hidden: String,
    pub(super) layers: String,
    pub(super) ffn: String,
    pub(super) heads: String,
    pub(super) kv_heads: String,
    pub(super) key_length: String,
    pub(super) value_length: String,
    pub(super) rope_theta: String,
    pub(super) rms_eps: String,
    pub(super) context: String,
    pub(super) vocab_size: String,
    pub(super) experts: String,
    pub(super) experts_used: String,
    pub(super) expert_ffn: String,
    pub(super) shared_ffn: String,
    pub(super) rope_dims: String,
    pub(super) rope_sections: String,
    pub(super) conv_kernel: String,
    pub(super) state_size: String,
    pub(super) k_heads: String,
    pub(super) v_heads: String,
    pub(super) inner_size: String,
    pub(super) interval: String,
    pub(super) recurrent_layers: String,
    pub(super) mtp_layers: String,
    pub(super) deepstack_layers: String,
}

impl Keys {
    pub(super) fn new(arch: &str) -> Keys {
        let k = |suffix: &str| format!("{arch}.{suffix}");
        Keys {
            hidden: k("embedding_length"),
            layers: k("block_count"),
            ffn: k("feed_forward_length"),
            heads: k("attention.head_count"),
            kv_heads: k("attention.head_count_kv"),
            key_length: k("attention.key_length"),
            value_length: k("attention.value_length"),
            rope_theta: k("rope.freq_base"),
            rms_eps: k("attention.layer_norm_rms_epsilon"),
            context: k("context_length"),
            vocab_size: k("vocab_size"),
            experts: k("expert_count"),
            experts_used: k("expert_used_count"),
            expert_ffn: k("expert_feed_forward_length"),
            shared_ffn: k("expert_shared_feed_forward_length"),
            rope_dims: k("rope.dimension_count"),
            rope_sections: k("rope.dimension_sections"),
            conv_kernel: k("ssm.conv_kernel"),
            state_size: k("ssm.state_size"),
            k_heads: k("ssm.group_count"),
            v_heads: k("ssm.time_step_rank"),
            inner_size: k("ssm.inner_size"),
            interval: k("full_attention_interval"),
            recurrent_layers: k("attention.recurrent_layers"),
            mtp_layers: k("nextn_predict_layers"),
            deepstack_layers: k("n_deepstack_layers"),
        }
    }
}
