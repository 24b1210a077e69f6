// The last step of a tiled quantized matmul whose fold trees were split over workgroups
// (qmatmul_tiled.wgsl with p.splits > 1): plane s of `part` holds, for every output, the value
// of the s-th subtree in the tree's post-order, and this adds them with the tree's top levels.
// In post-order those levels pair neighbours first: ((p0 + p1) + (p2 + p3)) + ..., the left
// operand always the subtree visited first, so y gets the bits an unsplit call gives.

struct Params {
    count: u32,     // outputs (M * N), which is also the floats per plane
    splits: u32,    // planes: 2, 4, 8 or 16
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> part: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

const WG: u32 = 256u;
const GRID_X: u32 = 32768u;   // workgroups along x; more go to y (the host sizes the grid)

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x + gid.y * GRID_X * WG;
    if (i >= p.count) {
        return;
    }
    var v: array<f32, 16>;
    for (var s = 0u; s < p.splits; s++) {
        v[s] = part[i + s * p.count];
    }
    // Neighbours first, level by level: v[j] = v[2j] + v[2j + 1].
    var width = p.splits;
    while (width > 1u) {
        width = width / 2u;
        for (var j = 0u; j < width; j++) {
            v[j] = v[2u * j] + v[2u * j + 1u];
        }
    }
    y[i] = v[0];
}
