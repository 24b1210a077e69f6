//! Inputs that claim enormous sizes in a few bytes fail at once, naming the claim, with no
//! large allocation (measured by the crate's counting allocator) and no long loop.

use onepath_fuzz::alloc;
use onepath_fuzz::targets::weights::file;
use onepath_mask::{MaskDesc, MaskKind, MaskShape, canonicalize};
use onepath_weights::Checkpoint;
use std::time::{Duration, Instant};

/// Runs `f`, which must fail fast (under 100 ms, no allocation over 1 MiB) with a message
/// containing every part of `want`.
fn fails_fast<T, E: std::fmt::Display>(
    what: &str,
    want: &[&str],
    f: impl FnOnce() -> Result<T, E>,
) {
    fn limit(msg: &str) {
        eprintln!("limit hit: {msg}");
    }
    let t0 = Instant::now();
    alloc::arm(limit);
    let r = f();
    let (largest, _) = alloc::disarm();
    let took = t0.elapsed();
    let msg = match r {
        Ok(_) => panic!("{what}: accepted"),
        Err(e) => e.to_string(),
    };
    eprintln!("{what}: {msg} ({took:?}, largest allocation {largest} B)");
    for w in want {
        assert!(msg.contains(w), "{what}: {msg:?} does not name {w:?}");
    }
    assert!(took < Duration::from_millis(100), "{what}: took {took:?}");
    assert!(
        largest < 1 << 20,
        "{what}: allocated {largest} bytes at once"
    );
}

#[test]
fn safetensors_claims() {
    let mut huge_len = 1_000_000_000_000u64.to_le_bytes().to_vec();
    huge_len.extend_from_slice(b"{}");
    fails_fast(
        "header length 10^12",
        &["header length 1000000000000", "runs past"],
        || Checkpoint::from_bytes(huge_len),
    );
    let mut len_2_63 = (1u64 << 63).to_le_bytes().to_vec();
    len_2_63.extend_from_slice(b"{}");
    fails_fast("header length 2^63", &["9223372036854775808"], || {
        Checkpoint::from_bytes(len_2_63)
    });
    let h = r#"{"t":{"dtype":"F32","shape":[1000000000000,1000000000000],"data_offsets":[0,4]}}"#;
    fails_fast("shape of 10^24 elements", &["`t`"], || {
        Checkpoint::from_bytes(file(h, &[0; 4]))
    });
    let h = r#"{"t":{"dtype":"U8","shape":[9223372036854775808],"data_offsets":[0,9223372036854775808]}}"#;
    fails_fast("a 2^63-byte tensor", &["9223372036854775808"], || {
        Checkpoint::from_bytes(file(h, &[0; 4]))
    });
    // 10^12 tensors cannot be written in a small file; a header that says it holds many
    // tensors but whose length field covers only a few bytes of them is just truncated.
    let many: String = (0..1000)
        .map(|i| {
            format!(
                r#""t{i}":{{"dtype":"U8","shape":[1],"data_offsets":[{i},{}]}}"#,
                i + 1
            )
        })
        .collect::<Vec<_>>()
        .join(",");
    let mut f = file(&format!("{{{many}}}"), &[0; 1000]);
    f[..8].copy_from_slice(&1_000_000_000_000u64.to_le_bytes());
    fails_fast(
        "1000 tensors, length field 10^12",
        &["1000000000000"],
        || Checkpoint::from_bytes(f),
    );
}

/// 2^40 rows of zero inputs need no bytes: refused before anything loops over them.
#[test]
fn quantized_rows_of_nothing() {
    let h = r#"{"l.weight":{"dtype":"U32","shape":[1099511627776,0],"data_offsets":[0,0]},"l.scales":{"dtype":"F16","shape":[1099511627776,0],"data_offsets":[0,0]},"l.biases":{"dtype":"F16","shape":[1099511627776,0],"data_offsets":[0,0]}}"#;
    let ckpt = Checkpoint::from_bytes(file(h, &[]))
        .and_then(|c| c.with_config_json(r#"{"quantization":{"group_size":32,"bits":4}}"#))
        .expect("the header itself is valid");
    fails_fast(
        "2^40 quantized rows of input size 0",
        &["input size 0"],
        || ckpt.linear("l").map(|_| ()),
    );
    let h = r#"{"d.weight":{"dtype":"F32","shape":[1099511627776,0],"data_offsets":[0,0]}}"#;
    let ckpt = Checkpoint::from_bytes(file(h, &[])).expect("valid header");
    let p = onepath_weights::QuantParams {
        group_size: 32,
        bits: 4,
    };
    fails_fast("quantizing 2^40 dense rows of 0", &["cols 0"], || {
        ckpt.quantized_linear("d", p).map(|_| ())
    });
}

#[test]
fn mask_claims() {
    let desc = MaskDesc::new(MaskKind::None);
    let shape = MaskShape {
        batch: 1_000_000,
        heads: 1_000_000,
        q_len: 1_000_000,
        kv_len: 8,
    };
    fails_fast("10^18 rows", &["too large"], || canonicalize(&shape, &desc));
    let shape = MaskShape {
        batch: 1 << 40,
        heads: 1,
        q_len: 1,
        kv_len: 8,
    };
    fails_fast("2^40 batch entries", &["too large"], || {
        canonicalize(&shape, &desc)
    });
    let shape = MaskShape {
        batch: 1,
        heads: 1,
        q_len: 1,
        kv_len: 1 << 40,
    };
    fails_fast("2^40 keys", &["kv_len exceeds"], || {
        canonicalize(&shape, &desc)
    });
}
