// Key/value preparation of one attention layer, written straight into its KV cache: per
// (token, KV head),
//   k = rope(kx * inverseSqrt(mean(kx^2) + eps) * kw)     (rotate-half, as in q_prep.wgsl)
//   v = vx * inverseSqrt(mean(vx^2) + eps)                (Gemma 4's weightless v norm)
// stored at cache row `head * slots + slot[token]` (skipped when the slot is 0xffffffff: the
// token's pages are in another buffer of the pool): K key-blocked (blocks of 32 rows, column-
// major 16-byte words, as sdpa_chunk.wgsl reads it), V row-major; f16 (packed pairs, low half
// first) or f32. Thread i owns the pair (i, i + D/2); each sum of squares is one fixed tree
// over the 256 threads, set by D alone.

override D: u32 = 256u;
override KV_F16: bool = true;
const WG: u32 = 256u;

struct Params {
    tokens: u32,
    heads: u32,    // KV heads
    eps: f32,
    grid_x: u32,
    slots: u32,    // cache rows per KV head (pages * PAGE)
    k_stride: u32, // elements between tokens' rows in kx / vx, and where K / V start in them
    k_off: u32,
    v_stride: u32,
    v_off: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<uniform> prm: Params;
@group(0) @binding(1) var<storage, read> kx: array<f32>;          // [tokens, k_stride]
@group(0) @binding(2) var<storage, read> vx: array<f32>;          // [tokens, v_stride]
@group(0) @binding(3) var<storage, read> kw: array<f32>;          // [D]
@group(0) @binding(4) var<storage, read> rope: array<vec2<f32>>;  // [tokens, D/2]
@group(0) @binding(5) var<storage, read> slot: array<u32>;        // [tokens]
@group(0) @binding(6) var<storage, read_write> kc: array<u32>;
@group(0) @binding(7) var<storage, read_write> vc: array<u32>;

var<workgroup> red: array<f32, WG>;
var<workgroup> kv: array<f32, 512>;
var<workgroup> vv: array<f32, 512>;

fn tree(t: u32, s: f32) -> f32 {
    red[t] = s;
    workgroupBarrier();
    for (var k = WG / 2u; k > 0u; k >>= 1u) {
        if (t < k) {
            red[t] += red[t + k];
        }
        workgroupBarrier();
    }
    let total = red[0];
    workgroupBarrier();
    return total;
}

// Index (in u32 words) of dims (d, d + 1) (f16: one packed word) or dim d (f32) of cache row
// r in the key-blocked K layout.
fn k_index(r: u32, d: u32) -> u32 {
    if (KV_F16) {
        return 4u * ((r / 32u) * 32u * (D / 8u) + (d / 8u) * 32u + r % 32u) + (d % 8u) / 2u;
    }
    return 4u * ((r / 32u) * 32u * (D / 4u) + (d / 4u) * 32u + r % 32u) + d % 4u;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let row = wid.x + wid.y * prm.grid_x;
    let live = row < prm.tokens * prm.heads;
    let half = D / 2u;
    let own = live && t < half;
    let token = select(0u, row, live) / prm.heads;
    let head = select(0u, row, live) % prm.heads;
    let ks = token * prm.k_stride + prm.k_off + head * D;
    let vs = token * prm.v_stride + prm.v_off + head * D;
    var ka = 0.0;
    var kb = 0.0;
    var va = 0.0;
    var vb = 0.0;
    if (own) {
        ka = kx[ks + t];
        kb = kx[ks + t + half];
        va = vx[vs + t];
        vb = vx[vs + t + half];
    }
    let rk = inverseSqrt(tree(t, ka * ka + kb * kb) / f32(D) + prm.eps);
    let rv = inverseSqrt(tree(t, va * va + vb * vb) / f32(D) + prm.eps);
    if (own) {
        let na = ka * rk * kw[t];
        let nb = kb * rk * kw[t + half];
        let cs = rope[token * half + t];
        kv[t] = na * cs.x - nb * cs.y;
        kv[t + half] = nb * cs.x + na * cs.y;
        vv[t] = va * rv;
        vv[t + half] = vb * rv;
    }
    workgroupBarrier();
    // Thread p writes dims (2p, 2p + 1); a token whose pages are in another cache buffer
    // (slot NONE) is written by that buffer's call.
    if (!own || slot[token] == 0xffffffffu) {
        return;
    }
    let r = head * prm.slots + slot[token];
    let d = 2u * t;
    if (KV_F16) {
        kc[k_index(r, d)] = pack2x16float(vec2<f32>(kv[d], kv[d + 1u]));
        vc[(r * D + d) / 2u] = pack2x16float(vec2<f32>(vv[d], vv[d + 1u]));
    } else {
        kc[k_index(r, d)] = bitcast<u32>(kv[d]);
        kc[k_index(r, d + 1u)] = bitcast<u32>(kv[d + 1u]);
        vc[r * D + d] = bitcast<u32>(vv[d]);
        vc[r * D + d + 1u] = bitcast<u32>(vv[d + 1u]);
    }
}
