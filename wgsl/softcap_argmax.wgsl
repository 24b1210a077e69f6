// The end of a decode step: per row of logits, the final soft-cap in place,
//   x = cap * tanh(x / cap)        (cap <= 0: none; tanh's argument clamped to [-10, 10],
//                                   where it already rounds to +-1 in f32)
// and the greedy token: the index of the largest value, the lowest index among equals, so
// the answer does not depend on the order the values are visited in. One workgroup per row.

const WG: u32 = 256u;

struct Params {
    vocab: u32,
    rows: u32,
    softcap: f32,
    grid_x: u32,
}

@group(0) @binding(0) var<uniform> prm: Params;
@group(0) @binding(1) var<storage, read_write> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> ids: array<u32>;

var<workgroup> best_v: array<f32, WG>;
var<workgroup> best_i: array<u32, WG>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let row = wid.x + wid.y * prm.grid_x;
    let live = row < prm.rows;
    let base = select(0u, row, live) * prm.vocab;
    var bv = -3.4028235e38;
    var bi = 0xffffffffu;
    if (live) {
        for (var i = t; i < prm.vocab; i += WG) {
            var x = logits[base + i];
            if (prm.softcap > 0.0) {
                x = prm.softcap * tanh(clamp(x / prm.softcap, -10.0, 10.0));
                logits[base + i] = x;
            }
            if (x > bv || bi == 0xffffffffu) {
                bv = x;
                bi = i;
            }
        }
    }
    best_v[t] = bv;
    best_i[t] = bi;
    workgroupBarrier();
    for (var k = WG / 2u; k > 0u; k >>= 1u) {
        if (t < k) {
            let ov = best_v[t + k];
            let oi = best_i[t + k];
            if (oi != 0xffffffffu && (best_i[t] == 0xffffffffu || ov > best_v[t]
                || (ov == best_v[t] && oi < best_i[t]))) {
                best_v[t] = ov;
                best_i[t] = oi;
            }
        }
        workgroupBarrier();
    }
    if (t == 0u && live) {
        ids[row] = best_i[0];
    }
}
