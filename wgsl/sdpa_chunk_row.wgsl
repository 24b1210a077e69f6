// One-path attention, pass 1 of 2, one row per workgroup: the same arithmetic as
// sdpa_chunk.wgsl (which serves up to ROWS rows of a group per workgroup), for calls with few
// work items, where a workgroup's latency rather than the memory system bounds the time. Each
// of a group's rows gets its own workgroup, so a chunk's q.k and P.V work is spread over eight
// times as many multiprocessors; K and V are read by each of them (the repeats hit L2).
//
// Every operation on a row is the one sdpa_chunk.wgsl performs on that row's lane, in the same
// order: q.k as an fma chain over d = 0..D-1, the same max and sum trees (256 -> 128 pairs
// (k, k + 128) -> 32 lanes folding 4 in order -> one sequential fold of 32), p = exp(s - max),
// P.V over each split's keys in order, splits folded in order. The host may therefore pick this
// kernel or the group kernel per call (by the number of work items) and a row's bits do not
// change; the conformance tests compare the two bit for bit.

override D: u32 = 256u;          // head_dim: 64, 128, 256 or 512
override KV_F16: bool = true;    // K/V storage: packed f16 pairs (true) or f32 (false)
override MIXED: bool = true;     // as in sdpa_chunk.wgsl: false only for shared-span groups

const CHUNK: u32 = 256u;
const ROWS: u32 = 8u;
const WG: u32 = 256u;
const NONE: u32 = 0xffffffffu;
const PAGE: u32 = 64u;          // keys per KV-cache page (a multiple of the 32-key K block)
const LOWEST: f32 = -0x1.fffffep+127f; // -f32::MAX, exact (Tint rejects -3.4028235e38: it rounds past the range)
const GROUP_WORDS: u32 = 40u;

// The same parameter block and plan as sdpa_chunk.wgsl; `n_items` counts (group, chunk) items
// and the grid has ROWS workgroups per item (row slot = workgroup index % ROWS).
struct Params {
    kv_stride: u32,
    n_items: u32,
    rows_off: u32,
    items_off: u32,
    bits_off: u32,
    grid_x: u32,
    scale: f32,
    softcap: f32,
}

@group(0) @binding(0) var<uniform> prm: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> v: array<u32>;
@group(0) @binding(4) var<storage, read> plan: array<u32>;
@group(0) @binding(5) var<storage, read_write> partials: array<f32>;

var<workgroup> qs: array<f32, D>;          // the row's q
var<workgroup> sc: array<f32, 256>;        // per key: score, then tree input, then p (-1: out)
var<workgroup> red1: array<f32, 128>;      // tree level 1: op(s[k], s[k + 128])
var<workgroup> red2: array<f32, 32>;       // tree level 2
var<workgroup> stat: f32;                  // the tree's result
var<workgroup> fold: array<vec2<f32>, 256>; // P.V split partials

// Row-major element offset of key `j` (relative to the group's key 0) of the group at plan
// word `g`: `key_base + j * kv_stride` for contiguous storage; with a page table (group word 5
// holds its plan index), logical page `j / PAGE` maps to a physical page, and the key is slot
// `page * PAGE + j % PAGE` of the cache. Only addresses change: the arithmetic is the same.
fn key_elem(g: u32, j: u32) -> u32 {
    let tab = plan[g + 5u];
    if (tab == NONE) {
        return plan[g] + j * prm.kv_stride;
    }
    let slot = plan[tab + j / PAGE] * PAGE + j % PAGE;
    return plan[g] + slot * prm.kv_stride;
}

fn in_set(row: u32, j: u32, lo: u32) -> bool {
    let hi = plan[prm.rows_off + 8u * row + 1u];
    let dense = plan[prm.rows_off + 8u * row + 2u];
    if (j >= hi) {
        return false;
    }
    if (dense == NONE) {
        return true;
    }
    let bit = j - lo;
    return ((plan[prm.bits_off + dense + bit / 32u] >> (bit % 32u)) & 1u) == 1u;
}

