//! The harness itself: a panicking target is reported with its input saved, and a hang or a
//! huge allocation ends the process with the input saved (checked in a child process).

use onepath_fuzz::{Options, Outcome, Target, alloc, class, replay, run};
use std::process::Command;
use std::time::Duration;

fn seeds() -> Vec<Vec<u8>> {
    vec![b"seed".to_vec()]
}

/// Panics on any input holding the byte 0xff.
fn picky(data: &[u8]) -> Outcome {
    if data.contains(&0xff) {
        panic!("found 0xff");
    }
    Ok(())
}

fn sleepy(data: &[u8]) -> Outcome {
    if data.len() > 4 {
        std::thread::sleep(Duration::from_secs(30));
    }
    Ok(())
}

fn greedy(data: &[u8]) -> Outcome {
    if data.len() > 4 {
        let v = vec![1u8; 300 << 20];
        return Err(format!("{}", v.len()));
    }
    Ok(())
}

fn target(name: &'static str, run: fn(&[u8]) -> Outcome) -> Target {
    Target {
        name,
        about: "a harness test",
        parser: false,
        seeds,
        generate: None,
        run,
    }
}

fn out_dir(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("onepath-fuzz-harness-{}-{tag}", std::process::id()))
}

#[test]
fn a_panic_is_reported_and_its_input_saved() {
    let t = target("picky", picky);
    let mut opts = Options::new(3000, 9);
    opts.out_dir = out_dir("panic");
    let r = run(&t, &opts);
    assert_eq!(r.execs, 3000);
    assert!(!r.panics.is_empty(), "no input with 0xff in 3000 mutations");
    let p = &r.panics[0];
    assert!(
        p.message.contains("found 0xff") && p.message.contains("harness.rs"),
        "{p:?}"
    );
    let saved = std::fs::read(&p.input).expect("the saved input");
    assert!(saved.contains(&0xff));
    assert!(
        replay(&t, &saved).is_err(),
        "the saved input replays to the panic"
    );
    let _ = std::fs::remove_dir_all(&opts.out_dir);
}

#[test]
fn outcome_classes_ignore_numbers_and_names() {
    let e = |s: &str| class(&Err(s.to_string()));
    assert_eq!(e("tensor `a.b` has 12 bytes"), e("tensor `zz` has 9 bytes"));
    assert_ne!(e("tensor `a` has 12 bytes"), e("tensor `a` is missing"));
    assert_ne!(class(&Ok(())), e("accepted?"));
}

/// In a child: runs the target named by ONEPATH_FUZZ_HARNESS_CHILD (a hang or a huge
/// allocation must end the process before this returns).
#[test]
fn child() {
    let Ok(which) = std::env::var("ONEPATH_FUZZ_HARNESS_CHILD") else {
        return;
    };
    let t = match which.as_str() {
        "hang" => target("sleepy", sleepy),
        _ => target("greedy", greedy),
    };
    let mut opts = Options::new(100, 3);
    opts.time_limit = Duration::from_secs(1);
    opts.out_dir = std::env::var_os("ONEPATH_FUZZ_HARNESS_OUT")
        .expect("the parent names the output directory")
        .into();
    run(&t, &opts);
    println!("CHILD FINISHED");
}

fn in_child(which: &str) -> (Option<i32>, String, Vec<std::path::PathBuf>) {
    let exe = std::env::current_exe().expect("the test binary");
    let out = Command::new(exe)
        .args(["--exact", "child", "--nocapture", "--test-threads", "1"])
        .env("ONEPATH_FUZZ_HARNESS_CHILD", which)
        .env("ONEPATH_FUZZ_HARNESS_OUT", out_dir(which))
        .output()
        .expect("run the child");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let saved = std::fs::read_dir(out_dir(which))
        .map(|d| d.filter_map(|e| e.map(|e| e.path()).ok()).collect())
        .unwrap_or_default();
    let _ = std::fs::remove_dir_all(out_dir(which));
    (out.status.code(), text, saved)
}

#[test]
fn a_hang_ends_the_process_with_the_input_saved() {
    let (code, text, saved) = in_child("hang");
    assert!(
        text.contains("HANG: sleepy ran one input for more than 1s"),
        "{text}"
    );
    assert!(!text.contains("CHILD FINISHED"), "{text}");
    assert_eq!(code, Some(3), "{text}");
    assert!(
        saved
            .iter()
            .any(|p| p.to_string_lossy().contains("sleepy-hang")),
        "{saved:?}"
    );
}

#[test]
fn a_huge_allocation_ends_the_process_with_the_input_saved() {
    let (_, text, saved) = in_child("alloc");
    assert!(
        text.contains("HUGE ALLOCATION from a small input: one allocation: 314572800 bytes"),
        "{text}"
    );
    assert!(!text.contains("CHILD FINISHED"), "{text}");
    assert!(
        saved
            .iter()
            .any(|p| p.to_string_lossy().contains("greedy-alloc")),
        "{saved:?}"
    );
}

#[test]
fn counting_stops_when_disarmed() {
    fn no_limit(msg: &str) {
        panic!("limit hit while disarmed: {msg}");
    }
    alloc::arm(no_limit);
    let v = vec![0u8; 1 << 20];
    let (largest, peak) = alloc::disarm();
    assert!(largest >= 1 << 20 && peak >= 1 << 20, "{largest} {peak}");
    drop(v);
    // Not armed: a large allocation is no finding.
    let big = vec![0u8; 300 << 20];
    assert_eq!(big.len(), 300 << 20);
}
