// RMSNorm of selected rows: out[j] = x[idx[j]] * inverseSqrt(mean(x^2) + eps) * w, in f32
// (Gemma 4's norm: the weight as stored, no 1 + w).
//
// One workgroup per output row. The sum of squares has one order, fixed by n alone: thread t
// sums elements t, t + 256, ... in turn, then a fixed pairwise tree folds the 256 partials.
// Nothing about the other rows of the call reaches a row's bits.

const WG: u32 = 256u;

struct Params {
    n: u32,        // elements per row
    rows: u32,     // output rows
    eps: f32,
    grid_x: u32,   // workgroups along x (rows are linearised x-fastest)
}

@group(0) @binding(0) var<uniform> prm: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> idx: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

var<workgroup> red: array<f32, WG>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let j = wid.x + wid.y * prm.grid_x;
    let live = j < prm.rows;
    let src = select(0u, idx[min(j, prm.rows - 1u)], live) * prm.n;
    var s = 0.0;
    if (live) {
        for (var i = t; i < prm.n; i += WG) {
            let v = x[src + i];
            s += v * v;
        }
    }
    red[t] = s;
    workgroupBarrier();
    for (var h = WG / 2u; h > 0u; h >>= 1u) {
        if (t < h) {
            red[t] += red[t + h];
        }
        workgroupBarrier();
    }
    let r = inverseSqrt(red[0] / f32(prm.n) + prm.eps);
    if (live) {
        for (var i = t; i < prm.n; i += WG) {
            out[j * prm.n + i] = x[src + i] * r * w[i];
        }
    }
}
