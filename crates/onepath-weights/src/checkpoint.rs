//! A loaded checkpoint: one or more safetensors shards plus the quantization config.

use std::collections::{BTreeSet, HashMap};

use crate::parse::{Entry, parse_shard};
use crate::quant::quantize_view;
use crate::source::ByteSource;
use crate::{QuantConfig, QuantParams, QuantizedTensor, Result, TensorView, WeightsError};

/// File name of a single-file checkpoint.
pub const SINGLE_FILE: &str = "model.safetensors";
/// File name of a sharded checkpoint's index.
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// A linear layer's weight as found in a checkpoint.
#[derive(Clone, Debug)]
pub enum Linear<'a> {
    /// MLX affine-quantized: `.weight` (u32), `.scales`, `.biases`.
    Quantized(QuantizedTensor<'a>),
    /// A plain float `.weight` `[out, in]` (F32, F16 or BF16).
    Dense(TensorView<'a>),
}

#[derive(Debug)]
struct Shard {
    name: String,
    bytes: ByteSource,
    metadata: HashMap<String, String>,
}

/// A safetensors checkpoint: single file or sharded, memory-mapped (native) or in memory.
///
/// All sources go through one parser, which validates every header and offset up front, so
/// tensor access afterwards cannot go out of bounds.
#[derive(Debug)]
pub struct Checkpoint {
    shards: Vec<Shard>,
    entries: HashMap<String, Entry>,
    quant: Option<QuantConfig>,
}

impl Checkpoint {
    /// Parses named shards (`(file name, bytes)`), checking them against an optional
    /// `model.safetensors.index.json` text. The one code path behind every constructor.
    pub fn from_sources(
        shards: Vec<(String, ByteSource)>,
        index_json: Option<&str>,
    ) -> Result<Self> {
        let mut entries: HashMap<String, Entry> = HashMap::new();
        let mut metas = Vec::with_capacity(shards.len());
        for (i, (name, bytes)) in shards.iter().enumerate() {
            let parsed = parse_shard(name, i, bytes)?;
            metas.push(parsed.metadata);
            for (tname, e) in parsed.entries {
                if let Some(prev) = entries.get(&tname) {
                    return Err(WeightsError::DuplicateTensor {
                        name: tname,
                        first: shards[prev.shard].0.clone(),
                        second: name.clone(),
                    });
                }
                entries.insert(tname, e);
            }
        }
        let shards: Vec<Shard> = shards
            .into_iter()
            .zip(metas)
            .map(|((name, bytes), metadata)| Shard {
                name,
                bytes,
                metadata,
            })
            .collect();
        if let Some(text) = index_json {
            check_index(text, &shards, &entries)?;
        }
        Ok(Checkpoint {
            shards,
            entries,
            quant: None,
        })
    }

    /// A single-file checkpoint from bytes (e.g. fetched in the browser).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        Self::from_sources(vec![(SINGLE_FILE.to_string(), bytes.into())], None)
    }

    /// A sharded checkpoint from named byte buffers (the names as in the index's `weight_map`),
    /// with the index text if available.
    pub fn from_shards(shards: Vec<(String, Vec<u8>)>, index_json: Option<&str>) -> Result<Self> {
        let shards = shards.into_iter().map(|(n, b)| (n, b.into())).collect();
        Self::from_sources(shards, index_json)
    }

    /// Opens a `.safetensors` file, or a directory holding `model.safetensors` or
    /// `model.safetensors.index.json` plus its shards. Files are memory-mapped. For a directory,
    /// `config.json` (if present) supplies the quantization config.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(path: impl AsRef<std::path::Path>) -> Result<Self> {
        use crate::source::map_file;
        let path = path.as_ref();
        let io = |source| WeightsError::Io {
            path: path.to_path_buf(),
            source,
        };
        if !path.is_dir() {
            let name = path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            return Self::from_sources(vec![(name, map_file(path)?)], None);
        }
        let index_path = path.join(INDEX_FILE);
        let mut ckpt = if index_path.is_file() {
            let text = std::fs::read_to_string(&index_path).map_err(|source| WeightsError::Io {
                path: index_path.clone(),
                source,
            })?;
            let mut shards = Vec::new();
            for file in index_files(&text)? {
                if file.contains(['/', '\\']) || file == ".." {
                    return Err(WeightsError::Index {
                        file: INDEX_FILE.into(),
                        detail: format!("shard name `{file}` is not a plain file name"),
                    });
                }
                let bytes = map_file(&path.join(&file))?;
                shards.push((file, bytes));
            }
            Self::from_sources(shards, Some(&text))?
        } else if path.join(SINGLE_FILE).is_file() {
            Self::from_sources(
                vec![(SINGLE_FILE.to_string(), map_file(&path.join(SINGLE_FILE))?)],
                None,
            )?
        } else {
            return Err(WeightsError::NoCheckpoint {
                path: path.to_path_buf(),
            });
        };
        let config = path.join("config.json");
        if config.is_file() {
            let text = std::fs::read_to_string(&config).map_err(io)?;
            ckpt.quant = QuantConfig::from_config_json(&text)?;
        }
        Ok(ckpt)
    }

    /// Sets the quantization config from the text of a `config.json` (absent entry: none).
    pub fn with_config_json(mut self, config_json: &str) -> Result<Self> {
        self.quant = QuantConfig::from_config_json(config_json)?;
        Ok(self)
    }

    /// Sets (or clears) the quantization config.
    pub fn with_quant_config(mut self, quant: Option<QuantConfig>) -> Self {
        self.quant = quant;
        self
    }

    /// The quantization config, if any.
    pub fn quant_config(&self) -> Option<&QuantConfig> {
        self.quant.as_ref()
    }

    /// Shard file names, in load order.
    pub fn files(&self) -> impl Iterator<Item = &str> {
        self.shards.iter().map(|s| s.name.as_str())
    }

    /// The `__metadata__` strings of shard `file` (`None` if no such shard).
    pub fn file_metadata(&self, file: &str) -> Option<&HashMap<String, String>> {
        self.shards
            .iter()
            .find(|s| s.name == file)
            .map(|s| &s.metadata)
    }

    /// All tensor names, sorted.
    pub fn tensor_names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.entries.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    /// Whether a tensor of this name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// A tensor by name. Errors if missing or of an unsupported dtype (F64, I64, F8, ...).
    pub fn tensor(&self, name: &str) -> Result<TensorView<'_>> {
        let (key, e) =
            self.entries
                .get_key_value(name)
                .ok_or_else(|| WeightsError::MissingTensor {
                    name: name.to_string(),
                })?;
        let shard = &self.shards[e.shard];
        let dtype = e
            .dtype
            .clone()
            .map_err(|dtype| WeightsError::UnsupportedDtype {
                tensor: name.to_string(),
                file: shard.name.clone(),
                dtype,
            })?;
        Ok(TensorView::new(
            key,
            &shard.name,
            dtype,
            &e.shape,
            &shard.bytes[e.start..e.end],
        ))
    }

    /// The linear at `path` (e.g. `model.layers.0.self_attn.q_proj`): quantized if
    /// `<path>.scales` / `<path>.biases` exist (bits and group size from the config, with
    /// per-path overrides), dense otherwise, whatever the config says (mlx-lm leaves linears
    /// whose input size is not a multiple of the group size dense without listing them).
    pub fn linear(&self, path: &str) -> Result<Linear<'_>> {
        let weight = self.tensor(&format!("{path}.weight"))?;
        let (sn, bn) = (format!("{path}.scales"), format!("{path}.biases"));
        match (self.contains(&sn), self.contains(&bn)) {
            (false, false) => {
                if !weight.dtype().is_float() {
                    return Err(WeightsError::WrongDtype {
                        tensor: weight.name().to_string(),
                        expected: "a float weight (no .scales/.biases found, so not quantized)"
                            .into(),
                        found: weight.dtype().to_string(),
                    });
                }
                Ok(Linear::Dense(weight))
            }
            (true, false) => Err(WeightsError::UnsupportedMode {
                context: format!("`{path}`"),
                mode: "non-affine (.scales without .biases, e.g. mxfp4/nvfp4/mxfp8)".into(),
            }),
            (false, true) => Err(WeightsError::MissingTensor { name: sn }),
            (true, true) => {
                let quant =
                    self.quant
                        .as_ref()
                        .ok_or_else(|| WeightsError::MissingQuantConfig {
                            linear: path.to_string(),
                        })?;
                let params = quant.params_for(path).ok_or_else(|| WeightsError::Config {
                    detail: format!("`{path}` is marked unquantized (false) in the config but has .scales/.biases"),
                })?;
                let (s, b) = (self.tensor(&sn)?, self.tensor(&bn)?);
                QuantizedTensor::from_views(path, &weight, &s, &b, params).map(Linear::Quantized)
            }
        }
    }

    /// The linear at `path` as a quantized tensor: the stored one if quantized, else the dense
    /// weight quantized now with MLX's rule and `params` (scales/biases in the weight's dtype),
    /// bit for bit what `mlx_lm.convert` would have stored.
    pub fn quantized_linear(&self, path: &str, params: QuantParams) -> Result<QuantizedTensor<'_>> {
        match self.linear(path)? {
            Linear::Quantized(q) => Ok(q),
            Linear::Dense(w) => quantize_view(&w, params),
        }
    }
}

