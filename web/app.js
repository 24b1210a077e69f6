// The demo page: loads a model (the built-in kjv-tiny by default, files from disk, or a URL),
// streams generated text, and reports tokens/s. All model logic is in the wasm (onepath-wasm).
// `window.onepath` exposes the same calls to the headless test (web/test.mjs).
import init, { createSession } from "./dist/onepath_wasm.js";

const $ = (id) => document.getElementById(id);
const state = { session: null, busy: false };

function showError(msg) {
  $("error").textContent = msg;
  $("status").textContent = "error";
}
function clearError() {
  $("error").textContent = "";
}
function message(e) {
  return e instanceof Error ? e.message : String(e);
}

function setProgress(done, total, what) {
  $("progress").max = total || 1;
  $("progress").value = done;
  $("status").textContent = what;
}

// --- model files ----------------------------------------------------------------------------

const CACHE = "onepath-models-v1";

// Bytes of `url`, from the Cache API if kept there, else fetched (with progress) and kept.
// `optional`: a 404 returns null instead of failing.
async function fetchBytes(url, optional, onBytes) {
  let cache = null;
  if (globalThis.caches) {
    try {
      cache = await caches.open(CACHE);
    } catch (e) {
      console.warn("Cache API unavailable:", e);
    }
  }
  if (cache) {
    const hit = await cache.match(url);
    if (hit) return new Uint8Array(await hit.arrayBuffer());
  }
  const resp = await fetch(url);
  if (optional && resp.status === 404) return null;
  if (!resp.ok) throw new Error(`fetching ${url}: HTTP ${resp.status}`);
  const total = Number(resp.headers.get("content-length")) || 0;
  const reader = resp.body.getReader();
  const parts = [];
  let got = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(value);
    got += value.length;
    onBytes(got, total);
  }
  const bytes = new Uint8Array(got);
  let at = 0;
  for (const p of parts) {
    bytes.set(p, at);
    at += p.length;
  }
  if (cache) {
    try {
      await cache.put(url, new Response(bytes));
    } catch (e) {
      console.warn(`not cached (${url}):`, e);
    }
  }
  return bytes;
}

// The model files under a base URL: config.json, tokenizer.json if there, and either the
// sharded index with its shards or model.safetensors.
async function filesFromUrl(base) {
  if (!base.endsWith("/")) base += "/";
  const files = new Map();
  const get = async (name, optional) => {
    const b = await fetchBytes(new URL(name, new URL(base, location.href)).href, optional,
      (got, total) => setProgress(got, total, `downloading ${name}: ${(got / 1e6).toFixed(1)} MB`));
    if (b) files.set(name, b);
    return b;
  };
  await get("config.json", false);
  await get("tokenizer.json", true);
  const index = await get("model.safetensors.index.json", true);
  if (index) {
    let map;
    try {
      map = JSON.parse(new TextDecoder().decode(index)).weight_map;
    } catch (e) {
      throw new Error(`model.safetensors.index.json is not JSON: ${message(e)}`);
    }
    if (!map || typeof map !== "object") throw new Error("model.safetensors.index.json has no weight_map");
    for (const shard of new Set(Object.values(map))) await get(shard, false);
  } else {
    await get("model.safetensors", false);
  }
  return files;
}

async function filesFromInput(fileList) {
  const files = new Map();
  for (const f of fileList) {
    if (f.name.endsWith(".json") || f.name.endsWith(".safetensors")) {
      files.set(f.name, new Uint8Array(await f.arrayBuffer()));
    }
  }
  return files;
}

// --- session ----------------------------------------------------------------------------------

async function load(files, label) {
  clearError();
  $("generate").disabled = true;
  if (state.session) {
    state.session.free();
    state.session = null;
  }
  setProgress(0, 1, `loading ${label}`);
  const t0 = performance.now();
  const s = await createSession(files, { maxSequences: 8, maxLength: 512 }, (done, total) =>
    setProgress(done, total, `loading ${label}: layer ${done} of ${total}`));
  state.session = s;
  const info = s.info();
  setProgress(1, 1, `${info.name}: ${info.layers} layers, vocab ${info.vocab}, ` +
    `${(info.gpuBytes / 1e6).toFixed(1)} MB on the GPU, loaded in ${(performance.now() - t0).toFixed(0)} ms ` +
    `| ${info.adapter}`);
  $("generate").disabled = false;
  return info;
}

