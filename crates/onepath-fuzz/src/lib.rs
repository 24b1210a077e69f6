//! Fuzzing onepath's parsers on stable Rust: mutation loops started from valid seed files.
//!
//! Each [`Target`] takes bytes and drives one public parser with them (the safetensors header
//! and index, config.json in every style the model loads, MLX quantization entries, mask
//! canonicalisation, the tokenizer). [`run`] mutates the target's seeds (byte flips, splices,
//! length-field and number edits, JSON tokens: [`mutate`]) and, for targets that have one,
//! builds inputs from `arbitrary`-generated structures; an input that gives an error message
//! not seen before joins the pool that later inputs are mutated from (a cheap stand-in for
//! coverage feedback). Every input runs under `catch_unwind`, a watchdog (an input running
//! longer than [`Options::time_limit`] is a hang) and the counting allocator of [`alloc`] (one
//! allocation over 256 MiB, or 1 GiB live, from a small input is a finding). A finding's input
//! is written to `Options::out_dir`.
//!
//! `onepath-fuzz <target> --execs N [--seed S]` runs one target (`scripts/fuzz.sh` runs them
//! all); `cargo test -p onepath-fuzz` runs a short smoke of each.

pub mod alloc;
pub mod mutate;
pub mod rng;
pub mod targets;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use targets::{TARGETS, Target, target};

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

/// Most bytes of one input (the seeds are a few KiB; larger inputs only slow the loop).
pub const MAX_INPUT: usize = 64 << 10;
/// Most inputs kept in the pool besides the seeds.
const POOL: usize = 512;

/// How a run goes.
#[derive(Clone, Debug)]
pub struct Options {
    pub execs: u64,
    pub seed: u64,
    /// An input running longer than this is reported as a hang and the process exits.
    pub time_limit: Duration,
    /// Where findings' inputs are written.
    pub out_dir: PathBuf,
    /// Print progress every this many executions (0: never).
    pub progress: u64,
}

impl Options {
    pub fn new(execs: u64, seed: u64) -> Options {
        Options {
            execs,
            seed,
            time_limit: Duration::from_secs(10),
            out_dir: std::env::temp_dir().join("onepath-fuzz"),
            progress: 0,
        }
    }
}

/// A panic found: its message and where the input was saved.
#[derive(Clone, Debug)]
pub struct Finding {
    pub message: String,
    pub input: PathBuf,
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub target: &'static str,
    pub execs: u64,
    pub panics: Vec<Finding>,
    /// Inputs the target accepted (parsed without error).
    pub accepted: u64,
    /// Distinct outcomes (error messages with the numbers taken out, or "accepted").
    pub outcomes: usize,
    pub slowest: Duration,
    pub largest_alloc: usize,
    pub peak_live: usize,
    pub elapsed: Duration,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} execs in {:.1} s ({:.0}/s), {} accepted, {} distinct outcomes, {} panics, \
             0 hangs (slowest input {:.1} ms), 0 huge allocations (largest {} B, peak live {} B)",
            self.target,
            self.execs,
            self.elapsed.as_secs_f64(),
            self.execs as f64 / self.elapsed.as_secs_f64().max(1e-9),
            self.accepted,
            self.outcomes,
            self.panics.len(),
            self.slowest.as_secs_f64() * 1e3,
            self.largest_alloc,
            self.peak_live,
        )
    }
}

/// What one input did: `Ok(())` when the parser accepted it, else its error message.
pub type Outcome = Result<(), String>;

/// The outcome's class: the message without its numbers and quoted names (which the
/// mutations vary endlessly), hashed (FNV-1a). Inputs of a class not seen before join the pool.
pub fn class(o: &Outcome) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let text = match o {
        Ok(()) => "accepted",
        Err(m) => m.as_str(),
    };
    let mut quoted = None;
    for b in text.bytes().take(400) {
        match quoted {
            Some(q) if b == q => quoted = None,
            Some(_) => continue,
            None if b == b'`' || b == b'"' => quoted = Some(b),
            None if b.is_ascii_digit() => continue,
            None => h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3),
        }
    }
    h
}

