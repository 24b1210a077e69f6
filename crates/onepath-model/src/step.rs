//! The step API: one forward over a ragged batch. A step is a list of [`SeqInput`]s, each a
//! sequence id with its new tokens (which continue the sequence at its cached length:
//! prefill chunks and single decode tokens mix freely). Rows are never padded; every matmul
//! runs over all the step's rows; logits are computed only for the rows that ask for them.
//! A step larger than the working set is cut into pieces, which changes no result: every row's
//! arithmetic depends on its own sequence only.

use crate::arena::{Arena, kind_index};
use crate::config::Kind;
use crate::profile::ProfileMode;
use crate::program::{Parts, Program};
use crate::{Model, ModelError, rope};
use onepath_gpu::{Gpu, GpuTimer};
use onepath_mask::KeySet;
use onepath_ops::sdpa::{RowSpec, Schedule, SdpaBuffers, SdpaPlan};
use std::time::Instant;

/// Which logits a sequence wants from a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logits {
    None,
    /// The last new token's (what decoding needs).
    Last,
    /// Every new token's (teacher forcing, `onepath logits`).
    All,
}

/// One sequence's part of a step.
#[derive(Clone, Debug)]
pub struct SeqInput {
    pub seq: u64,
    /// First position of `tokens`: must equal the positions the sequence has cached.
    pub pos: u32,
    pub tokens: Vec<u32>,
    pub logits: Logits,
}

/// One logit row: the greedy token (argmax on the GPU) and, if asked, the soft-capped logits.
#[derive(Clone, Debug)]
pub struct LogitRow {
    pub seq: u64,
    pub pos: u32,
    pub greedy: u32,
    pub logits: Option<Vec<f32>>,
}

/// A step's logit rows, in input order (per sequence, by position).
#[derive(Clone, Debug, Default)]
pub struct StepOutput {
    pub rows: Vec<LogitRow>,
}

/// Dispatches per submission of a step (see `Model::piece`): small enough that the GPU starts
/// early, large enough that submissions stay few (about six per Gemma 4 E2B step).
const SUBMIT_ITEMS: usize = 96;

/// Most recorded programs kept (each holds a step's prepared dispatches for one row count).
const MAX_PROGRAMS: usize = 64;

/// A token row of a piece: (sequence, position, token id, wants logits).
type Row = (u64, u32, u32, bool);

impl Model {
    /// Runs one step; `read_logits` copies the logit rows back (else only greedy ids).
    pub async fn step(
        &mut self,
        gpu: &Gpu,
        inputs: &[SeqInput],
        read_logits: bool,
    ) -> Result<StepOutput, ModelError> {
        self.check(inputs)?;
        let mut rows: Vec<Row> = Vec::new();
        for s in inputs {
            for (i, &t) in s.tokens.iter().enumerate() {
                let last = i + 1 == s.tokens.len();
                let want = match s.logits {
                    Logits::None => false,
                    Logits::Last => last,
                    Logits::All => true,
                };
                rows.push((s.seq, s.pos + i as u32, t, want));
            }
        }
        // The whole step's pages first, on a copy: a shortage is an error before anything runs,
        // so a failed step leaves the cache as it was.
        let pieces = self.pieces(gpu, &rows);
        let mut dry = self.kv.clone();
        for piece in pieces.iter().map(|p| &rows[p.clone()]) {
            for (seq, n) in per_sequence(piece) {
                dry.reserve(seq, n)?;
            }
            for (seq, n) in per_sequence(piece) {
                dry.advance(seq, n);
            }
        }
        let mut out = StepOutput::default();
        for piece in pieces.iter().map(|p| &rows[p.clone()]) {
            out.rows.extend(self.piece(gpu, piece, read_logits).await?);
        }
        Ok(out)
    }

    /// Cuts a step's rows into pieces of at most `max_rows` rows, each with no more logit rows
    /// than one storage binding holds (a browser's 128 MiB is 128 rows of a 262144 vocabulary).
    fn pieces(&self, gpu: &Gpu, rows: &[Row]) -> Vec<std::ops::Range<usize>> {
        let max_out = (gpu.max_binding() / (self.config.vocab as u64 * 4)).max(1) as usize;
        let max_rows = self.opts.max_rows.max(1);
        let mut out = Vec::new();
        let (mut start, mut logit_rows) = (0, 0);
        for (i, r) in rows.iter().enumerate() {
            if i - start == max_rows || (r.3 && logit_rows == max_out) {
                out.push(start..i);
                (start, logit_rows) = (i, 0);
            }
            logit_rows += usize::from(r.3);
        }
        if start < rows.len() {
            out.push(start..rows.len());
        }
        out
    }

