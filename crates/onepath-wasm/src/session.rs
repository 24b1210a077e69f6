//! A loaded model on the browser's WebGPU device, and the generation loop around
//! `Model::step` (the same loop as `onepath generate`'s `run_batch`: every unfinished
//! sequence's next token in one step, the batch shrinking as sequences stop).

use crate::files::{self, ModelFiles};
use js_sys::{Function, Promise};
use onepath_gpu::{BackendChoice, Gpu, GpuError, GpuOptions};
use onepath_model::{LoadOptions, Logits, Model, ModelError, RunOptions, SeqInput};
use onepath_text::{ChatMessage, SamplingParams, StreamDecoder, Tokenizer};
use serde::Deserialize;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use wasm_bindgen::prelude::*;

/// Options of `createSession` (all optional).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SessionOptions {
    /// Most prompts one `generate` runs together (KV pages are reserved for this many).
    max_sequences: Option<usize>,
    /// Most positions (prompt + new tokens) of one sequence.
    max_length: Option<usize>,
    /// Quantize dense linears at load to 4 or 8 bits (MLX's rule, group 64).
    quantize: Option<u32>,
}

/// Options of `generate` (all optional; the default is greedy, 32 new tokens).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct GenOptions {
    #[serde(default = "default_new_tokens")]
    max_new_tokens: usize,
    /// Wrap text prompts in the chat turn format.
    #[serde(default)]
    chat: bool,
    #[serde(default)]
    temperature: f32,
    top_k: Option<usize>,
    top_p: Option<f32>,
    #[serde(default)]
    seed: u64,
    /// Run exactly `maxNewTokens` steps even past a stop token (as the reference files do).
    #[serde(default)]
    ignore_stop: bool,
}

fn default_new_tokens() -> usize {
    32
}

/// A loaded model: create with [`create_session`], run [`Session::generate`], release the
/// GPU memory with `free()` (which also cancels a running generation).
#[wasm_bindgen]
pub struct Session {
    shared: Rc<Shared>,
}

struct Shared {
    gpu: Gpu,
    /// Taken out while a call runs on it, so two overlapping calls are an error, not a panic.
    model: RefCell<Option<Model>>,
    tokenizer: Option<Tokenizer>,
    name: String,
    max_seqs: usize,
    max_len: usize,
    load_ms: f64,
    cancel: Cell<bool>,
    /// The first error the device reported outside a call's own result (validation, loss).
    gpu_error: Arc<Mutex<Option<String>>>,
}

fn err(msg: impl std::fmt::Display) -> JsValue {
    JsError::new(&msg.to_string()).into()
}

/// A model error as the page shows it, saying which kind of problem it is.
fn model_err(e: ModelError) -> String {
    match e {
        ModelError::Weights(w) => format!("malformed or unsupported model file: {w}"),
        ModelError::Config(c) => format!("config.json: {c}"),
        ModelError::Gpu(GpuError::TooLarge {
            bytes,
            limit,
            which,
        }) => format!(
            "the adapter's limits are too small for this model: a {which} of {bytes} bytes \
             exceeds its limit of {limit}"
        ),
        e => e.to_string(),
    }
}

fn now_ms() -> f64 {
    js_sys::Date::now()
}

/// The WebGPU limits onepath's kernels are written for (WebGPU's defaults); an adapter below
/// them cannot run the model.
fn check_limits(l: &wgpu::Limits) -> Result<(), String> {
    let need = wgpu::Limits::default();
    let checks = [
        (
            "maxComputeInvocationsPerWorkgroup",
            l.max_compute_invocations_per_workgroup,
            need.max_compute_invocations_per_workgroup,
        ),
        (
            "maxComputeWorkgroupStorageSize",
            l.max_compute_workgroup_storage_size,
            need.max_compute_workgroup_storage_size,
        ),
        (
            "maxComputeWorkgroupSizeX",
            l.max_compute_workgroup_size_x,
            need.max_compute_workgroup_size_x,
        ),
        (
            "maxStorageBuffersPerShaderStage",
            l.max_storage_buffers_per_shader_stage,
            need.max_storage_buffers_per_shader_stage,
        ),
    ];
    for (name, have, want) in checks {
        if have < want {
            return Err(format!(
                "the adapter's limits are too small: {name} is {have}, onepath needs {want}"
            ));
        }
    }
    Ok(())
}

