//! A Gemma 4 checkpoint with random MLX 4-bit weights, made in memory: the model benchmarks
//! run on (E2B's shape by default, the hyper-parameters of the smallest release), with the
//! tensor names, dtypes and `quantization` entry an mlx-community conversion has. Codes are
//! random; each tensor's scale is chosen so its weights have a standard deviation of about
//! `1/sqrt(in_features)`, with bias `-7.5 * scale`; norms and layer scalars are 1.

use crate::ModelError;
use crate::config::Config;
use onepath_weights::Checkpoint;
use serde_json::{Value, json};

/// The shape of a synthetic model.
#[derive(Clone, Debug)]
pub struct Shape {
    pub layers: usize,
    pub vocab: usize,
    pub hidden: usize,
    pub intermediate: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub global_head_dim: usize,
    pub ple_dim: usize,
    pub kv_shared: usize,
    pub sliding_window: usize,
}

impl Shape {
    /// Gemma 4 E2B (`shared/notes/gemma4.md`): 35 layers `[S,S,S,S,F] x 7`, 20 KV-shared.
    pub fn e2b() -> Shape {
        Shape {
            layers: 35,
            vocab: 262144,
            hidden: 1536,
            intermediate: 6144,
            heads: 8,
            head_dim: 256,
            global_head_dim: 512,
            ple_dim: 256,
            kv_shared: 20,
            sliding_window: 512,
        }
    }

    /// The config.json of this shape (text-only, MLX 4-bit, group 64).
    pub fn config_json(&self) -> String {
        let kinds: Vec<&str> = (0..self.layers)
            .map(|l| {
                if l % 5 == 4 {
                    "full_attention"
                } else {
                    "sliding_attention"
                }
            })
            .collect();
        json!({
            "model_type": "gemma4_text",
            "hidden_size": self.hidden,
            "num_hidden_layers": self.layers,
            "intermediate_size": self.intermediate,
            "num_attention_heads": self.heads,
            "num_key_value_heads": 1,
            "num_global_key_value_heads": 1,
            "head_dim": self.head_dim,
            "global_head_dim": self.global_head_dim,
            "vocab_size": self.vocab,
            "vocab_size_per_layer_input": self.vocab,
            "hidden_size_per_layer_input": self.ple_dim,
            "num_kv_shared_layers": self.kv_shared,
            "sliding_window": self.sliding_window,
            "layer_types": kinds,
            "use_double_wide_mlp": true,
            "final_logit_softcapping": 30.0,
            "rms_norm_eps": 1e-6,
            "tie_word_embeddings": true,
            "max_position_embeddings": 131072,
            "rope_parameters": {
                "full_attention": {"partial_rotary_factor": 0.25, "rope_theta": 1e6, "rope_type": "proportional"},
                "sliding_attention": {"rope_theta": 10000.0, "rope_type": "default"}
            },
            "eos_token_id": [1, 106],
            "bos_token_id": 2,
            "quantization": {"group_size": 64, "bits": 4, "mode": "affine"}
        })
        .to_string()
    }
}

/// One tensor to write: name, dtype, shape, and how to fill it.
enum Fill {
    /// Random 4-bit codes.
    Codes,
    /// Every bf16 value the same.
    Bf16(f32),
}

struct Entry {
    name: String,
    dtype: &'static str,
    shape: Vec<usize>,
    fill: Fill,
}

impl Entry {
    fn bytes(&self) -> usize {
        let n: usize = self.shape.iter().product();
        n * if self.dtype == "U32" { 4 } else { 2 }
    }
}

fn quantized(out: &mut Vec<Entry>, path: &str, rows: usize, cols: usize) {
    let scale = 1.0 / (4.6 * (cols as f32).sqrt());
    out.push(Entry {
        name: format!("{path}.weight"),
        dtype: "U32",
        shape: vec![rows, cols / 8],
        fill: Fill::Codes,
    });
    out.push(Entry {
        name: format!("{path}.scales"),
        dtype: "BF16",
        shape: vec![rows, cols / 64],
        fill: Fill::Bf16(scale),
    });
    out.push(Entry {
        name: format!("{path}.biases"),
        dtype: "BF16",
        shape: vec![rows, cols / 64],
        fill: Fill::Bf16(-7.5 * scale),
    });
}

