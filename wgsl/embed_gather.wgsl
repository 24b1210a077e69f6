// Quantized embedding gather: out[t, :] = dequant(W[ids[t], :]) as f32, for the rows of W held
// by this binding (rows row0 .. row0 + n; a table split over several bindings is gathered by one
// dispatch per binding, each writing only the tokens whose id it holds).
//
// ROUND = 0: scale * q + bias in f32 as one fma (scale * q is exact for f16/bf16 scales, so this
//            equals the f32 dequantization; for f32 scales it is the fused value).
// ROUND = 1: MLX's model-dtype rule T(T(scale * q) + bias) for f16/bf16 scales (round to nearest
//            even after the product and after the sum), i.e. `mx.dequantize` bit for bit.
// Scales and biases come interleaved per group (`sb`, as for `qmatmul.wgsl`: one u32 per group
// for f16/bf16, scale in the low half and bias in the high half; two words for f32).
// One invocation per (token, vec4<u32> of packed weights).

override BITS: u32 = 4u;
override GROUP: u32 = 64u;
override SCALE_DT: u32 = 2u; // 0 = f32, 1 = f16, 2 = bf16
override ROUND: u32 = 0u;

struct Params {
    tokens: u32,
    k: u32,
    row0: u32,
    n: u32,
    grid_x: u32,    // items are linearised as wid.x * 64 + t + wid.y * grid_x * 64
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> sb: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>;

// (scale, bias) of group g.
fn sb_at(g: u32) -> vec2<f32> {
    if (SCALE_DT == 0u) {
        return vec2<f32>(bitcast<f32>(sb[2u * g]), bitcast<f32>(sb[2u * g + 1u]));
    }
    let v = sb[g];
    if (SCALE_DT == 2u) {
        return vec2<f32>(bitcast<f32>(v << 16u), bitcast<f32>(v & 0xffff0000u));
    }
    return unpack2x16float(v);
}

// Rounds to the scale dtype (nearest, ties to even) and back to f32.
fn to_dtype(v: vec4<f32>) -> vec4<f32> {
    if (SCALE_DT == 2u) {
        let u = bitcast<vec4<u32>>(v);
        let r = u + vec4<u32>(0x7fffu) + ((u >> vec4<u32>(16u)) & vec4<u32>(1u));
        return bitcast<vec4<f32>>(r & vec4<u32>(0xffff0000u));
    }
    if (SCALE_DT == 1u) {
        return vec4<f32>(unpack2x16float(pack2x16float(v.xy)), unpack2x16float(pack2x16float(v.zw)));
    }
    return v;
}

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let vpr = p.k * BITS / 128u;    // vec4<u32> per row
    let item = wid.x * 64u + t + wid.y * p.grid_x * 64u;
    if (item >= p.tokens * vpr) {
        return;
    }
    let tok = item / vpr;
    let v = item % vpr;
    let id = ids[tok];
    if (id < p.row0 || id - p.row0 >= p.n) {
        return;
    }
    let row = id - p.row0;
    let per = 128u / BITS;         // elements per vec4<u32>
    let g = row * (p.k / GROUP) + v * per / GROUP;
    let pair = sb_at(g);
    let s = vec4<f32>(pair.x);
    let b = vec4<f32>(pair.y);
    let wv = w[row * vpr + v];
    let q4n = 32u / BITS;
    let ob = (tok * p.k + v * per) / 4u;
    for (var j = 0u; j < q4n; j++) {
        let word = wv[j / (q4n / 4u)];
        let h = j % (q4n / 4u);
        let sh = vec4<u32>(0u, 1u, 2u, 3u) * BITS + vec4<u32>(4u * h * BITS);
        let q = ((vec4<u32>(word) >> sh) & vec4<u32>((1u << BITS) - 1u)) | vec4<u32>(0x4b000000u);
        let c = bitcast<vec4<f32>>(q) - vec4<f32>(8388608.0);
        var val: vec4<f32>;
        if (ROUND == 1u) {
            val = to_dtype(to_dtype(s * c) + b);
        } else {
            val = fma(s, c, b);
        }
        out[ob + j] = val;
    }
}
