//! Helpers shared by the bad-input tests (`tests/gemma4_bad_*.rs`): editing the fixture
//! models' configs and checkpoints, temporary model directories, and error expectations.
#![allow(dead_code)]

pub use super::gemma4_common::*;

use onepath::gpu::Gpu;
use onepath_model::{LoadOptions, Model, ModelError, RunOptions, open_checkpoint};
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

pub const A: &str = "a-f32";
pub const B: &str = "b-f32";

/// Keys the reference libraries default differently: each must be present.
pub const DIFFERS: [&str; 5] = [
    "use_double_wide_mlp",
    "num_kv_shared_layers",
    "final_logit_softcapping",
    "num_key_value_heads",
    "layer_types",
];

// ---------------------------------------------------------------------------------------------
// Editing configs and checkpoints.

pub fn config_json(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture(name).join("config.json")).expect("fixture config");
    serde_json::from_str(&text).expect("fixture config is JSON")
}

/// The object a dotted path (`rope_parameters.full_attention`) names inside the text config
/// (b's is under `text_config`), and the path's last key.
pub fn parent<'a>(
    v: &'a mut Value,
    path: &'a str,
) -> (&'a mut serde_json::Map<String, Value>, &'a str) {
    let mut at = if v.get("text_config").is_some() {
        &mut v["text_config"]
    } else {
        v
    };
    let mut keys: Vec<&str> = path.split('.').collect();
    let last = keys.pop().expect("a key");
    for k in keys {
        at = at
            .get_mut(k)
            .unwrap_or_else(|| panic!("fixture config has `{k}` in {path}"));
    }
    (at.as_object_mut().expect("an object"), last)
}

/// One change to a config.
pub enum Edit {
    /// Removes a key of the text config (dotted for nested keys).
    Remove(&'static str),
    /// Sets a key of the text config.
    Set(&'static str, Value),
    /// Sets a key at the top level (not under `text_config`).
    SetRoot(&'static str, Value),
}

pub fn edited(name: &str, edits: &[Edit]) -> Value {
    let mut v = config_json(name);
    for e in edits {
        match e {
            Edit::Remove(path) => {
                let (obj, key) = parent(&mut v, path);
                assert!(obj.remove(key).is_some(), "{name} has `{path}` to remove");
            }
            Edit::Set(path, x) => {
                let (obj, key) = parent(&mut v, path);
                obj.insert(key.to_string(), x.clone());
            }
            Edit::SetRoot(key, x) => {
                v[*key] = x.clone();
            }
        }
    }
    v
}

/// A tensor of a checkpoint being edited.
pub struct Tensor {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

pub fn tensors(file: &Path) -> Vec<Tensor> {
    let bytes = std::fs::read(file).expect("fixture checkpoint");
    let st = SafeTensors::deserialize(&bytes).expect("fixture safetensors");
    let mut out: Vec<Tensor> = st
        .tensors()
        .into_iter()
        .map(|(name, t)| Tensor {
            name,
            dtype: t.dtype(),
            shape: t.shape().to_vec(),
            data: t.data().to_vec(),
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

pub fn serialize(ts: &[Tensor]) -> Vec<u8> {
    let views = ts.iter().map(|t| {
        let view = safetensors::tensor::TensorView::new(t.dtype, t.shape.clone(), &t.data)
            .unwrap_or_else(|e| panic!("test tensor `{}`: {e}", t.name));
        (t.name.clone(), view)
    });
    safetensors::serialize(views, None).expect("serialize")
}

/// One change to a checkpoint's tensors.
pub enum TensorEdit {
    /// Leaves a tensor out.
    Omit(&'static str),
    /// Replaces a tensor by one of this shape (zeros, same dtype).
    Reshape(&'static str, Vec<usize>),
    /// Replaces an f32 tensor by the same values as f64.
    ToF64(&'static str),
}

pub fn edited_tensors(name: &str, edits: &[TensorEdit]) -> Vec<u8> {
    let mut ts = tensors(&fixture(name).join("model.safetensors"));
    for e in edits {
        let key = match e {
            TensorEdit::Omit(k) | TensorEdit::Reshape(k, _) | TensorEdit::ToF64(k) => *k,
        };
        let i = ts
            .iter()
            .position(|t| t.name == key)
            .unwrap_or_else(|| panic!("{name} has no `{key}` to edit"));
        match e {
            TensorEdit::Omit(_) => {
                ts.remove(i);
            }
            TensorEdit::Reshape(_, shape) => {
                let t = &mut ts[i];
                t.data = vec![0; shape.iter().product::<usize>() * t.dtype.bitsize() / 8];
                t.shape = shape.clone();
            }
            TensorEdit::ToF64(_) => {
                let t = &mut ts[i];
                assert_eq!(t.dtype, Dtype::F32, "{key} is f32");
                let v: Vec<f32> = bytemuck::pod_collect_to_vec(&t.data);
                let wide: Vec<f64> = v.into_iter().map(f64::from).collect();
                t.data = bytemuck::cast_slice(&wide).to_vec();
                t.dtype = Dtype::F64;
            }
        }
    }
    serialize(&ts)
}

/// What a temporary model directory holds besides `config.json`.
pub enum Files {
    /// A copy of the fixture's checkpoint files.
    Fixture(&'static str),
    /// This `model.safetensors`.
    Bytes(Vec<u8>),
    /// No checkpoint at all.
    Nothing,
}

/// A fresh model directory under the system's temporary directory, removed on drop.
pub struct ModelDir(pub PathBuf);

impl ModelDir {
    pub fn new(label: &str, config: Option<&str>, files: Files) -> ModelDir {
        let dir = std::env::temp_dir().join(format!(
            "onepath-gemma4-errors-{}-{label}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temporary model directory");
        if let Some(text) = config {
            std::fs::write(dir.join("config.json"), text).expect("write config.json");
        }
        match files {
            Files::Fixture(name) => {
                for f in ["model.safetensors", "model.safetensors.index.json"] {
                    let src = fixture(name).join(f);
                    if src.is_file() {
                        std::fs::copy(&src, dir.join(f)).expect("copy the fixture checkpoint");
                    }
                }
            }
            Files::Bytes(b) => {
                std::fs::write(dir.join("model.safetensors"), b).expect("write model.safetensors")
            }
            Files::Nothing => {}
        }
        ModelDir(dir)
    }
}

impl Drop for ModelDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Opens and loads a model directory, with room for one sequence of 64 positions.
pub fn load_dir(gpu: &Gpu, dir: &Path) -> Result<Model, ModelError> {
    let (cfg, ckpt) = open_checkpoint(dir)?;
    let run = RunOptions::for_sequences(&cfg, 1, 64);
    pollster::block_on(Model::load(
        gpu,
        cfg,
        ckpt,
        &LoadOptions::default(),
        run,
        &mut |_, _| {},
    ))
}

/// Runs `f`, which must fail with a message containing `want`; a panic, a success or another
/// message is returned as the failure's description.
pub fn expect_error<T>(
    what: &str,
    want: &str,
    f: impl FnOnce() -> Result<T, ModelError>,
) -> Result<(), String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(format!(
                "{what}: panicked ({msg}) instead of an error naming {want:?}"
            ))
        }
        Ok(Ok(_)) => Err(format!(
            "{what}: accepted; expected an error naming {want:?}"
        )),
        Ok(Err(e)) => {
            let msg = e.to_string();
            eprintln!("{what}: {msg}");
            if msg.contains(want) {
                Ok(())
            } else {
                Err(format!(
                    "{what}: the error {msg:?} does not contain {want:?}"
                ))
            }
        }
    }
}

pub fn report(failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