/// Opens the browser's WebGPU device and loads a model: `files` null or undefined for the
/// model compiled in, else a `Map` / object of file name -> `Uint8Array`. `options`:
/// `{ maxSequences, maxLength, quantize }`. `onProgress(done, total)` is called per layer.
#[wasm_bindgen(js_name = createSession)]
pub async fn create_session(
    files: JsValue,
    options: JsValue,
    on_progress: Option<Function>,
) -> Result<Session, JsValue> {
    install_panic_hook();
    let opts: SessionOptions = parse_options(&options)?;
    let ModelFiles {
        name,
        config,
        checkpoint,
        tokenizer,
    } = if files.is_null() || files.is_undefined() {
        files::shipped_model()
    } else {
        files::from_js(&files)
    }
    .map_err(err)?;
    let gpu_opts = GpuOptions {
        backend: BackendChoice::WebGpu,
        ..Default::default()
    };
    let gpu = Gpu::new(&gpu_opts).await.map_err(|e| match e {
        GpuError::NoAdapter { .. } => err(format!(
            "no WebGPU adapter: this browser has no WebGPU, or it is disabled ({e})"
        )),
        e => err(e),
    })?;
    check_limits(&gpu.limits).map_err(err)?;
    let gpu_error = Arc::new(Mutex::new(None));
    let slot = gpu_error.clone();
    gpu.device
        .on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            web_sys::console::error_1(&format!("onepath: WebGPU error: {e}").into());
            if let Ok(mut s) = slot.lock() {
                s.get_or_insert_with(|| e.to_string());
            }
        }));
    let max_len = opts
        .max_length
        .unwrap_or(1024)
        .clamp(1, config.max_positions);
    let max_seqs = opts.max_sequences.unwrap_or(4).max(1);
    let quantize = opts
        .quantize
        .map(|bits| onepath_weights::QuantParams::new(64, bits, "quantize"))
        .transpose()
        .map_err(err)?;
    let load = LoadOptions {
        quantize,
        ..Default::default()
    };
    let run = RunOptions::for_sequences(&config, max_seqs, max_len);
    let t0 = now_ms();
    let mut progress = |done: usize, total: usize| {
        if let Some(f) = &on_progress {
            // A throwing progress callback must not stop the load; report it and go on.
            if let Err(e) = f.call2(&JsValue::NULL, &done.into(), &total.into()) {
                web_sys::console::error_1(&e);
            }
        }
    };
    let model = Model::load(&gpu, config, checkpoint, &load, run, &mut progress)
        .await
        .map_err(|e| err(model_err(e)))?;
    gpu.idle().await.map_err(err)?;
    let shared = Shared {
        gpu,
        model: RefCell::new(Some(model)),
        tokenizer,
        name,
        max_seqs,
        max_len,
        load_ms: now_ms() - t0,
        cancel: Cell::new(false),
        gpu_error,
    };
    shared.device_error()?;
    Ok(Session {
        shared: Rc::new(shared),
    })
}

fn parse_options<T: for<'a> Deserialize<'a> + Default>(v: &JsValue) -> Result<T, JsValue> {
    if v.is_null() || v.is_undefined() {
        return Ok(T::default());
    }
    let text = js_sys::JSON::stringify(v)
        .map_err(|_| err("the options are not a plain object"))?
        .as_string()
        .unwrap_or_default();
    serde_json::from_str(&text).map_err(|e| err(format!("options: {e}")))
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions {
            max_new_tokens: default_new_tokens(),
            chat: false,
            temperature: 0.0,
            top_k: None,
            top_p: None,
            seed: 0,
            ignore_stop: false,
        }
    }
}

fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            web_sys::console::error_1(&format!("onepath panicked: {info}").into());
        }));
    });
}

/// Moves the model out for one call and back in when the call ends, whatever its outcome.
struct Lease<'a> {
    shared: &'a Shared,
    model: Option<Model>,
    seqs: Vec<u64>,
}

impl Lease<'_> {
    fn model(&mut self) -> &mut Model {
        self.model.as_mut().expect("a lease always holds the model")
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(mut m) = self.model.take() {
            for &s in &self.seqs {
                m.free(s);
            }
            *self.shared.model.borrow_mut() = Some(m);
        }
    }
}

