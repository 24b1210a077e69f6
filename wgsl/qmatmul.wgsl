// y = x W^T with W in MLX affine quantization (w = scale * q + bias per group of GROUP inputs),
// dequantised inside the kernel. x and y are f32 rows; W is packed little-endian (element i of a
// u32 word is bits [BITS*i, BITS*i + BITS)); scales and biases are f32, f16 or bf16 (read as u32
// words; bf16 decoded by a shift, f16 by unpack2x16float, so no shader-f16 is needed).
//
// Numerical contract (the same for every M, every tile, every row split of W):
//   lane l of an output element (LANES lanes per element, LANES a function of K only) takes the
//   groups g = l, l + LANES, l + 2 LANES, ... in that order. For group g:
//     dq  = vec4 accumulator over the group's elements in storage order: dq = fma(x4, q4, dq)
//     d   = (dq.x + dq.y) + (dq.z + dq.w)
//     sx  = sum of x over the group (vec4 accumulator in element order, combined the same way)
//     acc = fma(bias, sx, acc);  acc = fma(scale, d, acc)
//   The LANES partials are then folded by a fixed pairwise tree (stride LANES/2, ..., 1).
// Every operation is an explicit fma or an add of two non-products, so no contraction choice
// is left to the compiler. Rows of x (up to MT per workgroup) share each weight load, but each
// row's arithmetic is exactly the above, whatever M is.

override BITS: u32 = 4u;      // 4 or 8
override GROUP: u32 = 64u;    // 32, 64 or 128
override SCALE_DT: u32 = 2u;  // 0 = f32, 1 = f16, 2 = bf16
override LANES: u32 = 16u;    // lanes per output element: power of two, 1..64

const WG: u32 = 256u;
const MT: u32 = 8u;           // rows of x per workgroup
const SMEM: u32 = 4096u;      // f32 words of workgroup memory (16 KiB, WebGPU's default limit)

struct Params {
    m: u32,         // rows of x
    n: u32,         // rows of W in this binding (output columns written by this dispatch)
    k: u32,         // inputs
    y_stride: u32,  // row stride of y (the full N)
    y_col0: u32,    // first output column of this binding
    n_blocks: u32,  // workgroups along N
    grid_y: u32,    // N blocks are linearised as wid.y + wid.z * grid_y
    pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> scales: array<u32>;
@group(0) @binding(4) var<storage, read> biases: array<u32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

// Group sums of x while the lanes run, then the lane partials for the tree (aliased).
var<workgroup> sm: array<f32, SMEM>;

fn half_of(word: u32, odd: bool) -> f32 {
    if (SCALE_DT == 2u) {
        return bitcast<f32>(select(word << 16u, word & 0xffff0000u, odd));
    }
    let v = unpack2x16float(word);
    return select(v.x, v.y, odd);
}

fn scale_at(i: u32) -> f32 {
    if (SCALE_DT == 0u) {
        return bitcast<f32>(scales[i]);
    }
    return half_of(scales[i >> 1u], (i & 1u) == 1u);
}

fn bias_at(i: u32) -> f32 {
    if (SCALE_DT == 0u) {
        return bitcast<f32>(biases[i]);
    }
    return half_of(biases[i >> 1u], (i & 1u) == 1u);
}

// Codes 4h .. 4h+3 of `word` as exact floats: the code is or-ed into the mantissa of 2^23 and
// 2^23 subtracted again (no integer-to-float conversion).
fn codes4(word: u32, h: u32) -> vec4<f32> {
    let sh = vec4<u32>(0u, 1u, 2u, 3u) * BITS + vec4<u32>(4u * h * BITS);
    let mask = vec4<u32>((1u << BITS) - 1u);
    let q = ((vec4<u32>(word) >> sh) & mask) | vec4<u32>(0x4b000000u);
    return bitcast<vec4<f32>>(q) - vec4<f32>(8388608.0);
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let block = wid.y + wid.z * p.grid_y;
    if (block >= p.n_blocks) {
        return; // uniform for the whole workgroup
    }
    let rw = WG / LANES;          // output rows per workgroup
    let lane = t % LANES;
    let r = t / LANES;
    let row = block * rw + r;
    let live = row < p.n;
    let m0 = wid.x * MT;
    let mrows = min(MT, p.m - m0);
    let k4 = p.k / 4u;
    let groups = p.k / GROUP;
    let g4 = GROUP / 4u;          // vec4 of x per group
    let vpg = GROUP * BITS / 128u; // vec4<u32> of W per group
    let q4n = 32u / BITS;          // vec4<f32> of codes per vec4<u32>

    // 1. Group sums of x for this tile's rows.
    for (var idx = t; idx < mrows * groups; idx += WG) {
        let i = idx / groups;
        let base = (m0 + i) * k4 + (idx % groups) * g4;
        var s4 = vec4<f32>(0.0);
        for (var j = 0u; j < g4; j++) {
            s4 = s4 + x[base + j];
        }
        sm[idx] = (s4.x + s4.y) + (s4.z + s4.w);
    }
    workgroupBarrier();

    // 2. Each lane reduces its groups.
    var acc: array<f32, MT>;
    for (var i = 0u; i < MT; i++) {
        acc[i] = 0.0;
    }
    if (live) {
        let wrow = row * groups * vpg;
        let srow = row * groups;
        for (var g = lane; g < groups; g += LANES) {
            let s = scale_at(srow + g);
            let b = bias_at(srow + g);
            var dq: array<vec4<f32>, MT>;
            for (var i = 0u; i < MT; i++) {
                dq[i] = vec4<f32>(0.0);
            }
            for (var v = 0u; v < vpg; v++) {
                let wv = w[wrow + g * vpg + v];
                var q: array<vec4<f32>, 8>;
                for (var j = 0u; j < q4n; j++) {
                    q[j] = codes4(wv[j / (q4n / 4u)], j % (q4n / 4u));
                }
                let xo = g * g4 + v * q4n;
                for (var i = 0u; i < MT; i++) {
                    if (i < mrows) {
                        let xb = (m0 + i) * k4 + xo;
                        var d = dq[i];
                        for (var j = 0u; j < q4n; j++) {
                            d = fma(x[xb + j], q[j], d);
                        }
                        dq[i] = d;
                    }
                }
            }
            for (var i = 0u; i < MT; i++) {
                if (i < mrows) {
                    let d = (dq[i].x + dq[i].y) + (dq[i].z + dq[i].w);
                    acc[i] = fma(b, sm[i * groups + g], acc[i]);
                    acc[i] = fma(s, d, acc[i]);
                }
            }
        }
    }
    workgroupBarrier(); // everyone is done with the group sums

    // 3. Fixed pairwise tree over the lanes of each output element.
    for (var i = 0u; i < MT; i++) {
        sm[(i * rw + r) * LANES + lane] = acc[i];
    }
    workgroupBarrier();
    for (var st = LANES / 2u; st > 0u; st = st / 2u) {
        if (lane < st) {
            for (var i = 0u; i < MT; i++) {
                let a = (i * rw + r) * LANES + lane;
                sm[a] = sm[a] + sm[a + st];
            }
        }
        workgroupBarrier();
    }
    if (lane == 0u && live) {
        for (var i = 0u; i < mrows; i++) {
            y[(m0 + i) * p.y_stride + p.y_col0 + row] = sm[(i * rw + r) * LANES];
        }
    }
}