/// The input running now on the fuzzing thread, for the watchdog and the allocator.
struct Current {
    target: &'static str,
    out_dir: PathBuf,
    input: Mutex<Vec<u8>>,
    /// Milliseconds since `epoch` when the input started; 0 when idle.
    started: AtomicU64,
    done: AtomicBool,
}

static CURRENT: Mutex<Option<Arc<Current>>> = Mutex::new(None);
/// One run at a time per process (the panic hook and [`CURRENT`] are process-wide).
static RUN: Mutex<()> = Mutex::new(());

fn save(cur: &Current, kind: &str, bytes: &[u8]) -> PathBuf {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let path = cur.out_dir.join(format!("{}-{kind}-{n}.bin", cur.target));
    if let Err(e) =
        std::fs::create_dir_all(&cur.out_dir).and_then(|()| std::fs::write(&path, bytes))
    {
        eprintln!(
            "onepath-fuzz: could not save the input to {}: {e}",
            path.display()
        );
    }
    path
}

/// Saves the running input when the allocator finds a huge allocation (it aborts next).
fn on_alloc_limit(msg: &str) {
    let Ok(guard) = CURRENT.try_lock() else {
        return;
    };
    if let Some(cur) = guard.as_ref()
        && let Ok(input) = cur.input.try_lock()
    {
        let path = save(cur, "alloc", &input);
        eprintln!(
            "onepath-fuzz: {}: {msg}; input saved to {}",
            cur.target,
            path.display()
        );
    }
}

thread_local! {
    static LAST_PANIC: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    /// True while a target runs an input on this thread: its panics are findings, recorded
    /// quietly; any other panic goes to the usual hook.
    static IN_TARGET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Installs (once) the hook that records a target's panic message and location.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let usual = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_TARGET.with(std::cell::Cell::get) {
                return usual(info);
            }
            let msg = match info.payload().downcast_ref::<&str>() {
                Some(s) => s.to_string(),
                None => info
                    .payload()
                    .downcast_ref::<String>()
                    .cloned()
                    .unwrap_or_default(),
            };
            let at = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            LAST_PANIC.with(|p| *p.borrow_mut() = format!("{msg}{at}"));
        }));
    });
}