impl Shared {
    fn lease(&self) -> Result<Lease<'_>, JsValue> {
        let model = self
            .model
            .borrow_mut()
            .take()
            .ok_or_else(|| err("the session is busy with another call (await it first)"))?;
        Ok(Lease {
            shared: self,
            model: Some(model),
            seqs: Vec::new(),
        })
    }

    fn device_error(&self) -> Result<(), JsValue> {
        match self.gpu_error.lock() {
            Ok(g) => match g.as_ref() {
                Some(e) => Err(err(format!("the WebGPU device reported an error: {e}"))),
                None => Ok(()),
            },
            Err(_) => Err(err("the WebGPU error slot is poisoned")),
        }
    }

    fn encode(&self, prompt: &JsValue, chat: bool) -> Result<Vec<u32>, JsValue> {
        if let Some(text) = prompt.as_string() {
            let tok = self.tokenizer.as_ref().ok_or_else(|| {
                err("a text prompt needs tokenizer.json among the model files (or give ids)")
            })?;
            return if chat {
                tok.chat_prompt(&[ChatMessage::user(text)], true)
            } else {
                tok.encode(&text, true)
            }
            .map_err(err);
        }
        ids_from_js(prompt)
    }

    async fn generate(
        &self,
        prompts: js_sys::Array,
        opts: GenOptions,
        on_token: Option<Function>,
    ) -> Result<JsValue, JsValue> {
        let sampling = SamplingParams {
            temperature: opts.temperature,
            top_k: opts.top_k,
            top_p: opts.top_p,
            seed: opts.seed,
        };
        sampling.validate().map_err(err)?;
        let prompts: Vec<Vec<u32>> = prompts
            .iter()
            .map(|p| self.encode(&p, opts.chat))
            .collect::<Result<_, _>>()?;
        let n = prompts.len();
        if n == 0 || n > self.max_seqs {
            return Err(err(format!(
                "give 1 to {} prompts (the session's maxSequences); got {n}",
                self.max_seqs
            )));
        }
        for (i, p) in prompts.iter().enumerate() {
            if p.is_empty() {
                return Err(err(format!("prompt {i} is empty: nothing to continue")));
            }
            if p.len() + opts.max_new_tokens > self.max_len {
                return Err(err(format!(
                    "prompt {i} has {} tokens; with maxNewTokens {} that is beyond the \
                     session's maxLength of {}",
                    p.len(),
                    opts.max_new_tokens,
                    self.max_len
                )));
            }
        }
        let mut lease = self.lease()?;
        lease.seqs = (0..n as u64).collect();
        self.cancel.set(false);
        let m = lease.model();
        let mut stops = m.config.eos.clone();
        if let Some(t) = &self.tokenizer {
            stops.extend(t.special().stop_ids());
        }
        if opts.ignore_stop {
            stops.clear();
        }
        let mut decoders: Vec<Option<StreamDecoder>> = (0..n)
            .map(|_| self.tokenizer.as_ref().map(|t| t.stream_decoder(true)))
            .collect();
        let mut outs: Vec<Vec<u32>> = vec![Vec::new(); n];
        let mut next: Vec<Option<SeqInput>> = prompts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                Some(SeqInput {
                    seq: i as u64,
                    pos: 0,
                    tokens: p.clone(),
                    logits: Logits::Last,
                })
            })
            .collect();
        let greedy = sampling.is_greedy();
        let (mut step_ms, mut steps, mut cancelled) = (Vec::new(), 0usize, false);
        if opts.max_new_tokens == 0 {
            next.iter_mut().for_each(|n| *n = None);
        }
        loop {
            let inputs: Vec<SeqInput> = next.iter().flatten().cloned().collect();
            if inputs.is_empty() {
                break;
            }
            if self.cancel.get() {
                cancelled = true;
                break;
            }
            let t = now_ms();
            let out = m
                .step(&self.gpu, &inputs, !greedy)
                .await
                .map_err(|e| err(model_err(e)))?;
            step_ms.push(now_ms() - t);
            steps += 1;
            self.device_error()?;
            for row in out.rows {
                let i = row.seq as usize;
                let id = match &row.logits {
                    Some(l) if !greedy => {
                        onepath_text::sample(l, &sampling, u64::from(row.pos) + 1).map_err(err)?
                    }
                    _ => row.greedy,
                };
                let stop = stops.contains(&id);
                let done = stop || outs[i].len() + 1 >= opts.max_new_tokens;
                if !stop {
                    outs[i].push(id);
                    let piece = match decoders[i].as_mut() {
                        Some(d) => d.step(id).map_err(err)?,
                        None => String::new(),
                    };
                    if let Some(f) = &on_token {
                        f.call3(&JsValue::NULL, &i.into(), &id.into(), &piece.into())?;
                    }
                }
                if done {
                    next[i] = None;
                    m.free(row.seq);
                } else if let Some(s) = next[i].as_mut() {
                    s.pos = row.pos + 1;
                    s.tokens = vec![id];
                }
            }
        }
        let mut outputs = Vec::with_capacity(n);
        for (o, d) in outs.iter().zip(decoders.iter_mut()) {
            let tail = match d.as_mut() {
                Some(d) => Some(d.flush().map_err(err)?),
                None => None,
            };
            let text = match &self.tokenizer {
                Some(t) => Some(t.decode_with(o, true).map_err(err)?),
                None => None,
            };
            outputs.push(serde_json::json!({"tokens": o, "text": text, "tail": tail}));
        }
        let report = serde_json::json!({
            "outputs": outputs,
            "cancelled": cancelled,
            "steps": steps,
            "stepMs": step_ms,
        });
        js_sys::JSON::parse(&report.to_string())
    }

    async fn logits(&self, tokens: Vec<u32>) -> Result<JsValue, JsValue> {
        if tokens.is_empty() || tokens.len() > self.max_len {
            return Err(err(format!(
                "give 1 to {} token ids (the session's maxLength); got {}",
                self.max_len,
                tokens.len()
            )));
        }
        let mut lease = self.lease()?;
        let seq = u64::MAX;
        lease.seqs = vec![seq];
        let input = SeqInput {
            seq,
            pos: 0,
            tokens,
            logits: Logits::All,
        };
        let out = lease
            .model()
            .step(&self.gpu, &[input], true)
            .await
            .map_err(|e| err(model_err(e)))?;
        self.device_error()?;
        let mut all = Vec::new();
        for r in out.rows {
            all.extend(
                r.logits
                    .ok_or_else(|| err("a logit row came back without logits"))?,
            );
        }
        Ok(js_sys::Float32Array::from(all.as_slice()).into())
    }
}