    fn check(&self, inputs: &[SeqInput]) -> Result<(), ModelError> {
        let c = &self.config;
        let mut seen = std::collections::HashSet::new();
        for s in inputs {
            if !seen.insert(s.seq) {
                return Err(ModelError::Step(format!(
                    "sequence {} appears twice in one step",
                    s.seq
                )));
            }
            if s.tokens.is_empty() {
                return Err(ModelError::Step(format!(
                    "sequence {} has no tokens in this step",
                    s.seq
                )));
            }
            let have = self.kv.len(s.seq);
            if s.pos != have {
                return Err(ModelError::Step(format!(
                    "sequence {} has {have} positions cached; its tokens must start there, not at {}",
                    s.seq, s.pos
                )));
            }
            if let Some((i, &id)) = s
                .tokens
                .iter()
                .enumerate()
                .find(|(_, t)| **t as usize >= c.vocab)
            {
                return Err(ModelError::TokenId {
                    id,
                    pos: s.pos as usize + i,
                    vocab: c.vocab,
                });
            }
            let end = u64::from(s.pos) + s.tokens.len() as u64;
            if end > c.max_positions as u64 {
                return Err(ModelError::TooLong {
                    seq: s.seq,
                    len: end.min(u64::from(u32::MAX)) as u32,
                    max: c.max_positions,
                });
            }
        }
        Ok(())
    }

    /// Makes sure the working buffers hold `r` rows and `ro` logit rows.
    fn ensure_arena(&mut self, gpu: &Gpu, r: usize, ro: usize) -> Result<(), ModelError> {
        let fits = self
            .arena
            .as_ref()
            .is_some_and(|a| a.rows >= r && a.out >= ro.max(1));
        if !fits {
            let (r0, o0) = self.arena.as_ref().map_or((0, 0), |a| (a.rows, a.out));
            let rows = r.max(r0).next_power_of_two();
            let out = ro.max(o0).max(1).next_power_of_two();
            let buffers = [self.kv.sliding.buffers.len(), self.kv.full.buffers.len()];
            self.arena = Some(Arena::new(gpu, &self.config, (rows, out), buffers)?);
            self.programs.clear();
            self.attn_bind.iter_mut().flatten().for_each(|b| *b = None);
        }
        Ok(())
    }

