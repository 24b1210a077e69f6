//! onepath's Gemma 4 decoder in the browser: thin wasm-bindgen bindings over
//! `onepath-model` (loading and the step API) and `onepath-text` (tokenizer, chat format,
//! sampling, stop tokens). No model logic lives here: a token computed in the page is computed
//! by the same Rust code, through the same WGSL kernels, as in `onepath generate`.
//!
//! The JavaScript API (every GPU wait is awaited; nothing blocks the page):
//!
//! ```js
//! import init, { createSession } from "./dist/onepath_wasm.js";
//! await init();
//! // null: the model compiled in (kjv-tiny). Else a Map or object of file name -> Uint8Array:
//! // config.json, tokenizer.json (optional), model.safetensors or the index and its shards.
//! const s = await createSession(null, { maxSequences: 4, maxLength: 512 },
//!                               (done, total) => bar.value = done / total);
//! const r = await s.generate(["In the beginning"], { maxNewTokens: 32, chat: false },
//!                            (prompt, id, text) => out.textContent += text);
//! s.cancel();                                  // stops a running generate after its step
//! const logits = await s.logits([2, 1278, 365]); // Float32Array [T * vocab]
//! s.free();
//! ```
//!
//! The crate is empty on targets other than wasm32.

#[cfg(target_arch = "wasm32")]
mod files;
#[cfg(target_arch = "wasm32")]
mod session;

#[cfg(target_arch = "wasm32")]
pub use session::{Session, create_session};
