//! The Gemma 4 text decoder on onepath's one-path ops, read top to bottom:
//! [`config`] (hyper-parameters from `config.json`) → [`weights`] (tensors on the GPU) →
//! [`kv`] (the paged KV cache's pages and tables) → [`step`] (one forward over a ragged batch:
//! the step API the engine and the browser use).
//!
//! The rule every piece keeps: a (sequence, position)'s logits depend only on that sequence's
//! tokens and the weights, never on what else shares the step, how its prompt was cut into
//! steps, or where its pages are.

mod arena;
pub mod config;
pub mod kv;
pub mod profile;
mod program;
mod rope;
pub mod shipped;
pub mod step;
pub mod synthetic;
pub mod weights;

pub use config::{Config, Kind};
pub use step::{LogitRow, Logits, SeqInput, StepOutput};
pub use weights::LoadOptions;

use onepath_gpu::Gpu;
use onepath_ops::block::Kernels;
use onepath_ops::block::{KvAppend, QPrep};
use onepath_ops::sdpa::{KvDType, Sdpa, SdpaConfig, SdpaWorkspace};
use onepath_weights::Checkpoint;
use std::collections::HashMap;

/// Everything that can go wrong loading or running a model, each naming the problem.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("config: {0}")]
    Config(String),
    #[error("unsupported model: {0}")]
    Unsupported(String),
    #[error("the checkpoint has no tensor `{0}`")]
    MissingTensor(String),
    #[error("tensor `{tensor}` has shape {found:?}; the config implies {expected:?}")]
    Shape {
        tensor: String,
        found: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error("token id {id} at position {pos} is outside the vocabulary (size {vocab})")]
    TokenId { id: u32, pos: usize, vocab: usize },
    #[error("sequence {seq} would reach {len} positions, beyond the model's context of {max}")]
    TooLong { seq: u64, len: u32, max: usize },
    #[error(
        "the KV cache's {pool} pool has {free} free page(s); this step needs {need} more \
         (RunOptions::pages sets the pool sizes)"
    )]
    OutOfPages {
        pool: &'static str,
        need: usize,
        free: usize,
    },
    #[error("bad step: {0}")]
    Step(String),
    #[error(transparent)]
    Weights(#[from] onepath_weights::WeightsError),
    #[error(transparent)]
    Op(#[from] onepath_ops::OpError),
    #[error(transparent)]
    Gpu(#[from] onepath_gpu::GpuError),
    #[error("{0}")]
    Io(String),
}

/// How big a model's working set is.
#[derive(Clone, Copy, Debug)]
pub struct RunOptions {
    /// Most token rows one GPU submission computes (larger steps are cut into pieces with the
    /// same results).
    pub max_rows: usize,
    /// KV pages (of `PAGE_KEYS` positions) for full-attention and for sliding layers.
    pub pages: (u32, u32),
    /// Largest KV-cache buffer (bytes); `None`: the device's binding limit. A pool larger than
    /// this spreads over several buffers (tests force small ones).
    pub kv_max_binding: Option<u64>,
}

impl RunOptions {
    /// Enough pages for `seqs` sequences of `len` positions, fed in steps of up to
    /// `max_rows` (256) rows: a sliding layer holds at most the window plus one step's new
    /// positions, over one more page where they straddle page boundaries.
    pub fn for_sequences(cfg: &Config, seqs: usize, len: usize) -> RunOptions {
        let page = onepath_ops::sdpa::PAGE_KEYS as usize;
        let max_rows = 256;
        let full = seqs * len.div_ceil(page);
        let reach = len.min(cfg.sliding_window + max_rows);
        let sliding = seqs * (reach.div_ceil(page) + 1);
        RunOptions {
            max_rows,
            pages: (full as u32, sliding as u32),
            kv_max_binding: None,
        }
    }
}

/// Per attention kind: its SDPA, q/KV preparation, and the step's plan workspaces (one per
/// cache buffer).
pub(crate) struct KindOps {
    pub sdpa: Sdpa,
    pub q_prep: QPrep,
    pub kv_append: Option<KvAppend>,
    pub ws: Vec<SdpaWorkspace>,
}

/// A loaded Gemma 4 decoder with its KV cache.
pub struct Model {
    pub config: Config,
    pub ckpt: Checkpoint,
    pub weights: weights::Weights,
    pub kv: kv::KvCache,
    pub kv_dtype: KvDType,
    pub(crate) kernels: Kernels,
    pub(crate) kinds: HashMap<Kind, KindOps>,
    /// Per layer that owns a cache: its (K, V) buffers, one pair per buffer of its kind's pool.
    pub(crate) caches: HashMap<usize, Vec<(wgpu::Buffer, wgpu::Buffer)>>,
    pub(crate) arena: Option<arena::Arena>,
    pub(crate) programs: HashMap<(usize, usize), program::Program>,
    /// Per layer and cache buffer: its attention bind groups, kept while the plans keep their
    /// shape.
    pub(crate) attn_bind: Vec<Vec<Option<onepath_ops::sdpa::SdpaBinding>>>,
    pub(crate) opts: RunOptions,
    /// Set to measure where steps spend their time (see [`profile`]).
    pub profile: Option<profile::Profile>,
}

/// Reads a model directory: `config.json` and `model.safetensors` (or a sharded index),
/// memory-mapped (native only; the browser builds a `Checkpoint` from bytes).
#[cfg(not(target_arch = "wasm32"))]
pub fn open_checkpoint(dir: &std::path::Path) -> Result<(Config, Checkpoint), ModelError> {
    let cfg_path = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg_path)
        .map_err(|e| ModelError::Io(format!("cannot read {}: {e}", cfg_path.display())))?;
    let cfg = Config::from_json(&text)?;
    let ckpt = Checkpoint::open(dir)?.with_config_json(&text)?;
    Ok((cfg, ckpt))
}

impl Model {
    /// Loads `ckpt` onto the GPU. K/V are stored in f32 for f32 checkpoints, else f16.
    pub async fn load(
        gpu: &Gpu,
        config: Config,
        ckpt: Checkpoint,
        load: &LoadOptions,
        run: RunOptions,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Model, ModelError> {
        let weights = weights::Weights::load(gpu, &ckpt, &config, load, progress).await?;
        let layers = config.layers;
        let embed = format!("{}embed_tokens.weight", weights.prefix);
        let f32_ckpt = ckpt
            .tensor(&embed)
            .is_ok_and(|t| t.dtype() == onepath_weights::DType::F32);
        let kv_dtype = load
            .kv_dtype
            .unwrap_or(if f32_ckpt && load.quantize.is_none() {
                KvDType::F32
            } else {
                KvDType::F16
            });
        let kernels = Kernels::new(gpu).await?;
        let mut kinds = HashMap::new();
        for kind in [Kind::Sliding, Kind::Full] {
            if !config.layer_kinds.contains(&kind) {
                continue;
            }
            let d = config.attn(kind).head_dim;
            let sdpa = Sdpa::new(
                gpu,
                SdpaConfig {
                    head_dim: d,
                    kv_dtype,
                    scale: 1.0,
                    softcap: None,
                },
            )
            .await?;
            let f16 = kv_dtype == KvDType::F16;
            kinds.insert(
                kind,
                KindOps {
                    sdpa,
                    q_prep: QPrep::new(gpu, d).await?,
                    kv_append: Some(KvAppend::new(gpu, d, f16).await?),
                    ws: Vec::new(),
                },
            );
        }
        let uses = [
            config.layer_kinds.contains(&Kind::Full),
            config.layer_kinds.contains(&Kind::Sliding),
        ];
        // Pages per buffer: as many as one binding holds.
        let limit = run
            .kv_max_binding
            .map_or(gpu.max_binding(), |m| m.min(gpu.max_binding()));
        let page_bytes = |kind: Kind| {
            let a = config.attn(kind);
            u64::from(onepath_ops::sdpa::PAGE_KEYS)
                * (a.kv_heads * a.head_dim * kv_dtype.bytes()) as u64
        };
        let per = |kind: Kind| (limit / page_bytes(kind)).clamp(1, u64::from(u32::MAX)) as u32;
        let kv = kv::KvCache::new(
            run.pages,
            (per(Kind::Full), per(Kind::Sliding)),
            config.sliding_window as u32,
            uses,
        );
        for (kind, ops) in kinds.iter_mut() {
            let n = kv.pools(*kind).buffers.len().max(1);
            ops.ws = (0..n).map(|_| SdpaWorkspace::new()).collect();
        }
        let mut caches = HashMap::new();
        for l in 0..config.first_shared() {
            let kind = config.layer_kinds[l];
            let mut pairs = Vec::new();
            for pool in &kv.pools(kind).buffers {
                let bytes = u64::from(pool.total()) * page_bytes(kind);
                pairs.push((
                    gpu.storage("k cache", bytes)?,
                    gpu.storage("v cache", bytes)?,
                ));
            }
            caches.insert(l, pairs);
        }
        let buffers = |l: usize| kv.pools(config.layer_kinds[l]).buffers.len();
        let attn_bind = (0..layers)
            .map(|l| (0..buffers(l)).map(|_| None).collect())
            .collect();
        Ok(Model {
            config,
            ckpt,
            weights,
            kv,
            kv_dtype,
            kernels,
            kinds,
            caches,
            arena: None,
            programs: HashMap::new(),
            attn_bind,
            opts: run,
            profile: None,
        })
    }

    /// Frees a sequence's pages.
    pub fn free(&mut self, seq: u64) {
        self.kv.remove(seq);
    }

    /// Bytes of GPU memory the weights, caches and working buffers hold.
    pub fn gpu_bytes(&self) -> u64 {
        let w = &self.weights;
        let mut b = w.lm_head.bytes();
        for l in &w.layers {
            b += l.qkv.bytes() + l.o.bytes() + l.gate_up.bytes() + l.down.bytes();
            if let Some((g, p, _)) = &l.ple {
                b += g.bytes() + p.bytes();
            }
        }
        if let Some((p, _)) = &w.ple_proj {
            b += p.bytes();
        }
        b += self
            .caches
            .values()
            .flatten()
            .map(|(k, v)| k.size() + v.size())
            .sum::<u64>();
        b + self.arena.as_ref().map_or(0, |a| a.bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pages `RunOptions::for_sequences` sizes are enough for its sequences fed in pieces
    /// of `max_rows` rows and then decoded, for E2B's 512-position window.
    #[test]
    fn for_sequences_pages_suffice_for_long_prompts_in_pieces() {
        let cfg = Config::from_json(&synthetic::Shape::e2b().config_json()).unwrap();
        let (seqs, len) = (1, 4000);
        let run = RunOptions::for_sequences(&cfg, seqs, len);
        let w = cfg.sliding_window as u32;
        let mut kv = kv::KvCache::new(run.pages, (u32::MAX, u32::MAX), w, [true, true]);
        for s in 0..seqs as u64 {
            let mut fed = 0;
            while fed < len {
                let n = (len - fed).min(if fed < 3000 { run.max_rows } else { 1 });
                kv.reserve(s, n as u32).unwrap();
                kv.advance(s, n as u32);
                fed += n;
            }
        }
    }
}
