// y = x W^T with W in MLX affine quantization (w = scale * q + bias per group of GROUP inputs),
// dequantised inside the kernel. x and y are f32 rows; W is packed little-endian (element i of a
// u32 word is bits [BITS*i, BITS*i + BITS)); scales and biases are f32, f16 or bf16 (read as u32
// words; bf16 decoded by a shift, f16 by unpack2x16float, so no shader-f16 is needed).
//
// Numerical contract (the same for every M, every tile, every row split of W):
//   a row of W is cut into units of one vec4<u32> (128 bits: 32 codes at 4 bits, 16 at 8 bits;
//   a unit never straddles a group). Lane l of an output element (LANES lanes, a function of K
//   only, see `lanes_quant`) takes units u = l, l + LANES, l + 2 LANES, ... in that order. For
//   unit u (group g = the unit's group, scale s, bias b):
//     dq  = vec4 accumulator over the unit's codes in storage order, from 0: dq = fma(x4, q4, dq)
//     d   = (dq.x + dq.y) + (dq.z + dq.w)
//     s4  = x4_0 + x4_1 + ... (vec4 adds in element order, from 0);  sx = (s4.x+s4.y)+(s4.z+s4.w)
//     acc = fma(b, sx, acc);  acc = fma(s, d, acc)
//   The LANES partials are then folded by a fixed pairwise tree (stride LANES/2, ..., 1).
// Every operation is an explicit fma or an add of two non-products, so no contraction choice
// is left to the compiler.
//
// Design (GEMV-first; M = 1 is the decode case):
//   * 128 invocations = (128 / LANES) slots x LANES lanes; a slot owns R = 4 consecutive rows of
//     W, so each x unit (32 f32 = 8 vec4 loads, from L1) and its sum sx serve 4 rows: x traffic
//     is 2 bytes of L1 per byte of W (was 8), and sx costs 1/4 add per code per row.
//   * per unit a thread issues 4 independent 16-byte W loads (one per row; the LANES lanes of a
//     row read consecutive vec4s, so a warp reads 256-512 contiguous bytes per row), 8 scale/bias
//     words and the x vec4s before any arithmetic; all loads are explicit variables (no arrays).
//   * codes are decoded without shifts per code: nibble i of a 16-bit half sits at bit 4i, so
//     (half & (0xF << 4i)) | bits(2^(23-4i)) is the float 2^(23-4i) + q exactly, and one sub
//     gives q (8-bit: byte i at bit 8i with 2^(23-8i)). Per code: 1 LOP3 + 1 FADD + 1 FFMA,
//     plus one shift per u32 word: ~3.1 instructions per code, ~6 per byte of W.
//   * the lane partials go to 2 KiB of workgroup memory and are folded by the tree
//     (log2 LANES barriers). Rows of x (up to MT per workgroup, grid x) are processed one after
//     another; their repeated W loads hit L1.
//   Workgroups at M = 1: N * LANES / 512 (6144x1536: 192; 1536x6144: 192; 262144x1536: 8192).

override BITS: u32 = 4u;      // 4 or 8
override GROUP: u32 = 64u;    // 32, 64 or 128
override SCALE_DT: u32 = 2u;  // 0 = f32, 1 = f16, 2 = bf16
override LANES: u32 = 16u;    // lanes per output element: power of two, 1..64

const WG: u32 = 128u;
const R: u32 = 4u;            // rows of W per invocation
const MT: u32 = 8u;           // rows of x per workgroup

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

// Lane partials of the workgroup's WG * R (row, lane) pairs, folded in place.
var<workgroup> sm: array<f32, 512>;

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

// The codes of the low 16 bits of `h` (4 at 4 bits; 2 at 8 bits, in .xy) as exact floats.
fn codes_half(h: u32) -> vec4<f32> {
    if (BITS == 4u) {
        let m = vec4<u32>(0xfu, 0xf0u, 0xf00u, 0xf000u);
        let e = vec4<u32>(0x4b000000u, 0x49000000u, 0x47000000u, 0x45000000u);
        return bitcast<vec4<f32>>((vec4<u32>(h) & m) | e)
            - vec4<f32>(8388608.0, 524288.0, 32768.0, 2048.0);
    }
    let m = vec2<u32>(0xffu, 0xff00u);
    let e = vec2<u32>(0x4b000000u, 0x47000000u);
    let v = bitcast<vec2<f32>>((vec2<u32>(h) & m) | e) - vec2<f32>(8388608.0, 32768.0);
    return vec4<f32>(v, 0.0, 0.0);
}

// Codes of word `a` (8 at 4 bits: .lo = 0..3, .hi = 4..7).
struct Q8 {
    lo: vec4<f32>,
    hi: vec4<f32>,
}

fn codes_word(a: u32) -> Q8 {
    return Q8(codes_half(a), codes_half(a >> 16u));
}

