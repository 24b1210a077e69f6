//! The model that ships inside onepath: `kjv-tiny`, a 6.5 M-parameter Gemma 4 trained on the
//! King James Bible (`models/kjv-tiny/`, its card and training script there), as its MLX 4-bit
//! conversion. Compiled into the library, so `onepath generate` and the browser page run it
//! with no download and no path.

use crate::{Config, ModelError};
use onepath_weights::Checkpoint;

/// Its name in logs and in `/v1/models`.
pub const NAME: &str = "kjv-tiny";
/// `config.json` of the 4-bit conversion.
pub const CONFIG: &str = include_str!("../../../models/kjv-tiny/mlx-q4/config.json");
/// Its weights (one safetensors file).
pub const WEIGHTS: &[u8] = include_bytes!("../../../models/kjv-tiny/mlx-q4/model.safetensors");
/// Its byte-level BPE tokenizer (`tokenizer.json`, with Gemma's control tokens at Gemma's ids).
pub const TOKENIZER: &[u8] = include_bytes!("../../../models/kjv-tiny/mlx-q4/tokenizer.json");

/// The shipped model's config and checkpoint.
pub fn checkpoint() -> Result<(Config, Checkpoint), ModelError> {
    let cfg = Config::from_json(CONFIG)?;
    let ckpt = Checkpoint::from_bytes(WEIGHTS.to_vec())?.with_config_json(CONFIG)?;
    Ok((cfg, ckpt))
}