fn index_err(detail: String) -> WeightsError {
    WeightsError::Index {
        file: INDEX_FILE.into(),
        detail,
    }
}

fn weight_map(text: &str) -> Result<serde_json::Map<String, serde_json::Value>> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| index_err(format!("not valid JSON: {e}")))?;
    match v.get("weight_map") {
        Some(serde_json::Value::Object(m)) => Ok(m.clone()),
        _ => Err(index_err("no `weight_map` object".into())),
    }
}

/// The distinct shard file names listed in an index, sorted.
pub fn index_files(index_json: &str) -> Result<Vec<String>> {
    let mut files = BTreeSet::new();
    for (t, f) in weight_map(index_json)? {
        let f = f
            .as_str()
            .ok_or_else(|| index_err(format!("`{t}` maps to a non-string")))?;
        files.insert(f.to_string());
    }
    Ok(files.into_iter().collect())
}

fn check_index(text: &str, shards: &[Shard], entries: &HashMap<String, Entry>) -> Result<()> {
    for (t, f) in weight_map(text)? {
        let f = f
            .as_str()
            .ok_or_else(|| index_err(format!("`{t}` maps to a non-string")))?;
        let Some(si) = shards.iter().position(|s| s.name == f) else {
            return Err(index_err(format!(
                "`{t}` is in shard `{f}`, which was not provided"
            )));
        };
        match entries.get(&t) {
            Some(e) if e.shard == si => {}
            Some(e) => {
                return Err(index_err(format!(
                    "`{t}` is listed in `{f}` but found in `{}`",
                    shards[e.shard].name
                )));
            }
            None => {
                return Err(index_err(format!(
                    "`{t}` is listed in `{f}` but that shard does not hold it"
                )));
            }
        }
    }
    Ok(())
}
