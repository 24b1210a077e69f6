//! `onepath`: the command-line front end. Prints for people by default, `--json` for machines.

mod bench;
mod bench_bw;
mod bench_decode;
mod bench_dispatch;
mod bench_qmm;
mod bench_serve;
mod bench_step;
mod crosscheck;
mod generate;
mod load;
mod parity;
mod serve;
mod util;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use onepath_gpu::{BackendChoice, Gpu, GpuOptions};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "onepath",
    version,
    about = "Batch-invariant attention and LLM decoding on WebGPU"
)]
struct Cli {
    /// GPU backend: auto, vulkan, metal, dx12, gl.
    #[arg(long, global = true, env = "ONEPATH_BACKEND", default_value = "auto")]
    backend: BackendChoice,
    /// One JSON object on stdout instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// Keep wgpu's run-time bounds checks and loop counters in every kernel (slower; changes no
    /// result, a debugging aid).
    #[arg(long, global = true, env = "ONEPATH_SHADER_CHECKS", value_parser = clap::builder::BoolishValueParser::new())]
    shader_checks: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate text from a Gemma 4 checkpoint: several prompts run together in one batch,
    /// each getting the tokens it would get alone. Streams text for one prompt.
    Generate {
        /// Model directory (config.json, model.safetensors or a sharded index,
        /// tokenizer.json): Hugging Face or MLX. Default: kjv-tiny, the small model that ships
        /// with onepath.
        #[arg(long)]
        model: Option<std::path::PathBuf>,
        /// A prompt (repeatable; encoded with <bos>, or in the chat format with --chat).
        #[arg(long)]
        prompt: Vec<String>,
        /// A prompt as token ids, e.g. 2,17,9 (repeatable; used as given).
        #[arg(long, value_delimiter = ',', action = clap::ArgAction::Append, num_args = 1)]
        tokens: Vec<u32>,
        /// Wrap each --prompt in the model's chat turn format.
        #[arg(long)]
        chat: bool,
        /// Most tokens to generate per prompt (stops earlier at end of sequence or turn).
        #[arg(long, default_value_t = 64)]
        max_new_tokens: usize,
        /// Sampling temperature; 0 is greedy.
        #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
        temperature: f32,
        /// Sample among the k most likely tokens.
        #[arg(long)]
        top_k: Option<usize>,
        /// Sample among the most likely tokens whose probability reaches p.
        #[arg(long)]
        top_p: Option<f32>,
        /// Seed of the sampler (its random numbers depend on the seed and position only).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Quantize float linears at load time (4 or 8 bits, MLX's rule, group 64).
        #[arg(long)]
        quantize: Option<u32>,
        /// Admit the i-th prompt at decode step i*K instead of all at once (continuous
        /// batching; the outputs stay the same).
        #[arg(long, default_value_t = 0)]
        arrive_every: u64,
    },
    /// Serve a model over an OpenAI-compatible HTTP API (continuous batching; every request
    /// gets the answer it would get alone).
    Serve(serve::ServeArgs),
    /// One full-sequence forward: the soft-capped f32 logits of every position, written as
    /// tensor `logits` [T, vocab] of a safetensors file.
    Logits {
        #[arg(long)]
        model: Option<std::path::PathBuf>,
        /// The sequence's token ids, e.g. 2,17,9.
        #[arg(long, value_delimiter = ',', required = true)]
        tokens: Vec<u32>,
        /// Output .safetensors file.
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Run the field's failing case (mask forms, padding, batch size, prefill vs decode) and
    /// check every comparison is bitwise equal; exits 1 if any is not.
    Parity,
    /// Benchmarks that print numbers.
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
    },
    /// Print the adapter and the features onepath uses.
    Info,
    /// Run the same prompts on every backend this machine reaches (Vulkan, GL, ...) and
    /// report per pair: greedy tokens equal (first differing step), share of logit positions
    /// bitwise equal, max |difference|. Exits 1 if greedy tokens differ.
    Crosscheck {
        /// Model directory; default: kjv-tiny, the model that ships with onepath.
        #[arg(long)]
        model: Option<std::path::PathBuf>,
        /// A prompt as token ids (repeatable). Default: the directory's reference.safetensors
        /// prompts, else a few texts through its tokenizer.
        #[arg(long)]
        tokens: Vec<String>,
        /// Greedy steps per prompt (stop tokens ignored).
        #[arg(long, default_value_t = 16)]
        max_new_tokens: usize,
        /// Backends to try (comma-separated); default: every native one of this OS.
        #[arg(long, value_delimiter = ',')]
        backends: Vec<BackendChoice>,
        /// Logits the browser computed (web/test-output/browser-logits.safetensors): compared
        /// with every backend's logits of the same tokens.
        #[arg(long)]
        browser_logits: Option<std::path::PathBuf>,
    },
    /// Open a checkpoint (a .safetensors file, or a directory with model.safetensors or a
    /// sharded index, and config.json), put every linear layer on the GPU and check one call of
    /// each against an f64 reference and, bit for bit, rows of a batch against the same rows
    /// alone; exits 1 if any linear fails.
    Load {
        /// A .safetensors file or a checkpoint directory.
        path: std::path::PathBuf,
        /// Quantize float linears at load time to this many bits (4 or 8), MLX's affine rule
        /// bit for bit; linears stored quantized stay as stored.
        #[arg(long)]
        quantize: Option<u32>,
        /// Group size for --quantize (32, 64 or 128).
        #[arg(long, default_value_t = 64)]
        group_size: usize,
        /// Only the linears whose path starts with this (e.g. model.language_model).
        #[arg(long)]
        prefix: Option<String>,
        /// Plan storage bindings of at most this many bytes, splitting larger matrices by rows,
        /// as a browser would need (WebGPU's default is 134217728, 128 MiB).
        #[arg(long)]
        max_binding: Option<u64>,
    },
}

