// y = x W^T with W unquantized: f32, f16 or bf16 rows of K (K a multiple of 8), read as u32
// words (bf16 decoded by shifts, f16 by unpack2x16float: no shader-f16 needed). x, y are f32.
//
// Numerical contract (the same for every M, tile and row split of W): the K inputs are cut into
// units of 8; lane l of an output element (LANES lanes, a function of K only) takes units
// l, l + LANES, ... in that order into a vec4 accumulator:
//   a = fma(x[0..4], w[0..4], a);  a = fma(x[4..8], w[4..8], a)
// then its partial is (a.x + a.y) + (a.z + a.w), and the LANES partials are folded by a fixed
// pairwise tree (stride LANES/2, ..., 1). Rows of x (up to MT per workgroup) share each weight
// load; each row's arithmetic is the above whatever M is.

override DT: u32 = 2u;        // 0 = f32, 1 = f16, 2 = bf16
override LANES: u32 = 16u;    // lanes per output element: power of two, 1..64

const WG: u32 = 256u;
const MT: u32 = 8u;

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

var<workgroup> sm: array<f32, 2048>; // MT * WG lane partials

fn pair(u: u32) -> vec2<f32> {
    if (DT == 2u) {
        return vec2<f32>(bitcast<f32>(u << 16u), bitcast<f32>(u & 0xffff0000u));
    }
    return unpack2x16float(u);
}

fn unpack8(a: vec4<u32>) -> array<vec4<f32>, 2> {
    let p0 = pair(a.x);
    let p1 = pair(a.y);
    let p2 = pair(a.z);
    let p3 = pair(a.w);
    return array<vec4<f32>, 2>(vec4<f32>(p0, p1), vec4<f32>(p2, p3));
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let block = wid.y + wid.z * p.grid_y;
    if (block >= p.n_blocks) {
        return;
    }
    let rw = WG / LANES;
    let lane = t % LANES;
    let r = t / LANES;
    let row = block * rw + r;
    let live = row < p.n;
    let m0 = wid.x * MT;
    let mrows = min(MT, p.m - m0);
    let k4 = p.k / 4u;
    let units = p.k / 8u;

    var acc: array<vec4<f32>, MT>;
    for (var i = 0u; i < MT; i++) {
        acc[i] = vec4<f32>(0.0);
    }
    if (live) {
        for (var u = lane; u < units; u += LANES) {
            var wv: array<vec4<f32>, 2>;
            if (DT == 0u) {
                let base = row * k4 + 2u * u;
                wv = array<vec4<f32>, 2>(bitcast<vec4<f32>>(w[base]), bitcast<vec4<f32>>(w[base + 1u]));
            } else {
                wv = unpack8(w[row * units + u]);
            }
            for (var i = 0u; i < MT; i++) {
                if (i < mrows) {
                    let xb = (m0 + i) * k4 + 2u * u;
                    var a = acc[i];
                    a = fma(x[xb], wv[0], a);
                    a = fma(x[xb + 1u], wv[1], a);
                    acc[i] = a;
                }
            }
        }
    }
    for (var i = 0u; i < MT; i++) {
        let a = acc[i];
        sm[(i * rw + r) * LANES + lane] = (a.x + a.y) + (a.z + a.w);
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
