// y = x W^T with W in MLX affine quantization (w = scale * q + bias per group of GROUP inputs),
// dequantised inside the kernel. x and y are f32 rows; W is packed little-endian (element i of a
// u32 word is bits [BITS*i, BITS*i + BITS)); scales and biases are f32, f16 or bf16, interleaved
// per group by the host (`sb`: one u32 per group for f16/bf16, scale in the low half and bias in
// the high half; two words, scale then bias, for f32), so one load fetches both. bf16 is decoded
// by a shift and a mask, f16 by unpack2x16float, so no shader-f16 is needed.
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
// Design (GEMV-first; M = 1 is the decode case). None of this reaches the arithmetic above:
//   * WG invocations = S = WG / LANES slots x LANES lanes; a slot owns R rows of W (rows
//     slot, slot + S, ..., of the workgroup's S * R), and each x unit it loads (32 f32 = 8 vec4,
//     from L1) and its sum sx serve all R. WG (64, 128 or 256), R (1..4) and XT (below) are
//     chosen by the host per shape (`qmm::qplan`): R = 1 gives small-N matrices 4x the threads
//     of R = 4; large N keeps R = 4 (fewest instructions per byte).
//   * slots are the fastest index inside a warp (t = ((slot_hi * LANES + lane) * SL + slot_lo),
//     SL = min(S, 8)): with the decode plans' 4 slots a warp holds 4 rows x 8 lanes, so one x
//     load instruction touches 8 cache lines instead of 32 (x reuse in a warp = SL * R), and a
//     W load 4 rows x 128 contiguous bytes (8 slots: 8 rows x 4 lanes, 4 lines, 64 bytes).
//   * a lane's units are loaded 3 at a time (every decode shape has exactly 3 units per lane):
//     3 * R vec4 W loads and 3 * R scale/bias loads are issued, as explicit variables, before
//     any arithmetic, so each thread waits for DRAM once instead of once per unit.
//   * codes are decoded without shifts per code: nibble i of a 16-bit half sits at bit 4i, so
//     (half & (0xF << 4i)) | bits(2^(23-4i)) is the float 2^(23-4i) + q exactly, and one sub
//     gives q (8-bit: byte i at bit 8i with 2^(23-8i)). Per code: 1 LOP3 + 1 FADD + 1 FFMA,
//     plus one shift per u32 word. A bf16 scale/bias pair decodes with one shift and one mask.
//   * lane partials go to workgroup memory lane-major (sm[lane * rows + row], conflict-free
//     writes) and the tree is evaluated in two barrier-separated phases: P = 2^floor(log2(LANES)/2)
//     nodes per row each fold their Q = LANES / P leaves (strides LANES/2 .. P of the tree) in
//     one thread, then one thread per row folds the P nodes (strides P/2 .. 1). Same tree, same
//     bits, 2 barriers instead of log2(LANES) + 1.
//   Rows of x (up to MT per workgroup, grid x) are processed XT at a time (1 or 2), the next
//   ones after; their repeated W loads hit L1. With XT = 2 each code is decoded once for both
//   rows of x (unit_dot2), which is what bounds calls of several rows (they are compute-bound);
//   each row's operations and their order are those of XT = 1. Matrices too small to fill the
//   GPU take MT = XT = 2: each workgroup one pass over W, the rows of x spread over more
//   workgroups instead of queued in one.

override BITS: u32 = 4u;      // 4 or 8
override GROUP: u32 = 64u;    // 32, 64 or 128
override SCALE_DT: u32 = 2u;  // 0 = f32, 1 = f16, 2 = bf16
override LANES: u32 = 16u;    // lanes per output element: power of two, 1..64
override WG: u32 = 128u;      // invocations per workgroup: 64, 128 or 256 (not in the contract)
override R: u32 = 4u;         // rows of W per invocation: 1..4 (not in the contract)
override XT: u32 = 1u;        // rows of x an invocation works on at once: 1 or 2 (not in the contract)

override MT: u32 = 8u;        // rows of x per workgroup: 8, or 2 (not in the contract; the
                              // host sizes grid x with the same value, `QPlan::mt`)

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
@group(0) @binding(3) var<storage, read> sb: array<u32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

// Lane partials of the workgroup's WG * R (row, lane) pairs, lane-major, folded in place.
var<workgroup> sm: array<f32, 1024>;

// The packed scale and bias of group g (f16/bf16: one word in .x; f32: two words).
fn sb_load(g: u32) -> vec2<u32> {
    if (SCALE_DT == 0u) {
        return vec2<u32>(sb[2u * g], sb[2u * g + 1u]);
    }
    return vec2<u32>(sb[g], 0u);
}

