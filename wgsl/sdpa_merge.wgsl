// One-path attention, pass 2 of 2: folds a row's chunk partials (max, sum, acc[D]) in chunk order
// 0, 1, 2, ... and writes acc / sum. The fold is the same for every row whatever its length, batch
// or origin (prefill or decode), so it is part of the numerical contract: keep it a strict left
// fold. A row with no chunk (no key selected) outputs zeros.

override D: u32 = 256u;


struct Params {
    n_rows: u32,
    rows_off: u32,      // offset (u32 words) of the row records in `plan`
    grid_y: u32,        // workgroups along y; rows are linearised y-fastest
    pad: u32,
}

@group(0) @binding(0) var<uniform> prm: Params;
@group(0) @binding(1) var<storage, read> plan: array<u32>;
@group(0) @binding(2) var<storage, read> partials: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

// One invocation per output dimension: workgroup (x = 64-dim slice, y + z * grid_y = row).
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let row = wid.y + wid.z * prm.grid_y;
    let d = wid.x * 64u + t;
    if (row >= prm.n_rows || d >= D) {
        return;
    }
    let rec = prm.rows_off + 8u * row;
    let part_base = plan[rec + 3u];
    let n = plan[rec + 4u];
    let out_off = plan[rec + 5u];
    if (n == 0u) {
        out[out_off + d] = 0.0;
        return;
    }
    let stride = D + 4u;
    var m = partials[part_base * stride];
    var l = partials[part_base * stride + 1u];
    var a = partials[part_base * stride + 4u + d];
    // Loads for eight chunks are issued before their folds so their latency overlaps; the fold
    // itself stays strictly in chunk order.
    for (var c = 1u; c < n; c += 8u) {
        var mc: array<f32, 8>;
        var lc: array<f32, 8>;
        var ac: array<f32, 8>;
        for (var i = 0u; i < 8u; i++) {
            let b = (part_base + min(c + i, n - 1u)) * stride;
            mc[i] = partials[b];
            lc[i] = partials[b + 1u];
            ac[i] = partials[b + 4u + d];
        }
        for (var i = 0u; i < 8u; i++) {
            if (c + i < n) {
                let mn = max(m, mc[i]);
                let f0 = exp(m - mn);
                let f1 = exp(mc[i] - mn);
                l = fma(l, f0, lc[i] * f1);
                a = fma(a, f0, ac[i] * f1);
                m = mn;
            }
        }
    }
    out[out_off + d] = a / l;
}
