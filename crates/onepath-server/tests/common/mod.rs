//! Server test helpers: a server on a free loopback port over a tiny model, stopped by the
//! test; small HTTP helpers (reqwest) and a server-sent-events reader.
#![allow(dead_code)]

use onepath_engine::{Engine, EngineConfig};
use onepath_gpu::{BackendChoice, Gpu, GpuOptions};
use onepath_model::{LoadOptions, Model, RunOptions, open_checkpoint, shipped};
use onepath_server::ServerConfig;
use onepath_text::Tokenizer;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

pub enum Which {
    /// A tests/fixtures/gemma4 model (no tokenizer: prompts are token ids).
    Fixture(&'static str),
    /// The shipped kjv-tiny model with its tokenizer.
    Shipped,
}

pub struct TestServer {
    pub base: String,
    pub name: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends the shutdown signal and waits for the server to return.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let r = tokio::time::timeout(Duration::from_secs(60), t).await;
            r.expect("the server stops within a minute")
                .expect("server task")
                .expect("server result");
        }
    }
}

fn gpu() -> Option<Gpu> {
    let opts = GpuOptions {
        backend: BackendChoice::from_env().expect("ONEPATH_BACKEND"),
        force_fallback: false,
        shader_checks: GpuOptions::checks_from_env(),
    };
    match pollster::block_on(Gpu::new(&opts)) {
        Ok(g) => Some(g),
        Err(e) if std::env::var_os("CI").is_some() => {
            panic!("CI is set and no GPU adapter is usable, which fails the run: {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED (no GPU adapter; CI would fail here): {e}");
            None
        }
    }
}

/// An engine over `which` with room for `seqs` sequences of 256 positions.
pub fn engine(which: &Which, seqs: usize, cfg: EngineConfig) -> Option<Engine> {
    let gpu = gpu()?;
    let ((mc, ckpt), tok) = match which {
        Which::Fixture(name) => {
            let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../tests/fixtures/gemma4")
                .join(name);
            (open_checkpoint(&dir).expect("fixture"), None)
        }
        Which::Shipped => (
            shipped::checkpoint().expect("shipped model"),
            Some(Tokenizer::from_bytes(shipped::TOKENIZER).expect("tokenizer")),
        ),
    };
    let run = RunOptions::for_sequences(&mc, seqs, 256);
    let model = pollster::block_on(Model::load(
        &gpu,
        mc,
        ckpt,
        &LoadOptions::default(),
        run,
        &mut |_, _| {},
    ))
    .expect("load");
    Some(Engine::new(gpu, model, tok, cfg).expect("engine"))
}

/// Starts a server over `engine` on a free loopback port.
pub async fn start(engine: Engine, name: &str, body_limit: usize) -> TestServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let cfg = ServerConfig {
        model_name: name.to_string(),
        body_limit,
        drain_timeout: Duration::from_secs(20),
    };
    let task = tokio::spawn(onepath_server::serve(listener, engine, cfg, async move {
        let _ = stopped.await;
    }));
    TestServer {
        base,
        name: name.to_string(),
        stop: Some(stop),
        task: Some(task),
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .unwrap()
}

/// POSTs `body` as JSON text; (status, parsed body).
pub async fn post(c: &reqwest::Client, url: &str, body: &str) -> (u16, Value) {
    let r = c
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, v)
}

/// POSTs a streaming request and returns every `data:` payload up to and including
/// `[DONE]` (which must come last).
pub async fn stream(c: &reqwest::Client, url: &str, body: &Value) -> Vec<String> {
    use futures_util::StreamExt;
    let r = c.post(url).json(body).send().await.expect("request");
    assert_eq!(r.status().as_u16(), 200, "stream status");
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/event-stream"), "{ct}");
    let mut bytes = r.bytes_stream();
    let mut buf = String::new();
    while let Some(chunk) = bytes.next().await {
        buf.push_str(std::str::from_utf8(&chunk.expect("chunk")).unwrap());
    }
    let data: Vec<String> = buf
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            e.strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not an SSE data line: {e:?}"))
                .to_string()
        })
        .collect();
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{data:?}");
    data
}

/// `GET /metrics` as (name with labels, value) pairs.
pub async fn metrics(c: &reqwest::Client, s: &TestServer) -> Vec<(String, f64)> {
    let text = c
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').expect("name value");
            (k.to_string(), v.parse().expect("number"))
        })
        .collect()
}

pub fn metric(m: &[(String, f64)], name: &str) -> f64 {
    m.iter()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("no metric {name}"))
        .1
}

/// Waits until nothing runs or waits and every page is free or only prefix-cached.
pub async fn assert_idle_and_pages_free(c: &reqwest::Client, s: &TestServer) {
    let mut last = Vec::new();
    for _ in 0..200 {
        let m = metrics(c, s).await;
        let busy = metric(&m, "onepath_requests_running") + metric(&m, "onepath_requests_waiting");
        let pool = |p: &str| {
            metric(&m, &format!("onepath_kv_pages_free{{pool=\"{p}\"}}"))
                + metric(
                    &m,
                    &format!("onepath_kv_pages_prefix_cached{{pool=\"{p}\"}}"),
                )
                - metric(&m, &format!("onepath_kv_pages_total{{pool=\"{p}\"}}"))
        };
        if busy == 0.0 && pool("full") == 0.0 && pool("sliding") == 0.0 {
            return;
        }
        last = m;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("requests or pages left behind: {last:?}");
}
