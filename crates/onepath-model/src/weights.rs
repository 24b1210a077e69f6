//! Gemma 4's tensors, found under the prefixes real checkpoints use, and put on the GPU.
//!
//! Prefixes: `model.` (Hugging Face text-only), `model.language_model.` (the Hub's multimodal
//! release; vision and audio towers are ignored), `language_model.model.` (mlx-community's
//! conversions). Linears are MLX-quantized or dense as stored (`Checkpoint::linear`), or
//! quantized at load (`--quantize`). Norm weights go to the GPU as f32. The token embedding and
//! the per-layer embedding are also read on the host, one row per token (the per-layer table is
//! large and gathered, never multiplied).

use crate::ModelError;
use crate::config::{Config, Kind};
use onepath_gpu::Gpu;
use onepath_ops::linear::Linear;
use onepath_weights::{
    Checkpoint, Linear as Stored, QuantParams, QuantizedTensor, dequantize_rows_f32,
};

const PREFIXES: [&str; 4] = [
    "model.language_model.",
    "language_model.model.",
    "model.",
    "",
];

/// How to load.
#[derive(Clone, Copy, Debug, Default)]
pub struct LoadOptions {
    /// Quantize dense linears (and the embedding) at load time with MLX's rule.
    pub quantize: Option<QuantParams>,
    /// Plan bindings of at most this many bytes (a browser's 128 MiB).
    pub max_binding: Option<u64>,
    /// K/V storage; `None`: f32 for an unquantized f32 checkpoint, else f16.
    pub kv_dtype: Option<onepath_ops::sdpa::KvDType>,
}

/// Linears that read the same input, stacked into one (outputs side by side) when their
/// formats allow ([`Linear::stack`]), else kept apart; in order (q, k, v) or (gate, up).
pub enum Stacked {
    One(Linear),
    Parts(Vec<Linear>),
}

impl Stacked {
    async fn new(gpu: &Gpu, parts: Vec<Linear>) -> Result<Stacked, ModelError> {
        if parts.len() < 2 {
            return Ok(Stacked::Parts(parts));
        }
        let refs: Vec<&Linear> = parts.iter().collect();
        Ok(match Linear::stack(gpu, &refs).await? {
            Some(one) => Stacked::One(one),
            None => Stacked::Parts(parts),
        })
    }

    /// Bytes of weights on the GPU.
    pub fn bytes(&self) -> u64 {
        match self {
            Stacked::One(l) => l.bytes(),
            Stacked::Parts(p) => p.iter().map(Linear::bytes).sum(),
        }
    }
}

/// One decoder layer's weights.
pub struct Layer {
    pub kind: Kind,
    /// q, then k and v where the layer computes them (not on KV-shared layers; no v with
    /// `attention_k_eq_v`).
    pub qkv: Stacked,
    pub o: Linear,
    pub q_norm: wgpu::Buffer,
    pub k_norm: Option<wgpu::Buffer>,
    pub input_norm: wgpu::Buffer,
    pub post_attn_norm: wgpu::Buffer,
    pub pre_ff_norm: wgpu::Buffer,
    pub post_ff_norm: wgpu::Buffer,
    pub gate_up: Stacked,
    pub down: Linear,
    /// Per-layer-input gate (hidden -> P), projection (P -> hidden) and norm.
    pub ple: Option<(Linear, Linear, wgpu::Buffer)>,
    pub scalar: f32,
}

/// A table read one row per token on the host.
pub enum HostTable {
    /// A tensor of the checkpoint (dense or MLX-quantized), by path.
    Stored(String),
    /// Quantized at load.
    Owned(QuantizedTensor<'static>),
}

impl HostTable {
    /// Row `id` as f32 (`scale * q + bias` in f32 for quantized tables, as the f32 kernels
    /// that multiply with the same table compute it).
    pub fn row(&self, ckpt: &Checkpoint, id: usize) -> Result<Vec<f32>, ModelError> {
        let q;
        let qt = match self {
            HostTable::Owned(t) => t,
            HostTable::Stored(path) => match ckpt.linear(path)? {
                Stored::Quantized(t) => {
                    q = t;
                    &q
                }
                Stored::Dense(w) => {
                    let (_, cols) = w.dims2()?;
                    let dt = w.dtype();
                    let bytes = &w.data()[id * cols * dt.size()..(id + 1) * cols * dt.size()];
                    return Ok(bytes
                        .chunks_exact(dt.size())
                        .map(|c| dt.decode(c).unwrap_or(f32::NAN))
                        .collect());
                }
            },
        };
        Ok(dequantize_rows_f32(qt, id..id + 1)?)
    }
}

/// Every weight of the decoder.
pub struct Weights {
    pub prefix: String,
    pub embed: HostTable,
    pub ple_embed: Option<HostTable>,
    /// `per_layer_model_projection` (hidden -> layers * P) and `per_layer_projection_norm`.
    pub ple_proj: Option<(Linear, wgpu::Buffer)>,
    pub layers: Vec<Layer>,
    pub final_norm: wgpu::Buffer,
    pub lm_head: Linear,
}

/// Finds the prefix the checkpoint's text weights live under.
fn prefix(ckpt: &Checkpoint) -> Result<&'static str, ModelError> {
    PREFIXES
        .into_iter()
        .find(|p| ckpt.contains(&format!("{p}embed_tokens.weight")))
        .ok_or_else(|| {
            ModelError::MissingTensor(
                "embed_tokens.weight (under model., model.language_model. or language_model.model.)"
                    .into(),
            )
        })
}

