//! The `quantization` entry of an MLX `config.json`.
//!
//! mlx-lm writes e.g.
//! `"quantization": {"group_size": 64, "bits": 4, "mode": "affine",
//!   "model.layers.0.mlp.down_proj": {"group_size": 64, "bits": 8}, "model.embed_tokens": false}`
//! and copies it to `quantization_config`. Per-path entries are keyed by module path (the tensor
//! name without `.weight`); `false` marks a path left unquantized. A linear that MLX skipped
//! because its input size is not a multiple of the group size is not listed at all: only the
//! absence of `.scales` tells (see [`crate::Checkpoint::linear`]).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::{Result, WeightsError};

/// Bit widths of MLX's affine mode (all supported by this crate's CPU code).
pub const SUPPORTED_BITS: [u32; 6] = [2, 3, 4, 5, 6, 8];
/// Group sizes of MLX's affine mode.
pub const SUPPORTED_GROUP_SIZES: [usize; 3] = [32, 64, 128];

/// Affine quantization parameters for one tensor (the mode is always `affine`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct QuantParams {
    /// Elements per (scale, bias) group along the input dimension: 32, 64 or 128.
    pub group_size: usize,
    /// Bits per element: 2, 3, 4, 5, 6 or 8.
    pub bits: u32,
}

impl QuantParams {
    /// Validated parameters; `context` names where they came from in errors.
    pub fn new(group_size: usize, bits: u32, context: &str) -> Result<Self> {
        check_bits(bits as u64, context)?;
        check_group_size(group_size as u64, context)?;
        Ok(QuantParams { group_size, bits })
    }
}

pub(crate) fn check_bits(bits: u64, context: &str) -> Result<()> {
    if SUPPORTED_BITS.iter().any(|&b| b as u64 == bits) {
        Ok(())
    } else {
        Err(WeightsError::UnsupportedBits {
            context: context.to_string(),
            bits,
        })
    }
}

pub(crate) fn check_group_size(group_size: u64, context: &str) -> Result<()> {
    if SUPPORTED_GROUP_SIZES
        .iter()
        .any(|&g| g as u64 == group_size)
    {
        Ok(())
    } else {
        Err(WeightsError::UnsupportedGroupSize {
            context: context.to_string(),
            group_size,
        })
    }
}

/// A parsed quantization entry: defaults plus per-path overrides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuantConfig {
    /// Parameters for every path without an override.
    pub default: QuantParams,
    /// Per-path overrides: `Some(params)` or `None` for a path marked `false` (unquantized).
    pub overrides: BTreeMap<String, Option<QuantParams>>,
}

impl QuantConfig {
    /// A config with only defaults.
    pub fn uniform(params: QuantParams) -> Self {
        QuantConfig {
            default: params,
            overrides: BTreeMap::new(),
        }
    }

    /// Reads `quantization` (or, failing that, `quantization_config`) from the text of a
    /// `config.json`. `Ok(None)` when neither is present (an unquantized checkpoint).
    pub fn from_config_json(text: &str) -> Result<Option<QuantConfig>> {
        let v: Value = serde_json::from_str(text).map_err(|e| WeightsError::Config {
            detail: format!("config.json is not valid JSON: {e}"),
        })?;
        let obj = v.as_object().ok_or_else(|| WeightsError::Config {
            detail: "config.json is not a JSON object".into(),
        })?;
        for key in ["quantization", "quantization_config"] {
            match obj.get(key) {
                None | Some(Value::Null) => continue,
                Some(entry) => return QuantConfig::from_entry(entry, key).map(Some),
            }
        }
        Ok(None)
    }

    /// Parses the entry itself (`{"group_size": .., "bits": .., "mode": .., <path>: ..}`);
    /// `key` names it in errors.
    pub fn from_entry(entry: &Value, key: &str) -> Result<QuantConfig> {
        let obj = entry.as_object().ok_or_else(|| WeightsError::Config {
            detail: format!("`{key}` is not a JSON object"),
        })?;
        // mlx-lm's entries carry no `quant_method`; other tools' (gptq, awq, fp8, ...) do.
        match obj.get("quant_method") {
            None | Some(Value::Null) => {}
            Some(Value::String(m)) if m == "mlx" => {}
            Some(m) => {
                return Err(WeightsError::UnsupportedMode {
                    context: format!("config `{key}`"),
                    mode: format!("quant_method {m}"),
                });
            }
        }
        check_mode(obj, key)?;
        let group_size =
            get_uint(obj, "group_size", key)?.ok_or_else(|| missing(key, "group_size"))?;
        let bits = get_uint(obj, "bits", key)?.ok_or_else(|| missing(key, "bits"))?;
        check_bits(bits, &format!("config `{key}`"))?;
        check_group_size(group_size, &format!("config `{key}`"))?;
        let default = QuantParams {
            group_size: group_size as usize,
            bits: bits as u32,
        };

        let mut overrides = BTreeMap::new();
        for (path, v) in obj {
            let ctx = format!("config `{key}.{path}`");
            let params = match v {
                Value::Bool(false) => None,
                Value::Bool(true) => Some(default),
                Value::Object(o) => {
                    check_mode(o, &ctx)?;
                    let g = get_uint(o, "group_size", &ctx)?.unwrap_or(default.group_size as u64);
                    let b = get_uint(o, "bits", &ctx)?.unwrap_or(default.bits as u64);
                    check_bits(b, &ctx)?;
                    check_group_size(g, &ctx)?;
                    Some(QuantParams {
                        group_size: g as usize,
                        bits: b as u32,
                    })
                }
                // group_size / bits / mode and other scalar keys (e.g. "quant_method").
                _ => continue,
            };
            overrides.insert(path.clone(), params);
        }
        Ok(QuantConfig { default, overrides })
    }