// K is key-blocked: rows of D values (row r = the row-major element offset / D), grouped in
// blocks of 32 rows, each block stored column-major in 16-byte words, so that 32 consecutive
// keys read by 32 invocations are 512 contiguous bytes. Word w of row r is at
// (r / 32) * 32 * (D / e) + w * 32 + r % 32, e = elements per word (8 halves or 4 floats).
// Returns the index of word 0 of the row that holds row-major element `key_elem`; word w is
// 32 * w further.
fn k_word(key_elem: u32, e: u32) -> u32 {
    let r = key_elem / D;
    return (r / 32u) * (32u * (D / e)) + r % 32u;
}

fn load_v2(key_elem: u32, pair: u32) -> vec2<f32> {
    if (KV_F16) {
        return unpack2x16float(v[key_elem / 2u + pair]);
    }
    let i = key_elem + 2u * pair;
    return vec2<f32>(bitcast<f32>(v[i]), bitcast<f32>(v[i + 1u]));
}

fn soft(x: f32) -> f32 {
    let y = x * prm.scale;
    if (prm.softcap > 0.0) {
        return prm.softcap * tanh(y / prm.softcap);
    }
    return y;
}

// Eight dims d0..d0+7 from one vec4<u32> of packed halves, in d order.
fn dot8h(acc0: f32, d0: u32, w: vec4<u32>) -> f32 {
    var acc = acc0;
    let k0 = unpack2x16float(w.x);
    let k1 = unpack2x16float(w.y);
    let k2 = unpack2x16float(w.z);
    let k3 = unpack2x16float(w.w);
    acc = fma(qs[d0], k0.x, acc);
    acc = fma(qs[d0 + 1u], k0.y, acc);
    acc = fma(qs[d0 + 2u], k1.x, acc);
    acc = fma(qs[d0 + 3u], k1.y, acc);
    acc = fma(qs[d0 + 4u], k2.x, acc);
    acc = fma(qs[d0 + 5u], k2.y, acc);
    acc = fma(qs[d0 + 6u], k3.x, acc);
    acc = fma(qs[d0 + 7u], k3.y, acc);
    return acc;
}

// Four dims from one vec4<u32> of f32 bits, in d order.
fn dot4f(acc0: f32, d0: u32, w: vec4<u32>) -> f32 {
    var acc = acc0;
    let x = bitcast<vec4<f32>>(w);
    acc = fma(qs[d0], x.x, acc);
    acc = fma(qs[d0 + 1u], x.y, acc);
    acc = fma(qs[d0 + 2u], x.z, acc);
    acc = fma(qs[d0 + 3u], x.w, acc);
    return acc;
}

