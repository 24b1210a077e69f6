// Gemma's gated activation: out[r, i] = gelu_tanh(a[r * a_stride + a_off + i]) *
// b[r * b_stride + b_off + i], in f32, one invocation per output element (GeGLU in the MLP; the per-layer-input
// gate with b the layer's slice of the per-layer inputs).
// gelu_tanh(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))); tanh's argument is clamped
// to [-10, 10], where tanh already rounds to +-1 in f32, so the clamp changes no value.

struct Params {
    n: u32,          // columns
    count: u32,      // rows * n
    a_stride: u32,
    b_stride: u32,
    b_off: u32,
    grid_x: u32,     // invocations along x (256 per workgroup)
    a_off: u32,
    pad1: u32,
}

@group(0) @binding(0) var<uniform> prm: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn gelu_tanh(x: f32) -> f32 {
    let u = clamp(0.7978845608028654 * (x + 0.044715 * x * x * x), -10.0, 10.0);
    return 0.5 * x * (1.0 + tanh(u));
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let e = gid.x + gid.y * prm.grid_x;
    if (e >= prm.count) {
        return;
    }
    let r = e / prm.n;
    let i = e % prm.n;
    out[e] = gelu_tanh(a[r * prm.a_stride + prm.a_off + i]) * b[r * prm.b_stride + prm.b_off + i];
}
