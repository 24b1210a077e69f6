// Gemma 4's per-layer inputs: per (token t, layer l), with P values per layer,
//   x = proj[t, l*P ..] * proj_scale                      (proj = h0 W_pp^T, scale hidden^-0.5)
//   pli[t, l*P + i] = (x_i * inverseSqrt(mean(x^2) + eps) * w_i + tok[t, l*P + i]) * in_scale
// with tok the token's scaled per-layer embedding (gathered on the host) and in_scale 2^-0.5.
// One workgroup per (token, layer); the sum of squares is one fixed order set by P alone
// (thread t sums t, t + 256, ...; a fixed pairwise tree).

const WG: u32 = 256u;

struct Params {
    p: u32,
    layers: u32,
    tokens: u32,
    eps: f32,
    proj_scale: f32,
    in_scale: f32,
    grid_x: u32,
    pad: u32,
}

@group(0) @binding(0) var<uniform> prm: Params;
@group(0) @binding(1) var<storage, read> proj: array<f32>;  // [tokens, layers * P]
@group(0) @binding(2) var<storage, read> tok: array<f32>;   // [tokens, layers * P]
@group(0) @binding(3) var<storage, read> w: array<f32>;     // [P]
@group(0) @binding(4) var<storage, read_write> pli: array<f32>; // [tokens, layers * P]

var<workgroup> red: array<f32, WG>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let item = wid.x + wid.y * prm.grid_x;
    let live = item < prm.tokens * prm.layers;
    let base = select(0u, item, live) * prm.p;
    var s = 0.0;
    if (live) {
        for (var i = t; i < prm.p; i += WG) {
            let v = proj[base + i] * prm.proj_scale;
            s += v * v;
        }
    }
    red[t] = s;
    workgroupBarrier();
    for (var k = WG / 2u; k > 0u; k >>= 1u) {
        if (t < k) {
            red[t] += red[t + k];
        }
        workgroupBarrier();
    }
    let r = inverseSqrt(red[0] / f32(prm.p) + prm.eps);
    if (live) {
        for (var i = t; i < prm.p; i += WG) {
            let v = proj[base + i] * prm.proj_scale;
            pli[base + i] = (v * r * w[i] + tok[base + i]) * prm.in_scale;
        }
    }
}
