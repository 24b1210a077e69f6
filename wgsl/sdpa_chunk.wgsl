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
// Storage: q is f32 rows. K and V are f16 (packed two per u32, no shader-f16 needed) or f32,
// addressed as element offset `key_base + j * kv_stride` for key j of the group's sequence/head.

override D: u32 = 256u;          // head_dim: 64, 128, 256 or 512
override KV_F16: bool = true;    // K/V storage: packed f16 pairs (true) or f32 (false)

const CHUNK: u32 = 256u;         // keys per chunk: fixed forever, part of the numerical contract
const ROWS: u32 = 8u;            // query rows per workgroup (e.g. 8 query heads sharing a KV head)
const WG: u32 = 256u;            // invocations (WebGPU's default maximum)
const NONE: u32 = 0xffffffffu;
const LOWEST: f32 = -3.4028235e38;
// Offsets (in f32) inside the workgroup union `u` for the small per-chunk values.
const RED: u32 = 2048u;          // 256 partial maxima, after the [row][key] scores
const RMAX: u32 = 2304u;         // 8 row maxima
const LSUM: u32 = 2312u;         // 8 probability sums (split fold)

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

// plan, group record (at 12 * g): key_base, lo, n_rows, max_hi, row ids [8]
// plan, row record (at rows_off + 8 * r): q_off, hi, dense_off, part_base, n_chunks, out_off, lo,
//   same (1 when every row of its group has exactly this span; 0 otherwise)
// plan, item (at items_off + 2 * i): group, chunk
@group(0) @binding(0) var<uniform> prm: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> v: array<u32>;
@group(0) @binding(4) var<storage, read> plan: array<u32>;
@group(0) @binding(5) var<storage, read_write> partials: array<f32>;

// One 16 KiB union (WebGPU's default limit), reused phase by phase:
//   phase 1: q transposed, [d][row] as 2 vec4 per d (D * 8 floats);
//   phase 2: scores [row][key] (2048 floats), partial maxima at RED, row maxima at RMAX;
//   phase 3-4: probabilities [key][row] as 2 vec4 per key (-1 marks a key outside the row);
//   phase 5: split partials [pair][x|y][rows 0-3|4-7], sums at LSUM.
var<workgroup> u: array<vec4<f32>, 1024>;

fn uget(i: u32) -> f32 {
    return u[i / 4u][i % 4u];
}

