// Memory read ceiling for `onepath bench bandwidth`: the whole grid reads a buffer once, with the
// access pattern memory likes best (each warp-sized group of invocations reads consecutive
// 16-byte words, four independent loads in flight per invocation), and folds what it read with
// XOR so the loads cannot be optimised away. One word per invocation is written. Not part of any
// numerical contract: it only measures how fast this device can stream a buffer.

const WG: u32 = 256u;

struct Params {
    n: u32,         // vec4<u32> words in `src`
    threads: u32,   // invocations in the grid (a multiple of WG)
    grid_x: u32,    // workgroups along x (the grid is linearised x-fastest)
    pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let gid = (wid.x + wid.y * p.grid_x) * WG + t;
    let s = p.threads;
    var a = vec4<u32>(0u);
    var b = vec4<u32>(0u);
    var c = vec4<u32>(0u);
    var d = vec4<u32>(0u);
    var i = gid;
    for (; i + 3u * s < p.n; i += 4u * s) {
        a ^= src[i];
        b ^= src[i + s];
        c ^= src[i + 2u * s];
        d ^= src[i + 3u * s];
    }
    for (; i < p.n; i += s) {
        a ^= src[i];
    }
    let x = (a ^ b) ^ (c ^ d);
    if (gid < s) {
        dst[gid] = (x.x ^ x.y) ^ (x.z ^ x.w);
    }
}