/// A 1-D float tensor of `n` values as an f32 GPU buffer.
fn vector(gpu: &Gpu, ckpt: &Checkpoint, name: &str, n: usize) -> Result<wgpu::Buffer, ModelError> {
    if !ckpt.contains(name) {
        return Err(ModelError::MissingTensor(name.into()));
    }
    let t = ckpt.tensor(name)?;
    if t.shape() != [n] {
        return Err(ModelError::Shape {
            tensor: name.into(),
            found: t.shape().to_vec(),
            expected: vec![n],
        });
    }
    let v = t.to_f32()?;
    Ok(gpu.storage_from(name, bytemuck::cast_slice(&v))?)
}

fn scalar(ckpt: &Checkpoint, name: &str) -> Result<f32, ModelError> {
    if !ckpt.contains(name) {
        return Ok(1.0);
    }
    let v = ckpt.tensor(name)?.to_f32()?;
    match v.as_slice() {
        [x] => Ok(*x),
        _ => Err(ModelError::Shape {
            tensor: name.into(),
            found: vec![v.len()],
            expected: vec![1],
        }),
    }
}

/// The `[rows, cols]` of a stored linear or embedding.
fn dims(stored: &Stored) -> Result<(usize, usize), ModelError> {
    Ok(match stored {
        Stored::Quantized(q) => (q.rows(), q.cols()),
        Stored::Dense(w) => w.dims2()?,
    })
}

/// A linear of shape `[rows, cols]`, checked against the config.
async fn linear(
    gpu: &Gpu,
    ckpt: &Checkpoint,
    path: &str,
    (rows, cols): (usize, usize),
    opts: &LoadOptions,
) -> Result<Linear, ModelError> {
    if !ckpt.contains(&format!("{path}.weight")) {
        return Err(ModelError::MissingTensor(format!("{path}.weight")));
    }
    let stored = ckpt.linear(path)?;
    let found = dims(&stored)?;
    if found != (rows, cols) {
        return Err(ModelError::Shape {
            tensor: format!("{path}.weight"),
            found: vec![found.0, found.1],
            expected: vec![rows, cols],
        });
    }
    Ok(Linear::upload(gpu, &stored, opts.quantize, opts.max_binding).await?)
}