// d of one unit: vec4 fma chain over the unit's codes in storage order, combined.
fn unit_dot(q: vec4<u32>, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>,
            x4: vec4<f32>, x5: vec4<f32>, x6: vec4<f32>, x7: vec4<f32>) -> f32 {
    var dq = vec4<f32>(0.0);
    if (BITS == 4u) {
        let a = codes_word(q.x);
        dq = fma(x0, a.lo, dq);
        dq = fma(x1, a.hi, dq);
        let b = codes_word(q.y);
        dq = fma(x2, b.lo, dq);
        dq = fma(x3, b.hi, dq);
        let c = codes_word(q.z);
        dq = fma(x4, c.lo, dq);
        dq = fma(x5, c.hi, dq);
        let d = codes_word(q.w);
        dq = fma(x6, d.lo, dq);
        dq = fma(x7, d.hi, dq);
    } else {
        let a = codes_word(q.x);
        dq = fma(x0, vec4<f32>(a.lo.xy, a.hi.xy), dq);
        let b = codes_word(q.y);
        dq = fma(x1, vec4<f32>(b.lo.xy, b.hi.xy), dq);
        let c = codes_word(q.z);
        dq = fma(x2, vec4<f32>(c.lo.xy, c.hi.xy), dq);
        let d = codes_word(q.w);
        dq = fma(x3, vec4<f32>(d.lo.xy, d.hi.xy), dq);
    }
    return (dq.x + dq.y) + (dq.z + dq.w);
}

@compute @workgroup_size(128)
fn main(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let block = wid.y + wid.z * p.grid_y;
    if (block >= p.n_blocks) {
        return; // uniform for the whole workgroup
    }
    let slots = WG / LANES;
    let rpw = slots * R;              // rows of W per workgroup
    let lane = t % LANES;
    let slot = t / LANES;
    let row0 = block * rpw + slot * R;
    let last = p.n - 1u;
    // Rows past the end re-read the last row (valid memory); their results are not written.
    let r0 = min(row0, last);
    let r1 = min(row0 + 1u, last);
    let r2 = min(row0 + 2u, last);
    let r3 = min(row0 + 3u, last);
    let m0 = wid.x * MT;
    let mrows = min(MT, p.m - m0);
    let k4 = p.k / 4u;
    let units = p.k * BITS / 128u;    // vec4<u32> per row of W
    let groups = p.k / GROUP;
    let upg = GROUP * BITS / 128u;    // units per group
    let xpu = 32u / BITS;             // vec4<f32> of x per unit

    for (var i = 0u; i < mrows; i++) {
        let xrow = (m0 + i) * k4;
        var a0 = 0.0;
        var a1 = 0.0;
        var a2 = 0.0;
        var a3 = 0.0;
        for (var u = lane; u < units; u += LANES) {
            // Every load of the unit first, then the arithmetic.
            let q0 = w[r0 * units + u];
            let q1 = w[r1 * units + u];
            let q2 = w[r2 * units + u];
            let q3 = w[r3 * units + u];
            let g = u / upg;
            let s0 = scale_at(r0 * groups + g);
            let s1 = scale_at(r1 * groups + g);
            let s2 = scale_at(r2 * groups + g);
            let s3 = scale_at(r3 * groups + g);
            let b0 = bias_at(r0 * groups + g);
            let b1 = bias_at(r1 * groups + g);
            let b2 = bias_at(r2 * groups + g);
            let b3 = bias_at(r3 * groups + g);
            let xb = xrow + u * xpu;
            let x0 = x[xb];
            let x1 = x[xb + 1u];
            let x2 = x[xb + 2u];
            let x3 = x[xb + 3u];
            var x4 = vec4<f32>(0.0);
            var x5 = vec4<f32>(0.0);
            var x6 = vec4<f32>(0.0);
            var x7 = vec4<f32>(0.0);
            var s4 = x0 + x1;
            s4 = s4 + x2;
            s4 = s4 + x3;
            if (BITS == 4u) {
                x4 = x[xb + 4u];
                x5 = x[xb + 5u];
                x6 = x[xb + 6u];
                x7 = x[xb + 7u];
                s4 = s4 + x4;
                s4 = s4 + x5;
                s4 = s4 + x6;
                s4 = s4 + x7;
            }
            let sx = (s4.x + s4.y) + (s4.z + s4.w);
            let d0 = unit_dot(q0, x0, x1, x2, x3, x4, x5, x6, x7);
            let d1 = unit_dot(q1, x0, x1, x2, x3, x4, x5, x6, x7);
            let d2 = unit_dot(q2, x0, x1, x2, x3, x4, x5, x6, x7);
            let d3 = unit_dot(q3, x0, x1, x2, x3, x4, x5, x6, x7);
            a0 = fma(s0, d0, fma(b0, sx, a0));
            a1 = fma(s1, d1, fma(b1, sx, a1));
            a2 = fma(s2, d2, fma(b2, sx, a2));
            a3 = fma(s3, d3, fma(b3, sx, a3));
        }
        // Partials at (row in workgroup) * LANES + lane.
        let e = slot * R * LANES + lane;
        sm[e] = a0;
        sm[e + LANES] = a1;
        sm[e + 2u * LANES] = a2;
        sm[e + 3u * LANES] = a3;
        workgroupBarrier();
        for (var st = LANES / 2u; st > 0u; st = st / 2u) {
            for (var j = 0u; j < R; j++) {
                let f = j * WG + t;
                if (f % LANES < st) {
                    sm[f] = sm[f] + sm[f + st];
                }
            }
            workgroupBarrier();
        }
        for (var j = 0u; j < R; j++) {
            let rr = j * WG + t;      // row within the workgroup (rpw <= R * WG)
            let row = block * rpw + rr;
            if (rr < rpw && row < p.n) {
                y[(m0 + i) * p.y_stride + p.y_col0 + row] = sm[rr * LANES];
            }
        }
        workgroupBarrier(); // the next row of x reuses sm
    }
}