#[derive(Subcommand)]
enum BenchWhat {
    /// The device's memory read ceiling: a kernel that only streams a buffer (GB/s), the
    /// reference for the other benchmarks' effective bandwidth.
    Bandwidth {
        /// Timed calls (after warm-up), back to back.
        #[arg(long, default_value_t = 20)]
        iters: u32,
        /// MiB read per call (capped at the device's largest storage binding).
        #[arg(long, default_value_t = 1024)]
        mib: u64,
    },
    /// What a dispatch, a barrier and a compute-pass boundary cost on this device: many
    /// dispatches of a near-empty kernel, recorded four ways (us per dispatch).
    Dispatch {
        /// Dispatches per timed submission.
        #[arg(long, default_value_t = 200)]
        calls: usize,
    },
    /// Quantized matmul (4-bit, group 64, bf16 scales) on Gemma 4 E2B's MLP and LM-head shapes:
    /// decode (M = 1) and prefill (M = 512); time, GB/s of weights, TFLOP/s.
    Qmatmul {
        /// Timed calls per case (after warm-up), back to back.
        #[arg(long, default_value_t = 20)]
        iters: u32,
        /// Rows of x (comma-separated).
        #[arg(long, value_delimiter = ',', default_values_t = [1usize, 512])]
        m: Vec<usize>,
        /// Weight shapes N x K (comma-separated, e.g. 6144x1536,262144x1536).
        #[arg(long, value_delimiter = ',', default_values = ["6144x1536", "1536x6144", "262144x1536"])]
        shapes: Vec<String>,
        /// Kernel: the one onepath picks per call (auto), or the GEMV or the tiled kernel for
        /// every call (same bits; to compare their speed).
        #[arg(long, value_enum, default_value_t = bench_qmm::KernelArg::Auto)]
        kernel: bench_qmm::KernelArg,
        /// Weight format: MLX 4-bit (q4), or unquantized bf16 / f16 (the dense kernel).
        #[arg(long, value_enum, default_value_t = bench_qmm::WeightsArg::Q4)]
        weights: bench_qmm::WeightsArg,
    },
    /// The matmuls of one Gemma 4 E2B decode step (277 linears, 4-bit or bf16), chained with the
    /// model's dependencies in one compute pass: time per step, GB/s of weights, and whether
    /// each row's logits equal its 1-row step's bit for bit.
    Step {
        /// Steps per timed pass. With more than 1, a step's ops write buffers the step before
        /// wrote, so wgpu puts a barrier before every op (write after write), also between ops
        /// that need none within a step (k and v after q, up after gate).
        #[arg(long, default_value_t = 1)]
        iters: u32,
        /// Rows of x: sequences decoding together (comma-separated).
        #[arg(long, value_delimiter = ',', default_values_t = [1usize, 2, 4, 8])]
        m: Vec<usize>,
        /// Layers of the model to include (1 to 35; fewer for a quick run).
        #[arg(long, default_value_t = 35)]
        layers: usize,
        /// Weight format: MLX 4-bit (q4), or unquantized bf16 / f16 (the dense kernels).
        #[arg(long, value_enum, default_value_t = bench_qmm::WeightsArg::Q4)]
        weights: bench_qmm::WeightsArg,
    },
    /// The whole decoder on a Gemma 4 E2B-shaped model with random 4-bit weights made in
    /// process: load time, prefill tokens/s, decode tokens/s at batch 1, 8 and 32, GPU memory,
    /// and whether batched rows equal the same sequences alone, bit for bit.
    Decode {
        /// Layers (35 is E2B; fewer for a quick run).
        #[arg(long, default_value_t = 35)]
        layers: usize,
        /// Batch sizes (comma-separated).
        #[arg(long, value_delimiter = ',', default_values_t = [1usize, 8, 32])]
        batch: Vec<usize>,
        /// Timed decode steps per batch size.
        #[arg(long, default_value_t = 32)]
        steps: usize,
        /// Prompt tokens of each sequence before decoding.
        #[arg(long, default_value_t = 128)]
        prompt: usize,
        /// Tokens of the prefill measurement's prompt.
        #[arg(long, default_value_t = 512)]
        prefill: usize,
        /// Also measure where a step's time goes: host phases, and GPU time per part of the
        /// step with every dispatch in a timed pass of its own.
        #[arg(long)]
        profile: bool,
    },
    /// The engine under Poisson arrivals on the E2B-shaped random 4-bit model: aggregate
    /// tokens/s, time to first token and inter-token latency p50/p99 per concurrency level.
    Serve {
        /// Layers (35 is E2B; fewer for a quick run).
        #[arg(long, default_value_t = 35)]
        layers: usize,
        /// Concurrency levels (comma-separated): most requests running at once.
        #[arg(long, value_delimiter = ',', default_values_t = [1usize, 8, 32, 64])]
        concurrency: Vec<usize>,
        /// Prompt tokens per request.
        #[arg(long, default_value_t = 128)]
        prompt: usize,
        /// New tokens per request (no stop).
        #[arg(long, default_value_t = 128)]
        new_tokens: usize,
        /// Offered load: the arrival rate over what C requests at a time complete.
        #[arg(long, default_value_t = 1.0)]
        load: f64,
    },
    /// Decode attention: batch 1, 8, 32; 8 query heads on 1 KV head; head_dim 256 and 512;
    /// 4096 and 32768 keys; f16 K/V.
    Sdpa {
        /// Timed calls per case (after warm-up), back to back.
        #[arg(long, default_value_t = 20)]
        iters: u32,
        /// Batch sizes to run (comma-separated).
        #[arg(long, value_delimiter = ',', default_values_t = [1usize, 8, 32])]
        batch: Vec<usize>,
        /// Head dims to run (comma-separated).
        #[arg(long, value_delimiter = ',', default_values_t = [256usize, 512])]
        head_dim: Vec<usize>,
        /// Key counts to run (comma-separated).
        #[arg(long, value_delimiter = ',', default_values_t = [4096usize, 32768])]
        keys: Vec<usize>,
        /// How chunk work is spread: auto, groups (a workgroup per group of 8 rows) or rows (a
        /// workgroup per row). The same bits either way.
        #[arg(long, default_value = "auto", value_parser = ["auto", "groups", "rows"])]
        schedule: String,
    },
}