impl Weights {
    /// Loads every tensor the config calls for; `progress(done, total)` after each layer.
    pub async fn load(
        gpu: &Gpu,
        ckpt: &Checkpoint,
        cfg: &Config,
        opts: &LoadOptions,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Weights, ModelError> {
        let p = prefix(ckpt)?;
        let h = cfg.hidden;
        let embed_path = format!("{p}embed_tokens");
        let embed_stored = ckpt.linear(&embed_path)?;
        let (er, ec) = dims(&embed_stored)?;
        if (er, ec) != (cfg.vocab, h) {
            return Err(ModelError::Shape {
                tensor: format!("{embed_path}.weight"),
                found: vec![er, ec],
                expected: vec![cfg.vocab, h],
            });
        }
        // The embedding, quantized at load if asked: the host gathers the same values the
        // tied head multiplies with.
        let (embed, lm_head) = match (&embed_stored, opts.quantize) {
            (Stored::Dense(w), Some(qp)) if h.is_multiple_of(qp.group_size) => {
                let q = onepath_weights::quantize_view(w, qp)?;
                let head = if cfg.tie_embeddings {
                    Some(
                        Linear::upload(gpu, &Stored::Quantized(q.clone()), None, opts.max_binding)
                            .await?,
                    )
                } else {
                    None
                };
                (HostTable::Owned(q), head)
            }
            _ => {
                let head = if cfg.tie_embeddings {
                    Some(Linear::upload(gpu, &embed_stored, opts.quantize, opts.max_binding).await?)
                } else {
                    None
                };
                (HostTable::Stored(embed_path.clone()), head)
            }
        };
        let lm_head = match lm_head {
            Some(l) => l,
            None => {
                let path = if ckpt.contains("lm_head.weight") {
                    "lm_head".to_string()
                } else if ckpt.contains(&format!("{p}lm_head.weight")) {
                    format!("{p}lm_head")
                } else {
                    // Untied (tie_word_embeddings false): the head is its own tensor.
                    return Err(ModelError::MissingTensor("lm_head.weight".into()));
                };
                linear(gpu, ckpt, &path, (cfg.vocab, h), opts).await?
            }
        };
        let (ple_embed, ple_proj) = if cfg.ple_dim > 0 {
            let lp = cfg.layers * cfg.ple_dim;
            let name = format!("{p}embed_tokens_per_layer");
            if !ckpt.contains(&format!("{name}.weight")) {
                return Err(ModelError::MissingTensor(format!("{name}.weight")));
            }
            // Rows are gathered by token id on the host: the shape must be exact.
            let found = dims(&ckpt.linear(&name)?)?;
            if found != (cfg.ple_vocab, lp) {
                return Err(ModelError::Shape {
                    tensor: format!("{name}.weight"),
                    found: vec![found.0, found.1],
                    expected: vec![cfg.ple_vocab, lp],
                });
            }
            let table = HostTable::Stored(name);
            let proj = linear(
                gpu,
                ckpt,
                &format!("{p}per_layer_model_projection"),
                (lp, h),
                opts,
            )
            .await?;
            let norm = vector(
                gpu,
                ckpt,
                &format!("{p}per_layer_projection_norm.weight"),
                cfg.ple_dim,
            )?;
            (Some(table), Some((proj, norm)))
        } else {
            (None, None)
        };
        let mut layers = Vec::with_capacity(cfg.layers);
        for l in 0..cfg.layers {
            layers.push(Self::layer(gpu, ckpt, cfg, opts, &format!("{p}layers.{l}."), l).await?);
            progress(l + 1, cfg.layers);
        }
        Ok(Weights {
            prefix: p.to_string(),
            embed,
            ple_embed,
            ple_proj,
            layers,
            final_norm: vector(gpu, ckpt, &format!("{p}norm.weight"), h)?,
            lm_head,
        })
    }

    async fn layer(
        gpu: &Gpu,
        ckpt: &Checkpoint,
        cfg: &Config,
        opts: &LoadOptions,
        lp: &str,
        l: usize,
    ) -> Result<Layer, ModelError> {
        let kind = cfg.layer_kinds[l];
        let a = cfg.attn(kind);
        let (h, d) = (cfg.hidden, a.head_dim);
        let owns_kv = l < cfg.first_shared();
        let at = |n: &str| format!("{lp}{n}");
        let k = if owns_kv {
            Some(
                linear(
                    gpu,
                    ckpt,
                    &at("self_attn.k_proj"),
                    (a.kv_heads * d, h),
                    opts,
                )
                .await?,
            )
        } else {
            None
        };
        let v = if owns_kv && !(cfg.k_eq_v && kind == Kind::Full) {
            Some(
                linear(
                    gpu,
                    ckpt,
                    &at("self_attn.v_proj"),
                    (a.kv_heads * d, h),
                    opts,
                )
                .await?,
            )
        } else {
            None
        };
        let ple = if cfg.ple_dim > 0 {
            let pd = cfg.ple_dim;
            Some((
                linear(gpu, ckpt, &at("per_layer_input_gate"), (pd, h), opts).await?,
                linear(gpu, ckpt, &at("per_layer_projection"), (h, pd), opts).await?,
                vector(gpu, ckpt, &at("post_per_layer_input_norm.weight"), h)?,
            ))
        } else {
            None
        };
        let w = cfg.mlp_width(l);
        let q = linear(gpu, ckpt, &at("self_attn.q_proj"), (cfg.heads * d, h), opts).await?;
        let qkv = Stacked::new(gpu, [Some(q), k, v].into_iter().flatten().collect()).await?;
        let gate = linear(gpu, ckpt, &at("mlp.gate_proj"), (w, h), opts).await?;
        let up = linear(gpu, ckpt, &at("mlp.up_proj"), (w, h), opts).await?;
        Ok(Layer {
            kind,
            qkv,
            o: linear(gpu, ckpt, &at("self_attn.o_proj"), (h, cfg.heads * d), opts).await?,
            q_norm: vector(gpu, ckpt, &at("self_attn.q_norm.weight"), d)?,
            k_norm: if owns_kv {
                Some(vector(gpu, ckpt, &at("self_attn.k_norm.weight"), d)?)
            } else {
                None
            },
            input_norm: vector(gpu, ckpt, &at("input_layernorm.weight"), h)?,
            post_attn_norm: vector(gpu, ckpt, &at("post_attention_layernorm.weight"), h)?,
            pre_ff_norm: vector(gpu, ckpt, &at("pre_feedforward_layernorm.weight"), h)?,
            post_ff_norm: vector(gpu, ckpt, &at("post_feedforward_layernorm.weight"), h)?,
            gate_up: Stacked::new(gpu, vec![gate, up]).await?,
            down: linear(gpu, ckpt, &at("mlp.down_proj"), (h, w), opts).await?,
            ple,
            scalar: scalar(ckpt, &at("layer_scalar"))?,
        })
    }
}
