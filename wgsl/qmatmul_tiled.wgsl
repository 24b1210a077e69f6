// y = x W^T with W in MLX affine quantization: the tiled kernel for calls of many rows of x
// (prefill, several sequences at once). Bindings, layouts and the numerical contract are those
// of qmatmul.wgsl, which states the contract in full; this kernel reaches the same bits for
// every output element by another route. In short, for output (m, n):
//   lane l (of LANES) takes units u = l, l + LANES, ... in order; per unit
//     dq = vec4 fma chain over the unit's codes in storage order (chain c takes k = c, c+4, ...)
//     d = (dq.x + dq.y) + (dq.z + dq.w);  sx = the same for x's vec4 sums;
//     acc = fma(b, sx, acc);  acc = fma(s, d, acc)
//   and the LANES partials are folded by the pairwise tree with strides LANES/2, ..., 1.
//
// Design (none of it reaches the arithmetic above):
//   * a workgroup computes a BM x BN tile of y (BM rows of x, BN rows of W); each of its WG
//     invocations owns a 4 x 4 block of it (4 rows of x, 4 rows of W), kept in registers as four
//     vec4 over the 4 rows of W (`T4`).
//   * the whole K range of an output is computed by one invocation. It visits the lanes in
//     bit-reversed order, which is the post-order of the fold tree: leaf i of the visit is lane
//     reverseBits(i), and after it the finished subtrees are combined exactly as the tree does
//     (left operand = the subtree visited first) with a stack of log2(LANES) partials, one per
//     level (`st`). So the tree's additions, operands and order are those of the decode
//     kernel's shared-memory fold. (Every lane has at least one unit: `lanes_quant`.)
//   * every step stages one unit (32 codes at 4 bits, 16 at 8) of the tile in workgroup
//     memory: the x of BM rows ([k][m], with each row's sx), the BN rows' codes decoded to exact
//     floats ([k][n]) and their scale and bias. Each code is decoded once for BM rows of x and
//     each x value read once for BN rows of W; the inner loop is 2 vec4 loads from workgroup
//     memory per 16 fma.
//   * each unit's four fma chains are run two at a time (chains 0 and 1, then 2 and 3), which
//     keeps 3 rather than 4 vec4 per output live; the chains never meet before d, so this
//     changes no operation.
//   * a call with few tiles splits each output's fold tree over SPLITS workgroups (p.splits, a
//     power of two up to LANES): split s visits the leaves s * LANES / SPLITS .. (s + 1) *
//     LANES / SPLITS - 1 of the post-order, which form one whole subtree, and writes that
//     subtree's value to plane s of `out` ([splits][M][y_stride]); qmatmul_combine.wgsl then
//     adds the planes with the tree's top levels. With one split, plane 0 of `out` is y.
//   Rows of x past M and rows of W past N re-read the last row (valid memory); their results
//   are not written.

override BITS: u32 = 4u;      // 4 or 8
override GROUP: u32 = 64u;    // 32, 64 or 128
override SCALE_DT: u32 = 2u;  // 0 = f32, 1 = f16, 2 = bf16
override LANES: u32 = 16u;    // lanes per output element: power of two, 1..64

const BM: u32 = 32u;          // rows of x per workgroup
const BN: u32 = 64u;          // rows of W per workgroup
const WG: u32 = 128u;         // invocations: BM / 4 x BN / 4

