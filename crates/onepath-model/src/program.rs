//! A step's recorded work for a given number of token rows and logit rows: every dispatch
//! except attention's, prepared once and kept, so a steady decode step (same row counts)
//! prepares nothing but the attention plan. Layer by layer, with shapes:
//!
//! ```text
//! h [R, hidden] = embed(ids) * sqrt(hidden)                       (host gather, uploaded)
//! pli [R, L*P]  = (norm(h W_pp^T * hidden^-0.5) + ple(ids) * sqrt(P)) * 2^-0.5
//! x = input_norm_0(h)
//! per layer l:
//!   q [R, Hq, D] = rope(q_norm(x Wq^T));  K/V of the new rows -> this layer's pages
//!   attn [R, Hq, D] = sdpa(q, pages of l or of its KV source)
//!   h += post_attn_norm(attn Wo^T);  x = pre_ff_norm(h)
//!   m = (gelu_tanh(x Wg^T) * (x Wu^T)) Wd^T
//!   h += post_ff_norm(m)
//!   h += post_pli_norm((gelu_tanh(h Wplg^T) * pli[l]) Wplp^T)      (with per-layer inputs)
//!   h *= layer_scalar;  x = input_norm_{l+1}(h)
//! logits [Ro, V] = softcap(final_norm(h[rows]) E^T);  ids = argmax
//! ```

use crate::arena::{Arena, kind_index};
use crate::config::Kind;
use crate::weights::Stacked;
use crate::{KindOps, ModelError};
use onepath_gpu::Gpu;
use onepath_ops::block::{Dispatch, Kernels, KvAppendCall, View};
use onepath_ops::linear::Linear;
use onepath_ops::qmm::PreparedMatmul;
use std::collections::HashMap;

pub(crate) enum Item {
    D(Dispatch),
    M(PreparedMatmul),
    /// Attention of layer `l`: bound per step to that step's plan.
    Attn(usize),
}

