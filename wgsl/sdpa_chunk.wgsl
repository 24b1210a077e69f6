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
// plan, row record (at rows_off + 8 * r): q_off, hi, dense_off, part_base, n_chunks, out_off, lo, 0
// plan, item (at items_off + 2 * i): group, chunk
@group(0) @binding(0) var<uniform> prm: Params;
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> k: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> v: array<u32>;
@group(0) @binding(4) var<storage, read> plan: array<u32>;
@group(0) @binding(5) var<storage, read_write> partials: array<f32>;

// Scores [row][key] for the max, then probabilities [key][row] for P.V, then split partials.
var<workgroup> sh: array<f32, 2048>;       // ROWS * CHUNK
var<workgroup> red: array<f32, 256>;       // ROWS * 32 partial maxima
var<workgroup> row_max: array<f32, 8>;
var<workgroup> sh_l: array<f32, 8>;

fn elems_per_vec4() -> u32 {
    return select(4u, 8u, KV_F16);
}

// q.k for one key and up to ROWS rows, sequentially over d. Returns 8 dots.
fn dots(key_elem: u32, nr: u32, qoff: array<u32, 8>) -> array<f32, 8> {
    var acc = array<f32, 8>(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    let kb = key_elem / elems_per_vec4();
    if (KV_F16) {
        for (var c = 0u; c < D / 8u; c++) {
            let w = k[kb + c];
            let k0 = unpack2x16float(w.x);
            let k1 = unpack2x16float(w.y);
            let k2 = unpack2x16float(w.z);
            let k3 = unpack2x16float(w.w);
            let ka = vec4<f32>(k0, k1);
            let kc = vec4<f32>(k2, k3);
            for (var r = 0u; r < ROWS; r++) {
                if (r < nr) {
                    let qa = q[qoff[r] + 2u * c];
                    let qc = q[qoff[r] + 2u * c + 1u];
                    var a = acc[r];
                    a = fma(qa.x, ka.x, a);
                    a = fma(qa.y, ka.y, a);
                    a = fma(qa.z, ka.z, a);
                    a = fma(qa.w, ka.w, a);
                    a = fma(qc.x, kc.x, a);
                    a = fma(qc.y, kc.y, a);
                    a = fma(qc.z, kc.z, a);
                    a = fma(qc.w, kc.w, a);
                    acc[r] = a;
                }
            }
        }
    } else {
        for (var c = 0u; c < D / 4u; c++) {
            let ka = bitcast<vec4<f32>>(k[kb + c]);
            for (var r = 0u; r < ROWS; r++) {
                if (r < nr) {
                    let qa = q[qoff[r] + c];
                    var a = acc[r];
                    a = fma(qa.x, ka.x, a);
                    a = fma(qa.y, ka.y, a);
                    a = fma(qa.z, ka.z, a);
                    a = fma(qa.w, ka.w, a);
                    acc[r] = a;
                }
            }
        }
    }
    return acc;
}

fn load_v2(key_elem: u32, pair: u32) -> vec2<f32> {
    if (KV_F16) {
        return unpack2x16float(v[key_elem / 2u + pair]);
    }
    let i = key_elem + 2u * pair;
    return vec2<f32>(bitcast<f32>(v[i]), bitcast<f32>(v[i + 1u]));
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
    var row_id: array<u32, 8>;
    var qoff: array<u32, 8>;
    for (var r = 0u; r < ROWS; r++) {
        row_id[r] = plan[12u * g + 4u + r];
        qoff[r] = select(0u, plan[prm.rows_off + 8u * row_id[r]] / 4u, r < nr);
    }
    let start = lo + chunk * CHUNK;

    // Phase 1: thread t scores key `start + t` against every row of the group.
    let j = start + t;
    var valid = 0u;
    for (var r = 0u; r < ROWS; r++) {
        if (r < nr && in_set(row_id[r], j, lo)) {
            valid |= 1u << r;
        }
    }
    var s = array<f32, 8>(LOWEST, LOWEST, LOWEST, LOWEST, LOWEST, LOWEST, LOWEST, LOWEST);
    if (valid != 0u) {
        let d = dots(key_base + j * prm.kv_stride, nr, qoff);
        for (var r = 0u; r < ROWS; r++) {
            if ((valid & (1u << r)) != 0u) {
                var x = d[r] * prm.scale;
                if (prm.softcap > 0.0) {
                    x = prm.softcap * tanh(x / prm.softcap);
                }
                s[r] = x;
            }
        }
    }
    for (var r = 0u; r < ROWS; r++) {
        sh[r * CHUNK + t] = s[r];
    }
    workgroupBarrier();

    // Phase 2: per-row maximum over the chunk (max is exact, so its order does not matter).
    {
        let r = t / 32u;
        let lane = t % 32u;
        var m = LOWEST;
        for (var i = 0u; i < CHUNK / 32u; i++) {
            m = max(m, sh[r * CHUNK + lane + 32u * i]);
        }
        red[r * 32u + lane] = m;
    }
    workgroupBarrier();
    if (t < ROWS) {
        var m = LOWEST;
        for (var i = 0u; i < 32u; i++) {
            m = max(m, red[t * 32u + i]);
        }
        row_max[t] = m;
    }
    workgroupBarrier();

    // Phase 3: probabilities, stored [key][row]; exactly 0 for keys outside a row's set.
    for (var r = 0u; r < ROWS; r++) {
        let on = (valid & (1u << r)) != 0u;
        sh[t * ROWS + r] = select(0.0, exp(s[r] - row_max[r]), on);
    }
    workgroupBarrier();

    // Phase 4: P.V. Thread t owns dims (2*pair, 2*pair+1) for all rows, over split `sp` of the
    // chunk; thread `pair == r` (r < ROWS) also sums row r's probabilities.
    let pairs = D / 2u;
    let n_split = WG / pairs;
    let sp = t / pairs;
    let pair = t % pairs;
    let span = CHUNK / n_split;
    let k_end = select(0u, min(CHUNK, max_hi - start), live && max_hi > start);
    var acc: array<vec2<f32>, 8>;
    var lsum = 0.0;
    for (var kk = sp * span; kk < min((sp + 1u) * span, k_end); kk++) {
        let vv = load_v2(key_base + (start + kk) * prm.kv_stride, pair);
        for (var r = 0u; r < ROWS; r++) {
            let p = sh[kk * ROWS + r];
            acc[r] = select(acc[r], fma(vec2<f32>(p), vv, acc[r]), p != 0.0);
        }
        if (pair < ROWS) {
            lsum += sh[kk * ROWS + pair];
        }
    }
    workgroupBarrier();

    // Phase 5: fold the splits in order 0, 1, 2, ... into split 0 (only when D < 512).
    for (var src = 1u; src < n_split; src++) {
        if (sp == src) {
            for (var r = 0u; r < ROWS; r++) {
                sh[r * D + 2u * pair] = acc[r].x;
                sh[r * D + 2u * pair + 1u] = acc[r].y;
            }
            if (pair < ROWS) {
                sh_l[pair] = lsum;
            }
        }
        workgroupBarrier();
        if (sp == 0u) {
            for (var r = 0u; r < ROWS; r++) {
                acc[r] += vec2<f32>(sh[r * D + 2u * pair], sh[r * D + 2u * pair + 1u]);
            }
            if (pair < ROWS) {
                lsum += sh_l[pair];
            }
        }
        workgroupBarrier();
    }

    // Phase 6: write the partials of rows that have this chunk.
    if (sp == 0u) {
        let stride = D + 4u;
        for (var r = 0u; r < ROWS; r++) {
            if (r < nr) {
                let rec = prm.rows_off + 8u * row_id[r];
                if (chunk < plan[rec + 4u]) {
                    let base = (plan[rec + 3u] + chunk) * stride;
                    partials[base + 4u + 2u * pair] = acc[r].x;
                    partials[base + 5u + 2u * pair] = acc[r].y;
                    if (pair == r) {
                        partials[base] = row_max[r];
                        partials[base + 1u] = lsum;
                    }
                }
            }
        }
    }
}
