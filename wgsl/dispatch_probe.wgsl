// The smallest useful kernel, for `onepath bench dispatch`: each invocation increments one word
// of its buffer. Timing many dispatches of it measures what a dispatch, a barrier between
// dependent dispatches and a compute-pass boundary cost on this device and driver. Not part of
// any numerical contract.

@group(0) @binding(0) var<storage, read_write> words: array<u32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
    words[g.x] = words[g.x] + 1u;
}
