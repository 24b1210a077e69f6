// One-path attention, pass 1 of 2: one workgroup reduces one CHUNK of keys for a group of up to
// ROWS query rows that share a sequence, a KV head and a first key `lo`.
//
// The invariance contract (see shared notes, "one path"):
// - chunk c of a row covers keys [lo + c*CHUNK, lo + (c+1)*CHUNK) of that row's own key list, so the
//   cut depends on nothing but the row's keys (not on padding, offsets, batch, or prefill/decode);
// - within a chunk, every row is reduced in one fixed order: the dot product q.k sequentially over
//   d = 0..D-1, the chunk max (exact, order-free), p = exp(s - max), and the P.V sum over keys in
//   a fixed split of the chunk whose shape depends on D only;
// - a key outside the row's set is skipped (its p is exactly 0 and its fma is not taken), so a row
//   gets the same bits whether or not other rows of the group attend further keys.
// The partial (max, sum, acc[D]) of each (row, chunk) goes to `partials`; sdpa_merge.wgsl folds
// them in chunk order.
//
// Storage: q is f32 rows. K and V are f16 (packed two per u32, no shader-f16 needed) or f32.
// Key j of the group's sequence/head is the key row at row-major element offset
// `key_base + j * kv_stride`: V is row-major, K key-blocked (see `k_word`).

override D: u32 = 256u;          // head_dim: 64, 128, 256 or 512
override KV_F16: bool = true;    // K/V storage: packed f16 pairs (true) or f32 (false)
// The host runs groups whose rows all attend one shared span with MIXED = false, the others
// with MIXED = true: the first compiles without the per-key set tests (far fewer registers, so
// more workgroups in flight). Both give the same bits for such a group.
override MIXED: bool = true;

const CHUNK: u32 = 256u;         // keys per chunk: fixed forever, part of the numerical contract
const ROWS: u32 = 8u;            // query rows per workgroup (e.g. 8 query heads sharing a KV head)
const WG: u32 = 256u;            // invocations (WebGPU's default maximum)
const NONE: u32 = 0xffffffffu;
const PAGE: u32 = 64u;          // keys per KV-cache page (a multiple of the 32-key K block)
const GROUP_WORDS: u32 = 40u;    // words of a group record in `plan`
const LOWEST: f32 = -0x1.fffffep+127f; // -f32::MAX, exact (Tint rejects -3.4028235e38: it rounds past the range)
// vec4 offsets inside the workgroup union `u` for the small per-chunk values.
const RED: u32 = 0u;             // 256 + 64 partial maxima or sums (vec4: rows 0-3 | 4-7)
const RMAX: u32 = 320u;          // row maxima, 2 vec4
const RSUM: u32 = 322u;          // row probability sums, 2 vec4
// Size of the workgroup union in vec4: q needs 2 D, the per-chunk [key][row] values 512. At
// D <= 256 that is 8 KiB, so the driver can keep more workgroups resident per multiprocessor.
override U_LEN: u32 = max(2u * D, 512u);

struct Params {
    kv_stride: u32,     // elements between consecutive keys of one (sequence, head)
    n_items: u32,       // work items (group, chunk)
    rows_off: u32,      // offsets (in u32 words) of the sections of `plan`
    items_off: u32,
    bits_off: u32,
    grid_x: u32,        // workgroups along x in the dispatch (items are linearised x-fastest)
    scale: f32,
    softcap: f32,       // <= 0: no soft-cap
}

// plan, group record (at GROUP_WORDS * g): key_base, lo, n_rows, max_hi, same (1: every row
//   attends one shared span), page table (plan index, or NONE: contiguous), 0, 0, row ids [8], q offsets [8], partial base [8] (first
//   partial of the row in slot r), chunk count [8]
// plan, row record (at rows_off + 8 * r): q_off, hi, dense_off, part_base, n_chunks, out_off, lo, 0
// plan, item (at items_off + 2 * i): group, chunk
@group(0) @binding(0) var<uniform> prm: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> v: array<u32>;
@group(0) @binding(4) var<storage, read> plan: array<u32>;
@group(0) @binding(5) var<storage, read_write> partials: array<f32>;

