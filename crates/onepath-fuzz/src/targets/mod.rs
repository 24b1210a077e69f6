//! The fuzz targets. Each takes bytes, drives one public parser with them and returns its
//! outcome; a panic, a hang or a huge allocation is a bug in that parser's crate.
//!
//! To add a target: write a `fn(&[u8]) -> Outcome` and a seed list in a module here, and add a
//! [`Target`] to [`TARGETS`]. `scripts/fuzz.sh` and the smoke test run every target in the
//! list.

use crate::Outcome;

pub mod config;
pub mod mask;
pub mod server;
pub mod text;
pub mod weights;

/// Builds an input from the structure `arbitrary` reads out of random bytes.
pub type Generator = fn(&mut arbitrary::Unstructured) -> arbitrary::Result<Vec<u8>>;

/// One fuzz target.
pub struct Target {
    /// The name `onepath-fuzz <name>` takes.
    pub name: &'static str,
    /// What it drives.
    pub about: &'static str,
    /// True for parser targets, the ones run for 10 million executions once (README).
    pub parser: bool,
    /// Valid inputs the mutations start from.
    pub seeds: fn() -> Vec<Vec<u8>>,
    /// Builds an input from an `arbitrary`-generated structure (the mutations then apply).
    pub generate: Option<Generator>,
    /// Runs one input.
    pub run: fn(&[u8]) -> Outcome,
}

/// Every target, in the order `scripts/fuzz.sh` runs them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "safetensors",
        about: "a safetensors file: Checkpoint::from_bytes, every tensor and linear of it",
        parser: true,
        seeds: weights::safetensors_seeds,
        generate: Some(weights::generate_safetensors),
        run: weights::safetensors,
    },
    Target {
        name: "index",
        about: "model.safetensors.index.json: index_files and Checkpoint::from_shards",
        parser: true,
        seeds: weights::index_seeds,
        generate: None,
        run: weights::index,
    },
    Target {
        name: "config",
        about: "config.json (text, multimodal and per_layer_config styles): Config::from_json",
        parser: true,
        seeds: config::config_seeds,
        generate: None,
        run: config::config,
    },
    Target {
        name: "quant",
        about: "MLX quantization entries: QuantConfig::from_config_json, QuantizedTensor::new",
        parser: true,
        seeds: config::quant_seeds,
        generate: Some(config::generate_quant),
        run: config::quant,
    },
    Target {
        name: "mask",
        about: "mask canonicalisation: canonicalize on arbitrary shapes, forms and key ranges; \
                KeySet::check on hand-made key sets",
        parser: true,
        seeds: mask::seeds,
        generate: None,
        run: mask::mask,
    },
    Target {
        name: "tokenizer",
        about: "tokenizer input: arbitrary bytes (invalid UTF-8 included) through encode, \
                arbitrary ids through decode and StreamDecoder",
        parser: true,
        seeds: text::seeds,
        generate: None,
        run: text::tokenizer_target,
    },
    Target {
        name: "request",
        about: "the server's request bodies (POST /v1/completions and /v1/chat/completions)",
        parser: true,
        seeds: server::seeds,
        generate: None,
        run: server::request,
    },
];

/// The target named `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// An outcome from a parser's result.
pub(crate) fn outcome<T, E: std::fmt::Display>(r: Result<T, E>) -> Outcome {
    r.map(|_| ()).map_err(|e| e.to_string())
}
