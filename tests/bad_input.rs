//! Every class of bad input onepath handles, each with the error it gives (the message must
//! contain the text in the table, which names the offending value or name). One table, run
//! case by case: a panic, an accepted input or another message fails the case.
//!
//! Classes and where their exhaustive variants are tested:
//! - files: safetensors headers, offsets and dtypes, the sharded index, checkpoint directories
//!   (`crates/onepath-weights/tests/bad_input.rs`, `tests/gemma4_bad_checkpoint.rs`);
//! - configs: `config.json` for the model and its MLX quantization entry
//!   (`tests/gemma4_bad_config.rs`);
//! - tokens: text that is not UTF-8, ids outside the vocabulary, `--prompt` bytes on the
//!   command line (`crates/onepath-text/tests/bad_input.rs`);
//! - masks: every form `canonicalize` refuses and hand-made key sets
//!   (`crates/onepath-mask/tests/errors.rs`);
//! - op inputs: attention rows, matmul and gather calls, weights, block ops
//!   (`tests/sdpa_errors.rs`);
//! - step inputs: the model's step API (`tests/gemma4_bad_step.rs`);
//! - HTTP requests: the server's request bodies (to be added with `onepath-server`).
//!
//! The parsers among these are also fuzzed (`crates/onepath-fuzz`, `scripts/fuzz.sh`).

mod common;
#[path = "bad_input/cpu.rs"]
mod cpu;
#[path = "bad_input/gpu.rs"]
mod gpu;

use std::panic::{AssertUnwindSafe, catch_unwind};

/// The kind of input a case feeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    File,
    Config,
    Token,
    Mask,
    Op,
    Step,
    Cli,
}

/// One bad input and the error it must give.
pub struct Case {
    pub class: Class,
    /// The input, in words.
    pub what: &'static str,
    /// Text the error message must contain.
    pub error: String,
    /// Feeds the input: `Err(message)` when it is refused.
    pub run: Box<dyn Fn() -> Result<(), String>>,
}

pub fn case<T, E: std::fmt::Display>(
    class: Class,
    what: &'static str,
    error: impl Into<String>,
    run: impl Fn() -> Result<T, E> + 'static,
) -> Case {
    Case {
        class,
        what,
        error: error.into(),
        run: Box::new(move || run().map(|_| ()).map_err(|e| e.to_string())),
    }
}

/// Runs every case; returns the failures.
fn check(cases: &[Case]) -> Vec<String> {
    let mut failures = Vec::new();
    for c in cases {
        let r = catch_unwind(AssertUnwindSafe(|| (c.run)()));
        let tag = format!("{:?}: {}", c.class, c.what);
        match r {
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("{tag}: panicked ({msg})"));
            }
            Ok(Ok(())) => failures.push(format!("{tag}: accepted")),
            Ok(Err(msg)) => {
                eprintln!("{tag}: {msg}");
                if !msg.contains(&c.error) {
                    failures.push(format!("{tag}: {msg:?} does not contain {:?}", c.error));
                }
            }
        }
    }
    failures
}

fn report(what: &str, cases: &[Case]) {
    let failures = check(cases);
    eprintln!("{what}: {} cases, {} failed", cases.len(), failures.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn files_configs_tokens_and_masks() {
    let cases = cpu::cases();
    for class in [Class::File, Class::Config, Class::Token, Class::Mask] {
        assert!(
            cases.iter().any(|c| c.class == class),
            "the table has no {class:?} case"
        );
    }
    report("files, configs, tokens, masks", &cases);
}

#[test]
fn op_inputs() {
    let Some(g) = common::gpu() else { return };
    report("op inputs", &gpu::op_cases(g));
}

#[test]
fn step_inputs() {
    let Some(g) = common::gpu() else { return };
    report("step inputs", &gpu::step_cases(g));
}

#[test]
fn command_line() {
    report("command line", &cpu::cli_cases());
}
