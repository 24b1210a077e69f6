// One-path attention, pass 2 of 2: folds a row's chunk partials (max, sum, acc[D]) and writes
// acc / sum. The fold is a fixed function of the row's chunk count n, the same for every row
// whatever its batch or origin (prefill or decode), so it is part of the numerical contract:
//
//   level 1: chunks are cut into groups of GROUP = 16 consecutive chunks; each group is folded
//            left to right, starting from its first chunk;
//   level 2: the group results are folded left to right, in group order.
//
// fold((m1, l1, a1), (m2, l2, a2)) = (m, l1 e1 + l2 e2, a1 e1 + a2 e2) with m = max(m1, m2),
// e1 = exp(m1 - m), e2 = exp(m2 - m). A row with no chunk (no key selected) outputs zeros.
//
// Mapping (not part of the contract): one workgroup per (128-dim slice, row). Its 8 warps of
// 32 invocations ("lanes") fold 8 groups at once, each invocation 4 dims (one vec4), so a row
// of up to 128 chunks (32768 keys) is one round; lane 0 then folds the group results in order.
// A partial record is D + 4 floats: max, sum, 2 unused, acc[D], read here as vec4s.

override D: u32 = 256u;

const GROUP: u32 = 16u;
const LANES: u32 = 8u;
const DV: u32 = 32u;             // invocations per lane, one vec4 of dims each

struct Params {
    n_rows: u32,
    rows_off: u32,      // offset (u32 words) of the row records in `plan`
    grid_y: u32,        // workgroups along y; rows are linearised y-fastest
    pad: u32,
}

@group(0) @binding(0) var<uniform> prm: Params;
@group(0) @binding(1) var<storage, read> plan: array<u32>;
@group(0) @binding(2) var<storage, read> partials: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

var<workgroup> g_a: array<vec4<f32>, 256>;    // [lane][dv] group results
var<workgroup> g_ml: array<vec2<f32>, 8>;
var<workgroup> g_rounds: u32;

struct Part {
    m: f32,
    l: f32,
    a: vec4<f32>,
}

fn fold(x: Part, y: Part) -> Part {
    let m = max(x.m, y.m);
    let e1 = exp(x.m - m);
    let e2 = exp(y.m - m);
    return Part(m, fma(x.l, e1, y.l * e2), fma(x.a, vec4<f32>(e1), y.a * e2));
}

// Dims 4 dv .. 4 dv + 3 of chunk record c.
fn load(c: u32, dv: u32) -> Part {
    let b = c * (D / 4u + 1u);
    let ml = partials[b];
    return Part(ml.x, ml.y, partials[b + 1u + dv]);
}

// Left fold of chunks [c0, c0 + count), count in 1..=16; loads are issued eight at a time.
fn fold_group(c0: u32, count: u32, dv: u32) -> Part {
    let last = c0 + count - 1u;
    let p0 = load(c0, dv);
    let p1 = load(min(c0 + 1u, last), dv);
    let p2 = load(min(c0 + 2u, last), dv);
    let p3 = load(min(c0 + 3u, last), dv);
    let p4 = load(min(c0 + 4u, last), dv);
    let p5 = load(min(c0 + 5u, last), dv);
    let p6 = load(min(c0 + 6u, last), dv);
    let p7 = load(min(c0 + 7u, last), dv);
    var s = p0;
    if (count > 1u) { s = fold(s, p1); }
    if (count > 2u) { s = fold(s, p2); }
    if (count > 3u) { s = fold(s, p3); }
    if (count > 4u) { s = fold(s, p4); }
    if (count > 5u) { s = fold(s, p5); }
    if (count > 6u) { s = fold(s, p6); }
    if (count > 7u) { s = fold(s, p7); }
    if (count > 8u) {
        let p8 = load(c0 + 8u, dv);
        let p9 = load(min(c0 + 9u, last), dv);
        let p10 = load(min(c0 + 10u, last), dv);
        let p11 = load(min(c0 + 11u, last), dv);
        let p12 = load(min(c0 + 12u, last), dv);
        let p13 = load(min(c0 + 13u, last), dv);
        let p14 = load(min(c0 + 14u, last), dv);
        let p15 = load(min(c0 + 15u, last), dv);
        s = fold(s, p8);
        if (count > 9u) { s = fold(s, p9); }
        if (count > 10u) { s = fold(s, p10); }
        if (count > 11u) { s = fold(s, p11); }
        if (count > 12u) { s = fold(s, p12); }
        if (count > 13u) { s = fold(s, p13); }
        if (count > 14u) { s = fold(s, p14); }
        if (count > 15u) { s = fold(s, p15); }
    }
    return s;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let row = wid.y + wid.z * prm.grid_y;
    let lane = t / DV;
    let tl = t % DV;
    let dv = wid.x * DV + tl;
    let dvc = min(dv, D / 4u - 1u);   // D = 64 leaves half a lane idle: it re-reads dims
    let rec = prm.rows_off + 8u * min(row, prm.n_rows - 1u);
    let part_base = plan[rec + 3u];
    let n = select(0u, plan[rec + 4u], row < prm.n_rows);
    let out_off = plan[rec + 5u];
    let groups = (n + GROUP - 1u) / GROUP;
    // The round count is the row's, the same for the whole workgroup; loading it through
    // workgroup memory makes that uniformity visible to WGSL (the loop holds barriers).
    if (t == 0u) {
        g_rounds = (groups + LANES - 1u) / LANES;
    }
    let rounds = workgroupUniformLoad(&g_rounds);
    var acc = Part(0.0, 0.0, vec4<f32>(0.0));
    for (var r = 0u; r < rounds; r++) {
        let gi = r * LANES + lane;
        if (gi < groups) {
            let c0 = gi * GROUP;
            let s = fold_group(part_base + c0, min(GROUP, n - c0), dvc);
            g_a[lane * DV + tl] = s.a;
            if (tl == 0u) {
                g_ml[lane] = vec2<f32>(s.m, s.l);
            }
        }
        workgroupBarrier();
        if (lane == 0u) {
            for (var i = 0u; i < LANES; i++) {
                let gj = r * LANES + i;
                if (gj < groups) {
                    let p = Part(g_ml[i].x, g_ml[i].y, g_a[i * DV + tl]);
                    if (gj == 0u) {
                        acc = p;
                    } else {
                        acc = fold(acc, p);
                    }
                }
            }
        }
        workgroupBarrier();
    }
    if (lane == 0u && row < prm.n_rows && dv < D / 4u) {
        let o = select(vec4<f32>(0.0), acc.a / acc.l, n > 0u);
        let d = out_off + 4u * dv;
        out[d] = o.x;
        out[d + 1u] = o.y;
        out[d + 2u] = o.z;
        out[d + 3u] = o.w;
    }
}
