//! Gemma 4 text configuration, read from a checkpoint's `config.json`.
//!
//! Both styles real checkpoints use are read: the Hub's (`global_head_dim`,
//! `num_global_key_value_heads`) and the `per_layer_config` block transformers 5 writes. Keys
//! that the reference libraries default differently (`use_double_wide_mlp`,
//! `num_kv_shared_layers`, `final_logit_softcapping`, `num_key_value_heads`, `layer_types`)
//! are required: a missing one is an error naming it, never a guess.

use crate::ModelError;
use serde_json::Value;

/// Attention kind of a layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Sliding-window attention: keys with `q_pos - k_pos < sliding_window`.
    Sliding,
    /// Full (global) attention.
    Full,
}

/// Per-kind attention shape.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttnShape {
    pub head_dim: usize,
    pub kv_heads: usize,
    pub rope_theta: f64,
    /// Share of the head dim that rotates (1.0: all; proportional RoPE: 0.25, with the
    /// frequencies' denominator the full head dim).
    pub partial_rotary: f64,
}

/// The Gemma 4 text decoder's hyper-parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub hidden: usize,
    pub layers: usize,
    pub intermediate: usize,
    pub heads: usize,
    pub sliding: AttnShape,
    pub full: AttnShape,
    pub vocab: usize,
    /// Per-layer-input width (`hidden_size_per_layer_input`); 0: no per-layer inputs.
    pub ple_dim: usize,
    pub ple_vocab: usize,
    pub kv_shared: usize,
    pub double_wide: bool,
    pub sliding_window: usize,
    pub layer_kinds: Vec<Kind>,
    pub softcap: Option<f32>,
    pub eps: f32,
    pub tie_embeddings: bool,
    /// Full layers use the raw K projection as V (`attention_k_eq_v`).
    pub k_eq_v: bool,
    pub max_positions: usize,
    pub bos: Option<u32>,
    pub eos: Vec<u32>,
}

fn missing(key: &str, why: &str) -> ModelError {
    ModelError::Config(format!("config.json has no `{key}` ({why})"))
}

fn bad(key: &str, v: &Value, want: &str) -> ModelError {
    ModelError::Config(format!("config.json `{key}` is {v}, expected {want}"))
}

fn uint(c: &Value, key: &str) -> Result<usize, ModelError> {
    uint_why(c, key, "required")
}

fn uint_why(c: &Value, key: &str, why: &str) -> Result<usize, ModelError> {
    let v = c.get(key).ok_or_else(|| missing(key, why))?;
    v.as_u64()
        .map(|x| x as usize)
        .ok_or_else(|| bad(key, v, "a non-negative integer"))
}

fn num(c: &Value, key: &str) -> Result<f64, ModelError> {
    let v = c.get(key).ok_or_else(|| missing(key, "required"))?;
    v.as_f64().ok_or_else(|| bad(key, v, "a number"))
}

fn boolean(c: &Value, key: &str, why: &str) -> Result<bool, ModelError> {
    let v = c.get(key).ok_or_else(|| missing(key, why))?;
    v.as_bool().ok_or_else(|| bad(key, v, "true or false"))
}

/// A token id from the config: a 32-bit value (never truncated).
fn token_id(key: &str, x: u64) -> Result<u32, ModelError> {
    u32::try_from(x).map_err(|_| {
        ModelError::Config(format!("config.json `{key}` {x} is not a 32-bit token id"))
    })
}

const DIFFERS: &str = "required: transformers and mlx-lm default it differently";