fn uset(i: u32, x: f32) {
    u[i / 4u][i % 4u] = x;
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

fn load_v2(key_elem: u32, pair: u32) -> vec2<f32> {
    if (KV_F16) {
        return unpack2x16float(v[key_elem / 2u + pair]);
    }
    let i = key_elem + 2u * pair;
    return vec2<f32>(bitcast<f32>(v[i]), bitcast<f32>(v[i + 1u]));
}

fn soft(x: vec4<f32>) -> vec4<f32> {
    let y = x * prm.scale;
    if (prm.softcap > 0.0) {
        return prm.softcap * tanh(y / prm.softcap);
    }
    return y;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let item = wid.x + wid.y * prm.grid_x;
    let live = item < prm.n_items;
    let it = select(0u, item, live);
    let g = plan[prm.items_off + 2u * it];
    let chunk = plan[prm.items_off + 2u * it + 1u];
    let key_base = plan[12u * g];
    let lo = plan[12u * g + 1u];
    let nr = select(0u, plan[12u * g + 2u], live);
    let max_hi = plan[12u * g + 3u];
    let same = plan[prm.rows_off + 8u * plan[12u * g + 4u] + 7u] == 1u;
    let start = lo + chunk * CHUNK;

    // Phase 0: q of the group's rows into u, transposed to [d][row] (zeros for absent rows).
    for (var i = t; i < D * ROWS; i += WG) {
        let r = i / D;
        let d = i % D;
        var x = 0.0;
        if (r < nr) {
            x = q[plan[prm.rows_off + 8u * plan[12u * g + 4u + r]] + d];
        }
        uset(d * ROWS + r, x);
    }
    workgroupBarrier();

    // Phase 1: thread t scores key `start + t` against all rows; q.k runs over d = 0..D-1 in
    // order, one fma per element, for every row alike.
    let j = start + t;
    var valid = 0u;
    for (var r = 0u; r < ROWS; r++) {
        if (r < nr && in_set(plan[12u * g + 4u + r], j, lo)) {
            valid |= 1u << r;
        }
    }
    var acc_a = vec4<f32>(0.0);
    var acc_b = vec4<f32>(0.0);
    if (valid != 0u) {
        let ke = key_base + j * prm.kv_stride;
        if (KV_F16) {
            let kb = ke / 8u;
            for (var c = 0u; c < D / 8u; c++) {
                let w = k[kb + c];
                let kk = array<vec2<f32>, 4>(unpack2x16float(w.x), unpack2x16float(w.y),
                    unpack2x16float(w.z), unpack2x16float(w.w));
                for (var e = 0u; e < 8u; e++) {
                    let kd = vec4<f32>(kk[e / 2u][e % 2u]);
                    let d = 8u * c + e;
                    acc_a = fma(u[2u * d], kd, acc_a);
                    acc_b = fma(u[2u * d + 1u], kd, acc_b);
                }
            }
        } else {
            let kb = ke / 4u;
            for (var c = 0u; c < D / 4u; c++) {
                let w = bitcast<vec4<f32>>(k[kb + c]);
                for (var e = 0u; e < 4u; e++) {
                    let kd = vec4<f32>(w[e]);
                    let d = 4u * c + e;
                    acc_a = fma(u[2u * d], kd, acc_a);
                    acc_b = fma(u[2u * d + 1u], kd, acc_b);
                }
            }
        }
    }
    let bits_a = vec4<u32>(1u, 2u, 4u, 8u);
    let va = (vec4<u32>(valid) & bits_a) != vec4<u32>(0u);
    let vb = (vec4<u32>(valid) & (bits_a << vec4<u32>(4u))) != vec4<u32>(0u);
    let s_a = select(vec4<f32>(LOWEST), soft(acc_a), va);
    let s_b = select(vec4<f32>(LOWEST), soft(acc_b), vb);
    workgroupBarrier();
    for (var r = 0u; r < 4u; r++) {
        uset(r * CHUNK + t, s_a[r]);
        uset((r + 4u) * CHUNK + t, s_b[r]);
    }
    workgroupBarrier();

    // Phase 2: per-row maximum over the chunk (max is exact, so its order does not matter).
    {
        let r = t / 32u;
        let lane = t % 32u;
        var m = LOWEST;
        for (var i = 0u; i < CHUNK / 32u; i++) {
            m = max(m, uget(r * CHUNK + lane + 32u * i));
        }
        uset(RED + t, m);
    }
    workgroupBarrier();
    if (t < ROWS) {
        var m = LOWEST;
        for (var i = 0u; i < 32u; i++) {
            m = max(m, uget(RED + t * 32u + i));
        }
        uset(RMAX + t, m);
    }
    workgroupBarrier();

    // Phase 3: probabilities [key][row]; -1 marks a key outside the row's set.
    let m_a = vec4<f32>(uget(RMAX), uget(RMAX + 1u), uget(RMAX + 2u), uget(RMAX + 3u));
    let m_b = vec4<f32>(uget(RMAX + 4u), uget(RMAX + 5u), uget(RMAX + 6u), uget(RMAX + 7u));
    workgroupBarrier();
    u[2u * t] = select(vec4<f32>(-1.0), exp(s_a - m_a), va);
    u[2u * t + 1u] = select(vec4<f32>(-1.0), exp(s_b - m_b), vb);
    workgroupBarrier();

    // Phase 4: P.V. Thread t owns dims (2*pair, 2*pair+1) of all rows, over split `sp` of the
    // chunk, keys in order. A row takes an fma exactly for the keys in its set: groups whose rows
    // all share one span take every key (no test needed); others test the -1 marker.
    let pairs = D / 2u;
    let n_split = WG / pairs;
    let sp = t / pairs;
    let pair = t % pairs;
    let span = CHUNK / n_split;
    let k_end = select(0u, min(CHUNK, max_hi - start), live && max_hi > start);
    let k0 = sp * span;
    let k1 = min(k0 + span, k_end);
    var x_a = vec4<f32>(0.0);
    var x_b = vec4<f32>(0.0);
    var y_a = vec4<f32>(0.0);
    var y_b = vec4<f32>(0.0);
    if (same) {
        for (var kk = k0; kk < k1; kk++) {
            let vv = load_v2(key_base + (start + kk) * prm.kv_stride, pair);
            let p_a = u[2u * kk];
            let p_b = u[2u * kk + 1u];
            x_a = fma(p_a, vec4<f32>(vv.x), x_a);
            x_b = fma(p_b, vec4<f32>(vv.x), x_b);
            y_a = fma(p_a, vec4<f32>(vv.y), y_a);
            y_b = fma(p_b, vec4<f32>(vv.y), y_b);
        }
    } else {
        for (var kk = k0; kk < k1; kk++) {
            let vv = load_v2(key_base + (start + kk) * prm.kv_stride, pair);
            let p_a = u[2u * kk];
            let p_b = u[2u * kk + 1u];
            let in_a = p_a >= vec4<f32>(0.0);
            let in_b = p_b >= vec4<f32>(0.0);
            x_a = select(x_a, fma(p_a, vec4<f32>(vv.x), x_a), in_a);
            x_b = select(x_b, fma(p_b, vec4<f32>(vv.x), x_b), in_b);
            y_a = select(y_a, fma(p_a, vec4<f32>(vv.y), y_a), in_a);
            y_b = select(y_b, fma(p_b, vec4<f32>(vv.y), y_b), in_b);
        }
    }
    // Sum of row `pair`'s probabilities over this split, in key order (threads pair < 8).
    var lsum = 0.0;
    if (pair < ROWS) {
        for (var kk = k0; kk < k1; kk++) {
            lsum += max(uget(8u * kk + pair), 0.0);
        }
    }
    workgroupBarrier();

    // Phase 5: fold the splits in order 0, 1, 2, ... into split 0 (only when D < 512).
    for (var src = 1u; src < n_split; src++) {
        if (sp == src) {
            u[4u * pair] = x_a;
            u[4u * pair + 1u] = x_b;
            u[4u * pair + 2u] = y_a;
            u[4u * pair + 3u] = y_b;
            if (pair < ROWS) {
                uset(LSUM + pair, lsum);
            }
        }
        workgroupBarrier();
        if (sp == 0u) {
            x_a += u[4u * pair];
            x_b += u[4u * pair + 1u];
            y_a += u[4u * pair + 2u];
            y_b += u[4u * pair + 3u];
            if (pair < ROWS) {
                lsum += uget(LSUM + pair);
            }
        }
        workgroupBarrier();
    }

    // Phase 6: write the partials (max, sum, acc) of rows that have this chunk.
    if (sp == 0u) {
        let stride = D + 4u;
        for (var r = 0u; r < ROWS; r++) {
            if (r < nr) {
                let rec = prm.rows_off + 8u * plan[12u * g + 4u + r];
                if (chunk < plan[rec + 4u]) {
                    let base = (plan[rec + 3u] + chunk) * stride;
                    var xr = x_a[r % 4u];
                    var yr = y_a[r % 4u];
                    if (r >= 4u) {
                        xr = x_b[r % 4u];
                        yr = y_b[r % 4u];
                    }
                    partials[base + 4u + 2u * pair] = xr;
                    partials[base + 5u + 2u * pair] = yr;
                    if (pair == r) {
                        partials[base] = uget(RMAX + r);
                        partials[base + 1u] = lsum;
                    }
                }
            }
        }
    }
}
