//! The model files a page hands over (a `Map` or plain object of file name -> bytes), turned
//! into a config, a checkpoint and a tokenizer, with an error naming whatever is missing or
//! malformed.

use onepath_model::{Config, shipped};
use onepath_text::Tokenizer;
use onepath_weights::{Checkpoint, INDEX_FILE, SINGLE_FILE, index_files};
use std::collections::BTreeMap;
use wasm_bindgen::{JsCast, JsValue};

/// A model ready to load: its config, checkpoint and (optional) tokenizer.
pub(crate) struct ModelFiles {
    pub name: String,
    pub config: Config,
    pub checkpoint: Checkpoint,
    pub tokenizer: Option<Tokenizer>,
}

/// The model compiled into onepath (`models/kjv-tiny`).
pub(crate) fn shipped_model() -> Result<ModelFiles, String> {
    let (config, checkpoint) =
        shipped::checkpoint().map_err(|e| format!("the shipped model: {e}"))?;
    let tokenizer = Tokenizer::from_bytes(shipped::TOKENIZER)
        .map_err(|e| format!("the shipped model's tokenizer.json: {e}"))?;
    Ok(ModelFiles {
        name: shipped::NAME.to_string(),
        config,
        checkpoint,
        tokenizer: Some(tokenizer),
    })
}

/// Reads the page's files: `files` is a `Map` or an object whose keys are file names (a path's
/// last component counts) and whose values are `Uint8Array`s or `ArrayBuffer`s.
pub(crate) fn from_js(files: &JsValue) -> Result<ModelFiles, String> {
    let mut named = collect(files)?;
    let listing = named.keys().cloned().collect::<Vec<_>>().join(", ");
    let cfg_bytes = named
        .remove("config.json")
        .ok_or_else(|| format!("no config.json among the model files (got: {})", listing))?;
    let cfg_text =
        String::from_utf8(cfg_bytes).map_err(|e| format!("config.json is not UTF-8 text: {e}"))?;
    let config = Config::from_json(&cfg_text).map_err(|e| format!("config.json: {e}"))?;
    let tokenizer = match named.remove("tokenizer.json") {
        Some(b) => Some(Tokenizer::from_bytes(&b).map_err(|e| format!("tokenizer.json: {e}"))?),
        None => None,
    };
    let checkpoint = if let Some(index) = named.remove(INDEX_FILE) {
        let index =
            String::from_utf8(index).map_err(|e| format!("{INDEX_FILE} is not UTF-8 text: {e}"))?;
        let names = index_files(&index).map_err(|e| format!("{INDEX_FILE}: {e}"))?;
        let mut shards = Vec::with_capacity(names.len());
        for n in names {
            let bytes = named.remove(&n).ok_or_else(|| {
                format!("{INDEX_FILE} names the shard {n}, which is not among the files given")
            })?;
            shards.push((n, bytes));
        }
        Checkpoint::from_shards(shards, Some(&index))
    } else if let Some(bytes) = named.remove(SINGLE_FILE) {
        Checkpoint::from_bytes(bytes)
    } else {
        let mut st: Vec<String> = named
            .keys()
            .filter(|n| n.ends_with(".safetensors"))
            .cloned()
            .collect();
        if st.len() != 1 {
            return Err(format!(
                "give {SINGLE_FILE}, or {INDEX_FILE} with its shards, or exactly one \
                 .safetensors file (got: {})",
                listing
            ));
        }
        let n = st.remove(0);
        let bytes = named.remove(&n).unwrap_or_default();
        Checkpoint::from_shards(vec![(n, bytes)], None)
    }
    .and_then(|c| c.with_config_json(&cfg_text))
    .map_err(|e| format!("malformed model file: {e}"))?;
    Ok(ModelFiles {
        name: "model from files".to_string(),
        config,
        checkpoint,
        tokenizer,
    })
}

/// File name -> bytes, from a `Map` or a plain object.
fn collect(files: &JsValue) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let entries: js_sys::Array = if let Some(map) = files.dyn_ref::<js_sys::Map>() {
        js_sys::Array::from(&map.entries().into())
    } else if files.is_object() {
        js_sys::Object::entries(files.unchecked_ref())
    } else {
        return Err("the model files must be a Map or an object of name -> Uint8Array".into());
    };
    let mut out = BTreeMap::new();
    for pair in entries.iter() {
        let pair: js_sys::Array = pair.unchecked_into();
        let path = pair
            .get(0)
            .as_string()
            .ok_or("a model file's name is not a string")?;
        let name = path.rsplit('/').next().unwrap_or(&path).to_string();
        let value = pair.get(1);
        let bytes = if let Some(a) = value.dyn_ref::<js_sys::Uint8Array>() {
            a.to_vec()
        } else if let Some(b) = value.dyn_ref::<js_sys::ArrayBuffer>() {
            js_sys::Uint8Array::new(b).to_vec()
        } else {
            return Err(format!(
                "{path}: the value is not a Uint8Array or ArrayBuffer"
            ));
        };
        if out.insert(name.clone(), bytes).is_some() {
            return Err(format!("two model files are named {name}"));
        }
    }
    Ok(out)
}