// q.k over d = 0..D-1 in order; K loads are issued 16 (or 8) vec4 at a time.
fn dot(key_elem: u32) -> f32 {
    var acc = 0.0;
    if (KV_F16 && D >= 128u) {
        let kb = k_word(key_elem, 8u);
        for (var c = 0u; c < D / 8u; c += 16u) {
            let w0 = k[kb + (c + 0u) * 32u];
            let w1 = k[kb + (c + 1u) * 32u];
            let w2 = k[kb + (c + 2u) * 32u];
            let w3 = k[kb + (c + 3u) * 32u];
            let w4 = k[kb + (c + 4u) * 32u];
            let w5 = k[kb + (c + 5u) * 32u];
            let w6 = k[kb + (c + 6u) * 32u];
            let w7 = k[kb + (c + 7u) * 32u];
            let w8 = k[kb + (c + 8u) * 32u];
            let w9 = k[kb + (c + 9u) * 32u];
            let w10 = k[kb + (c + 10u) * 32u];
            let w11 = k[kb + (c + 11u) * 32u];
            let w12 = k[kb + (c + 12u) * 32u];
            let w13 = k[kb + (c + 13u) * 32u];
            let w14 = k[kb + (c + 14u) * 32u];
            let w15 = k[kb + (c + 15u) * 32u];
            acc = dot8h(acc, 8u * (c + 0u), w0);
            acc = dot8h(acc, 8u * (c + 1u), w1);
            acc = dot8h(acc, 8u * (c + 2u), w2);
            acc = dot8h(acc, 8u * (c + 3u), w3);
            acc = dot8h(acc, 8u * (c + 4u), w4);
            acc = dot8h(acc, 8u * (c + 5u), w5);
            acc = dot8h(acc, 8u * (c + 6u), w6);
            acc = dot8h(acc, 8u * (c + 7u), w7);
            acc = dot8h(acc, 8u * (c + 8u), w8);
            acc = dot8h(acc, 8u * (c + 9u), w9);
            acc = dot8h(acc, 8u * (c + 10u), w10);
            acc = dot8h(acc, 8u * (c + 11u), w11);
            acc = dot8h(acc, 8u * (c + 12u), w12);
            acc = dot8h(acc, 8u * (c + 13u), w13);
            acc = dot8h(acc, 8u * (c + 14u), w14);
            acc = dot8h(acc, 8u * (c + 15u), w15);
        }
    } else if (KV_F16) {
        let kb = k_word(key_elem, 8u);
        for (var c = 0u; c < D / 8u; c += 8u) {
            let w0 = k[kb + (c + 0u) * 32u];
            let w1 = k[kb + (c + 1u) * 32u];
            let w2 = k[kb + (c + 2u) * 32u];
            let w3 = k[kb + (c + 3u) * 32u];
            let w4 = k[kb + (c + 4u) * 32u];
            let w5 = k[kb + (c + 5u) * 32u];
            let w6 = k[kb + (c + 6u) * 32u];
            let w7 = k[kb + (c + 7u) * 32u];
            acc = dot8h(acc, 8u * (c + 0u), w0);
            acc = dot8h(acc, 8u * (c + 1u), w1);
            acc = dot8h(acc, 8u * (c + 2u), w2);
            acc = dot8h(acc, 8u * (c + 3u), w3);
            acc = dot8h(acc, 8u * (c + 4u), w4);
            acc = dot8h(acc, 8u * (c + 5u), w5);
            acc = dot8h(acc, 8u * (c + 6u), w6);
            acc = dot8h(acc, 8u * (c + 7u), w7);
        }
    } else {
        let kb = k_word(key_elem, 4u);
        for (var c = 0u; c < D / 4u; c += 8u) {
            let w0 = k[kb + (c + 0u) * 32u];
            let w1 = k[kb + (c + 1u) * 32u];
            let w2 = k[kb + (c + 2u) * 32u];
            let w3 = k[kb + (c + 3u) * 32u];
            let w4 = k[kb + (c + 4u) * 32u];
            let w5 = k[kb + (c + 5u) * 32u];
            let w6 = k[kb + (c + 6u) * 32u];
            let w7 = k[kb + (c + 7u) * 32u];
            acc = dot4f(acc, 4u * (c + 0u), w0);
            acc = dot4f(acc, 4u * (c + 1u), w1);
            acc = dot4f(acc, 4u * (c + 2u), w2);
            acc = dot4f(acc, 4u * (c + 3u), w3);
            acc = dot4f(acc, 4u * (c + 4u), w4);
            acc = dot4f(acc, 4u * (c + 5u), w5);
            acc = dot4f(acc, 4u * (c + 6u), w6);
            acc = dot4f(acc, 4u * (c + 7u), w7);
        }
    }
    return acc;
}

// The tree of sdpa_chunk.wgsl's reduce_rows for one row, over sc[0..256): result in `stat`.
// Callers put a barrier between writing sc and calling this.
fn reduce(t: u32, is_max: bool) {
    if (t < 128u) {
        let x = sc[t];
        let y = sc[t + 128u];
        red1[t] = select(x + y, max(x, y), is_max);
    }
    workgroupBarrier();
    if (t < 32u) {
        let x0 = red1[t];
        let x1 = red1[t + 32u];
        let x2 = red1[t + 64u];
        let x3 = red1[t + 96u];
        red2[t] = select(((x0 + x1) + x2) + x3, max(max(x0, x1), max(x2, x3)), is_max);
    }
    workgroupBarrier();
    if (t == 0u) {
        var m = red2[0];
        for (var i = 1u; i < 32u; i++) {
            let x = red2[i];
            m = select(m + x, max(m, x), is_max);
        }
        stat = m;
    }
    workgroupBarrier();
}

