// y = x W^T with W unquantized (f32, f16 or bf16): the tiled kernel for calls of many rows of x
// (prefill, many sequences). Bindings, layouts and the numerical contract are those of
// matmul_dense_gemv.wgsl, which states the contract; this kernel reaches the same bits for every
// output element by another route. In short, for output (m, n):
//   lane l (of LANES) takes units (8 inputs) u = l, l + LANES, ... in order into a vec4
//     a = fma(x[0..4], w[0..4], a);  a = fma(x[4..8], w[4..8], a)
//   its partial is (a.x + a.y) + (a.z + a.w), and the LANES partials are folded by the
//   pairwise tree with strides LANES/2, ..., 1.
// Component j of `a` is a scalar fma chain over the inputs k = 4i + j of the lane's units, in
// the lane's order; this kernel runs those four chains as four accumulators (`C4`).
//
// Design (that of qmatmul_tiled.wgsl, which explains it at length; none of it reaches the
// arithmetic above):
//   * a workgroup computes a BM x BN tile of y; each of its WG invocations owns a 4 x 4 block
//     (4 rows of x by 4 rows of W), kept as vec4 over the 4 rows of W (`T4`), four of them, one
//     per chain.
//   * one invocation runs an output's whole K, visiting the lanes in bit-reversed order (the
//     fold tree's post-order) and combining finished subtrees with a stack of one partial per
//     level, so the tree's additions, operands and order are the GEMV kernels'.
//   * every step stages up to CU of the current lane's units (8 CU inputs) of the tile in
//     workgroup memory, x as [k][m] and W decoded to f32 as [k][n]; the inner loop is 2 vec4
//     loads from workgroup memory per 16 fma. The next step's loads are issued before this
//     step's arithmetic.
//   * a call with few tiles splits each output's fold tree over SPLITS workgroups (p.splits):
//     split s visits one whole subtree and writes it to plane s of `out`; qmatmul_combine.wgsl
//     adds the planes with the tree's top levels. With one split, plane 0 of `out` is y.
//   Rows of x past M and rows of W past N re-read the last row (valid memory); their results
//   are not written.
// The block helpers (T4), the leaf order and the output loop repeat qmatmul_tiled.wgsl's on
// purpose: WGSL has no include, and both kernels are tested bit for bit against their GEMV.

override DT: u32 = 2u;        // 0 = f32, 1 = f16, 2 = bf16
override LANES: u32 = 16u;    // lanes per output element: power of two, 1..32

const BM: u32 = 32u;          // rows of x per workgroup
const BN: u32 = 64u;          // rows of W per workgroup
const WG: u32 = 128u;         // invocations: BM / 4 x BN / 4
const CU: u32 = 4u;           // units staged per step

