// y = x W^T with W unquantized (f32, f16 or bf16, rows of K, K a multiple of 8, read as u32
// words: bf16 decoded by shifts, f16 by unpack2x16float, so no shader-f16 is needed); x and y
// are f32. The GEMV kernel: decode and several sequences (its workgroups take 1 or 2 rows of
// x, more rows spread over more workgroups); matmul_dense_tiled.wgsl serves prefill.
//
// Numerical contract of the dense matmul (the same for every M, kernel, tile and row split of
// W): the K inputs are cut into units of 8; lane l of an output element (LANES lanes, a
// function of K only) takes units l, l + LANES, ... in that order into one vec4 accumulator
//   a = fma(x[0..4], w[0..4], a);  a = fma(x[4..8], w[4..8], a)
// its partial is (a.x + a.y) + (a.z + a.w), and the LANES partials are folded by the pairwise
// tree of strides LANES/2, ..., 1. So a row's bits do not depend on which kernel ran it.
//
// Design (from `qmatmul.wgsl`'s GEMV; none of it reaches the arithmetic):
//   * WG invocations = S = WG / LANES slots x LANES lanes; a slot owns R rows of W (slot,
//     slot + S, ...), and every x load serves all R. Slots are the fastest index inside a warp
//     (t = ((slot_hi * LANES + lane) * SL + slot_lo), SL = min(S, 8)), so a W load instruction
//     reads a few rows' contiguous runs.
//   * a lane's units are loaded 4 at a time (4 * R loads issued before any arithmetic).
//   * MT rows of x per workgroup (1 or 2, grid x = the rest), both taken at once: each W load
//     serves both.
//   * lane partials go to workgroup memory lane-major and the tree is evaluated in two
//     barrier-separated phases (P nodes of Q leaves each, then the P nodes), as in
//     `qmatmul.wgsl`: the same tree, 2 barriers instead of log2(LANES).

override DT: u32 = 2u;        // 0 = f32, 1 = f16, 2 = bf16
override LANES: u32 = 32u;    // lanes per output element: power of two, 1..32
override WG: u32 = 128u;      // invocations per workgroup (not in the contract)
override R: u32 = 2u;         // rows of W per invocation: 1, 2 or 4 (not in the contract)
override MT: u32 = 1u;        // rows of x per workgroup: 1 or 2 (not in the contract)