// One union of U_LEN vec4 (8 KiB up to D = 256, 16 KiB at D = 512: WebGPU's default limit),
// reused phase by phase:
//   phase 0-1: q transposed, [d][rows 0-3 | rows 4-7] (2 vec4 per d);
//   phase 2: scores [key][rows 0-3 | 4-7] (512 vec4); the max tree then overwrites them with
//     partial maxima (RED) and the row maxima (RMAX);
//   phase 3-4: values [key][rows 0-3 | 4-7] for the sum tree (then partial sums at RED, row
//     sums at RSUM), then the probabilities (-1 marks a key outside the row's set);
//   phase 5: split partials [pair][x_a, x_b, y_a, y_b].
var<workgroup> u: array<vec4<f32>, U_LEN>;

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

// The storage words of dims (2 pair, 2 pair + 1) of a V row: one packed f16 pair (.x) or two
// f32s; `unpack_v` turns them into values (`load_v2` does both).
fn v_words(key_elem: u32, pair: u32) -> vec2<u32> {
    if (KV_F16) {
        return vec2<u32>(v[key_elem / 2u + pair], 0u);
    }
    let i = key_elem + 2u * pair;
    return vec2<u32>(v[i], v[i + 1u]);
}

fn unpack_v(w: vec2<u32>) -> vec2<f32> {
    if (KV_F16) {
        return unpack2x16float(w.x);
    }
    return bitcast<vec2<f32>>(w);
}

fn load_v2(key_elem: u32, pair: u32) -> vec2<f32> {
    return unpack_v(v_words(key_elem, pair));
}

fn soft(x: vec4<f32>) -> vec4<f32> {
    let y = x * prm.scale;
    if (prm.softcap > 0.0) {
        return prm.softcap * tanh(y / prm.softcap);
    }
    return y;
}

// acc (rows 0-3, rows 4-7) += q[d] * kd for one dimension d, in d order.
struct Acc {
    a: vec4<f32>,
    b: vec4<f32>,
}

fn step(acc: Acc, d: u32, kd: f32) -> Acc {
    return Acc(fma(u[2u * d], vec4<f32>(kd), acc.a), fma(u[2u * d + 1u], vec4<f32>(kd), acc.b));
}

// Eight consecutive dims d0..d0+7 from one vec4<u32> of packed halves.
fn step8h(acc0: Acc, d0: u32, w: vec4<u32>) -> Acc {
    var acc = acc0;
    let k0 = unpack2x16float(w.x);
    let k1 = unpack2x16float(w.y);
    let k2 = unpack2x16float(w.z);
    let k3 = unpack2x16float(w.w);
    acc = step(acc, d0, k0.x);
    acc = step(acc, d0 + 1u, k0.y);
    acc = step(acc, d0 + 2u, k1.x);
    acc = step(acc, d0 + 3u, k1.y);
    acc = step(acc, d0 + 4u, k2.x);
    acc = step(acc, d0 + 5u, k2.y);
    acc = step(acc, d0 + 6u, k3.x);
    acc = step(acc, d0 + 7u, k3.y);
    return acc;
}

// Four consecutive dims from one vec4<u32> of f32 bits.
fn step4f(acc0: Acc, d0: u32, w: vec4<u32>) -> Acc {
    var acc = acc0;
    let k = bitcast<vec4<f32>>(w);
    acc = step(acc, d0, k.x);
    acc = step(acc, d0 + 1u, k.y);
    acc = step(acc, d0 + 2u, k.z);
    acc = step(acc, d0 + 3u, k.w);
    return acc;
}

