//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// `<clone>/../shared/fixtures/<name>`; panics with a clear message if missing.
pub fn shared_fixture(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures")
        .join(name);
    assert!(
        p.is_file(),
        "shared fixture missing: {} (expected at <repo>/../shared/fixtures/{name}; CI places shared/ beside the clone)",
        p.display()
    );
    p
}

/// `<repo>/tests/fixtures/mlx/<name>`; panics with a clear message if missing.
pub fn mlx_fixture(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/mlx")
        .join(name);
    assert!(
        p.exists(),
        "fixture missing: {} (generate with tests/fixtures/mlx/make_fixtures.py)",
        p.display()
    );
    p
}

/// One tensor for [`serialize`]: (name, safetensors dtype, shape, raw bytes).
pub type Raw = (&'static str, safetensors::Dtype, Vec<usize>, Vec<u8>);

/// Serializes tensors into a safetensors buffer with the safetensors crate.
pub fn serialize(tensors: &[Raw]) -> Vec<u8> {
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.to_string(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize(views, None).unwrap()
}

/// Little-endian bytes of u32 words.
pub fn u32_bytes(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Little-endian bytes of f32 values.
pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Bit patterns of f32 values (to compare bit for bit, -0.0 and NaN included).
pub fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}