struct Params {
    m: u32,         // rows of x
    n: u32,         // rows of W in this binding (output columns written by this dispatch)
    k: u32,         // inputs
    y_stride: u32,  // row stride of y (the full N)
    y_col0: u32,    // first output column of this binding
    n_blocks: u32,  // workgroups along N
    grid_y: u32,    // N blocks are linearised as wid.y + wid.z * grid_y
    splits: u32,    // workgroups per output's fold tree (grid x = tiles of x * splits)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> sb: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

// One unit of the tile: x as [k][m] (k * BM / 4 + m / 4), codes as [k][n] (k * BN / 4 + n / 4).
var<workgroup> xs: array<vec4<f32>, 256>;
var<workgroup> qs: array<vec4<f32>, 512>;
var<workgroup> sxs: array<vec4<f32>, 8>;   // the unit's sx per row of x
var<workgroup> ss: array<vec4<f32>, 16>;   // scale of the unit's group per row of W
var<workgroup> bs: array<vec4<f32>, 16>;   // bias

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

// The codes of word `a` in storage order: 8 at 4 bits (lo = 0..3, hi = 4..7), 4 at 8 bits (lo).
struct Q8 {
    lo: vec4<f32>,
    hi: vec4<f32>,
}

fn codes_word(a: u32) -> Q8 {
    let l = codes_half(a);
    let h = codes_half(a >> 16u);
    if (BITS == 4u) {
        return Q8(l, h);
    }
    return Q8(vec4<f32>(l.xy, h.xy), vec4<f32>(0.0));
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

// One step of an fma chain for each output: a = fma(x of its row, code of its row of W, a).
fn t4_fma(a: T4, xv: vec4<f32>, qv: vec4<f32>) -> T4 {
    return T4(
        fma(vec4<f32>(xv.x), qv, a.r0),
        fma(vec4<f32>(xv.y), qv, a.r1),
        fma(vec4<f32>(xv.z), qv, a.r2),
        fma(vec4<f32>(xv.w), qv, a.r3),
    );
}

fn t4_add(a: T4, b: T4) -> T4 {
    return T4(a.r0 + b.r0, a.r1 + b.r1, a.r2 + b.r2, a.r3 + b.r3);
}

// acc = fma(s, d, fma(b, sx, acc)) per output (s, b per row of W; sx per row of x).
fn t4_unit(acc: T4, d: T4, sxv: vec4<f32>, s: vec4<f32>, b: vec4<f32>) -> T4 {
    return T4(
        fma(s, d.r0, fma(b, vec4<f32>(sxv.x), acc.r0)),
        fma(s, d.r1, fma(b, vec4<f32>(sxv.y), acc.r1)),
        fma(s, d.r2, fma(b, vec4<f32>(sxv.z), acc.r2)),
        fma(s, d.r3, fma(b, vec4<f32>(sxv.w), acc.r3)),
    );
}

// What an invocation fetches from memory for one unit, before it stages it: invocations
// 0..BN-1 one row of W each (codes, packed scale and bias), the last BM one row of x each (its
// vec4s; 4 at 8 bits). Fetching the next unit before computing this one hides the memory
// latency behind the arithmetic.
struct Fetch {
    q: vec4<u32>,
    sb: vec2<u32>,
    x0: vec4<f32>,
    x1: vec4<f32>,
    x2: vec4<f32>,
    x3: vec4<f32>,
    x4: vec4<f32>,
    x5: vec4<f32>,
    x6: vec4<f32>,
    x7: vec4<f32>,
}

fn fetch(t: u32, u: u32, m0: u32, rb: u32) -> Fetch {
    let z = vec4<f32>(0.0);
    var f = Fetch(vec4<u32>(0u), vec2<u32>(0u), z, z, z, z, z, z, z, z);
    if (t < BN) {
        let r = min(rb + t, p.n - 1u);
        f.q = w[r * (p.k * BITS / 128u) + u];
        f.sb = sb_load(r * (p.k / GROUP) + u / (GROUP * BITS / 128u));
    }
    if (t >= WG - BM) {
        let xb = min(m0 + t - (WG - BM), p.m - 1u) * (p.k / 4u) + u * (32u / BITS);
        f.x0 = x[xb];
        f.x1 = x[xb + 1u];
        f.x2 = x[xb + 2u];
        f.x3 = x[xb + 3u];
        if (BITS == 4u) {
            f.x4 = x[xb + 4u];
            f.x5 = x[xb + 5u];
            f.x6 = x[xb + 6u];
            f.x7 = x[xb + 7u];
        }
    }
    return f;
}

// The codes of word `a` as exact floats into column n of qs, from row k on.
fn stage_word(n: u32, k: u32, a: u32) {
    let c = codes_word(a);
    let i = n / 4u;
    let j = n % 4u;
    qs[k * (BN / 4u) + i][j] = c.lo.x;
    qs[(k + 1u) * (BN / 4u) + i][j] = c.lo.y;
    qs[(k + 2u) * (BN / 4u) + i][j] = c.lo.z;
    qs[(k + 3u) * (BN / 4u) + i][j] = c.lo.w;
    if (BITS == 4u) {
        qs[(k + 4u) * (BN / 4u) + i][j] = c.hi.x;
        qs[(k + 5u) * (BN / 4u) + i][j] = c.hi.y;
        qs[(k + 6u) * (BN / 4u) + i][j] = c.hi.z;
        qs[(k + 7u) * (BN / 4u) + i][j] = c.hi.w;
    }
}

// x vec4 `j` of row m into xs (k = 4j .. 4j + 3).
fn stage_x4(m: u32, j: u32, v: vec4<f32>) {
    let i = m / 4u;
    let c = m % 4u;
    xs[(4u * j) * (BM / 4u) + i][c] = v.x;
    xs[(4u * j + 1u) * (BM / 4u) + i][c] = v.y;
    xs[(4u * j + 2u) * (BM / 4u) + i][c] = v.z;
    xs[(4u * j + 3u) * (BM / 4u) + i][c] = v.w;
}

// Writes a fetched unit into workgroup memory (codes decoded, sx formed).
fn stage(t: u32, f: Fetch) {
    if (t < BN) {
        let sbv = sb_pair(f.sb);
        ss[t / 4u][t % 4u] = sbv.x;
        bs[t / 4u][t % 4u] = sbv.y;
        let kw = 32u / BITS;          // codes per word
        stage_word(t, 0u, f.q.x);
        stage_word(t, kw, f.q.y);
        stage_word(t, 2u * kw, f.q.z);
        stage_word(t, 3u * kw, f.q.w);
    }
    if (t >= WG - BM) {
        let i = t - (WG - BM);
        stage_x4(i, 0u, f.x0);
        stage_x4(i, 1u, f.x1);
        stage_x4(i, 2u, f.x2);
        stage_x4(i, 3u, f.x3);
        // s4 = x0 + x1, then + x2, ...: the sum the decode kernel forms (x_unit).
        var s4 = f.x0 + f.x1;
        s4 = s4 + f.x2;
        s4 = s4 + f.x3;
        if (BITS == 4u) {
            stage_x4(i, 4u, f.x4);
            stage_x4(i, 5u, f.x5);
            stage_x4(i, 6u, f.x6);
            stage_x4(i, 7u, f.x7);
            s4 = s4 + f.x4;
            s4 = s4 + f.x5;
            s4 = s4 + f.x6;
            s4 = s4 + f.x7;
        }
        sxs[i / 4u][i % 4u] = (s4.x + s4.y) + (s4.z + s4.w);
    }
}

// One unit of the 4 x 4 block from workgroup memory into acc.
fn unit_step(acc: T4, tm: u32, tn: u32) -> T4 {
    let ku = 128u / BITS;
    // Chains 0 and 1 (k = 0, 1 mod 4), then 2 and 3.
    var ca = t4_zero();
    var cb = t4_zero();
    for (var k = 0u; k < ku; k += 4u) {
        ca = t4_fma(ca, xs[k * (BM / 4u) + tm], qs[k * (BN / 4u) + tn]);
        cb = t4_fma(cb, xs[(k + 1u) * (BM / 4u) + tm], qs[(k + 1u) * (BN / 4u) + tn]);
    }
    let d01 = t4_add(ca, cb);
    ca = t4_zero();
    cb = t4_zero();
    for (var k = 2u; k < ku; k += 4u) {
        ca = t4_fma(ca, xs[k * (BM / 4u) + tm], qs[k * (BN / 4u) + tn]);
        cb = t4_fma(cb, xs[(k + 1u) * (BM / 4u) + tm], qs[(k + 1u) * (BN / 4u) + tn]);
    }
    let d = t4_add(d01, t4_add(ca, cb));
    return t4_unit(acc, d, sxs[tm], ss[tn], bs[tn]);
}

// Lane of the fold tree visited at leaf i (bit-reversed i; LANES = 1: leaf 0, lane 0).
fn leaf_lane(i: u32) -> u32 {
    return reverseBits(i) >> ((32u - countTrailingZeros(LANES)) & 31u);
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let block = wid.y + wid.z * p.grid_y;
    if (block >= p.n_blocks) {
        return; // uniform for the whole workgroup
    }
    // A warp holds 4 x 8 blocks (4 rows of x by 8 of W groups), so one x load serves 8
    // invocations and one code load 4.
    let wp = t / 32u;
    let tl = t % 32u;
    let tm = (wp / 2u) * 4u + tl / 8u;     // block row (of BM / 4)
    let tn = (wp % 2u) * 8u + tl % 8u;     // block column (of BN / 4)
    let split = wid.x % p.splits;
    let m0 = (wid.x / p.splits) * BM;
    let rb = block * BN;
    let units = p.k * BITS / 128u;
    let leaves = LANES / p.splits;    // leaves of this split's subtree

    // Finished subtrees, one per level of the fold tree (level b holds 2^b leaves); they are
    // touched once per 2^b leaves, so they may live in memory rather than registers.
    var st: array<T4, 7>;
    var acc = t4_zero();
    var leaf = 0u;    // within the split's subtree
    var u = leaf_lane(split * leaves);
    var f = fetch(t, u, m0, rb);
    loop {
        workgroupBarrier(); // the previous unit has been read
        stage(t, f);
        workgroupBarrier();
        // The next unit: this lane's next, or the first of the next leaf's lane.
        var nu = u + LANES;
        var nleaf = leaf;
        if (nu >= units) {
            nleaf = leaf + 1u;
            nu = leaf_lane(split * leaves + nleaf);
        }
        if (nleaf < leaves) {
            f = fetch(t, nu, m0, rb);
        }
        acc = unit_step(acc, tm, tn);
        if (nleaf != leaf) {
            // The leaf is done: combine the subtrees it completes (one per trailing 1 bit of
            // its index, left operand = the subtree visited first) and park the result at the
            // first free level.
            let ones = countTrailingZeros(~leaf);
            var v = acc;
            for (var b = 0u; b < ones; b++) {
                v = t4_add(st[b], v);
            }
            st[ones] = v;
            acc = t4_zero();
            if (nleaf == leaves) {
                break;
            }
            leaf = nleaf;
        }
        u = nu;
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