// q.k for all rows of the group, d = 0..D-1 in order. Loads are issued eight vec4 at a time so
// their latency overlaps; the fma order is unchanged.
fn dots(key_elem: u32) -> Acc {
    var acc = Acc(vec4<f32>(0.0), vec4<f32>(0.0));
    if (KV_F16) {
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
            acc = step8h(acc, 8u * (c + 0u), w0);
            acc = step8h(acc, 8u * (c + 1u), w1);
            acc = step8h(acc, 8u * (c + 2u), w2);
            acc = step8h(acc, 8u * (c + 3u), w3);
            acc = step8h(acc, 8u * (c + 4u), w4);
            acc = step8h(acc, 8u * (c + 5u), w5);
            acc = step8h(acc, 8u * (c + 6u), w6);
            acc = step8h(acc, 8u * (c + 7u), w7);
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
            acc = step4f(acc, 4u * (c + 0u), w0);
            acc = step4f(acc, 4u * (c + 1u), w1);
            acc = step4f(acc, 4u * (c + 2u), w2);
            acc = step4f(acc, 4u * (c + 3u), w3);
            acc = step4f(acc, 4u * (c + 4u), w4);
            acc = step4f(acc, 4u * (c + 5u), w5);
            acc = step4f(acc, 4u * (c + 6u), w6);
            acc = step4f(acc, 4u * (c + 7u), w7);
        }
    }
    return acc;
}

// P.V accumulators of one thread: dims (x, y) = (2*pair, 2*pair+1), rows 0-3 (a) and 4-7 (b).
struct Pv {
    xa: vec4<f32>,
    xb: vec4<f32>,
    ya: vec4<f32>,
    yb: vec4<f32>,
}

// Adds key kk's contribution to every row that has the key (p is not the -1 marker; a NaN p
// from a NaN key is in the set and propagates); `all_in` skips the test
// for groups whose rows all share one span (every key of the loop is in every row's set).
fn pv_step(acc: Pv, kk: u32, vv: vec2<f32>, all_in: bool) -> Pv {
    let pa = u[2u * kk];
    let pb = u[2u * kk + 1u];
    let nx = Pv(fma(pa, vec4<f32>(vv.x), acc.xa), fma(pb, vec4<f32>(vv.x), acc.xb),
        fma(pa, vec4<f32>(vv.y), acc.ya), fma(pb, vec4<f32>(vv.y), acc.yb));
    if (all_in) {
        return nx;
    }
    let ia = pa != vec4<f32>(-1.0);
    let ib = pb != vec4<f32>(-1.0);
    return Pv(select(acc.xa, nx.xa, ia), select(acc.xb, nx.xb, ib), select(acc.ya, nx.ya, ia),
        select(acc.yb, nx.yb, ib));
}

// Per-row maximum (`is_max`) or sum of the [key][row] values in u[0..512): a fixed tree,
// 256 -> 64 -> 2 sequential folds of 32. Result in u[dst], u[dst + 1]. Callers put a barrier
// between writing the values and calling this.
fn reduce_rows(t: u32, is_max: bool, dst: u32) {
    {
        let half = t / 128u;
        let lane = t % 128u;
        let x = u[2u * lane + half];
        let y = u[2u * (lane + 128u) + half];
        workgroupBarrier();
        u[RED + t] = select(x + y, max(x, y), is_max);
    }
    workgroupBarrier();
    if (t < 64u) {
        let half = t / 32u;
        let lane = t % 32u;
        let b = RED + 128u * half + lane;
        let x0 = u[b];
        let x1 = u[b + 32u];
        let x2 = u[b + 64u];
        let x3 = u[b + 96u];
        u[RED + 256u + t] = select(((x0 + x1) + x2) + x3, max(max(x0, x1), max(x2, x3)), is_max);
    }
    workgroupBarrier();
    if (t < 2u) {
        var m = u[RED + 256u + 32u * t];
        for (var i = 1u; i < 32u; i++) {
            let x = u[RED + 256u + 32u * t + i];
            m = select(m + x, max(m, x), is_max);
        }
        u[dst + t] = m;
    }
    workgroupBarrier();
}