impl Item {
    /// Records the item; `attn(l, pass)` records layer `l`'s attention.
    pub fn record(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        attn: &dyn Fn(usize, &mut wgpu::ComputePass<'_>),
    ) {
        match self {
            Item::D(d) => d.dispatch(pass),
            Item::M(m) => m.dispatch(pass),
            Item::Attn(l) => attn(*l, pass),
        }
    }
}

pub(crate) struct Program {
    /// Each dispatch (or call) with the part of the step it belongs to (for profiles).
    pub items: Vec<(&'static str, Item)>,
}

fn push(items: &mut Vec<(&'static str, Item)>, label: &'static str, item: Item) {
    items.push((label, item));
}

pub(crate) struct Parts<'a> {
    pub cfg: &'a crate::Config,
    pub w: &'a crate::weights::Weights,
    pub k: &'a Kernels,
    pub kinds: &'a HashMap<Kind, KindOps>,
    pub caches: &'a HashMap<usize, Vec<(wgpu::Buffer, wgpu::Buffer)>>,
    /// Per kind, per cache buffer: its slots (rows per KV head).
    pub slots: [Vec<usize>; 2],
}

fn mm(
    gpu: &Gpu,
    lin: &Linear,
    r: usize,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
) -> Result<Item, ModelError> {
    Ok(Item::M(lin.prepare(gpu, r, x, y)?))
}

impl Program {
    pub fn build(
        gpu: &Gpu,
        p: &Parts<'_>,
        a: &Arena,
        r: usize,
        ro: usize,
    ) -> Result<Program, ModelError> {
        let (c, w, k) = (p.cfg, p.w, p.k);
        let hid = c.hidden;
        let eps = c.eps;
        let mut items = Vec::new();
        if let Some((proj, norm)) = &w.ple_proj {
            push(
                &mut items,
                "matmul: per-layer projection",
                mm(gpu, proj, r, &a.h, &a.pl_proj)?,
            );
            let scales = (eps, (hid as f32).powf(-0.5), 0.5f32.sqrt());
            let shape = (r, c.layers, c.ple_dim);
            push(
                &mut items,
                "per-layer inputs",
                Item::D(
                    k.ple
                        .prepare(gpu, shape, scales, &a.pl_proj, &a.pl_tok, norm, &a.pli)?,
                ),
            );
        }
        let first = &w.layers[0].input_norm;
        push(
            &mut items,
            "norms + residual",
            Item::D(
                k.rms_norm
                    .prepare(gpu, (hid, r, r), eps, &a.h, first, &a.ident, &a.x)?,
            ),
        );
        for (l, layer) in w.layers.iter().enumerate() {
            let kind = layer.kind;
            let ki = kind_index(kind);
            let ops = &p.kinds[&kind];
            let at = c.attn(kind);
            let d = at.head_dim;
            // q, k, v: one stacked matmul (views into its output rows) or one each.
            let (qw, kw) = (c.heads * d, at.kv_heads * d);
            let has_v = layer.k_norm.is_some() && !(c.k_eq_v && kind == Kind::Full);
            let (qv, kv, vv): (View, View, View) = match &layer.qkv {
                Stacked::One(lin) => {
                    push(&mut items, "matmul: q k v", mm(gpu, lin, r, &a.x, &a.qraw)?);
                    let n = lin.rows();
                    let kv = (&a.qraw, n, qw);
                    (
                        (&a.qraw, n, 0),
                        kv,
                        if has_v { (&a.qraw, n, qw + kw) } else { kv },
                    )
                }
                Stacked::Parts(parts) => {
                    let outs = [&a.qraw, &a.kraw, &a.vraw];
                    for (lin, y) in parts.iter().zip(outs) {
                        push(&mut items, "matmul: q k v", mm(gpu, lin, r, &a.x, y)?);
                    }
                    let kv = (&a.kraw, kw, 0);
                    (
                        (&a.qraw, qw, 0),
                        kv,
                        if has_v { (&a.vraw, kw, 0) } else { kv },
                    )
                }
            };
            push(
                &mut items,
                "q/k/v norm + rope + cache append",
                Item::D(ops.q_prep.prepare(
                    gpu,
                    (r, c.heads),
                    eps,
                    qv,
                    &layer.q_norm,
                    &a.rope[ki],
                    &a.q,
                )?),
            );
            if let Some(kn) = &layer.k_norm {
                let append = ops
                    .kv_append
                    .as_ref()
                    .expect("every kind has its append op");
                // One call per cache buffer; each writes the tokens whose pages are in it.
                for (b, (kc, vc)) in p.caches[&l].iter().enumerate() {
                    let call = KvAppendCall {
                        k: kv,
                        v: vv,
                        kw: kn,
                        rope: &a.rope[ki],
                        slot: &a.slots[ki][b],
                        k_cache: kc,
                        v_cache: vc,
                    };
                    let shape = (r, at.kv_heads, p.slots[ki][b]);
                    push(
                        &mut items,
                        "q/k/v norm + rope + cache append",
                        Item::D(append.prepare(gpu, shape, eps, call)?),
                    );
                }
            }
            push(&mut items, "attention", Item::Attn(l));
            push(
                &mut items,
                "matmul: o",
                mm(gpu, &layer.o, r, &a.attn, &a.o)?,
            );
            push(
                &mut items,
                "norms + residual",
                Item::D(k.add_norm.prepare(
                    gpu,
                    (hid, r),
                    (eps, 1.0),
                    &a.o,
                    &a.h,
                    &layer.post_attn_norm,
                    Some((&layer.pre_ff_norm, &a.x)),
                )?),
            );
            let mw = c.mlp_width(l);
            let (gv, uv): (View, View) = match &layer.gate_up {
                Stacked::One(lin) => {
                    push(&mut items, "matmul: mlp", mm(gpu, lin, r, &a.x, &a.gate)?);
                    ((&a.gate, 2 * mw, 0), (&a.gate, 2 * mw, mw))
                }
                Stacked::Parts(parts) => {
                    for (lin, y) in parts.iter().zip([&a.gate, &a.up]) {
                        push(&mut items, "matmul: mlp", mm(gpu, lin, r, &a.x, y)?);
                    }
                    ((&a.gate, mw, 0), (&a.up, mw, 0))
                }
            };
            push(
                &mut items,
                "gelu",
                Item::D(k.gelu_mul.prepare(gpu, (r, mw), gv, uv, &a.act)?),
            );
            push(
                &mut items,
                "matmul: mlp",
                mm(gpu, &layer.down, r, &a.act, &a.mlp)?,
            );
            let next = w.layers.get(l + 1).map(|n| (&n.input_norm, &a.x));
            // The block's last residual add (scaled by the layer scalar, fused with the next
            // layer's input norm): after the per-layer-input block where there is one, else
            // after the MLP.
            let last = match &layer.ple {
                Some((g, pr, norm)) => {
                    push(
                        &mut items,
                        "norms + residual",
                        Item::D(k.add_norm.prepare(
                            gpu,
                            (hid, r),
                            (eps, 1.0),
                            &a.mlp,
                            &a.h,
                            &layer.post_ff_norm,
                            None,
                        )?),
                    );
                    let pd = c.ple_dim;
                    push(
                        &mut items,
                        "matmul: per-layer gate/proj",
                        mm(gpu, g, r, &a.h, &a.pg)?,
                    );
                    let b = (&a.pli, c.layers * pd, l * pd);
                    let g = (&a.pg, pd, 0);
                    push(
                        &mut items,
                        "gelu",
                        Item::D(k.gelu_mul.prepare(gpu, (r, pd), g, b, &a.pa)?),
                    );
                    push(
                        &mut items,
                        "matmul: per-layer gate/proj",
                        mm(gpu, pr, r, &a.pa, &a.pp)?,
                    );
                    (&a.pp, norm)
                }
                None => (&a.mlp, &layer.post_ff_norm),
            };
            push(
                &mut items,
                "norms + residual",
                Item::D(k.add_norm.prepare(
                    gpu,
                    (hid, r),
                    (eps, layer.scalar),
                    last.0,
                    &a.h,
                    last.1,
                    next,
                )?),
            );
        }
        // The logit rows, when the step asks for any.
        if ro > 0 {
            push(
                &mut items,
                "norms + residual",
                Item::D(k.rms_norm.prepare(
                    gpu,
                    (hid, ro, r),
                    eps,
                    &a.h,
                    &w.final_norm,
                    &a.out_idx,
                    &a.xo,
                )?),
            );
            push(
                &mut items,
                "matmul: lm head",
                mm(gpu, &w.lm_head, ro, &a.xo, &a.logits)?,
            );
            let [blocks, merge] =
                k.softcap_argmax
                    .prepare(gpu, (ro, c.vocab), c.softcap, &a.logits, &a.ids)?;
            push(&mut items, "soft-cap + argmax", Item::D(blocks));
            push(&mut items, "soft-cap + argmax", Item::D(merge));
        }
        Ok(Program { items })
    }
}