/// Runs `target` for `opts.execs` inputs. Panics are collected in the report; a hang or a
/// huge allocation ends the process (after saving the input), since neither can be undone.
pub fn run(target: &Target, opts: &Options) -> Report {
    let _one = RUN.lock().unwrap_or_else(|p| p.into_inner());
    let seeds = (target.seeds)();
    assert!(!seeds.is_empty(), "target {} has no seeds", target.name);
    let epoch = Instant::now();
    let cur = Arc::new(Current {
        target: target.name,
        out_dir: opts.out_dir.clone(),
        input: Mutex::new(Vec::new()),
        started: AtomicU64::new(0),
        done: AtomicBool::new(false),
    });
    *CURRENT.lock().unwrap_or_else(|p| p.into_inner()) = Some(cur.clone());
    let watchdog = {
        let cur = cur.clone();
        let limit = opts.time_limit;
        std::thread::spawn(move || {
            while !cur.done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
                let s = cur.started.load(Ordering::Relaxed);
                let now = epoch.elapsed().as_millis() as u64;
                if s != 0 && now.saturating_sub(s) > limit.as_millis() as u64 {
                    let input = cur.input.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    let path = save(&cur, "hang", &input);
                    eprintln!(
                        "onepath-fuzz: HANG: {} ran one input for more than {:?}; input saved to {}",
                        cur.target,
                        limit,
                        path.display()
                    );
                    std::process::exit(3);
                }
            }
        })
    };
    install_panic_hook();

    let mut rng = rng::Rng::new(opts.seed ^ target.name.len() as u64);
    let mut pool: Vec<Vec<u8>> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut report = Report {
        target: target.name,
        ..Report::default()
    };
    let mut input = Vec::with_capacity(MAX_INPUT);
    for exec in 0..opts.execs {
        // Pick a base: a seed, a pooled input, or an arbitrary-generated structure.
        input.clear();
        let mut base: &[u8] = if !pool.is_empty() && rng.one_in(2) {
            &pool[rng.below(pool.len())]
        } else {
            &seeds[rng.below(seeds.len())]
        };
        let made;
        if let Some(g) = target.generate
            && rng.one_in(4)
        {
            let n = 64 + rng.below(2048);
            let raw = rng.bytes(n);
            // Too few random bytes for a structure leaves the seed picked above.
            if let Ok(bytes) = g(&mut arbitrary::Unstructured::new(&raw)) {
                made = bytes;
                base = &made;
            }
        }
        input.extend_from_slice(&base[..base.len().min(MAX_INPUT)]);
        if exec >= seeds.len() as u64 && !rng.one_in(16) {
            let other = &seeds[rng.below(seeds.len())];
            mutate::mutate(&mut rng, &mut input, other, MAX_INPUT);
        } else if exec < seeds.len() as u64 {
            input.clear();
            input.extend_from_slice(&seeds[exec as usize]);
        }

        {
            let mut c = cur.input.lock().unwrap_or_else(|p| p.into_inner());
            c.clear();
            c.extend_from_slice(&input);
        }
        let t0 = Instant::now();
        cur.started
            .store(epoch.elapsed().as_millis() as u64 + 1, Ordering::Relaxed);
        alloc::arm(on_alloc_limit);
        IN_TARGET.with(|t| t.set(true));
        let result = catch_unwind(AssertUnwindSafe(|| (target.run)(&input)));
        IN_TARGET.with(|t| t.set(false));
        let (largest, peak) = alloc::disarm();
        cur.started.store(0, Ordering::Relaxed);
        report.slowest = report.slowest.max(t0.elapsed());
        report.largest_alloc = report.largest_alloc.max(largest);
        report.peak_live = report.peak_live.max(peak);
        report.execs += 1;
        match result {
            Ok(outcome) => {
                if outcome.is_ok() {
                    report.accepted += 1;
                }
                if seen.insert(class(&outcome)) && input.len() <= MAX_INPUT {
                    if pool.len() < POOL {
                        pool.push(input.clone());
                    } else {
                        let i = rng.below(POOL);
                        pool[i] = input.clone();
                    }
                }
            }
            Err(_) => {
                let message = LAST_PANIC.with(|p| p.borrow().clone());
                let path = save(&cur, "panic", &input);
                eprintln!(
                    "onepath-fuzz: PANIC in {}: {message}; input saved to {}",
                    target.name,
                    path.display()
                );
                report.panics.push(Finding {
                    message,
                    input: path,
                });
            }
        }
        if opts.progress > 0 && (exec + 1) % opts.progress == 0 {
            eprintln!(
                "onepath-fuzz: {}: {} execs, {} outcomes, pool {}",
                target.name,
                exec + 1,
                seen.len(),
                pool.len()
            );
        }
    }
    report.outcomes = seen.len();
    report.elapsed = epoch.elapsed();
    cur.done.store(true, Ordering::Relaxed);
    if watchdog.join().is_err() {
        eprintln!("onepath-fuzz: the watchdog thread panicked");
    }
    *CURRENT.lock().unwrap_or_else(|p| p.into_inner()) = None;
    report
}

/// Runs one saved input through `target` (to reproduce a finding): its outcome, or the panic.
pub fn replay(target: &Target, input: &[u8]) -> Result<Outcome, String> {
    catch_unwind(AssertUnwindSafe(|| (target.run)(input))).map_err(|p| {
        p.downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_default()
    })
}