// Thread r < n_rows writes word `which` (0: max, 1: sum) of row r's partial record for this
// chunk from u[at] (rows 0-3) / u[at + 1] (rows 4-7).
fn write_stat(t: u32, g: u32, nr: u32, chunk: u32, which: u32, at: u32) {
    if (t < nr && chunk < plan[g + 32u + t]) {
        let c = t % 4u;
        let x = select(u[at + 1u][c], u[at][c], t < 4u);
        partials[(plan[g + 24u + t] + chunk) * (D + 4u) + which] = x;
    }
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let item = wid.x + wid.y * prm.grid_x;
    let live = item < prm.n_items;
    let it = select(0u, item, live);
    let g = GROUP_WORDS * plan[prm.items_off + 2u * it];
    let chunk = plan[prm.items_off + 2u * it + 1u];
    let lo = plan[g + 1u];
    let nr = select(0u, plan[g + 2u], live);
    let max_hi = plan[g + 3u];
    let same = !MIXED;
    let start = lo + chunk * CHUNK;

    // Phase 0: q of the group's rows into u, transposed (zeros for absent rows).
    for (var d = t; d < D; d += WG) {
        var x: array<f32, 8>;
        for (var r = 0u; r < ROWS; r++) {
            x[r] = select(0.0, q[plan[g + 16u + min(r, max(nr, 1u) - 1u)] + d], r < nr);
        }
        u[2u * d] = vec4<f32>(x[0], x[1], x[2], x[3]);
        u[2u * d + 1u] = vec4<f32>(x[4], x[5], x[6], x[7]);
    }
    workgroupBarrier();

    // Phase 1: thread t scores key `start + t` against all rows.
    let j = start + t;
    var valid = 0u;
    if (same) {
        valid = select(0u, (1u << nr) - 1u, j < max_hi);
    } else {
        for (var r = 0u; r < ROWS; r++) {
            if (r < nr && in_set(plan[g + 8u + r], j, lo)) {
                valid |= 1u << r;
            }
        }
    }
    var acc = Acc(vec4<f32>(0.0), vec4<f32>(0.0));
    if (valid != 0u) {
        acc = dots(key_elem(g, j));
    }
    let bits_a = vec4<u32>(1u, 2u, 4u, 8u);
    let va = (vec4<u32>(valid) & bits_a) != vec4<u32>(0u);
    let vb = (vec4<u32>(valid) & (bits_a << vec4<u32>(4u))) != vec4<u32>(0u);
    let s_a = select(vec4<f32>(LOWEST), soft(acc.a), va);
    let s_b = select(vec4<f32>(LOWEST), soft(acc.b), vb);
    workgroupBarrier();
    u[2u * t] = s_a;
    u[2u * t + 1u] = s_b;
    workgroupBarrier();

    // Phase 4's split of the chunk, and its first sixteen V words, loaded now so that their
    // latency overlaps the softmax phases (head_dim <= 256 only: at 512 the kernel already
    // holds 77 registers, and it measured no faster there).
    let pairs = D / 2u;
    let n_split = WG / pairs;
    let sp = t / pairs;
    let pair = t % pairs;
    let span = CHUNK / n_split;
    let k_end = select(0u, min(CHUNK, max_hi - start), live && max_hi > start);
    let k0 = sp * span;
    let k1 = min(k0 + span, k_end);
    let pre = D <= 256u && k0 + 16u <= k1;
    var f0 = vec2<u32>(0u);
    var f1 = vec2<u32>(0u);
    var f2 = vec2<u32>(0u);
    var f3 = vec2<u32>(0u);
    var f4 = vec2<u32>(0u);
    var f5 = vec2<u32>(0u);
    var f6 = vec2<u32>(0u);
    var f7 = vec2<u32>(0u);
    var f8 = vec2<u32>(0u);
    var f9 = vec2<u32>(0u);
    var f10 = vec2<u32>(0u);
    var f11 = vec2<u32>(0u);
    var f12 = vec2<u32>(0u);
    var f13 = vec2<u32>(0u);
    var f14 = vec2<u32>(0u);
    var f15 = vec2<u32>(0u);
    if (pre) {
        f0 = v_words(key_elem(g, start + k0 + 0u), pair);
        f1 = v_words(key_elem(g, start + k0 + 1u), pair);
        f2 = v_words(key_elem(g, start + k0 + 2u), pair);
        f3 = v_words(key_elem(g, start + k0 + 3u), pair);
        f4 = v_words(key_elem(g, start + k0 + 4u), pair);
        f5 = v_words(key_elem(g, start + k0 + 5u), pair);
        f6 = v_words(key_elem(g, start + k0 + 6u), pair);
        f7 = v_words(key_elem(g, start + k0 + 7u), pair);
        f8 = v_words(key_elem(g, start + k0 + 8u), pair);
        f9 = v_words(key_elem(g, start + k0 + 9u), pair);
        f10 = v_words(key_elem(g, start + k0 + 10u), pair);
        f11 = v_words(key_elem(g, start + k0 + 11u), pair);
        f12 = v_words(key_elem(g, start + k0 + 12u), pair);
        f13 = v_words(key_elem(g, start + k0 + 13u), pair);
        f14 = v_words(key_elem(g, start + k0 + 14u), pair);
        f15 = v_words(key_elem(g, start + k0 + 15u), pair);
    }

    // Phase 2: per-row maximum over the chunk (max is exact: any order gives the same value).
    reduce_rows(t, true, RMAX);

    // Phase 3: probabilities [key][row]; -1 marks a key outside the row's set. Their per-row
    // sums use the same fixed tree, with keys outside the set contributing exactly 0. The
    // row maxima and sums live inside the [key][row] area, so each is read (and written to the
    // row's partial record) before a barrier lets the next values overwrite it.
    let e_a = exp(s_a - u[RMAX]);
    let e_b = exp(s_b - u[RMAX + 1u]);
    write_stat(t, g, nr, chunk, 0u, RMAX);
    workgroupBarrier();
    u[2u * t] = select(vec4<f32>(0.0), e_a, va);
    u[2u * t + 1u] = select(vec4<f32>(0.0), e_b, vb);
    workgroupBarrier();
    reduce_rows(t, false, RSUM);
    write_stat(t, g, nr, chunk, 1u, RSUM);
    workgroupBarrier();
    u[2u * t] = select(vec4<f32>(-1.0), e_a, va);
    u[2u * t + 1u] = select(vec4<f32>(-1.0), e_b, vb);
    workgroupBarrier();

    // Phase 4: P.V. Thread t owns dims (2*pair, 2*pair+1) of all rows over split `sp` of the
    // chunk, keys in order; V loads are issued sixteen keys at a time (the first sixteen
    // before phase 2, see above).
    var pv = Pv(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    var kk = k0;
    if (pre) {
        pv = pv_step(pv, kk + 0u, unpack_v(f0), same);
        pv = pv_step(pv, kk + 1u, unpack_v(f1), same);
        pv = pv_step(pv, kk + 2u, unpack_v(f2), same);
        pv = pv_step(pv, kk + 3u, unpack_v(f3), same);
        pv = pv_step(pv, kk + 4u, unpack_v(f4), same);
        pv = pv_step(pv, kk + 5u, unpack_v(f5), same);
        pv = pv_step(pv, kk + 6u, unpack_v(f6), same);
        pv = pv_step(pv, kk + 7u, unpack_v(f7), same);
        pv = pv_step(pv, kk + 8u, unpack_v(f8), same);
        pv = pv_step(pv, kk + 9u, unpack_v(f9), same);
        pv = pv_step(pv, kk + 10u, unpack_v(f10), same);
        pv = pv_step(pv, kk + 11u, unpack_v(f11), same);
        pv = pv_step(pv, kk + 12u, unpack_v(f12), same);
        pv = pv_step(pv, kk + 13u, unpack_v(f13), same);
        pv = pv_step(pv, kk + 14u, unpack_v(f14), same);
        pv = pv_step(pv, kk + 15u, unpack_v(f15), same);
        kk += 16u;
    }
    for (; kk + 16u <= k1; kk += 16u) {
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
        pv = pv_step(pv, kk + 0u, v0, same);
        pv = pv_step(pv, kk + 1u, v1, same);
        pv = pv_step(pv, kk + 2u, v2, same);
        pv = pv_step(pv, kk + 3u, v3, same);
        pv = pv_step(pv, kk + 4u, v4, same);
        pv = pv_step(pv, kk + 5u, v5, same);
        pv = pv_step(pv, kk + 6u, v6, same);
        pv = pv_step(pv, kk + 7u, v7, same);
        pv = pv_step(pv, kk + 8u, v8, same);
        pv = pv_step(pv, kk + 9u, v9, same);
        pv = pv_step(pv, kk + 10u, v10, same);
        pv = pv_step(pv, kk + 11u, v11, same);
        pv = pv_step(pv, kk + 12u, v12, same);
        pv = pv_step(pv, kk + 13u, v13, same);
        pv = pv_step(pv, kk + 14u, v14, same);
        pv = pv_step(pv, kk + 15u, v15, same);
    }
    for (; kk < k1; kk++) {
        pv = pv_step(pv, kk, load_v2(key_elem(g, start + kk), pair), same);
    }
    workgroupBarrier();

    // Phase 5: fold the splits in order 0, 1, 2, ... into split 0 (only when D < 512).
    for (var src = 1u; src < n_split; src++) {
        if (sp == src) {
            u[4u * pair] = pv.xa;
            u[4u * pair + 1u] = pv.xb;
            u[4u * pair + 2u] = pv.ya;
            u[4u * pair + 3u] = pv.yb;
        }
        workgroupBarrier();
        if (sp == 0u) {
            pv.xa += u[4u * pair];
            pv.xb += u[4u * pair + 1u];
            pv.ya += u[4u * pair + 2u];
            pv.yb += u[4u * pair + 3u];
        }
        workgroupBarrier();
    }

    // Phase 6: write the acc part of the partials of rows that have this chunk (max and sum
    // were written in phase 3).
    // Unrolled with constant components: a loop indexing pv by row costs registers.
    if (sp == 0u) {
        let stride = D + 4u;
        let o = 4u + 2u * pair;
        if (0u < nr && chunk < plan[g + 32u]) {
            let base = (plan[g + 24u] + chunk) * stride + o;
            partials[base] = pv.xa.x;
            partials[base + 1u] = pv.ya.x;
        }
        if (1u < nr && chunk < plan[g + 33u]) {
            let base = (plan[g + 25u] + chunk) * stride + o;
            partials[base] = pv.xa.y;
            partials[base + 1u] = pv.ya.y;
        }
        if (2u < nr && chunk < plan[g + 34u]) {
            let base = (plan[g + 26u] + chunk) * stride + o;
            partials[base] = pv.xa.z;
            partials[base + 1u] = pv.ya.z;
        }
        if (3u < nr && chunk < plan[g + 35u]) {
            let base = (plan[g + 27u] + chunk) * stride + o;
            partials[base] = pv.xa.w;
            partials[base + 1u] = pv.ya.w;
        }
        if (4u < nr && chunk < plan[g + 36u]) {
            let base = (plan[g + 28u] + chunk) * stride + o;
            partials[base] = pv.xb.x;
            partials[base + 1u] = pv.yb.x;
        }
        if (5u < nr && chunk < plan[g + 37u]) {
            let base = (plan[g + 29u] + chunk) * stride + o;
            partials[base] = pv.xb.y;
            partials[base + 1u] = pv.yb.y;
        }
        if (6u < nr && chunk < plan[g + 38u]) {
            let base = (plan[g + 30u] + chunk) * stride + o;
            partials[base] = pv.xb.z;
            partials[base + 1u] = pv.yb.z;
        }
        if (7u < nr && chunk < plan[g + 39u]) {
            let base = (plan[g + 31u] + chunk) * stride + o;
            partials[base] = pv.xb.w;
            partials[base + 1u] = pv.yb.w;
        }
    }
}