struct Params {
    m: u32,
    n: u32,         // rows of W in this binding
    k: u32,
    y_stride: u32,
    y_col0: u32,
    n_blocks: u32,
    grid_y: u32,
    pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

// Lane partials of the workgroup's WG * R (row, lane) pairs, lane-major, folded in place.
var<workgroup> sm: array<f32, 1024>;

fn pair(u: u32) -> vec2<f32> {
    if (DT == 2u) {
        return vec2<f32>(bitcast<f32>(u << 16u), bitcast<f32>(u & 0xffff0000u));
    }
    return unpack2x16float(u);
}

// Unit `u` (8 weights) of the row starting at unit `r0`, as stored: one word-quad for f16 and
// bf16 (`b` unused), two for f32.
struct WR {
    a: vec4<u32>,
    b: vec4<u32>,
}

fn w_raw(r0: u32, u: u32) -> WR {
    if (DT == 0u) {
        let i = 2u * (r0 + u);
        return WR(w[i], w[i + 1u]);
    }
    return WR(w[r0 + u], vec4<u32>(0u));
}

// One unit of a row of W into a lane accumulator, with that unit's x (x0 = x[0..4], x1 = x[4..8]).
fn step(acc: vec4<f32>, q: WR, x0: vec4<f32>, x1: vec4<f32>) -> vec4<f32> {
    var lo = bitcast<vec4<f32>>(q.a);
    var hi = bitcast<vec4<f32>>(q.b);
    if (DT != 0u) {
        lo = vec4<f32>(pair(q.a.x), pair(q.a.y));
        hi = vec4<f32>(pair(q.a.z), pair(q.a.w));
    }
    return fma(x1, hi, fma(x0, lo, acc));
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

fn partial(a: vec4<f32>) -> f32 {
    return (a.x + a.y) + (a.z + a.w);
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let block = wid.y + wid.z * p.grid_y;
    if (block >= p.n_blocks) {
        return; // uniform for the whole workgroup
    }
    let S = WG / LANES;
    let sl = min(S, 8u);
    let slot = (t / (sl * LANES)) * sl + t % sl;
    let lane = (t / sl) % LANES;
    let rpw = S * R;
    let rb = block * rpw;
    let last = p.n - 1u;
    let units = p.k / 8u;
    // Rows past the end re-read the last row (valid memory); their results are not written.
    let w0 = min(rb + slot, last) * units;
    let w1 = min(rb + slot + S, last) * units;
    let w2 = min(rb + slot + 2u * S, last) * units;
    let w3 = min(rb + slot + 3u * S, last) * units;
    let m0 = wid.x * MT;
    let two = MT == 2u && m0 + 1u < p.m;
    let k4 = p.k / 4u;
    let xa = m0 * k4;
    let xc = select(xa, xa + k4, two); // the second row of x (the first again if none)

    // acc[r] for the first row of x, acc[4 + r] for the second.
    var acc: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
        acc[i] = vec4<f32>(0.0);
    }
    for (var u0 = lane; u0 < units; u0 += 4u * LANES) {
        // Every W load of the batch first (units past the lane's last re-read its first).
        var q: array<array<WR, 4>, 4>;
        for (var j = 0u; j < 4u; j++) {
            let u = select(u0, u0 + j * LANES, u0 + j * LANES < units);
            q[0][j] = w_raw(w0, u);
            if (R > 1u) {
                q[1][j] = w_raw(w1, u);
            }
            if (R > 2u) {
                q[2][j] = w_raw(w2, u);
                q[3][j] = w_raw(w3, u);
            }
        }
        for (var j = 0u; j < 4u; j++) {
            let u = u0 + j * LANES;
            if (u < units) {
                let a0 = x[xa + 2u * u];
                let a1 = x[xa + 2u * u + 1u];
                let c0 = x[xc + 2u * u];
                let c1 = x[xc + 2u * u + 1u];
                for (var r = 0u; r < R; r++) {
                    acc[r] = step(acc[r], q[r][j], a0, a1);
                    if (MT == 2u) {
                        acc[4u + r] = step(acc[4u + r], q[r][j], c0, c1);
                    }
                }
            }
        }
    }

    let P = select(select(select(1u, 2u, LANES >= 4u), 4u, LANES >= 16u), 8u, LANES >= 64u);
    let Q = LANES / P;
    let nx = select(1u, 2u, two);
    for (var h = 0u; h < MT; h++) {
        if (h >= nx) {
            break; // uniform: nx comes from the workgroup id and the uniform block
        }
        let xr = m0 + h;
        // This row of x's accumulators, picked without indexing acc by h (which is not a
        // constant and would move acc out of registers).
        var v: array<f32, 4>;
        for (var r = 0u; r < R; r++) {
            v[r] = partial(select(acc[r], acc[4u + r], h == 1u));
        }
        if (LANES == 1u) {
            for (var r = 0u; r < R; r++) {
                store_y(xr, rb + slot + r * S, v[r]);
            }
            continue;
        }
        if (h > 0u) {
            workgroupBarrier(); // the first row's fold has read sm
        }
        for (var r = 0u; r < R; r++) {
            sm[lane * rpw + slot + r * S] = v[r];
        }
        workgroupBarrier();
        // Phase 1: node f = nd * rpw + row (nd < P) folds lanes nd, nd + P, ... (strides
        // LANES/2 .. P of the tree) in place; with P = 1 that is the whole tree.
        let pr = P * rpw;
        for (var f = t; f < pr; f += WG) {
            let node = fold_sm(f, pr, Q);
            if (P == 1u) {
                store_y(xr, rb + f, node);
            } else {
                sm[f] = node;
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
}
