// Query preparation of one attention layer: per (token, head) row of D values,
//   q = rope(x * inverseSqrt(mean(x^2) + eps) * w)
// with rotate-half RoPE: dims i and i + D/2 turn by the angle whose (cos, sin) the host put in
// `rope[token * D/2 + i]` (a frequency of 0, as in proportional RoPE's unrotated dims, has
// cos 1 and sin 0: the value passes unchanged). f32 throughout.
//
// One workgroup per row; thread i owns the pair (i, i + D/2). The sum of squares is one fixed
// pairwise tree over the 256 threads (pairs summed x_i^2 + x_{i+D/2}^2 first), set by D alone.

override D: u32 = 256u;      // head_dim: up to 512 (D/2 pairs, at most one per thread)
const WG: u32 = 256u;

struct Params {
    tokens: u32,
    heads: u32,
    eps: f32,
    grid_x: u32,
    x_stride: u32,  // elements between tokens' rows in x (a fused q/k/v output is wider)
    x_off: u32,     // where the q part starts in a token's row
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<uniform> prm: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;       // [tokens, x_stride]
@group(0) @binding(2) var<storage, read> w: array<f32>;       // [D]
@group(0) @binding(3) var<storage, read> rope: array<vec2<f32>>; // [tokens, D/2] (cos, sin)
@group(0) @binding(4) var<storage, read_write> out: array<f32>;  // [tokens, heads, D]

var<workgroup> red: array<f32, WG>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let row = wid.x + wid.y * prm.grid_x;
    let live = row < prm.tokens * prm.heads;
    let half = D / 2u;
    let own = live && t < half;
    let base = select(0u, row, live) * D;
    let token = select(0u, row, live) / prm.heads;
    let head = select(0u, row, live) % prm.heads;
    let src = token * prm.x_stride + prm.x_off + head * D;
    var a = 0.0;
    var b = 0.0;
    if (own) {
        a = x[src + t];
        b = x[src + t + half];
    }
    red[t] = a * a + b * b;
    workgroupBarrier();
    for (var k = WG / 2u; k > 0u; k >>= 1u) {
        if (t < k) {
            red[t] += red[t + k];
        }
        workgroupBarrier();
    }
    let r = inverseSqrt(red[0] / f32(D) + prm.eps);
    if (own) {
        let na = a * r * w[t];
        let nb = b * r * w[t + half];
        let cs = rope[token * half + t];
        out[base + t] = na * cs.x - nb * cs.y;
        out[base + t + half] = nb * cs.x + na * cs.y;
    }
}
