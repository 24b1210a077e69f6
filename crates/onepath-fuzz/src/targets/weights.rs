//! Safetensors files and the sharded index (`onepath-weights`).

use crate::Outcome;
use arbitrary::{Arbitrary, Unstructured};
use onepath_weights::{Checkpoint, Linear, QuantParams, dequantize_f32, index_files};

/// The small sharded MLX checkpoint of `tests/fixtures/mlx/tiny_ckpt` (4-bit and 8-bit
/// linears, a dense one, norms): both shards, its index and its config.
pub const SHARD_1: &[u8] =
    include_bytes!("../../../../tests/fixtures/mlx/tiny_ckpt/model-00001-of-00002.safetensors");
pub const SHARD_2: &[u8] =
    include_bytes!("../../../../tests/fixtures/mlx/tiny_ckpt/model-00002-of-00002.safetensors");
pub const SHARD_1_NAME: &str = "model-00001-of-00002.safetensors";
pub const SHARD_2_NAME: &str = "model-00002-of-00002.safetensors";
pub const INDEX: &str =
    include_str!("../../../../tests/fixtures/mlx/tiny_ckpt/model.safetensors.index.json");
pub const CONFIG: &str = include_str!("../../../../tests/fixtures/mlx/tiny_ckpt/config.json");

