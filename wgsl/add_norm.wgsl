// The residual step of a Gemma 4 block, fused with the norm that follows it:
//   h[r] = (h[r] + y[r] * inverseSqrt(mean(y^2) + eps) * wa) * scalar
//   out[r] = h[r] * inverseSqrt(mean(h^2) + eps) * wb            (when write_out is 1)
// in f32. One workgroup per row; both sums of squares are reduced in one order fixed by n
// alone (thread t sums elements t, t + 256, ... in turn; a fixed pairwise tree folds the 256
// partials), so a row's bits depend on that row only.

const WG: u32 = 256u;

struct Params {
    n: u32,
    rows: u32,
    eps: f32,
    grid_x: u32,
    scalar: f32,     // the layer's learned scalar (1.0 where none applies: exact)
    write_out: u32,  // 1: also write the next norm's output
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<uniform> prm: Params;
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read_write> h: array<f32>;
@group(0) @binding(3) var<storage, read> wa: array<f32>;
@group(0) @binding(4) var<storage, read> wb: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

var<workgroup> red: array<f32, WG>;

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

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let row = wid.x + wid.y * prm.grid_x;
    let live = row < prm.rows;
    let base = select(0u, row, live) * prm.n;
    var s = 0.0;
    if (live) {
        for (var i = t; i < prm.n; i += WG) {
            let v = y[base + i];
            s += v * v;
        }
    }
    let ry = inverseSqrt(tree(t, s) / f32(prm.n) + prm.eps);
    var s2 = 0.0;
    if (live) {
        for (var i = t; i < prm.n; i += WG) {
            let v = (h[base + i] + y[base + i] * ry * wa[i]) * prm.scalar;
            h[base + i] = v;
            s2 += v * v;
        }
    }
    if (prm.write_out == 0u) {
        return;
    }
    let rh = inverseSqrt(tree(t, s2) / f32(prm.n) + prm.eps);
    if (live) {
        for (var i = t; i < prm.n; i += WG) {
            out[base + i] = h[base + i] * rh * wb[i];
        }
    }
}