/// Token ids from a JS array of integers or a `Uint32Array`.
fn ids_from_js(v: &JsValue) -> Result<Vec<u32>, JsValue> {
    if let Some(a) = v.dyn_ref::<js_sys::Uint32Array>() {
        return Ok(a.to_vec());
    }
    if !js_sys::Array::is_array(v) {
        return Err(err(
            "a prompt must be a string, an array of token ids or a Uint32Array",
        ));
    }
    let arr: &js_sys::Array = v.unchecked_ref();
    arr.iter()
        .enumerate()
        .map(|(i, x)| match x.as_f64() {
            Some(f) if f.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&f) => Ok(f as u32),
            _ => Err(err(format!(
                "token {i} of a prompt is not an integer id in 0..2^32: {x:?}"
            ))),
        })
        .collect()
}

#[wasm_bindgen]
impl Session {
    /// `{ name, adapter, vocab, layers, maxSequences, maxLength, loadMs, gpuBytes, hasTokenizer }`.
    pub fn info(&self) -> Result<JsValue, JsValue> {
        let s = &self.shared;
        let (vocab, layers, bytes) = match s.model.borrow().as_ref() {
            Some(m) => (m.config.vocab, m.config.layers, m.gpu_bytes()),
            None => return Err(err("the session is busy with another call")),
        };
        let v = serde_json::json!({
            "name": s.name,
            "adapter": s.gpu.describe(),
            "vocab": vocab,
            "layers": layers,
            "maxSequences": s.max_seqs,
            "maxLength": s.max_len,
            "loadMs": s.load_ms,
            "gpuBytes": bytes,
            "hasTokenizer": s.tokenizer.is_some(),
            "maxStorageBinding": s.gpu.max_binding(),
        });
        js_sys::JSON::parse(&v.to_string())
    }

    /// Token ids of `text` (with `<bos>`; in the chat turn format if `chat`).
    pub fn encode(&self, text: String, chat: bool) -> Result<js_sys::Uint32Array, JsValue> {
        let ids = self.shared.encode(&text.into(), chat)?;
        Ok(js_sys::Uint32Array::from(ids.as_slice()))
    }

    /// Text of token ids (special tokens skipped).
    pub fn decode(&self, ids: Vec<u32>) -> Result<String, JsValue> {
        let tok = self
            .shared
            .tokenizer
            .as_ref()
            .ok_or_else(|| err("no tokenizer.json"))?;
        tok.decode_with(&ids, true).map_err(err)
    }

    /// Generates for every prompt (a string, an id array or a `Uint32Array`) together in one
    /// batch. `options`: `{ maxNewTokens, chat, temperature, topK, topP, seed, ignoreStop }`.
    /// `onToken(promptIndex, id, textPiece)` sees each token as it comes. Resolves to
    /// `{ outputs: [{ tokens, text }], cancelled, steps, stepMs }`.
    pub fn generate(
        &self,
        prompts: js_sys::Array,
        options: JsValue,
        on_token: Option<Function>,
    ) -> Promise {
        let shared = self.shared.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let opts: GenOptions = parse_options(&options)?;
            shared.generate(prompts, opts, on_token).await
        })
    }

    /// The soft-capped logits of every position of one sequence: a `Float32Array` of
    /// `tokens.length * vocab` values.
    pub fn logits(&self, tokens: Vec<u32>) -> Promise {
        let shared = self.shared.clone();
        wasm_bindgen_futures::future_to_promise(async move { shared.logits(tokens).await })
    }

    /// Stops a running `generate` after its current step (it resolves with `cancelled: true`).
    pub fn cancel(&self) {
        self.shared.cancel.set(true);
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // `free()` during a generation: stop it; its lease drops the model when it ends.
        self.shared.cancel.set(true);
    }
}