fn main() -> ExitCode {
    quiet_mesa();
    let matches = Cli::command().get_matches();
    // A server must outlive clients that hang up; every other command dies quietly when its
    // output pipe closes (`onepath ... | head`).
    if !matches!(matches.subcommand(), Some(("serve", _))) {
        restore_sigpipe();
    }
    let prompts = prompt_order(&matches);
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    match run(cli, prompts) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// `generate`'s --prompt and --tokens values in the order given on the command line.
fn prompt_order(m: &clap::ArgMatches) -> Vec<generate::Prompt> {
    let Some(("generate", g)) = m.subcommand() else {
        return Vec::new();
    };
    let mut all: Vec<(usize, generate::Prompt)> = Vec::new();
    if let (Some(vals), Some(idx)) = (g.get_many::<String>("prompt"), g.indices_of("prompt")) {
        all.extend(
            idx.zip(vals)
                .map(|(i, v)| (i, generate::Prompt::Text(v.clone()))),
        );
    }
    if let Some(occ) = g.get_occurrences::<u32>("tokens") {
        let starts: Vec<usize> = g
            .indices_of("tokens")
            .map(|i| i.collect())
            .unwrap_or_default();
        let mut at = 0;
        for o in occ {
            let ids: Vec<u32> = o.copied().collect();
            let first = starts.get(at).copied().unwrap_or(usize::MAX);
            at += ids.len();
            all.push((first, generate::Prompt::Tokens(ids)));
        }
    }
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, p)| p).collect()
}