    /// Parameters for the module at `path` (e.g. `model.layers.0.self_attn.q_proj`):
    /// the override if any (`None` if marked `false`), else the default.
    pub fn params_for(&self, path: &str) -> Option<QuantParams> {
        match self.overrides.get(path) {
            Some(p) => *p,
            None => Some(self.default),
        }
    }
}

fn missing(key: &str, field: &str) -> WeightsError {
    WeightsError::Config {
        detail: format!("`{key}` has no `{field}`"),
    }
}

fn check_mode(obj: &Map<String, Value>, ctx: &str) -> Result<()> {
    match obj.get("mode") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(m)) if m == "affine" => Ok(()),
        Some(Value::String(m)) => Err(WeightsError::UnsupportedMode {
            context: ctx.to_string(),
            mode: m.clone(),
        }),
        Some(other) => Err(WeightsError::Config {
            detail: format!("{ctx}: `mode` should be a string, found {other}"),
        }),
    }
}

fn get_uint(obj: &Map<String, Value>, field: &str, ctx: &str) -> Result<Option<u64>> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| WeightsError::Config {
            detail: format!("{ctx}: `{field}` should be a non-negative integer, found {v}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mlx_entry_with_overrides() {
        let text = r#"{"quantization": {"group_size": 64, "bits": 4, "mode": "affine",
            "a.down_proj": {"group_size": 32, "bits": 8}, "a.embed": false},
            "quantization_config": {"group_size": 64, "bits": 4}}"#;
        let q = QuantConfig::from_config_json(text).unwrap().unwrap();
        assert_eq!(
            q.params_for("a.q_proj"),
            Some(QuantParams {
                group_size: 64,
                bits: 4
            })
        );
        assert_eq!(
            q.params_for("a.down_proj"),
            Some(QuantParams {
                group_size: 32,
                bits: 8
            })
        );
        assert_eq!(q.params_for("a.embed"), None);
    }

    #[test]
    fn falls_back_to_quantization_config_and_none() {
        let q = QuantConfig::from_config_json(
            r#"{"quantization_config": {"group_size": 128, "bits": 8}}"#,
        );
        assert_eq!(
            q.unwrap().unwrap().default,
            QuantParams {
                group_size: 128,
                bits: 8
            }
        );
        assert!(
            QuantConfig::from_config_json(r#"{"hidden_size": 8}"#)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn rejects_bad_entries() {
        let bad = |s: &str| QuantConfig::from_config_json(s).unwrap_err();
        assert!(matches!(
            bad(r#"{"quantization": {"group_size": 64, "bits": 7}}"#),
            WeightsError::UnsupportedBits { bits: 7, .. }
        ));
        assert!(matches!(
            bad(r#"{"quantization": {"group_size": 48, "bits": 4}}"#),
            WeightsError::UnsupportedGroupSize { .. }
        ));
        assert!(matches!(
            bad(r#"{"quantization": {"group_size": 32, "bits": 4, "mode": "mxfp4"}}"#),
            WeightsError::UnsupportedMode { .. }
        ));
        assert!(matches!(
            bad(r#"{"quantization": {"group_size": 64, "bits": 4, "x": {"mode": "nvfp4"}}}"#),
            WeightsError::UnsupportedMode { .. }
        ));
        assert!(matches!(
            bad(r#"{"quantization_config": {"quant_method": "gptq"}}"#),
            WeightsError::UnsupportedMode { .. }
        ));
        assert!(matches!(
            bad(r#"{"quantization": {"bits": 4}}"#),
            WeightsError::Config { .. }
        ));
        assert!(matches!(
            bad(r#"{"quantization": {"group_size": "64", "bits": 4}}"#),
            WeightsError::Config { .. }
        ));
        assert!(matches!(bad("{not json"), WeightsError::Config { .. }));
    }
}