    async fn piece(
        &mut self,
        gpu: &Gpu,
        rows: &[Row],
        read_logits: bool,
    ) -> Result<Vec<LogitRow>, ModelError> {
        // Clock reads only when profiling (`Instant` does not exist on wasm32).
        let clock = |on: bool| on.then(Instant::now);
        let on = self.profile.is_some();
        let t0 = clock(on);
        let c = self.config.clone();
        let r = rows.len();
        // Pages for the new positions, per sequence.
        let per_seq = per_sequence(rows);
        for &(seq, n) in &per_seq {
            self.kv.reserve(seq, n)?;
        }
        let out_rows: Vec<usize> = (0..r).filter(|&i| rows[i].3).collect();
        let ro = out_rows.len();
        self.ensure_arena(gpu, r, ro)?;

        // Host inputs: scaled embeddings, scaled per-layer embeddings, RoPE tables, slots.
        let emb_scale = (c.hidden as f32).sqrt();
        let mut h = Vec::with_capacity(r * c.hidden);
        let mut tok = Vec::with_capacity(r * c.layers * c.ple_dim);
        let mut ropes = [Vec::new(), Vec::new()];
        // Per kind, per cache buffer: each token's slot there, or NONE where its pages are in
        // another buffer.
        let mut slots: [Vec<Vec<u32>>; 2] = [
            vec![Vec::with_capacity(r); self.kv.sliding.buffers.len()],
            vec![Vec::with_capacity(r); self.kv.full.buffers.len()],
        ];
        let inv = [rope::inv_freq(&c.sliding), rope::inv_freq(&c.full)];
        let ple_scale = (c.ple_dim as f32).sqrt();
        for &(seq, pos, id, _) in rows {
            h.extend(
                self.weights
                    .embed
                    .row(&self.ckpt, id as usize)?
                    .iter()
                    .map(|v| v * emb_scale),
            );
            if let Some(t) = &self.weights.ple_embed {
                tok.extend(
                    t.row(&self.ckpt, id as usize)?
                        .iter()
                        .map(|v| v * ple_scale),
                );
            }
            for kind in [Kind::Sliding, Kind::Full] {
                let ki = kind_index(kind);
                if self.kinds.contains_key(&kind) {
                    rope::push_angles(&inv[ki], pos, &mut ropes[ki]);
                    let (buf, slot) = self.kv.slot(seq, kind, pos).ok_or_else(|| {
                        ModelError::Step(format!("no cache page for sequence {seq} position {pos}"))
                    })?;
                    for (b, s) in slots[ki].iter_mut().enumerate() {
                        s.push(if b as u32 == buf { slot } else { u32::MAX });
                    }
                }
            }
        }
        let a = self.arena.as_ref().expect("made above");
        let q = &gpu.queue;
        q.write_buffer(&a.h, 0, bytemuck::cast_slice(&h));
        if !tok.is_empty() {
            q.write_buffer(&a.pl_tok, 0, bytemuck::cast_slice(&tok));
        }
        for ki in 0..2 {
            if !ropes[ki].is_empty() {
                q.write_buffer(&a.rope[ki], 0, bytemuck::cast_slice(&ropes[ki]));
                for (buf, s) in a.slots[ki].iter().zip(&slots[ki]) {
                    q.write_buffer(buf, 0, bytemuck::cast_slice(s));
                }
            }
        }
        let idx: Vec<u32> = out_rows.iter().map(|&i| i as u32).collect();
        if !idx.is_empty() {
            q.write_buffer(&a.out_idx, 0, bytemuck::cast_slice(&idx));
        }

        // Attention: one plan per kind for this piece, bound per layer.
        let t_plan = clock(on);
        let plans = self.plan_attention(gpu, rows)?;
        // Bind groups are kept per layer while the plans keep their shape (a steady decode
        // step makes none).
        for l in 0..c.layers {
            self.bind_attention(gpu, &plans, l)?;
        }
        let a = self.arena.as_ref().expect("made above");
        let key = (r, ro);
        if !self.programs.contains_key(&key) {
            let parts = Parts {
                cfg: &self.config,
                w: &self.weights,
                k: &self.kernels,
                kinds: &self.kinds,
                caches: &self.caches,
                slots: [Kind::Sliding, Kind::Full].map(|k| self.slots_per_buffer(k)),
            };
            let prog = Program::build(gpu, &parts, a, r, ro)?;
            // Kept per (rows, logit rows): a steady decode step reuses its program; a server's
            // ever-changing prefill sizes must not grow the cache without bound.
            if self.programs.len() >= MAX_PROGRAMS {
                self.programs.clear();
            }
            self.programs.insert(key, prog);
        }
        let prog = &self.programs[&key];
        let t_attn = clock(on);
        let items = &prog.items[..];
        // The step goes to the GPU in several submissions, so that the GPU runs the first
        // layers while the host records the rest (recording is not free: a few microseconds a
        // dispatch). Attention is bound to this piece's plans just before its layer is
        // recorded. With `Profile::Ops`, every dispatch gets a timed pass of its own.
        let per_op = self
            .profile
            .as_ref()
            .is_some_and(|p| p.mode == ProfileMode::Ops);
        let chunk = if per_op { items.len() } else { SUBMIT_ITEMS };
        let n_chunks = items.len().div_ceil(chunk);
        let timer = match &self.profile {
            None => None,
            Some(_) => GpuTimer::new(gpu, if per_op { items.len() } else { n_chunks } as u32),
        };
        let desc = |i: usize| wgpu::ComputePassDescriptor {
            label: Some("gemma4 step"),
            timestamp_writes: timer.as_ref().map(|t| t.writes(i as u32)),
        };
        let (kinds, binds) = (&self.kinds, &self.attn_bind);
        let attn = |l: usize, pass: &mut wgpu::ComputePass<'_>| {
            let kind = c.layer_kinds[l];
            for (plan, b) in plans[kind_index(kind)].iter().zip(&binds[l]) {
                if let (Some(plan), Some(b)) = (plan, b) {
                    kinds[&kind].sdpa.record(plan, b, pass);
                }
            }
        };
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        for (ci, part) in items.chunks(chunk).enumerate() {
            if per_op && timer.is_some() {
                for (i, (_, item)) in part.iter().enumerate() {
                    item.record(&mut enc.begin_compute_pass(&desc(i)), &attn);
                }
            } else {
                let mut pass = enc.begin_compute_pass(&desc(ci));
                for (_, item) in part {
                    item.record(&mut pass, &attn);
                }
            }
            if ci + 1 < n_chunks {
                let done = std::mem::replace(
                    &mut enc,
                    gpu.device.create_command_encoder(&Default::default()),
                );
                gpu.queue.submit([done.finish()]);
            }
        }
        if let Some(t) = &timer {
            t.resolve(&mut enc);
        }
        let a = self.arena.as_ref().expect("made above");
        let logit_bytes = (ro * c.vocab * 4) as u64;
        let id_bytes = (ro * 4) as u64;
        if ro > 0 {
            enc.copy_buffer_to_buffer(&a.ids, 0, &a.staging, 0, id_bytes);
            if read_logits {
                enc.copy_buffer_to_buffer(&a.logits, 0, &a.staging, id_bytes, logit_bytes);
            }
        }
        gpu.queue.submit([enc.finish()]);
        let t_wait = clock(on);
        let mut result = Vec::with_capacity(ro);
        if ro > 0 {
            let len = id_bytes + if read_logits { logit_bytes } else { 0 };
            let bytes = map_read(gpu, &a.staging, len).await?;
            let ids: &[u32] = bytemuck::cast_slice(&bytes[..id_bytes as usize]);
            for (j, &i) in out_rows.iter().enumerate() {
                let logits = read_logits.then(|| {
                    let o = id_bytes as usize + j * c.vocab * 4;
                    bytemuck::cast_slice::<u8, f32>(&bytes[o..o + c.vocab * 4]).to_vec()
                });
                result.push(LogitRow {
                    seq: rows[i].0,
                    pos: rows[i].1,
                    greedy: ids[j],
                    logits,
                });
            }
        } else {
            // Awaited, so the browser's event loop runs while the GPU works.
            gpu.idle().await?;
        }
        let t_done = clock(on);
        if let (Some(p), Some(t0), Some(t1), Some(t2), Some(t3), Some(t4)) =
            (self.profile.as_mut(), t0, t_plan, t_attn, t_wait, t_done)
        {
            p.pieces += 1;
            p.prep_s += (t1 - t0).as_secs_f64();
            p.attn_s += (t2 - t1).as_secs_f64();
            p.encode_s += (t3 - t2).as_secs_f64();
            p.wait_s += (t4 - t3).as_secs_f64();
            if let Some(t) = &timer {
                // Timestamps after the first: pass i ran from 2i to 2i + 1.
                let ns = t.read_ns(gpu).await?;
                let busy: Vec<f64> = ns.chunks(2).map(|p| p[1] - p[0]).collect();
                p.gpu_s += busy.iter().sum::<f64>() * 1e-9;
                p.gpu_span_s += ns.last().copied().unwrap_or(0.0) * 1e-9;
                if per_op {
                    for ((label, _), v) in items.iter().zip(&busy) {
                        let e = p.ops.entry(label).or_insert((0, 0.0));
                        e.0 += 1;
                        e.1 += v * 1e-9;
                    }
                }
            }
        }
        for &(seq, n) in &per_seq {
            self.kv.advance(seq, n);
        }
        Ok(result)
    }

    /// Slots (rows per KV head) of each cache buffer of `kind`.
    fn slots_per_buffer(&self, kind: Kind) -> Vec<usize> {
        let page = onepath_ops::sdpa::PAGE_KEYS as usize;
        let pools = self.kv.pools(kind);
        pools
            .buffers
            .iter()
            .map(|p| p.total() as usize * page)
            .collect()
    }

    /// Binds layer `l`'s q, cache buffers and output to its kind's plans for this piece (one
    /// per cache buffer that has rows), keeping the layer's bind groups when a plan has the
    /// shape of the last one.
    fn bind_attention(
        &mut self,
        gpu: &Gpu,
        plans: &[Vec<Option<SdpaPlan>>; 2],
        l: usize,
    ) -> Result<(), ModelError> {
        let c = &self.config;
        let kind = c.layer_kinds[l];
        let ops = &self.kinds[&kind];
        let a = self.arena.as_ref().expect("made before attention");
        let caches = &self.caches[&c.cache_layer(l)];
        for (b, plan) in plans[kind_index(kind)].iter().enumerate() {
            let Some(plan) = plan else { continue };
            let (kc, vc) = &caches[b];
            let bufs = SdpaBuffers {
                q: &a.q,
                k: kc,
                v: vc,
                out: &a.attn,
            };
            ops.sdpa
                .bind_kept(gpu, &ops.ws[b], plan, bufs, &mut self.attn_bind[l][b])?;
        }
        Ok(())
    }

    /// Plans attention for the piece's rows, once per attention kind and cache buffer: row
    /// (token r, head h) attends its sequence's keys `[lo, pos]` (`lo` = 0, or
    /// `pos + 1 - window` on sliding layers) through the sequence's page table of that kind,
    /// in the buffer that holds its pages.
    fn plan_attention(
        &mut self,
        gpu: &Gpu,
        rows: &[Row],
    ) -> Result<[Vec<Option<SdpaPlan>>; 2], ModelError> {
        let c = &self.config;
        let mut plans = [Vec::new(), Vec::new()];
        for kind in [Kind::Sliding, Kind::Full] {
            if !self.kinds.contains_key(&kind) {
                continue;
            }
            let at = c.attn(kind);
            let (d, hq, hkv) = (at.head_dim, c.heads, at.kv_heads);
            let slots = self.slots_per_buffer(kind);
            let mut specs: Vec<Vec<RowSpec>> = vec![Vec::new(); slots.len()];
            let mut table: Option<(u64, u32, std::sync::Arc<[u32]>)> = None;
            for (r, &(seq, pos, _, _)) in rows.iter().enumerate() {
                let (buf, t) = match &table {
                    Some((s, b, t)) if *s == seq => (*b, t.clone()),
                    _ => {
                        let (b, t) = self.kv.table(seq, kind);
                        table = Some((seq, b, t.clone()));
                        (b, t)
                    }
                };
                let lo = match kind {
                    Kind::Full => 0,
                    Kind::Sliding => (pos + 1).saturating_sub(c.sliding_window as u32),
                };
                let b = buf as usize;
                for h in 0..hq {
                    let kvh = h / (hq / hkv);
                    let off = ((r * hq + h) * d) as u32;
                    specs[b].push(RowSpec {
                        q_off: off,
                        out_off: off,
                        kv_base: (kvh * slots[b] * d) as u32,
                        keys: KeySet::Span { lo, hi: pos + 1 },
                        pages: Some(t.clone()),
                    });
                }
            }
            let ops = self.kinds.get_mut(&kind).expect("checked");
            let mut per_buf = Vec::with_capacity(specs.len());
            for (b, rows) in specs.iter().enumerate() {
                per_buf.push(if rows.is_empty() {
                    None
                } else {
                    Some(
                        ops.sdpa
                            .plan(gpu, &mut ops.ws[b], rows, d as u32, Schedule::Auto)?,
                    )
                });
            }
            plans[kind_index(kind)] = per_buf;
        }
        Ok(plans)
    }
}

/// The piece's rows counted per sequence, in order.
fn per_sequence(rows: &[Row]) -> Vec<(u64, u32)> {
    let mut per_seq: Vec<(u64, u32)> = Vec::new();
    for &(seq, _, _, _) in rows {
        match per_seq.last_mut() {
            Some((s, n)) if *s == seq => *n += 1,
            _ => per_seq.push((seq, 1)),
        }
    }
    per_seq
}

/// Maps the first `len` bytes of a MAP_READ buffer after the queue's work and copies them out.
async fn map_read(gpu: &Gpu, buf: &wgpu::Buffer, len: u64) -> Result<Vec<u8>, ModelError> {
    let slice = buf.slice(..len);
    let (tx, rx) = futures_channel::oneshot::channel();
    slice.map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    gpu.wait_idle()?;
    rx.await
        .map_err(|_| ModelError::Io("the device was lost before the readback finished".into()))?
        .map_err(|e| ModelError::Io(format!("readback: {e}")))?;
    let data = slice
        .get_mapped_range()
        .map_err(|e| ModelError::Io(format!("readback: {e}")))?
        .to_vec();
    buf.unmap();
    Ok(data)
}
