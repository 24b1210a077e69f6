// The end of a decode step, pass 2 of 2: each row's greedy token from its blocks' candidates
// (softcap_argmax.wgsl), by the same rule: the largest value, the lowest index among equals.
// One workgroup per row.

const WG: u32 = 256u;
const NONE: u32 = 0xffffffffu;

struct Params {
    vocab: u32,
    rows: u32,
    softcap: f32,
    blocks: u32,
}

@group(0) @binding(0) var<uniform> prm: Params;
@group(0) @binding(1) var<storage, read> cand: array<vec2<u32>>;
@group(0) @binding(2) var<storage, read_write> ids: array<u32>;

var<workgroup> best_v: array<f32, WG>;
var<workgroup> best_i: array<u32, WG>;

fn beats(v: f32, i: u32, bv: f32, bi: u32) -> bool {
    if (i == NONE) {
        return false;
    }
    return bi == NONE || v > bv || (v == bv && i < bi);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let row = wid.x;
    let live = row < prm.rows;
    var bv = 0.0;
    var bi = NONE;
    if (live) {
        for (var b = t; b < prm.blocks; b += WG) {
            let c = cand[row * prm.blocks + b];
            let v = bitcast<f32>(c.x);
            if (beats(v, c.y, bv, bi)) {
                bv = v;
                bi = c.y;
            }
        }
    }
    best_v[t] = bv;
    best_i[t] = bi;
    workgroupBarrier();
    for (var h = WG / 2u; h > 0u; h >>= 1u) {
        if (t < h && beats(best_v[t + h], best_i[t + h], best_v[t], best_i[t])) {
            best_v[t] = best_v[t + h];
            best_i[t] = best_i[t + h];
        }
        workgroupBarrier();
    }
    if (t == 0u && live) {
        ids[row] = best_i[0];
    }
}
