//! `onepath-fuzz <target>|all|list [--execs N] [--seed S] [--time-limit SECS] [--out DIR]
//! [--replay FILE]`: runs fuzz targets (see the library docs); exits 1 when a panic was found.

use onepath_fuzz::{Options, Report, TARGETS, replay, run, target};
use std::process::ExitCode;
use std::time::Duration;

fn usage() -> ExitCode {
    eprintln!(
        "usage: onepath-fuzz <target>|all|list [--execs N] [--seed S] [--time-limit SECS] \
         [--out DIR] [--progress N] [--replay FILE]"
    );
    for t in TARGETS {
        eprintln!("  {:<12} {}", t.name, t.about);
    }
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(name) = args.first() else {
        return usage();
    };
    let mut opts = Options::new(100_000, 1);
    let mut replay_file = None;
    let mut i = 1;
    while i < args.len() {
        let Some(v) = args.get(i + 1) else {
            eprintln!("{} needs a value", args[i]);
            return usage();
        };
        let num = |v: &str| {
            v.parse::<u64>()
                .map_err(|e| format!("{}: {v}: {e}", args[i]))
        };
        let r = match args[i].as_str() {
            "--execs" => num(v).map(|n| opts.execs = n),
            "--seed" => num(v).map(|n| opts.seed = n),
            "--progress" => num(v).map(|n| opts.progress = n),
            "--time-limit" => num(v).map(|n| opts.time_limit = Duration::from_secs(n)),
            "--out" => {
                opts.out_dir = v.into();
                Ok(())
            }
            "--replay" => {
                replay_file = Some(v.clone());
                Ok(())
            }
            other => Err(format!("unknown option {other}")),
        };
        if let Err(e) = r {
            eprintln!("{e}");
            return usage();
        }
        i += 2;
    }
    if name == "list" {
        for t in TARGETS {
            println!("{}", t.name);
        }
        return ExitCode::SUCCESS;
    }
    let targets: Vec<_> = if name == "all" {
        TARGETS.iter().collect()
    } else {
        match target(name) {
            Some(t) => vec![t],
            None => {
                eprintln!("no target {name}");
                return usage();
            }
        }
    };
    if let Some(file) = replay_file {
        let bytes = match std::fs::read(&file) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{file}: {e}");
                return ExitCode::from(2);
            }
        };
        for t in targets {
            match replay(t, &bytes) {
                Ok(outcome) => println!("{}: {outcome:?}", t.name),
                Err(panic) => {
                    println!("{}: PANIC {panic}", t.name);
                    return ExitCode::FAILURE;
                }
            }
        }
        return ExitCode::SUCCESS;
    }
    let mut failed = false;
    for t in targets {
        let report: Report = run(t, &opts);
        println!("{report}");
        for p in &report.panics {
            println!("  panic: {} (input {})", p.message, p.input.display());
        }
        failed |= !report.panics.is_empty();
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
