// The end of a decode step, pass 1 of 2: per row of logits, the final soft-cap in place,
//   x = cap * tanh(x / cap)        (cap <= 0: none; tanh's argument clamped to [-10, 10],
//                                   where it already rounds to +-1 in f32)
// and each block's greedy candidate: the largest value of the block's BLOCK logits and its
// index, the lowest index among equals. argmax_merge.wgsl picks the row's token from the
// blocks' candidates by the same rule, so the answer is the row's first maximum whatever the
// block count (the rule does not depend on the order values are visited in).
// Grid: x = blocks of a row, y = rows.

const WG: u32 = 256u;
const PER: u32 = 16u;              // logits per invocation
const BLOCK: u32 = WG * PER;       // logits per workgroup
const NONE: u32 = 0xffffffffu;

struct Params {
    vocab: u32,
    rows: u32,
    softcap: f32,
    blocks: u32,      // blocks per row (vocab / BLOCK, rounded up)
}

@group(0) @binding(0) var<uniform> prm: Params;
@group(0) @binding(1) var<storage, read_write> logits: array<f32>;
// Per (row, block): the candidate's value bits and index.
@group(0) @binding(2) var<storage, read_write> cand: array<vec2<u32>>;

var<workgroup> best_v: array<f32, WG>;
var<workgroup> best_i: array<u32, WG>;

// Whether candidate (v, i) beats (bv, bi): larger value, or equal value and lower index.
fn beats(v: f32, i: u32, bv: f32, bi: u32) -> bool {
    if (i == NONE) {
        return false;
    }
    return bi == NONE || v > bv || (v == bv && i < bi);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let block = wid.x;
    let row = wid.y;
    let live = row < prm.rows && block < prm.blocks;
    let base = select(0u, row, live) * prm.vocab;
    let start = block * BLOCK;
    var bv = 0.0;
    var bi = NONE;
    if (live) {
        for (var k = 0u; k < PER; k++) {
            let i = start + k * WG + t;
            if (i < prm.vocab) {
                var x = logits[base + i];
                if (prm.softcap > 0.0) {
                    x = prm.softcap * tanh(clamp(x / prm.softcap, -10.0, 10.0));
                    logits[base + i] = x;
                }
                if (beats(x, i, bv, bi)) {
                    bv = x;
                    bi = i;
                }
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
        cand[row * prm.blocks + block] = vec2<u32>(bitcast<u32>(best_v[0]), best_i[0]);
    }
}
