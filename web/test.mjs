// Headless Chromium (WebGPU on SwiftShader) against the native build. Run by web/test.sh, which
// builds everything, writes the native references into $OUT/native/ and serves the repository
// root on localhost. Checks, failing with a message naming the mismatch:
//  1. the built-in kjv-tiny and the fixture tests/fixtures/gemma4/a-q4: greedy tokens of every
//     prompt equal the native run's (`onepath generate --json`);
//  2. a forward pass's logits within LOGIT_TOL of native (`onepath logits`), bitwise share
//     reported;
//  3. all fixture prompts in one batch give each prompt's tokens alone;
//  4. a malformed model file shows an error on the page (no hang);
// and prints per-token times and the screenshot's path.
import { chromium } from "playwright-core";
import fs from "node:fs";
import path from "node:path";

const [base, outDir] = process.argv.slice(2);
if (!base || !outDir) {
  console.error("usage: node web/test.mjs http://127.0.0.1:PORT OUT_DIR");
  process.exit(2);
}
const FIXTURE = "tests/fixtures/gemma4/a-q4";
// Largest |browser - native| accepted on a soft-capped logit (magnitudes up to about 30). Both
// compute in f32 with the same operation order, but this checkpoint keeps K/V in f16, and
// drivers round f32 -> f16 (pack2x16float) and compute exp/tanh/FMA differently; the f16 K/V
// alone moves these logits by up to 0.045 against f32 K/V (tests/gemma4_reference.rs).
const LOGIT_TOL = 0.02;
const failures = [];
const fail = (msg) => {
  failures.push(msg);
  console.log(`FAIL: ${msg}`);
};
const ok = (msg) => console.log(`ok: ${msg}`);

// --- safetensors (reading the fixture's prompts and native logits; writing browser logits) ---
function readSafetensors(file) {
  const b = fs.readFileSync(file);
  const n = Number(b.readBigUInt64LE(0));
  const header = JSON.parse(b.subarray(8, 8 + n).toString("utf8"));
  const out = {};
  for (const [k, v] of Object.entries(header)) {
    if (k === "__metadata__") continue;
    const [s, e] = v.data_offsets;
    const raw = b.subarray(8 + n + s, 8 + n + e);
    const copy = new Uint8Array(raw).buffer;
    const Ty = { I32: Int32Array, F32: Float32Array }[v.dtype];
    if (!Ty) throw new Error(`${file}: tensor ${k} has dtype ${v.dtype}`);
    out[k] = { shape: v.shape, data: new Ty(copy) };
  }
  return out;
}
function writeSafetensors(file, name, shape, f32, metadata) {
  const bytes = Buffer.from(f32.buffer, f32.byteOffset, f32.byteLength);
  const header = { __metadata__: metadata, [name]: { dtype: "F32", shape, data_offsets: [0, bytes.length] } };
  let h = JSON.stringify(header);
  while ((8 + h.length) % 8) h += " ";
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  fs.writeFileSync(file, Buffer.concat([len, Buffer.from(h), bytes]));
}

const native = JSON.parse(fs.readFileSync(path.join(outDir, "native", "native.json"), "utf8"));
const ref = readSafetensors(path.join(FIXTURE, "reference.safetensors"));
const prompts = [];
for (let i = 0; ref[`prompt.${i}`]; i++) prompts.push(Array.from(ref[`prompt.${i}`].data));