/// A safetensors file of `header` (JSON) and `data`.
pub fn file(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

pub fn safetensors_seeds() -> Vec<Vec<u8>> {
    let f32s: Vec<u8> = (0..16u32).flat_map(|i| (i as f32).to_le_bytes()).collect();
    vec![
        SHARD_1.to_vec(),
        SHARD_2.to_vec(),
        file(
            r#"{"__metadata__":{"format":"pt"},"a.weight":{"dtype":"F32","shape":[2,8],"data_offsets":[0,64]}}"#,
            &f32s,
        ),
        file(
            r#"{"b":{"dtype":"BF16","shape":[4,2],"data_offsets":[0,16]},"c":{"dtype":"F16","shape":[],"data_offsets":[16,18]},"d":{"dtype":"F64","shape":[1],"data_offsets":[18,26]}}"#,
            &[0u8; 26],
        ),
        file("{}", &[]),
        // A quantized linear of input size 0 (refused): mutations vary its row count.
        file(
            r#"{"model.layers.0.self_attn.q_proj.weight":{"dtype":"U32","shape":[3,0],"data_offsets":[0,0]},"model.layers.0.self_attn.q_proj.scales":{"dtype":"F16","shape":[3,0],"data_offsets":[0,0]},"model.layers.0.self_attn.q_proj.biases":{"dtype":"F16","shape":[3,0],"data_offsets":[0,0]}}"#,
            &[],
        ),
    ]
}

/// Parses a whole file, then reads every tensor and every linear the way a model load does.
pub fn safetensors(data: &[u8]) -> Outcome {
    let ckpt = Checkpoint::from_bytes(data.to_vec())
        .and_then(|c| c.with_config_json(CONFIG))
        .map_err(|e| e.to_string())?;
    read_all(&ckpt)
}

/// Every tensor as f32 (when small) and every `.weight` as a linear, dequantized, and
/// quantized at load when dense. The first error is the outcome (the rest still run).
fn read_all(ckpt: &Checkpoint) -> Outcome {
    let mut first: Outcome = Ok(());
    let mut note = |r: Outcome| {
        if first.is_ok() {
            first = r;
        }
    };
    for file in ckpt.files() {
        note(match ckpt.file_metadata(file) {
            Some(_) => Ok(()),
            None => Err(format!("no metadata for listed shard {file}")),
        });
    }
    for name in ckpt.tensor_names() {
        match ckpt.tensor(name) {
            Ok(t) => {
                let _ = (t.numel(), t.rows_and_row_bytes(), t.shape(), t.dtype());
                if t.data().len() <= 1 << 16 {
                    note(super::outcome(t.to_f32()));
                }
            }
            Err(e) => note(Err(e.to_string())),
        }
        let Some(path) = name.strip_suffix(".weight") else {
            continue;
        };
        match ckpt.linear(path) {
            Ok(Linear::Quantized(q)) => {
                if q.rows().saturating_mul(q.cols()) <= 1 << 16 {
                    let _ = dequantize_f32(&q);
                }
            }
            Ok(Linear::Dense(w)) => {
                if w.data().len() <= 1 << 16 {
                    let p = QuantParams {
                        group_size: 32,
                        bits: 4,
                    };
                    note(super::outcome(ckpt.quantized_linear(path, p)));
                    let _ = w;
                }
            }
            Err(e) => note(Err(e.to_string())),
        }
    }
    first
}

/// A header as `arbitrary` makes it: tensors with any dtype spelling, shape and offsets
/// (huge ones included), metadata, and a data section of any length.
#[derive(Arbitrary, Debug)]
struct Header {
    tensors: Vec<TensorEntry>,
    metadata: Option<Vec<(String, String)>>,
    data_len: u16,
    /// Writes the length field as something else than the header's length.
    length: Option<u64>,
}

#[derive(Arbitrary, Debug)]
struct TensorEntry {
    name: Name,
    dtype: u8,
    shape: Vec<Dim>,
    offsets: (Dim, Dim),
}

#[derive(Arbitrary, Debug)]
enum Name {
    Weight(u8),
    Scales(u8),
    Biases(u8),
    Any(String),
}

#[derive(Arbitrary, Debug)]
enum Dim {
    Small(u8),
    Interesting(u8),
    Any(u64),
}

impl Dim {
    fn value(&self) -> u64 {
        match self {
            Dim::Small(v) => u64::from(*v),
            Dim::Interesting(i) => {
                let v = crate::mutate::INTERESTING_U64;
                v[*i as usize % v.len()]
            }
            Dim::Any(v) => *v,
        }
    }
}

const DTYPES: [&str; 14] = [
    "F32", "F16", "BF16", "U32", "U8", "I8", "I32", "I64", "F64", "BOOL", "F8_E4M3", "U16", "F4",
    "??",
];

pub fn generate_safetensors(u: &mut Unstructured) -> arbitrary::Result<Vec<u8>> {
    let h = Header::arbitrary(u)?;
    let mut obj = serde_json::Map::new();
    if let Some(m) = &h.metadata {
        let m: serde_json::Map<String, serde_json::Value> = m
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        obj.insert("__metadata__".into(), m.into());
    }
    let mut at = 0u64;
    for t in &h.tensors {
        let name = match &t.name {
            Name::Weight(i) => format!("model.layers.{}.q_proj.weight", i % 3),
            Name::Scales(i) => format!("model.layers.{}.q_proj.scales", i % 3),
            Name::Biases(i) => format!("model.layers.{}.q_proj.biases", i % 3),
            Name::Any(s) => s.clone(),
        };
        let shape: Vec<u64> = t.shape.iter().map(Dim::value).collect();
        // Offsets: mostly contiguous from the previous tensor, else as generated.
        let (s, e) = match (&t.offsets.0, &t.offsets.1) {
            (Dim::Small(a), Dim::Small(b)) => (at, at.wrapping_add(u64::from(*a) * u64::from(*b))),
            (a, b) => (a.value(), b.value()),
        };
        at = e;
        obj.insert(
            name,
            serde_json::json!({
                "dtype": DTYPES[t.dtype as usize % DTYPES.len()],
                "shape": shape,
                "data_offsets": [s, e],
            }),
        );
    }
    let header = serde_json::Value::Object(obj).to_string();
    let mut out = file(&header, &vec![0u8; usize::from(h.data_len)]);
    if let Some(l) = h.length {
        out[..8].copy_from_slice(&l.to_le_bytes());
    }
    Ok(out)
}

pub fn index_seeds() -> Vec<Vec<u8>> {
    vec![
        INDEX.as_bytes().to_vec(),
        br#"{"weight_map":{}}"#.to_vec(),
        br#"{"metadata":{"total_size":1},"weight_map":{"model.norm.weight":"model-00002-of-00002.safetensors"}}"#.to_vec(),
    ]
}

/// The index text (lossy UTF-8, as `read_to_string` would refuse the rest) against the two
/// fixture shards.
pub fn index(data: &[u8]) -> Outcome {
    let text = match std::str::from_utf8(data) {
        Ok(t) => std::borrow::Cow::Borrowed(t),
        Err(_) => String::from_utf8_lossy(data),
    };
    let files = index_files(&text).map_err(|e| e.to_string())?;
    let shards = [(SHARD_1_NAME, SHARD_1), (SHARD_2_NAME, SHARD_2)]
        .into_iter()
        .filter(|(n, _)| files.iter().any(|f| f == n))
        .map(|(n, b)| (n.to_string(), b.to_vec()))
        .collect();
    let ckpt = Checkpoint::from_shards(shards, Some(&text))
        .and_then(|c| c.with_config_json(CONFIG))
        .map_err(|e| e.to_string())?;
    read_all(&ckpt)
}
