//! The step's working buffers (llama2.c's `RunState`): made once for a capacity of token rows
//! and logit rows, grown (to the next power of two) only when a step needs more.

use crate::config::{Config, Kind};
use onepath_gpu::{Gpu, GpuError};

pub(crate) struct Arena {
    pub rows: usize,
    pub out: usize,
    pub h: wgpu::Buffer,
    pub x: wgpu::Buffer,
    pub qraw: wgpu::Buffer,
    pub kraw: wgpu::Buffer,
    pub vraw: wgpu::Buffer,
    pub q: wgpu::Buffer,
    pub attn: wgpu::Buffer,
    pub o: wgpu::Buffer,
    pub gate: wgpu::Buffer,
    pub up: wgpu::Buffer,
    pub act: wgpu::Buffer,
    pub mlp: wgpu::Buffer,
    pub pg: wgpu::Buffer,
    pub pa: wgpu::Buffer,
    pub pp: wgpu::Buffer,
    pub pl_proj: wgpu::Buffer,
    pub pl_tok: wgpu::Buffer,
    pub pli: wgpu::Buffer,
    /// Per kind: RoPE `(cos, sin)` table `[rows, D/2]`, and per cache buffer of the kind each
    /// token's slot there `[rows]` (`u32::MAX` for tokens whose pages are in another buffer).
    pub rope: [wgpu::Buffer; 2],
    pub slots: [Vec<wgpu::Buffer>; 2],
    /// `0..rows` (the input norm's row list) and the logit rows' token rows.
    pub ident: wgpu::Buffer,
    pub out_idx: wgpu::Buffer,
    pub xo: wgpu::Buffer,
    pub logits: wgpu::Buffer,
    pub ids: wgpu::Buffer,
    /// Host-visible copy target for ids and logits.
    pub staging: wgpu::Buffer,
}

pub(crate) fn kind_index(k: Kind) -> usize {
    match k {
        Kind::Sliding => 0,
        Kind::Full => 1,
    }
}

impl Arena {
    /// `buffers`: cache buffers of (sliding, full) pools.
    pub fn new(
        gpu: &Gpu,
        c: &Config,
        (rows, out): (usize, usize),
        buffers: [usize; 2],
    ) -> Result<Arena, GpuError> {
        let f = |label: &str, elems: usize| gpu.storage(label, (elems.max(1) * 4) as u64);
        let dmax = c.sliding.head_dim.max(c.full.head_dim);
        let kvmax = c.sliding.kv_heads.max(c.full.kv_heads);
        let wmax = (0..c.layers).map(|l| c.mlp_width(l)).max().unwrap_or(0);
        let lp = c.layers * c.ple_dim;
        let ident: Vec<u32> = (0..rows as u32).collect();
        let logit_bytes = (out * c.vocab * 4) as u64;
        Ok(Arena {
            rows,
            out,
            h: f("h", rows * c.hidden)?,
            x: f("x", rows * c.hidden)?,
            qraw: f("q/k/v", rows * (c.heads + 2 * kvmax) * dmax)?,
            kraw: f("k raw", rows * kvmax * dmax)?,
            vraw: f("v raw", rows * kvmax * dmax)?,
            q: f("q", rows * c.heads * dmax)?,
            attn: f("attn", rows * c.heads * dmax)?,
            o: f("o", rows * c.hidden)?,
            gate: f("gate/up", rows * 2 * wmax)?,
            up: f("up", rows * wmax)?,
            act: f("act", rows * wmax)?,
            mlp: f("mlp", rows * c.hidden)?,
            pg: f("ple gate", rows * c.ple_dim)?,
            pa: f("ple act", rows * c.ple_dim)?,
            pp: f("ple proj", rows * c.hidden)?,
            pl_proj: f("per-layer projection", rows * lp)?,
            pl_tok: f("per-layer tokens", rows * lp)?,
            pli: f("per-layer inputs", rows * lp)?,
            rope: [
                f("rope sliding", rows * c.sliding.head_dim)?,
                f("rope full", rows * c.full.head_dim)?,
            ],
            slots: [
                (0..buffers[0])
                    .map(|_| f("slots sliding", rows))
                    .collect::<Result<_, _>>()?,
                (0..buffers[1])
                    .map(|_| f("slots full", rows))
                    .collect::<Result<_, _>>()?,
            ],
            ident: gpu.storage_from("rows", bytemuck::cast_slice(&ident))?,
            out_idx: f("logit rows", out)?,
            xo: f("final norm", out * c.hidden)?,
            logits: f("logits", out * c.vocab)?,
            ids: f("greedy ids", out)?,
            staging: gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("readback"),
                size: logit_bytes + (out * 4) as u64,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
        })
    }

    pub fn bytes(&self) -> u64 {
        [
            &self.h,
            &self.x,
            &self.qraw,
            &self.kraw,
            &self.vraw,
            &self.q,
            &self.attn,
            &self.o,
            &self.gate,
            &self.up,
            &self.act,
            &self.mlp,
            &self.pg,
            &self.pa,
            &self.pp,
            &self.pl_proj,
            &self.pl_tok,
            &self.pli,
            &self.rope[0],
            &self.rope[1],
            &self.ident,
            &self.out_idx,
            &self.xo,
            &self.logits,
            &self.ids,
            &self.staging,
        ]
        .into_iter()
        .chain(self.slots.iter().flatten())
        .map(|b| b.size())
        .sum()
    }
}
