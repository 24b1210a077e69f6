//! `onepath serve`: the OpenAI-compatible server over the engine, on one model.

use crate::generate::{load, tokenizer};
use crate::{Source, model_source};
use onepath_engine::{Engine, EngineConfig};
use onepath_gpu::Gpu;
use onepath_server::ServerConfig;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

type R<T> = Result<T, Box<dyn std::error::Error>>;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Model directory (config.json, safetensors, tokenizer.json). Default: kjv-tiny, the
    /// small model that ships with onepath.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Address to bind (loopback unless told otherwise).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port (0: any free port; the chosen one is printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// The model name clients give (default: the directory's name).
    #[arg(long)]
    pub model_name: Option<String>,
    /// Most requests computed at once.
    #[arg(long, default_value_t = 64)]
    pub max_running: usize,
    /// Most requests waiting; more get 429.
    #[arg(long, default_value_t = 256)]
    pub queue: usize,
    /// Longest sequence (prompt + output) the KV cache is sized for, per running request
    /// (default: the model's context, at most 4096).
    #[arg(long)]
    pub max_seq_len: Option<usize>,
    /// Prompt tokens one request reads per step (long prompts are read in chunks of this
    /// size beside running decodes).
    #[arg(long, default_value_t = 256)]
    pub chunk: usize,
    /// Turn off sharing the KV pages of identical prompt prefixes.
    #[arg(long)]
    pub no_prefix_cache: bool,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub body_limit: usize,
    /// Seconds in-flight requests get to finish after SIGINT/SIGTERM.
    #[arg(long, default_value_t = 30)]
    pub drain_timeout: u64,
}

pub fn serve(gpu: Gpu, a: &ServeArgs, as_json: bool) -> R<ExitCode> {
    // One log line per request (and start/stop notes) on stderr.
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
    let src = model_source(a.model.as_deref())?;
    let tok = tokenizer(&src)?;
    let name = a.model_name.clone().unwrap_or_else(|| match &src {
        Source::Shipped => onepath_model::shipped::NAME.to_string(),
        Source::Dir(d) => d
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "onepath".into()),
    });
    let max_running = a.max_running.max(1);
    let cfg_len = crate::generate::context_of(&src)?;
    let len = a.max_seq_len.unwrap_or(cfg_len.min(4096)).min(cfg_len);
    let model = load(&gpu, &src, None, max_running, len, as_json)?;
    let cfg = EngineConfig {
        chunk: a.chunk.max(1),
        step_tokens: (max_running + a.chunk).max(512),
        max_running,
        max_waiting: a.queue,
        prefix_cache: !a.no_prefix_cache,
    };
    let engine = Engine::new(gpu, model, tok, cfg)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let addr = format!("{}:{}", a.host, a.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let local = listener.local_addr()?;
        if as_json {
            println!(
                "{}",
                serde_json::json!({"listening": format!("http://{local}"), "model": name})
            );
        } else {
            println!("serving {name} on http://{local} (OpenAI API under /v1; Ctrl-C stops)");
        }
        let server = ServerConfig {
            model_name: name,
            body_limit: a.body_limit,
            drain_timeout: Duration::from_secs(a.drain_timeout),
        };
        onepath_server::serve(listener, engine, server, signal()).await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves at SIGINT or SIGTERM.
async fn signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(e) => {
                tracing::warn!("cannot watch SIGTERM ({e}); Ctrl-C still stops the server");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
