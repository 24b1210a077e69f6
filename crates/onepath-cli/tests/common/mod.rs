//! Running the `onepath` binary from the CLI tests.
#![allow(dead_code)]

use std::process::{Command, Output};

/// `onepath ARGS`, its output captured.
pub fn onepath(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_onepath"))
        .args(args)
        .output()
        .expect("run onepath")
}

/// Whether `out` failed for want of a GPU adapter: a skip, unless CI is set (then a failure).
pub fn no_adapter(out: &Output) -> bool {
    let err = String::from_utf8_lossy(&out.stderr);
    if !err.contains("no GPU adapter") {
        return false;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set and no GPU adapter is usable, which fails the run: {err}"
    );
    eprintln!("SKIPPED (no GPU adapter; CI would fail here): {err}");
    true
}