function firstDiff(a, b) {
  const n = Math.max(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return -1;
}
function sameTokens(what, got, want) {
  const d = firstDiff(got, want);
  if (d < 0) ok(`${what}: ${got.length} tokens equal native`);
  else fail(`${what}: tokens differ from native at step ${d}: browser ${JSON.stringify(got)} native ${JSON.stringify(want)}`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  ignoreDefaultArgs: ["--headless"],
  args: ["--headless=new", "--enable-unsafe-webgpu", "--no-sandbox", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1000, height: 900 } });
  page.on("console", (m) => console.log(`[page ${m.type()}] ${m.text()}`));
  page.on("pageerror", (e) => console.log(`[page error] ${e.message}`));
  page.setDefaultTimeout(120000);

  // --- the built-in model: loads with no choice, greedy tokens equal native ---
  await page.goto(`${base}/web/index.html`);
  await page.evaluate(() => window.onepath.ready);
  const pageError = await page.textContent("#error");
  if (pageError) throw new Error(`the page shows an error after loading kjv-tiny: ${pageError}`);
  const info = await page.evaluate(() => window.onepath.state.session.info());
  console.log(`adapter: ${info.adapter}`);
  console.log(`kjv-tiny loaded in ${info.loadMs.toFixed(0)} ms`);
  const shipped = await page.evaluate(async (p) => {
    const s = window.onepath.state.session;
    const r = await s.generate([p], { maxNewTokens: 32 });
    return { tokens: r.outputs[0].tokens, text: r.outputs[0].text, speed: window.onepath.speed(r, 1) };
  }, native.shipped.prompt);
  sameTokens("kjv-tiny \"In the beginning\"", shipped.tokens, native.shipped.tokens);
  console.log(`kjv-tiny text: ${JSON.stringify(shipped.text)}`);
  console.log(`kjv-tiny in the browser: prompt ${shipped.speed.prefillMs.toFixed(1)} ms, ` +
    `${shipped.speed.perTokenMs.toFixed(2)} ms per token, ${shipped.speed.tokensPerS.toFixed(1)} tokens/s`);

  // The page's own controls: type a prompt, click Generate, keep the screenshot.
  await page.fill("#prompt", "And God said");
  await page.fill("#max-new", "24");
  await page.click("#generate");
  await page.waitForFunction(() => document.getElementById("stats").textContent.includes("tokens/s"));
  console.log(`page stats: ${await page.textContent("#stats")}`);
  const shot = path.resolve(outDir, "page.png");
  await page.screenshot({ path: shot, fullPage: true });
  console.log(`screenshot: ${shot}`);

  // --- the fixture: each prompt alone, then all in one batch ---
  await page.evaluate((u) => window.onepath.loadUrl(u), `/${FIXTURE}/`);
  const fx = await page.evaluate(async ([ps, FIXTURE_NEW]) => {
    const s = window.onepath.state.session;
    const alone = [];
    const speeds = [];
    for (const p of ps) {
      const r = await s.generate([p], { maxNewTokens: FIXTURE_NEW });
      alone.push(r.outputs[0].tokens);
      speeds.push(window.onepath.speed(r, 1));
    }
    const b = await s.generate(ps, { maxNewTokens: FIXTURE_NEW });
    return { alone, speeds, batch: b.outputs.map((o) => o.tokens), batchSpeed: window.onepath.speed(b, ps.length) };
  }, [prompts, native.fixture.newTokens]);
  for (let i = 0; i < prompts.length; i++) {
    sameTokens(`a-q4 prompt ${i} (${prompts[i].length} tokens)`, fx.alone[i], native.fixture.outputs[i]);
    const d = firstDiff(fx.batch[i], fx.alone[i]);
    if (d < 0) ok(`a-q4 prompt ${i}: in a batch of ${prompts.length} equals alone`);
    else fail(`a-q4 prompt ${i}: in a batch of ${prompts.length} differs from alone at step ${d}`);
    console.log(`a-q4 prompt ${i} alone: ${fx.speeds[i].perTokenMs.toFixed(2)} ms per token`);
  }
  console.log(`a-q4 batch of ${prompts.length}: ${fx.batchSpeed.perTokenMs.toFixed(2)} ms per step, ` +
    `${fx.batchSpeed.tokensPerS.toFixed(1)} tokens/s`);

  // --- a forward pass's logits against native ---
  const tokens = native.logits.tokens;
  const b64 = await page.evaluate(async (t) => {
    const l = await window.onepath.state.session.logits(t);
    const u8 = new Uint8Array(l.buffer, l.byteOffset, l.byteLength);
    let s = "";
    for (let i = 0; i < u8.length; i += 0x8000) s += String.fromCharCode(...u8.subarray(i, i + 0x8000));
    return btoa(s);
  }, tokens);
  const buf = Buffer.from(b64, "base64");
  const got = new Float32Array(new Uint8Array(buf).buffer);
  const want = readSafetensors(path.join(outDir, "native", "logits.safetensors")).logits;
  const vocab = want.shape[1];
  if (got.length !== want.data.length) {
    fail(`logits: browser gave ${got.length} values, native ${want.data.length}`);
  } else {
    let maxDiff = 0;
    let equalValues = 0;
    let equalRows = 0;
    const gotBits = new Uint32Array(got.buffer);
    const wantBits = new Uint32Array(want.data.buffer);
    for (let r = 0; r < tokens.length; r++) {
      let rowEqual = true;
      for (let j = r * vocab; j < (r + 1) * vocab; j++) {
        if (gotBits[j] === wantBits[j]) equalValues++;
        else rowEqual = false;
        maxDiff = Math.max(maxDiff, Math.abs(got[j] - want.data[j]));
      }
      if (rowEqual) equalRows++;
    }
    console.log(`logits a-q4 (${tokens.length} positions x ${vocab}): max |browser - native| = ` +
      `${maxDiff.toExponential(2)}; bitwise equal: ${equalRows}/${tokens.length} positions, ` +
      `${(100 * equalValues / got.length).toFixed(2)} % of values`);
    if (!(maxDiff <= LOGIT_TOL)) fail(`logits: max |browser - native| ${maxDiff} exceeds ${LOGIT_TOL}`);
    else ok(`logits within ${LOGIT_TOL} of native`);
    const file = path.resolve(outDir, "browser-logits.safetensors");
    writeSafetensors(file, "logits", [tokens.length, vocab], got,
      { tokens: tokens.join(","), backend: `browser WebGPU: ${info.adapter}`, model: FIXTURE });
    console.log(`browser logits: ${file} (onepath crosscheck --browser-logits)`);
  }

  // --- a malformed model file: the page shows an error, no hang ---
  const cfg = fs.readFileSync(path.join(FIXTURE, "config.json"));
  const bad = Buffer.alloc(64);
  bad.writeBigUInt64LE(1n << 40n); // a header length far beyond the file
  await page.setInputFiles("#files", [
    { name: "config.json", mimeType: "application/json", buffer: cfg },
    { name: "model.safetensors", mimeType: "application/octet-stream", buffer: bad },
  ]);
  try {
    await page.waitForFunction(() => document.getElementById("error").textContent.length > 0, null,
      { timeout: 30000 });
    const text = await page.textContent("#error");
    if (/malformed/i.test(text)) ok(`malformed model file: the page says ${JSON.stringify(text)}`);
    else fail(`malformed model file: the page's error does not say so: ${JSON.stringify(text)}`);
  } catch {
    fail("malformed model file: no error on the page after 30 s");
  }
  await page.screenshot({ path: path.resolve(outDir, "page-error.png"), fullPage: true });
} finally {
  await browser.close();
}

if (failures.length) {
  console.log(`\n${failures.length} browser check(s) failed:`);
  for (const f of failures) console.log(`  - ${f}`);
  process.exit(1);
}
console.log("\nall browser checks passed");