async function guardedLoad(get, label) {
  try {
    return await load(await get(), label);
  } catch (e) {
    showError(message(e));
    throw e;
  }
}

function options() {
  const num = (id) => Number($(id).value);
  const o = {
    maxNewTokens: Math.max(1, num("max-new") | 0),
    chat: $("chat").checked,
    temperature: num("temperature"),
    seed: num("seed") | 0,
  };
  if (num("top-k") > 0) o.topK = num("top-k") | 0;
  if (num("top-p") > 0 && num("top-p") < 1) o.topP = num("top-p");
  return o;
}

// Decode speed from the per-step times: step 0 is the prompt (prefill), each later step one
// token per sequence.
function speed(result, seqs) {
  const ms = result.stepMs;
  const decode = ms.slice(1);
  const decodeMs = decode.reduce((a, b) => a + b, 0);
  return {
    prefillMs: ms[0] ?? 0,
    perTokenMs: decode.length ? decodeMs / decode.length : 0,
    tokensPerS: decode.length ? (decode.length * seqs * 1000) / decodeMs : 0,
  };
}

async function generateClicked() {
  clearError();
  const s = state.session;
  if (!s || state.busy) return;
  state.busy = true;
  $("generate").disabled = true;
  $("stop").disabled = false;
  $("output").textContent = "";
  $("stats").textContent = "";
  try {
    const r = await s.generate([$("prompt").value], options(), (_i, _id, text) => {
      $("output").textContent += text;
    });
    $("output").textContent += r.outputs[0].tail ?? "";
    const sp = speed(r, 1);
    $("stats").textContent = `${r.outputs[0].tokens.length} tokens; prompt ${sp.prefillMs.toFixed(1)} ms; ` +
      `decode ${sp.tokensPerS.toFixed(1)} tokens/s (${sp.perTokenMs.toFixed(2)} ms per token)` +
      (r.cancelled ? "; stopped" : "");
  } catch (e) {
    showError(message(e));
  } finally {
    state.busy = false;
    $("generate").disabled = false;
    $("stop").disabled = true;
  }
}

// --- wiring -----------------------------------------------------------------------------------

function showSource() {
  const v = document.querySelector("input[name=src]:checked").value;
  $("src-files").hidden = v !== "files";
  $("src-url").hidden = v !== "url";
  if (v === "shipped") guardedLoad(async () => null, "kjv-tiny").catch(() => {});
}

async function main() {
  if (!navigator.gpu) {
    showError("This browser has no WebGPU (navigator.gpu is missing). Use a browser with WebGPU " +
      "enabled (Chrome or Edge 113+, Safari 26, Firefox 141+ on Windows), served over https or localhost.");
    return;
  }
  try {
    await init();
  } catch (e) {
    showError(`could not start the wasm module: ${message(e)} (was web/build.sh run?)`);
    return;
  }
  for (const r of document.querySelectorAll("input[name=src]")) r.addEventListener("change", showSource);
  $("files").addEventListener("change", (ev) =>
    guardedLoad(() => filesFromInput(ev.target.files), "model files").catch(() => {}));
  $("dir").addEventListener("change", (ev) =>
    guardedLoad(() => filesFromInput(ev.target.files), "model directory").catch(() => {}));
  $("load-url").addEventListener("click", () =>
    guardedLoad(() => filesFromUrl($("url").value), $("url").value).catch(() => {}));
  $("generate").addEventListener("click", generateClicked);
  $("stop").addEventListener("click", () => state.session?.cancel());

  const model = new URLSearchParams(location.search).get("model");
  if (model) {
    document.querySelector("input[name=src][value=url]").checked = true;
    $("url").value = model;
    $("src-url").hidden = false;
    await guardedLoad(() => filesFromUrl(model), model).catch(() => {});
  } else {
    await guardedLoad(async () => null, "kjv-tiny").catch(() => {});
  }
}

// For the headless test and the console: the page's own calls.
window.onepath = {
  state,
  load: (files, label) => load(files, label ?? "model"),
  loadUrl: (base) => guardedLoad(() => filesFromUrl(base), base),
  speed,
  ready: main(),
};