struct Params {
    m: u32,         // rows of x
    n: u32,         // rows of W in this binding
    k: u32,         // inputs (a multiple of 8)
    y_stride: u32,  // row stride of y (the full N)
    y_col0: u32,    // first output column of this binding
    n_blocks: u32,  // workgroups along N
    grid_y: u32,    // N blocks are linearised as wid.y + wid.z * grid_y
    splits: u32,    // workgroups per output's fold tree (grid x = tiles of x * splits)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

// One step of the tile: x as [k][m] (k * BM / 4 + m / 4), W as [k][n] (k * BN / 4 + n / 4).
var<workgroup> xs: array<vec4<f32>, 256>;
var<workgroup> ws: array<vec4<f32>, 512>;

fn pair(u: u32) -> vec2<f32> {
    if (DT == 2u) {
        return vec2<f32>(bitcast<f32>(u << 16u), bitcast<f32>(u & 0xffff0000u));
    }
    return unpack2x16float(u);
}

// A 4 x 4 block of the tile: rows of x r0..r3, each a vec4 over 4 rows of W.
struct T4 {
    r0: vec4<f32>,
    r1: vec4<f32>,
    r2: vec4<f32>,
    r3: vec4<f32>,
}

fn t4_zero() -> T4 {
    return T4(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
}

// One step of an fma chain for each output: a = fma(x of its row, w of its row of W, a).
fn t4_fma(a: T4, xv: vec4<f32>, wv: vec4<f32>) -> T4 {
    return T4(
        fma(vec4<f32>(xv.x), wv, a.r0),
        fma(vec4<f32>(xv.y), wv, a.r1),
        fma(vec4<f32>(xv.z), wv, a.r2),
        fma(vec4<f32>(xv.w), wv, a.r3),
    );
}

fn t4_add(a: T4, b: T4) -> T4 {
    return T4(a.r0 + b.r0, a.r1 + b.r1, a.r2 + b.r2, a.r3 + b.r3);
}

// The four chains of a lane's accumulator (components x, y, z, w of `a` in the contract).
struct C4 {
    c0: T4,
    c1: T4,
    c2: T4,
    c3: T4,
}

fn c4_zero() -> C4 {
    return C4(t4_zero(), t4_zero(), t4_zero(), t4_zero());
}

// The lane's partial: (a.x + a.y) + (a.z + a.w).
fn c4_fold(a: C4) -> T4 {
    return t4_add(t4_add(a.c0, a.c1), t4_add(a.c2, a.c3));
}

// What an invocation fetches for one step, before it stages it: invocations 0..BN-1 one row of
// W each (a word-quad per unit for f16/bf16, two for f32), the last BM one row of x each (two
// vec4 per unit, as bits). Unit j of the step is in a(2j), a(2j+1), or a(j) for f16/bf16 W.
struct Fetch {
    a0: vec4<u32>,
    a1: vec4<u32>,
    a2: vec4<u32>,
    a3: vec4<u32>,
    a4: vec4<u32>,
    a5: vec4<u32>,
    a6: vec4<u32>,
    a7: vec4<u32>,
}

// The `c` (1..CU) units u, u + LANES, ... of this invocation's row.
fn fetch(t: u32, u: u32, c: u32, m0: u32, rb: u32) -> Fetch {
    let z = vec4<u32>(0u);
    var f = Fetch(z, z, z, z, z, z, z, z);
    let u1 = u + LANES;
    let u2 = u + 2u * LANES;
    let u3 = u + 3u * LANES;
    if (t < BN) {
        let r = min(rb + t, p.n - 1u);
        if (DT == 0u) {
            let b = r * (p.k / 4u);
            f.a0 = w[b + 2u * u];
            f.a1 = w[b + 2u * u + 1u];
            if (c > 1u) {
                f.a2 = w[b + 2u * u1];
                f.a3 = w[b + 2u * u1 + 1u];
            }
            if (c > 2u) {
                f.a4 = w[b + 2u * u2];
                f.a5 = w[b + 2u * u2 + 1u];
            }
            if (c > 3u) {
                f.a6 = w[b + 2u * u3];
                f.a7 = w[b + 2u * u3 + 1u];
            }
        } else {
            let b = r * (p.k / 8u);
            f.a0 = w[b + u];
            if (c > 1u) {
                f.a1 = w[b + u1];
            }
            if (c > 2u) {
                f.a2 = w[b + u2];
            }
            if (c > 3u) {
                f.a3 = w[b + u3];
            }
        }
    }
    if (t >= WG - BM) {
        let b = min(m0 + t - (WG - BM), p.m - 1u) * (p.k / 4u);
        f.a0 = bitcast<vec4<u32>>(x[b + 2u * u]);
        f.a1 = bitcast<vec4<u32>>(x[b + 2u * u + 1u]);
        if (c > 1u) {
            f.a2 = bitcast<vec4<u32>>(x[b + 2u * u1]);
            f.a3 = bitcast<vec4<u32>>(x[b + 2u * u1 + 1u]);
        }
        if (c > 2u) {
            f.a4 = bitcast<vec4<u32>>(x[b + 2u * u2]);
            f.a5 = bitcast<vec4<u32>>(x[b + 2u * u2 + 1u]);
        }
        if (c > 3u) {
            f.a6 = bitcast<vec4<u32>>(x[b + 2u * u3]);
            f.a7 = bitcast<vec4<u32>>(x[b + 2u * u3 + 1u]);
        }
    }
    return f;
}

// Eight weights (inputs k .. k + 7) of row n into column n of ws.
fn stage_w(n: u32, k: u32, lo: vec4<f32>, hi: vec4<f32>) {
    let i = n / 4u;
    let j = n % 4u;
    for (var e = 0u; e < 4u; e++) {
        ws[(k + e) * (BN / 4u) + i][j] = lo[e];
        ws[(k + 4u + e) * (BN / 4u) + i][j] = hi[e];
    }
}

// A word-quad of f16/bf16 weights as two vec4 (8 weights in order).
fn stage_w_half(n: u32, k: u32, a: vec4<u32>) {
    stage_w(n, k, vec4<f32>(pair(a.x), pair(a.y)), vec4<f32>(pair(a.z), pair(a.w)));
}

// Eight inputs (k .. k + 7) of row m of x into column m of xs.
fn stage_x(m: u32, k: u32, lo: vec4<u32>, hi: vec4<u32>) {
    let i = m / 4u;
    let j = m % 4u;
    let l = bitcast<vec4<f32>>(lo);
    let h = bitcast<vec4<f32>>(hi);
    for (var e = 0u; e < 4u; e++) {
        xs[(k + e) * (BM / 4u) + i][j] = l[e];
        xs[(k + 4u + e) * (BM / 4u) + i][j] = h[e];
    }
}

// Writes a fetched step of `c` units into workgroup memory.
fn stage(t: u32, f: Fetch, c: u32) {
    if (t < BN) {
        if (DT == 0u) {
            stage_w(t, 0u, bitcast<vec4<f32>>(f.a0), bitcast<vec4<f32>>(f.a1));
            if (c > 1u) {
                stage_w(t, 8u, bitcast<vec4<f32>>(f.a2), bitcast<vec4<f32>>(f.a3));
            }
            if (c > 2u) {
                stage_w(t, 16u, bitcast<vec4<f32>>(f.a4), bitcast<vec4<f32>>(f.a5));
            }
            if (c > 3u) {
                stage_w(t, 24u, bitcast<vec4<f32>>(f.a6), bitcast<vec4<f32>>(f.a7));
            }
        } else {
            stage_w_half(t, 0u, f.a0);
            if (c > 1u) {
                stage_w_half(t, 8u, f.a1);
            }
            if (c > 2u) {
                stage_w_half(t, 16u, f.a2);
            }
            if (c > 3u) {
                stage_w_half(t, 24u, f.a3);
            }
        }
    }
    if (t >= WG - BM) {
        let i = t - (WG - BM);
        stage_x(i, 0u, f.a0, f.a1);
        if (c > 1u) {
            stage_x(i, 8u, f.a2, f.a3);
        }
        if (c > 2u) {
            stage_x(i, 16u, f.a4, f.a5);
        }
        if (c > 3u) {
            stage_x(i, 24u, f.a6, f.a7);
        }
    }
}

// The staged `c` units of the 4 x 4 block into the four chains (chain j: k = j mod 4, in order).
fn step(a: C4, c: u32, tm: u32, tn: u32) -> C4 {
    var r = a;
    for (var k = 0u; k < 8u * c; k += 4u) {
        r.c0 = t4_fma(r.c0, xs[k * (BM / 4u) + tm], ws[k * (BN / 4u) + tn]);
        r.c1 = t4_fma(r.c1, xs[(k + 1u) * (BM / 4u) + tm], ws[(k + 1u) * (BN / 4u) + tn]);
        r.c2 = t4_fma(r.c2, xs[(k + 2u) * (BM / 4u) + tm], ws[(k + 2u) * (BN / 4u) + tn]);
        r.c3 = t4_fma(r.c3, xs[(k + 3u) * (BM / 4u) + tm], ws[(k + 3u) * (BN / 4u) + tn]);
    }
    return r;
}

// Lane of the fold tree visited at leaf i (bit-reversed i; LANES = 1: leaf 0, lane 0).
fn leaf_lane(i: u32) -> u32 {
    return reverseBits(i) >> ((32u - countTrailingZeros(LANES)) & 31u);
}

// Units of a lane from unit u on, at most CU (u < units).
fn step_units(u: u32, units: u32) -> u32 {
    return min(CU, (units - u + LANES - 1u) / LANES);
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let block = wid.y + wid.z * p.grid_y;
    if (block >= p.n_blocks) {
        return; // uniform for the whole workgroup
    }
    // A warp holds 4 x 8 blocks (4 rows of x by 8 of W groups), as in qmatmul_tiled.wgsl.
    let wp = t / 32u;
    let tl = t % 32u;
    let tm = (wp / 2u) * 4u + tl / 8u;     // block row (of BM / 4)
    let tn = (wp % 2u) * 8u + tl % 8u;     // block column (of BN / 4)
    let split = wid.x % p.splits;
    let m0 = (wid.x / p.splits) * BM;
    let rb = block * BN;
    let units = p.k / 8u;
    let leaves = LANES / p.splits;    // leaves of this split's subtree

    // Finished subtrees, one per level of the fold tree (level b holds 2^b leaves).
    var st: array<T4, 6>;
    var acc = c4_zero();
    var leaf = 0u;    // within the split's subtree
    var u = leaf_lane(split * leaves);
    var c = step_units(u, units);
    var f = fetch(t, u, c, m0, rb);
    loop {
        workgroupBarrier(); // the previous step has been read
        stage(t, f, c);
        workgroupBarrier();
        // The next step: this lane's next units, or the first of the next leaf's lane.
        var nu = u + c * LANES;
        var nleaf = leaf;
        if (nu >= units) {
            nleaf = leaf + 1u;
            nu = leaf_lane(split * leaves + nleaf);
        }
        var nc = 0u;
        if (nleaf < leaves) {
            nc = step_units(nu, units);
            f = fetch(t, nu, nc, m0, rb);
        }
        acc = step(acc, c, tm, tn);
        if (nleaf != leaf) {
            // The leaf is done: combine the subtrees it completes (one per trailing 1 bit of
            // its index, left operand = the subtree visited first) and park the result at the
            // first free level.
            let ones = countTrailingZeros(~leaf);
            var v = c4_fold(acc);
            for (var b = 0u; b < ones; b++) {
                v = t4_add(st[b], v);
            }
            st[ones] = v;
            acc = c4_zero();
            if (nleaf == leaves) {
                break;
            }
            leaf = nleaf;
        }
        u = nu;
        c = nc;
    }
    // The subtree's root: its last leaf completed log2(leaves) subtrees.
    let r = st[countTrailingZeros(leaves)];
    let plane = split * p.m * p.y_stride;
    let n0 = tn * 4u;
    for (var i = 0u; i < 4u; i++) {
        let xr = m0 + tm * 4u + i;
        var v = r.r0;
        if (i == 1u) {
            v = r.r1;
        } else if (i == 2u) {
            v = r.r2;
        } else if (i == 3u) {
            v = r.r3;
        }
        if (xr < p.m) {
            for (var j = 0u; j < 4u; j++) {
                let row = rb + n0 + j;
                if (row < p.n) {
                    out[plane + xr * p.y_stride + p.y_col0 + row] = v[j];
                }
            }
        }
    }
}