fn ones(out: &mut Vec<Entry>, name: String, n: usize) {
    out.push(Entry {
        name,
        dtype: "BF16",
        shape: vec![n],
        fill: Fill::Bf16(1.0),
    });
}

fn entries(s: &Shape) -> Vec<Entry> {
    let p = "language_model.model.";
    let mut e = Vec::new();
    quantized(&mut e, &format!("{p}embed_tokens"), s.vocab, s.hidden);
    quantized(
        &mut e,
        &format!("{p}embed_tokens_per_layer"),
        s.vocab,
        s.layers * s.ple_dim,
    );
    quantized(
        &mut e,
        &format!("{p}per_layer_model_projection"),
        s.layers * s.ple_dim,
        s.hidden,
    );
    ones(
        &mut e,
        format!("{p}per_layer_projection_norm.weight"),
        s.ple_dim,
    );
    ones(&mut e, format!("{p}norm.weight"), s.hidden);
    let first_shared = s.layers - s.kv_shared;
    for l in 0..s.layers {
        let lp = format!("{p}layers.{l}.");
        let d = if l % 5 == 4 {
            s.global_head_dim
        } else {
            s.head_dim
        };
        let h = s.hidden;
        quantized(&mut e, &format!("{lp}self_attn.q_proj"), s.heads * d, h);
        quantized(&mut e, &format!("{lp}self_attn.o_proj"), h, s.heads * d);
        ones(&mut e, format!("{lp}self_attn.q_norm.weight"), d);
        if l < first_shared {
            quantized(&mut e, &format!("{lp}self_attn.k_proj"), d, h);
            quantized(&mut e, &format!("{lp}self_attn.v_proj"), d, h);
            ones(&mut e, format!("{lp}self_attn.k_norm.weight"), d);
        }
        let w = if l >= first_shared {
            2 * s.intermediate
        } else {
            s.intermediate
        };
        quantized(&mut e, &format!("{lp}mlp.gate_proj"), w, h);
        quantized(&mut e, &format!("{lp}mlp.up_proj"), w, h);
        quantized(&mut e, &format!("{lp}mlp.down_proj"), h, w);
        quantized(&mut e, &format!("{lp}per_layer_input_gate"), s.ple_dim, h);
        quantized(&mut e, &format!("{lp}per_layer_projection"), h, s.ple_dim);
        for n in [
            "input_layernorm",
            "post_attention_layernorm",
            "pre_feedforward_layernorm",
            "post_feedforward_layernorm",
            "post_per_layer_input_norm",
        ] {
            ones(&mut e, format!("{lp}{n}.weight"), h);
        }
        ones(&mut e, format!("{lp}layer_scalar"), 1);
    }
    e
}

/// Builds the checkpoint (seeded), in one buffer in safetensors format.
pub fn checkpoint(shape: &Shape, seed: u64) -> Result<(Config, Checkpoint), ModelError> {
    let text = shape.config_json();
    let cfg = Config::from_json(&text)?;
    let es = entries(shape);
    let mut header = serde_json::Map::new();
    let mut at = 0usize;
    for e in &es {
        let end = at + e.bytes();
        header.insert(
            e.name.clone(),
            json!({"dtype": e.dtype, "shape": e.shape, "data_offsets": [at, end]}),
        );
        at = end;
    }
    header.insert(
        "__metadata__".into(),
        json!({"format": "mlx", "note": "onepath synthetic random weights"}),
    );
    let mut h = Value::Object(header).to_string().into_bytes();
    while !(h.len() + 8).is_multiple_of(8) {
        h.push(b' ');
    }
    let mut bytes = Vec::with_capacity(8 + h.len() + at);
    bytes.extend_from_slice(&(h.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&h);
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for e in &es {
        match e.fill {
            Fill::Codes => {
                let n = e.bytes() / 8;
                for _ in 0..n {
                    // xorshift64*: fast, seeded, and good enough for random codes.
                    state ^= state >> 12;
                    state ^= state << 25;
                    state ^= state >> 27;
                    bytes.extend_from_slice(
                        &state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes(),
                    );
                }
            }
            Fill::Bf16(v) => {
                let b = half::bf16::from_f32(v).to_le_bytes();
                for _ in 0..e.bytes() / 2 {
                    bytes.extend_from_slice(&b);
                }
            }
        }
    }
    let ckpt = Checkpoint::from_bytes(bytes)?.with_config_json(&text)?;
    Ok((cfg, ckpt))
}