impl Config {
    /// Parses `config.json` text: a text config (`model_type` `gemma4_text`) or a multimodal
    /// one with the text part under `text_config`.
    pub fn from_json(text: &str) -> Result<Config, ModelError> {
        let root: Value = serde_json::from_str(text)
            .map_err(|e| ModelError::Config(format!("config.json is not valid JSON: {e}")))?;
        let c = match root.get("text_config") {
            Some(t) if t.is_object() => t,
            None | Some(Value::Null) => &root,
            Some(t) => return Err(bad("text_config", t, "an object")),
        };
        let mt = match c.get("model_type").or_else(|| root.get("model_type")) {
            Some(Value::String(s)) => s.as_str(),
            Some(v) => return Err(bad("model_type", v, "a string")),
            None => return Err(missing("model_type", "required: gemma4 or gemma4_text")),
        };
        if !mt.starts_with("gemma4") {
            return Err(ModelError::Unsupported(format!(
                "model_type `{mt}`: onepath runs Gemma 4 text decoders (gemma4 / gemma4_text)"
            )));
        }
        if c.get("enable_moe_block").and_then(Value::as_bool) == Some(true)
            || c.get("num_experts").and_then(Value::as_u64).unwrap_or(0) > 0
        {
            return Err(ModelError::Unsupported(
                "Gemma 4 with a mixture-of-experts block (26B-A4B): not supported yet".into(),
            ));
        }
        let layers = uint(c, "num_hidden_layers")?;
        let layer_kinds = match c.get("layer_types") {
            Some(Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, k)| match k.as_str() {
                    Some("sliding_attention") => Ok(Kind::Sliding),
                    Some("full_attention") => Ok(Kind::Full),
                    _ => Err(bad(
                        &format!("layer_types[{i}]"),
                        k,
                        "sliding_attention or full_attention",
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(v) => return Err(bad("layer_types", v, "a list")),
            None => return Err(missing("layer_types", DIFFERS)),
        };
        if layer_kinds.len() != layers {
            return Err(ModelError::Config(format!(
                "config.json lists {} layer_types for {layers} layers",
                layer_kinds.len()
            )));
        }
        let heads = uint(c, "num_attention_heads")?;
        let kv_heads = {
            let v = c
                .get("num_key_value_heads")
                .ok_or_else(|| missing("num_key_value_heads", DIFFERS))?;
            v.as_u64()
                .ok_or_else(|| bad("num_key_value_heads", v, "an integer"))? as usize
        };
        let k_eq_v = c
            .get("attention_k_eq_v")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let head_dim = uint(c, "head_dim")?;
        let (global_dim, global_kv) = global_shape(c, &layer_kinds, kv_heads, k_eq_v)?;
        let rope = c
            .get("rope_parameters")
            .ok_or_else(|| missing("rope_parameters", "required"))?;
        let rope_of = |kind: &str| -> Result<(f64, f64), ModelError> {
            let r = rope
                .get(kind)
                .ok_or_else(|| missing(&format!("rope_parameters.{kind}"), "required"))?;
            let theta = num(r, "rope_theta")?;
            let partial = r
                .get("partial_rotary_factor")
                .and_then(Value::as_f64)
                .unwrap_or(1.0);
            Ok((theta, partial))
        };
        let (s_theta, s_partial) = rope_of("sliding_attention")?;
        let (f_theta, f_partial) = rope_of("full_attention")?;
        let softcap = match c.get("final_logit_softcapping") {
            None => return Err(missing("final_logit_softcapping", DIFFERS)),
            Some(Value::Null) => None,
            Some(v) => Some(
                v.as_f64()
                    .ok_or_else(|| bad("final_logit_softcapping", v, "a number"))?
                    as f32,
            ),
        };
        let ple_dim = c
            .get("hidden_size_per_layer_input")
            .map(|v| {
                v.as_u64()
                    .map(|x| x as usize)
                    .ok_or_else(|| bad("hidden_size_per_layer_input", v, "an integer"))
            })
            .transpose()?
            .ok_or_else(|| missing("hidden_size_per_layer_input", "required; 0 for none"))?;
        let vocab = uint(c, "vocab_size")?;
        let eos = match c.get("eos_token_id").or_else(|| root.get("eos_token_id")) {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_u64)
                .map(|x| token_id("eos_token_id", x))
                .collect::<Result<_, _>>()?,
            Some(v) => match v.as_u64() {
                Some(x) => vec![token_id("eos_token_id", x)?],
                None => Vec::new(),
            },
            None => vec![1],
        };
        let bos = c
            .get("bos_token_id")
            .or_else(|| root.get("bos_token_id"))
            .and_then(Value::as_u64)
            .map(|x| token_id("bos_token_id", x))
            .transpose()?;
        let cfg = Config {
            hidden: uint(c, "hidden_size")?,
            layers,
            intermediate: uint(c, "intermediate_size")?,
            heads,
            sliding: AttnShape {
                head_dim,
                kv_heads,
                rope_theta: s_theta,
                partial_rotary: s_partial,
            },
            full: AttnShape {
                head_dim: global_dim,
                kv_heads: global_kv,
                rope_theta: f_theta,
                partial_rotary: f_partial,
            },
            vocab,
            ple_dim,
            ple_vocab: c
                .get("vocab_size_per_layer_input")
                .and_then(Value::as_u64)
                .map_or(vocab, |x| x as usize),
            kv_shared: uint_why(c, "num_kv_shared_layers", DIFFERS)?,
            double_wide: boolean(c, "use_double_wide_mlp", DIFFERS)?,
            sliding_window: uint(c, "sliding_window")?,
            layer_kinds,
            softcap,
            eps: num(c, "rms_norm_eps")? as f32,
            tie_embeddings: c
                .get("tie_word_embeddings")
                .or_else(|| root.get("tie_word_embeddings"))
                .and_then(Value::as_bool)
                .unwrap_or(true),
            k_eq_v,
            max_positions: c
                .get("max_position_embeddings")
                .and_then(Value::as_u64)
                .map_or(131072, |x| x as usize),
            bos,
            eos,
        };
        cfg.check()?;
        Ok(cfg)
    }

    fn check(&self) -> Result<(), ModelError> {
        let err = |m: String| Err(ModelError::Config(m));
        if self.heads == 0 || self.hidden == 0 || self.layers == 0 || self.vocab == 0 {
            return err("hidden_size, num_hidden_layers, num_attention_heads and vocab_size must be positive".into());
        }
        for (what, kind, s) in [
            ("sliding", Kind::Sliding, &self.sliding),
            ("full", Kind::Full, &self.full),
        ] {
            if s.kv_heads == 0 || !self.heads.is_multiple_of(s.kv_heads) {
                return err(format!(
                    "{what} layers: {} query heads do not group over {} KV heads",
                    self.heads, s.kv_heads
                ));
            }
            let used = self.layer_kinds.contains(&kind);
            if used && (s.head_dim == 0 || !s.head_dim.is_multiple_of(2)) {
                return err(format!(
                    "{what} layers: head_dim {} must be positive and even (RoPE rotates halves)",
                    s.head_dim
                ));
            }
            let ok = s.partial_rotary > 0.0 && s.partial_rotary <= 1.0 && s.rope_theta > 0.0;
            if !ok {
                return err(format!("{what} layers: bad RoPE parameters {s:?}"));
            }
        }
        if self.kv_shared >= self.layers {
            return err(format!(
                "num_kv_shared_layers {} leaves no layer computing K/V of {} layers",
                self.kv_shared, self.layers
            ));
        }
        for kind in [Kind::Sliding, Kind::Full] {
            let used = self.layer_kinds.contains(&kind);
            if used && self.kv_source(kind).is_none() {
                let name = match kind {
                    Kind::Sliding => "sliding-window",
                    Kind::Full => "full-attention",
                };
                return err(format!(
                    "no layer before the KV-shared ones computes {name} K/V for them to share"
                ));
            }
        }
        if self.sliding_window == 0 {
            return err("sliding_window must be positive".into());
        }
        // Sizes are multiplied together (MLP widths, table sizes, GPU offsets): each must fit
        // 32 bits, so no product of two overflows.
        for (key, v) in [
            ("hidden_size", self.hidden),
            ("num_hidden_layers", self.layers),
            ("intermediate_size", self.intermediate),
            ("num_attention_heads", self.heads),
            ("head_dim", self.sliding.head_dim),
            ("global_head_dim", self.full.head_dim),
            ("num_key_value_heads", self.sliding.kv_heads),
            ("num_global_key_value_heads", self.full.kv_heads),
            ("vocab_size", self.vocab),
            ("hidden_size_per_layer_input", self.ple_dim),
            ("vocab_size_per_layer_input", self.ple_vocab),
            ("sliding_window", self.sliding_window),
            ("max_position_embeddings", self.max_positions),
        ] {
            if u32::try_from(v).is_err() {
                return err(format!("{key} {v} is too large: sizes must fit 32 bits"));
            }
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return err(format!(
                "rms_norm_eps {} must be finite and positive",
                self.eps
            ));
        }
        if let Some(c) = self.softcap
            && !(c.is_finite() && c > 0.0)
        {
            return err(format!(
                "final_logit_softcapping {c} must be finite and positive (or null for none)"
            ));
        }
        // Per-layer inputs are gathered by token id from a table of `ple_vocab` rows.
        if self.ple_dim > 0 && self.ple_vocab < self.vocab {
            return Err(ModelError::Unsupported(format!(
                "vocab_size_per_layer_input {} is smaller than vocab_size {}: token ids past \
                 the per-layer table",
                self.ple_vocab, self.vocab
            )));
        }
        Ok(())
    }

    /// The attention shape of `kind` layers.
    pub fn attn(&self, kind: Kind) -> &AttnShape {
        match kind {
            Kind::Sliding => &self.sliding,
            Kind::Full => &self.full,
        }
    }

    /// Index of the first KV-shared layer.
    pub fn first_shared(&self) -> usize {
        self.layers - self.kv_shared
    }

    /// The last non-shared layer of `kind`: the one whose K/V the shared layers of that kind
    /// read.
    pub fn kv_source(&self, kind: Kind) -> Option<usize> {
        (0..self.first_shared())
            .rev()
            .find(|&l| self.layer_kinds[l] == kind)
    }

    /// The layer whose cache layer `l` attends: itself, or its source if KV-shared.
    pub fn cache_layer(&self, l: usize) -> usize {
        if l < self.first_shared() {
            l
        } else {
            self.kv_source(self.layer_kinds[l]).unwrap_or(l)
        }
    }

    /// MLP width of layer `l` (double in KV-shared layers when `use_double_wide_mlp`).
    pub fn mlp_width(&self, l: usize) -> usize {
        if self.double_wide && l >= self.first_shared() {
            2 * self.intermediate
        } else {
            self.intermediate
        }
    }
}

/// Full layers' head dim and KV heads, from the Hub keys or from transformers 5's
/// `per_layer_config` (which lists the full layers' overrides).
fn global_shape(
    c: &Value,
    kinds: &[Kind],
    kv_heads: usize,
    k_eq_v: bool,
) -> Result<(usize, usize), ModelError> {
    if let Some(v) = c.get("global_head_dim") {
        let d = v
            .as_u64()
            .ok_or_else(|| bad("global_head_dim", v, "an integer"))? as usize;
        // transformers overrides the full layers' KV heads only with attention_k_eq_v
        // (mlx-lm likewise).
        let kv = match c.get("num_global_key_value_heads").and_then(Value::as_u64) {
            Some(n) if k_eq_v => n as usize,
            _ => kv_heads,
        };
        return Ok((d, kv));
    }
    let Some(plc) = c.get("per_layer_config").and_then(Value::as_object) else {
        if !kinds.contains(&Kind::Full) {
            return Ok((0, kv_heads));
        }
        return Err(missing(
            "global_head_dim",
            "nor a `per_layer_config` block: the full layers' head dim is unknown",
        ));
    };
    let mut found: Option<(usize, usize)> = None;
    for (l, kind) in kinds.iter().enumerate() {
        if *kind != Kind::Full {
            continue;
        }
        let entry = plc
            .get(&l.to_string())
            .ok_or_else(|| missing(&format!("per_layer_config.{l}"), "a full layer's overrides"))?;
        let d = uint(entry, "head_dim")?;
        let kv = entry
            .get("num_key_value_heads")
            .and_then(Value::as_u64)
            .map_or(kv_heads, |x| x as usize);
        match found {
            Some(f) if f != (d, kv) => {
                return Err(ModelError::Config(format!(
                    "per_layer_config gives full layers different shapes ({f:?} and {:?})",
                    (d, kv)
                )));
            }
            _ => found = Some((d, kv)),
        }
    }
    Ok(found.unwrap_or((0, kv_heads)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped model's config with `key` (at the top level or under `text_config`) set.
    fn with(key: &str, v: Value) -> Result<Config, ModelError> {
        let mut root: Value = serde_json::from_str(crate::shipped::CONFIG).expect("JSON");
        let c = match root.get_mut("text_config") {
            Some(t) if t.is_object() => t,
            _ => &mut root,
        };
        c[key] = v;
        Config::from_json(&root.to_string())
    }

    fn err(key: &str, v: Value) -> String {
        match with(key, v) {
            Ok(_) => panic!("{key}: accepted"),
            Err(e) => e.to_string(),
        }
    }

    /// Found by the `config` fuzz target: `mlp_width` doubled an intermediate size of 2^63.
    #[test]
    fn sizes_must_fit_32_bits() {
        let e = err("intermediate_size", Value::from(1u64 << 63));
        assert!(
            e.contains("intermediate_size 9223372036854775808 is too large"),
            "{e}"
        );
        let e = err("hidden_size", Value::from(1u64 << 32));
        assert!(e.contains("hidden_size 4294967296 is too large"), "{e}");
    }

    #[test]
    fn token_ids_are_never_truncated() {
        let e = err("eos_token_id", Value::from(1u64 << 40));
        assert!(
            e.contains("`eos_token_id` 1099511627776 is not a 32-bit token id"),
            "{e}"
        );
        let e = err("bos_token_id", Value::from(u64::MAX));
        assert!(e.contains("`bos_token_id` 18446744073709551615"), "{e}");
    }

    #[test]
    fn eps_and_softcap_must_be_positive() {
        assert!(err("rms_norm_eps", Value::from(-1.0)).contains("rms_norm_eps -1 must be finite"));
        let e = err("final_logit_softcapping", Value::from(0.0));
        assert!(
            e.contains("final_logit_softcapping 0 must be finite and positive"),
            "{e}"
        );
        assert!(with("final_logit_softcapping", Value::Null).is_ok());
    }
}
