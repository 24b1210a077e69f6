//! CI smoke: every target runs a few thousand inputs with no panic (a hang or a huge
//! allocation ends the process, which fails the test too).

use onepath_fuzz::{Options, TARGETS, run};

#[test]
fn every_target_survives_a_short_run() {
    let execs: u64 = match std::env::var("ONEPATH_FUZZ_SMOKE_EXECS") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|e| panic!("ONEPATH_FUZZ_SMOKE_EXECS={v}: {e}")),
        Err(_) => 5_000,
    };
    let mut failures = Vec::new();
    for t in TARGETS {
        let report = run(t, &Options::new(execs, 0x5eed));
        eprintln!("{report}");
        assert_eq!(report.execs, execs);
        assert!(
            report.outcomes > 1,
            "{}: every input gave the same outcome",
            t.name
        );
        for p in &report.panics {
            failures.push(format!("{}: {} ({})", t.name, p.message, p.input.display()));
        }
    }
    assert!(failures.is_empty(), "panics:\n{}", failures.join("\n"));
}