// Adds key kk to the row's two dims unless the key is outside its set (p is the -1 marker);
// in the shared-span kernel every key of the loop is in the set.
fn pv_step(acc: vec2<f32>, kk: u32, vv: vec2<f32>) -> vec2<f32> {
    let p = sc[kk];
    let nx = vec2<f32>(fma(p, vv.x, acc.x), fma(p, vv.y, acc.y));
    if (!MIXED) {
        return nx;
    }
    return select(acc, nx, p != -1.0);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let wg = wid.x + wid.y * prm.grid_x;
    let item = wg / ROWS;
    let slot = wg % ROWS;
    let it = select(0u, item, item < prm.n_items);
    let g = GROUP_WORDS * plan[prm.items_off + 2u * it];
    let chunk = plan[prm.items_off + 2u * it + 1u];
    let live = item < prm.n_items && slot < plan[g + 2u];
    let s_ = select(0u, slot, live);
    let lo = plan[g + 1u];
    let max_hi = plan[g + 3u];
    let row = plan[g + 8u + s_];
    let q_off = plan[g + 16u + s_];
    let part = plan[g + 24u + s_];
    let has_chunk = live && chunk < plan[g + 32u + s_];
    let start = lo + chunk * CHUNK;

    // Phase 0: the row's q.
    for (var d = t; d < D; d += WG) {
        qs[d] = select(0.0, q[q_off + d], live);
    }
    workgroupBarrier();

    // Phase 1: thread t scores key `start + t`.
    let j = start + t;
    var valid = false;
    if (live) {
        if (MIXED) {
            valid = in_set(row, j, lo);
        } else {
            valid = j < max_hi;
        }
    }
    var acc = 0.0;
    if (valid) {
        acc = dot(key_elem(g, j));
    }
    let s = select(LOWEST, soft(acc), valid);
    sc[t] = s;
    workgroupBarrier();

    // Phase 2: the row's maximum over the chunk.
    reduce(t, true);
    let m = stat;
    let stride = D + 4u;
    if (t == 0u && has_chunk) {
        partials[(part + chunk) * stride] = m;
    }

    // Phase 3: probabilities and their sum (keys outside the set add exactly 0).
    let e = exp(s - m);
    sc[t] = select(0.0, e, valid);
    workgroupBarrier();
    reduce(t, false);
    if (t == 0u && has_chunk) {
        partials[(part + chunk) * stride + 1u] = stat;
    }
    sc[t] = select(-1.0, e, valid);
    workgroupBarrier();

    // Phase 4: P.V with sdpa_chunk.wgsl's split: thread t owns dims (2*pair, 2*pair+1) over
    // split `sp`, keys in order; V loads are issued 32 keys at a time.
    let pairs = D / 2u;
    let n_split = WG / pairs;
    let sp = t / pairs;
    let pair = t % pairs;
    let span = CHUNK / n_split;
    let k_end = select(0u, min(CHUNK, max_hi - start), live && max_hi > start);
    let k0 = sp * span;
    let k1 = min(k0 + span, k_end);
    var pv = vec2<f32>(0.0);
    var kk = k0;
    for (; kk + 32u <= k1; kk += 32u) {
        let v0 = load_v2(key_elem(g, start + kk + 0u), pair);
        let v1 = load_v2(key_elem(g, start + kk + 1u), pair);
        let v2 = load_v2(key_elem(g, start + kk + 2u), pair);
        let v3 = load_v2(key_elem(g, start + kk + 3u), pair);
        let v4 = load_v2(key_elem(g, start + kk + 4u), pair);
        let v5 = load_v2(key_elem(g, start + kk + 5u), pair);
        let v6 = load_v2(key_elem(g, start + kk + 6u), pair);
        let v7 = load_v2(key_elem(g, start + kk + 7u), pair);
        let v8 = load_v2(key_elem(g, start + kk + 8u), pair);
        let v9 = load_v2(key_elem(g, start + kk + 9u), pair);
        let v10 = load_v2(key_elem(g, start + kk + 10u), pair);
        let v11 = load_v2(key_elem(g, start + kk + 11u), pair);
        let v12 = load_v2(key_elem(g, start + kk + 12u), pair);
        let v13 = load_v2(key_elem(g, start + kk + 13u), pair);
        let v14 = load_v2(key_elem(g, start + kk + 14u), pair);
        let v15 = load_v2(key_elem(g, start + kk + 15u), pair);
        let v16 = load_v2(key_elem(g, start + kk + 16u), pair);
        let v17 = load_v2(key_elem(g, start + kk + 17u), pair);
        let v18 = load_v2(key_elem(g, start + kk + 18u), pair);
        let v19 = load_v2(key_elem(g, start + kk + 19u), pair);
        let v20 = load_v2(key_elem(g, start + kk + 20u), pair);
        let v21 = load_v2(key_elem(g, start + kk + 21u), pair);
        let v22 = load_v2(key_elem(g, start + kk + 22u), pair);
        let v23 = load_v2(key_elem(g, start + kk + 23u), pair);
        let v24 = load_v2(key_elem(g, start + kk + 24u), pair);
        let v25 = load_v2(key_elem(g, start + kk + 25u), pair);
        let v26 = load_v2(key_elem(g, start + kk + 26u), pair);
        let v27 = load_v2(key_elem(g, start + kk + 27u), pair);
        let v28 = load_v2(key_elem(g, start + kk + 28u), pair);
        let v29 = load_v2(key_elem(g, start + kk + 29u), pair);
        let v30 = load_v2(key_elem(g, start + kk + 30u), pair);
        let v31 = load_v2(key_elem(g, start + kk + 31u), pair);
        pv = pv_step(pv, kk + 0u, v0);
        pv = pv_step(pv, kk + 1u, v1);
        pv = pv_step(pv, kk + 2u, v2);
        pv = pv_step(pv, kk + 3u, v3);
        pv = pv_step(pv, kk + 4u, v4);
        pv = pv_step(pv, kk + 5u, v5);
        pv = pv_step(pv, kk + 6u, v6);
        pv = pv_step(pv, kk + 7u, v7);
        pv = pv_step(pv, kk + 8u, v8);
        pv = pv_step(pv, kk + 9u, v9);
        pv = pv_step(pv, kk + 10u, v10);
        pv = pv_step(pv, kk + 11u, v11);
        pv = pv_step(pv, kk + 12u, v12);
        pv = pv_step(pv, kk + 13u, v13);
        pv = pv_step(pv, kk + 14u, v14);
        pv = pv_step(pv, kk + 15u, v15);
        pv = pv_step(pv, kk + 16u, v16);
        pv = pv_step(pv, kk + 17u, v17);
        pv = pv_step(pv, kk + 18u, v18);
        pv = pv_step(pv, kk + 19u, v19);
        pv = pv_step(pv, kk + 20u, v20);
        pv = pv_step(pv, kk + 21u, v21);
        pv = pv_step(pv, kk + 22u, v22);
        pv = pv_step(pv, kk + 23u, v23);
        pv = pv_step(pv, kk + 24u, v24);
        pv = pv_step(pv, kk + 25u, v25);
        pv = pv_step(pv, kk + 26u, v26);
        pv = pv_step(pv, kk + 27u, v27);
        pv = pv_step(pv, kk + 28u, v28);
        pv = pv_step(pv, kk + 29u, v29);
        pv = pv_step(pv, kk + 30u, v30);
        pv = pv_step(pv, kk + 31u, v31);
    }
    for (; kk < k1; kk++) {
        pv = pv_step(pv, kk, load_v2(key_elem(g, start + kk), pair));
    }
    workgroupBarrier();

    // Phase 5: fold the splits in order 0, 1, 2, ... into split 0.
    for (var src = 1u; src < n_split; src++) {
        if (sp == src) {
            fold[pair] = pv;
        }
        workgroupBarrier();
        if (sp == 0u) {
            pv += fold[pair];
        }
        workgroupBarrier();
    }

    // Phase 6: the acc part of the row's partial record.
    if (sp == 0u && has_chunk) {
        let base = (part + chunk) * stride + 4u + 2u * pair;
        partials[base] = pv.x;
        partials[base + 1u] = pv.y;
    }
}