// (scale, bias) of a packed pair.
fn sb_pair(v: vec2<u32>) -> vec2<f32> {
    if (SCALE_DT == 0u) {
        return bitcast<vec2<f32>>(v);
    }
    if (SCALE_DT == 2u) {
        return vec2<f32>(bitcast<f32>(v.x << 16u), bitcast<f32>(v.x & 0xffff0000u));
    }
    return unpack2x16float(v.x);
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

// The x of one unit (8 vec4 at 4 bits; 4 at 8 bits, x4..x7 zero) and its sum sx.
struct XU {
    x0: vec4<f32>,
    x1: vec4<f32>,
    x2: vec4<f32>,
    x3: vec4<f32>,
    x4: vec4<f32>,
    x5: vec4<f32>,
    x6: vec4<f32>,
    x7: vec4<f32>,
    sx: f32,
}

fn x_unit(xb: u32) -> XU {
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
    return XU(x0, x1, x2, x3, x4, x5, x6, x7, (s4.x + s4.y) + (s4.z + s4.w));
}

// d of one unit for two rows of x (u, v) with the same codes: for each, a vec4 fma chain over
// the unit's codes in storage order, combined. Each code is decoded once for both.
fn unit_dot2(q: vec4<u32>, u: XU, v: XU) -> vec2<f32> {
    var du = vec4<f32>(0.0);
    var dv = vec4<f32>(0.0);
    if (BITS == 4u) {
        let a = codes_word(q.x);
        du = fma(u.x0, a.lo, du);
        dv = fma(v.x0, a.lo, dv);
        du = fma(u.x1, a.hi, du);
        dv = fma(v.x1, a.hi, dv);
        let b = codes_word(q.y);
        du = fma(u.x2, b.lo, du);
        dv = fma(v.x2, b.lo, dv);
        du = fma(u.x3, b.hi, du);
        dv = fma(v.x3, b.hi, dv);
        let c = codes_word(q.z);
        du = fma(u.x4, c.lo, du);
        dv = fma(v.x4, c.lo, dv);
        du = fma(u.x5, c.hi, du);
        dv = fma(v.x5, c.hi, dv);
        let d = codes_word(q.w);
        du = fma(u.x6, d.lo, du);
        dv = fma(v.x6, d.lo, dv);
        du = fma(u.x7, d.hi, du);
        dv = fma(v.x7, d.hi, dv);
    } else {
        let a = codes_word(q.x);
        let qa = vec4<f32>(a.lo.xy, a.hi.xy);
        du = fma(u.x0, qa, du);
        dv = fma(v.x0, qa, dv);
        let b = codes_word(q.y);
        let qb = vec4<f32>(b.lo.xy, b.hi.xy);
        du = fma(u.x1, qb, du);
        dv = fma(v.x1, qb, dv);
        let c = codes_word(q.z);
        let qc = vec4<f32>(c.lo.xy, c.hi.xy);
        du = fma(u.x2, qc, du);
        dv = fma(v.x2, qc, dv);
        let d = codes_word(q.w);
        let qd = vec4<f32>(d.lo.xy, d.hi.xy);
        du = fma(u.x3, qd, du);
        dv = fma(v.x3, qd, dv);
    }
    return vec2<f32>((du.x + du.y) + (du.z + du.w), (dv.x + dv.y) + (dv.z + dv.w));
}

// One unit of one row of W into the lane accumulators of two rows of x (u into .x, v into .y):
// acc = fma(s, d, fma(b, sx, acc)). With XT = 1, v is u and .y is never read.
fn row_step2(acc: vec2<f32>, q: vec4<u32>, pair: vec2<u32>, u: XU, v: XU) -> vec2<f32> {
    let d = unit_dot2(q, u, v);
    let sbv = sb_pair(pair);
    return vec2<f32>(
        fma(sbv.x, d.x, fma(sbv.y, u.sx, acc.x)),
        fma(sbv.x, d.y, fma(sbv.y, v.sx, acc.y)),
    );
}

// The pairwise tree (strides n/2, ..., 1) over sm[b], sm[b + s], ..., sm[b + (n - 1) s];
// n is 1, 2, 4 or 8.
fn fold_sm(b: u32, s: u32, n: u32) -> f32 {
    if (n == 8u) {
        return ((sm[b] + sm[b + 4u * s]) + (sm[b + 2u * s] + sm[b + 6u * s]))
            + ((sm[b + s] + sm[b + 5u * s]) + (sm[b + 3u * s] + sm[b + 7u * s]));
    }
    if (n == 4u) {
        return (sm[b] + sm[b + 2u * s]) + (sm[b + s] + sm[b + 3u * s]);
    }
    if (n == 2u) {
        return sm[b] + sm[b + s];
    }
    return sm[b];
}

fn store_y(xr: u32, row: u32, v: f32) {
    if (row < p.n) {
        y[xr * p.y_stride + p.y_col0 + row] = v;
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let block = wid.y + wid.z * p.grid_y;
    if (block >= p.n_blocks) {
        return; // uniform for the whole workgroup
    }
    let S = WG / LANES;               // slots
    let sl = min(S, 8u);              // slots per warp-level group
    let slot = (t / (sl * LANES)) * sl + t % sl;
    let lane = (t / sl) % LANES;
    let rpw = S * R;                  // rows of W per workgroup
    let rb = block * rpw;
    let last = p.n - 1u;
    // Rows past the end re-read the last row (valid memory); their results are not written.
    let r0 = min(rb + slot, last);
    let r1 = min(rb + slot + S, last);
    let r2 = min(rb + slot + 2u * S, last);
    let r3 = min(rb + slot + 3u * S, last);
    let m0 = wid.x * MT;
    let mrows = min(MT, p.m - m0);
    let k4 = p.k / 4u;
    let units = p.k * BITS / 128u;    // vec4<u32> per row of W
    let groups = p.k / GROUP;
    let upg = GROUP * BITS / 128u;    // units per group
    let xpu = 32u / BITS;             // vec4<f32> of x per unit
    let nu = (units - lane + LANES - 1u) / LANES; // units of this lane (lane < units)
    let w0 = r0 * units;
    let w1 = r1 * units;
    let w2 = r2 * units;
    let w3 = r3 * units;
    let g0 = r0 * groups;
    let g1 = r1 * groups;
    let g2 = r2 * groups;
    let g3 = r3 * groups;
    // Fold shape: P nodes per row of Q leaves each.
    let P = select(select(select(1u, 2u, LANES >= 4u), 4u, LANES >= 16u), 8u, LANES >= 64u);
    let Q = LANES / P;

    for (var i = 0u; i < mrows; i += XT) {
        // This pass's rows of x: i, and i + 1 with XT = 2 while there is one.
        let nx = select(1u, 2u, XT == 2u && i + 1u < mrows);
        let xrow = (m0 + i) * k4;
        let xrow2 = xrow + (nx - 1u) * k4;
        var a0 = vec2<f32>(0.0);
        var a1 = vec2<f32>(0.0);
        var a2 = vec2<f32>(0.0);
        var a3 = vec2<f32>(0.0);
        for (var j = 0u; j < nu; j += 3u) {
            // Units a, b, c of this lane (b, c re-read a where the lane has no more).
            let ua = lane + j * LANES;
            let hb = j + 1u < nu;
            let hc = j + 2u < nu;
            let ub = select(ua, ua + LANES, hb);
            let uc = select(ua, ua + 2u * LANES, hc);
            let ga = ua / upg;
            let gb = ub / upg;
            let gc = uc / upg;
            // Every W, scale and bias load of the batch first, then the arithmetic.
            let qa0 = w[w0 + ua];
            let qb0 = w[w0 + ub];
            let qc0 = w[w0 + uc];
            let pa0 = sb_load(g0 + ga);
            let pb0 = sb_load(g0 + gb);
            let pc0 = sb_load(g0 + gc);
            var qa1 = vec4<u32>(0u);
            var qb1 = vec4<u32>(0u);
            var qc1 = vec4<u32>(0u);
            var pa1 = vec2<u32>(0u);
            var pb1 = vec2<u32>(0u);
            var pc1 = vec2<u32>(0u);
            if (R > 1u) {
                qa1 = w[w1 + ua];
                qb1 = w[w1 + ub];
                qc1 = w[w1 + uc];
                pa1 = sb_load(g1 + ga);
                pb1 = sb_load(g1 + gb);
                pc1 = sb_load(g1 + gc);
            }
            var qa2 = vec4<u32>(0u);
            var qb2 = vec4<u32>(0u);
            var qc2 = vec4<u32>(0u);
            var pa2 = vec2<u32>(0u);
            var pb2 = vec2<u32>(0u);
            var pc2 = vec2<u32>(0u);
            if (R > 2u) {
                qa2 = w[w2 + ua];
                qb2 = w[w2 + ub];
                qc2 = w[w2 + uc];
                pa2 = sb_load(g2 + ga);
                pb2 = sb_load(g2 + gb);
                pc2 = sb_load(g2 + gc);
            }
            var qa3 = vec4<u32>(0u);
            var qb3 = vec4<u32>(0u);
            var qc3 = vec4<u32>(0u);
            var pa3 = vec2<u32>(0u);
            var pb3 = vec2<u32>(0u);
            var pc3 = vec2<u32>(0u);
            if (R > 3u) {
                qa3 = w[w3 + ua];
                qb3 = w[w3 + ub];
                qc3 = w[w3 + uc];
                pa3 = sb_load(g3 + ga);
                pb3 = sb_load(g3 + gb);
                pc3 = sb_load(g3 + gc);
            }
            // Unit a, then b, then c: each lane's units in order.
            let xa = x_unit(xrow + ua * xpu);
            var xa2 = xa;
            if (XT == 2u) {
                xa2 = x_unit(xrow2 + ua * xpu);
            }
            a0 = row_step2(a0, qa0, pa0, xa, xa2);
            if (R > 1u) {
                a1 = row_step2(a1, qa1, pa1, xa, xa2);
            }
            if (R > 2u) {
                a2 = row_step2(a2, qa2, pa2, xa, xa2);
            }
            if (R > 3u) {
                a3 = row_step2(a3, qa3, pa3, xa, xa2);
            }
            if (hb) {
                let xb = x_unit(xrow + ub * xpu);
                var xb2 = xb;
                if (XT == 2u) {
                    xb2 = x_unit(xrow2 + ub * xpu);
                }
                a0 = row_step2(a0, qb0, pb0, xb, xb2);
                if (R > 1u) {
                    a1 = row_step2(a1, qb1, pb1, xb, xb2);
                }
                if (R > 2u) {
                    a2 = row_step2(a2, qb2, pb2, xb, xb2);
                }
                if (R > 3u) {
                    a3 = row_step2(a3, qb3, pb3, xb, xb2);
                }
            }
            if (hc) {
                let xc = x_unit(xrow + uc * xpu);
                var xc2 = xc;
                if (XT == 2u) {
                    xc2 = x_unit(xrow2 + uc * xpu);
                }
                a0 = row_step2(a0, qc0, pc0, xc, xc2);
                if (R > 1u) {
                    a1 = row_step2(a1, qc1, pc1, xc, xc2);
                }
                if (R > 2u) {
                    a2 = row_step2(a2, qc2, pc2, xc, xc2);
                }
                if (R > 3u) {
                    a3 = row_step2(a3, qc3, pc3, xc, xc2);
                }
            }
        }
        for (var h = 0u; h < nx; h++) {
            let xr = m0 + i + h;
            let hi = h == 1u;
            let v0 = select(a0.x, a0.y, hi);
            let v1 = select(a1.x, a1.y, hi);
            let v2 = select(a2.x, a2.y, hi);
            let v3 = select(a3.x, a3.y, hi);
            if (LANES == 1u) {
                store_y(xr, rb + slot, v0);
                if (R > 1u) {
                    store_y(xr, rb + slot + S, v1);
                }
                if (R > 2u) {
                    store_y(xr, rb + slot + 2u * S, v2);
                }
                if (R > 3u) {
                    store_y(xr, rb + slot + 3u * S, v3);
                }
                continue;
            }
            if (h > 0u) {
                workgroupBarrier(); // the first row's fold has read sm
            }
            // Partials at lane * rpw + (row in workgroup).
            let e = lane * rpw + slot;
            sm[e] = v0;
            if (R > 1u) {
                sm[e + S] = v1;
            }
            if (R > 2u) {
                sm[e + 2u * S] = v2;
            }
            if (R > 3u) {
                sm[e + 3u * S] = v3;
            }
            workgroupBarrier();
            // Phase 1: node f = nd * rpw + row (nd < P) folds lanes nd, nd + P, ... (strides
            // LANES/2 .. P of the tree) in place; with P = 1 that is the whole tree.
            let pr = P * rpw;
            for (var f = t; f < pr; f += WG) {
                let v = fold_sm(f, pr, Q);
                if (P == 1u) {
                    store_y(xr, rb + f, v);
                } else {
                    sm[f] = v;
                }
            }
            if (P > 1u) {
                workgroupBarrier();
                // Phase 2: the P nodes of each row (strides P/2 .. 1).
                for (var r = t; r < rpw; r += WG) {
                    store_y(xr, rb + r, fold_sm(r, rpw, P));
                }
            }
        }
        if (LANES > 1u && i + XT < mrows) {
            workgroupBarrier(); // the next rows of x reuse sm
        }
    }
}