/// Where a model comes from: a checkpoint directory, or the one compiled into onepath.
pub(crate) enum Source {
    Dir(std::path::PathBuf),
    Shipped,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Dir(d) => write!(f, "{}", d.display()),
            Source::Shipped => write!(f, "{} (shipped with onepath)", onepath_model::shipped::NAME),
        }
    }
}

/// `--model DIR`, or the shipped model when none is given.
pub(crate) fn model_source(
    model: Option<&std::path::Path>,
) -> Result<Source, Box<dyn std::error::Error>> {
    match model {
        Some(p) if p.is_dir() => Ok(Source::Dir(p.to_path_buf())),
        Some(p) => Err(format!(
            "--model {}: not a directory (give a checkpoint directory with config.json)",
            p.display()
        )
        .into()),
        None => Ok(Source::Shipped),
    }
}

fn run(cli: Cli, prompts: Vec<generate::Prompt>) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let opts = GpuOptions {
        backend: cli.backend,
        force_fallback: false,
        shader_checks: cli.shader_checks,
    };
    let gpu = pollster::block_on(Gpu::new(&opts))?;
    match cli.command {
        Command::Info => {
            if cli.json {
                println!("{}", util::adapter_json(&gpu));
            } else {
                println!("{}", gpu.describe());
                println!("max storage binding: {} bytes", gpu.max_binding());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Parity => parity::run(&gpu, cli.json),
        Command::Crosscheck {
            model,
            tokens,
            max_new_tokens,
            backends,
            browser_logits,
        } => crosscheck::run(
            &crosscheck::CrossArgs {
                model,
                prompts: crosscheck::parse_prompts(&tokens)?,
                max_new_tokens,
                backends: if backends.is_empty() {
                    crosscheck::default_backends()
                } else {
                    backends
                },
                browser_logits,
                shader_checks: cli.shader_checks,
            },
            cli.json,
        ),
        Command::Generate {
            model,
            prompt: _,
            tokens: _,
            chat,
            max_new_tokens,
            temperature,
            top_k,
            top_p,
            seed,
            quantize,
            arrive_every,
        } => generate::generate(
            gpu,
            &generate::GenArgs {
                model,
                prompts,
                chat,
                max_new_tokens,
                sampling: onepath_text::SamplingParams {
                    temperature,
                    top_k,
                    top_p,
                    seed,
                },
                quantize,
                arrive_every,
            },
            cli.json,
        ),
        Command::Serve(args) => serve::serve(gpu, &args, cli.json),
        Command::Logits { model, tokens, out } => {
            generate::logits(&gpu, model.as_deref(), &tokens, &out, cli.json)
        }
        Command::Load {
            path,
            quantize,
            group_size,
            prefix,
            max_binding,
        } => load::run(
            &gpu,
            &load::LoadArgs {
                path,
                quantize,
                group_size,
                prefix,
                max_binding,
            },
            cli.json,
        ),
        Command::Bench {
            what:
                BenchWhat::Decode {
                    layers,
                    batch,
                    steps,
                    prompt,
                    prefill,
                    profile,
                },
        } => bench_decode::run(
            &gpu,
            &bench_decode::DecodeArgs {
                layers,
                batches: batch,
                steps,
                prompt,
                prefill,
                profile,
            },
            cli.json,
        ),
        Command::Bench {
            what:
                BenchWhat::Serve {
                    layers,
                    concurrency,
                    prompt,
                    new_tokens,
                    load,
                },
        } => bench_serve::run(
            gpu,
            &bench_serve::ServeBenchArgs {
                layers,
                concurrency,
                prompt,
                new_tokens,
                load,
            },
            cli.json,
        ),
        Command::Bench {
            what: BenchWhat::Bandwidth { iters, mib },
        } => bench_bw::run(&gpu, mib, iters, cli.json),
        Command::Bench {
            what: BenchWhat::Dispatch { calls },
        } => bench_dispatch::run(&gpu, calls, cli.json),
        Command::Bench {
            what:
                BenchWhat::Qmatmul {
                    iters,
                    m,
                    shapes,
                    kernel,
                    weights,
                },
        } => bench_qmm::run(
            &gpu,
            &bench_qmm::QmmGrid {
                iters,
                ms: m,
                shapes,
                kernel,
                weights,
            },
            cli.json,
        ),
        Command::Bench {
            what:
                BenchWhat::Step {
                    iters,
                    m,
                    layers,
                    weights,
                },
        } => bench_step::run(
            &gpu,
            &bench_step::StepGrid {
                iters,
                ms: m,
                layers,
                weights,
            },
            cli.json,
        ),
        Command::Bench {
            what:
                BenchWhat::Sdpa {
                    iters,
                    batch,
                    head_dim,
                    keys,
                    schedule,
                },
        } => bench::sdpa(
            &gpu,
            &bench::SdpaGrid {
                iters,
                batch,
                head_dim,
                keys,
                schedule: match schedule.as_str() {
                    "groups" => onepath_ops::sdpa::Schedule::Groups,
                    "rows" => onepath_ops::sdpa::Schedule::Rows,
                    _ => onepath_ops::sdpa::Schedule::Auto,
                },
            },
            cli.json,
        ),
    }
}

/// Mesa's drivers (lavapipe, llvmpipe) complain on every start when `XDG_RUNTIME_DIR` is unset;
/// give them a private directory instead.
fn quiet_mesa() {
    if cfg!(target_os = "linux") && std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        let dir = std::env::temp_dir().join("onepath-xdg");
        if std::fs::create_dir_all(&dir).is_ok() {
            // SAFETY: called first thing in main, before any other thread exists.
            unsafe { std::env::set_var("XDG_RUNTIME_DIR", &dir) };
        }
    }
}

/// Rust ignores SIGPIPE, so `onepath ... | head` would panic on the closed pipe; restore the
/// default action so the process ends quietly, as command-line tools do.
fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: resetting a signal disposition to its default before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
