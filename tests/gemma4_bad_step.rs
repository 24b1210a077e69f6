//! Bad steps (token ids, positions, lengths, pages): clear errors, and the model unchanged after one.
//! (see tests/gemma4_bad_input/mod.rs for how the inputs are made).

mod common;
mod gemma4_bad_input;
mod gemma4_common;
use common::assert_same_bits;
use gemma4_bad_input::*;
use onepath::gpu::Gpu;
use onepath_model::{
    LoadOptions, Logits, Model, ModelError, RunOptions, SeqInput, StepOutput, open_checkpoint,
};
use serde_json::json;
use std::path::Path;

// ---------------------------------------------------------------------------------------------
// The step API.

fn prompt(len: usize) -> Vec<u32> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2654435761).wrapping_add(7) >> 9) % 512)
        .collect()
}

fn input(seq: u64, pos: u32, tokens: &[u32]) -> SeqInput {
    SeqInput {
        seq,
        pos,
        tokens: tokens.to_vec(),
        logits: Logits::All,
    }
}

fn step(gpu: &Gpu, m: &mut Model, inputs: &[SeqInput]) -> Result<StepOutput, ModelError> {
    pollster::block_on(m.step(gpu, inputs, true))
}

fn logits(out: StepOutput) -> Vec<f32> {
    out.rows
        .into_iter()
        .flat_map(|r| r.logits.expect("logits"))
        .collect()
}

fn load_run(gpu: &Gpu, dir: &Path, run: RunOptions) -> Model {
    let (cfg, ckpt) = open_checkpoint(dir).expect("checkpoint");
    pollster::block_on(Model::load(
        gpu,
        cfg,
        ckpt,
        &LoadOptions::default(),
        run,
        &mut |_, _| {},
    ))
    .unwrap_or_else(|e| panic!("load: {e}"))
}

/// The prompt every good step uses, and its logits on a fresh model.
const P: usize = 48;

fn fresh_logits(gpu: &Gpu) -> Vec<f32> {
    let mut f = load(gpu, A, 1);
    forward(gpu, &mut f, 1, &prompt(P))
}

/// After an error: nothing cached changed, and a good step gives the fresh model's bits.
fn still_works(gpu: &Gpu, m: &mut Model, fresh: &[f32], rows: usize, what: &str) {
    let v = m.config.vocab;
    let got = forward(gpu, m, 99, &prompt(rows));
    assert_same_bits(
        &got,
        &fresh[..rows * v],
        &format!("a good step after {what} vs a fresh model"),
    );
}

#[test]
fn bad_steps_give_errors_and_leave_the_model_working() {
    let Some(gpu) = common::gpu() else { return };
    let fresh = fresh_logits(gpu);
    let p = prompt(P);
    let mut m = load(gpu, A, 4);
    let v = m.config.vocab;
    // Sequence 1 holds 20 positions through every bad step.
    let first = logits(step(gpu, &mut m, &[input(1, 0, &p[..20])]).unwrap());
    assert_same_bits(
        &first,
        &fresh[..20 * v],
        "the first 20 rows vs a fresh model",
    );
    let pages = (m.kv.full.free_pages(), m.kv.sliding.free_pages());
    let cases: Vec<(&str, Vec<SeqInput>, &str)> = vec![
        (
            "a token id = vocab",
            vec![input(1, 20, &[p[20], p[21], 512])],
            "token id 512 at position 22 is outside the vocabulary (size 512)",
        ),
        (
            "token id u32::MAX",
            vec![input(2, 0, &[u32::MAX])],
            "token id 4294967295 at position 0 is outside the vocabulary (size 512)",
        ),
        (
            "a bad token id in the second sequence of a step",
            vec![input(1, 20, &p[20..24]), input(2, 0, &[3, 999])],
            "token id 999 at position 1 is outside the vocabulary (size 512)",
        ),
        (
            "no tokens",
            vec![input(1, 20, &[])],
            "bad step: sequence 1 has no tokens in this step",
        ),
        (
            "no tokens for a second sequence",
            vec![input(1, 20, &p[20..22]), input(5, 0, &[])],
            "bad step: sequence 5 has no tokens in this step",
        ),
        (
            "one sequence twice",
            vec![input(1, 20, &p[20..21]), input(1, 21, &p[21..22])],
            "bad step: sequence 1 appears twice in one step",
        ),
        (
            "a position past the cached length",
            vec![input(1, 21, &p[21..22])],
            "bad step: sequence 1 has 20 positions cached; its tokens must start there, not at 21",
        ),
        (
            "a position before the cached length",
            vec![input(1, 0, &p[..4])],
            "bad step: sequence 1 has 20 positions cached; its tokens must start there, not at 0",
        ),
        (
            "a new sequence not at position 0",
            vec![input(3, 5, &p[..4])],
            "bad step: sequence 3 has 0 positions cached; its tokens must start there, not at 5",
        ),
        (
            "a prompt beyond max_position_embeddings (4096)",
            vec![input(3, 0, &vec![1; 4097])],
            "sequence 3 would reach 4097 positions, beyond the model's context of 4096",
        ),
    ];
    let mut failures = Vec::new();
    for (what, inputs, error) in cases {
        let r = expect_error(what, error, || step(gpu, &mut m, &inputs));
        failures.extend(r.err());
        assert_eq!(m.kv.len(1), 20, "{what}: sequence 1's cached length");
        for s in [2, 3, 5] {
            assert_eq!(m.kv.len(s), 0, "{what}: sequence {s}'s cached length");
        }
        let now = (m.kv.full.free_pages(), m.kv.sliding.free_pages());
        assert_eq!(now, pages, "{what}: free (full, sliding) pages");
        still_works(gpu, &mut m, &fresh, P, what);
    }
    report(failures);
    // Sequence 1 goes on where it was.
    let rest = logits(step(gpu, &mut m, &[input(1, 20, &p[20..])]).unwrap());
    assert_same_bits(
        &rest,
        &fresh[20 * v..],
        "sequence 1 continued after the bad steps vs a fresh model",
    );
}

#[test]
fn a_prompt_beyond_max_position_embeddings_is_refused() {
    let Some(gpu) = common::gpu() else { return };
    let fresh = fresh_logits(gpu);
    let p = prompt(P);
    let cfg = edited(A, &[Edit::Set("max_position_embeddings", json!(16))]).to_string();
    let dir = ModelDir::new("max-positions", Some(&cfg), Files::Fixture(A));
    let (c, _) = open_checkpoint(&dir.0).unwrap();
    assert_eq!(c.max_positions, 16);
    let mut m = load_run(gpu, &dir.0, RunOptions::for_sequences(&c, 2, 16));
    let v = m.config.vocab;
    let mut failures = Vec::new();
    let r = expect_error(
        "20 tokens with max_position_embeddings 16",
        "sequence 1 would reach 20 positions, beyond the model's context of 16",
        || step(gpu, &mut m, &[input(1, 0, &p[..20])]),
    );
    failures.extend(r.err());
    assert_eq!(m.kv.len(1), 0);
    still_works(gpu, &mut m, &fresh, 16, "a prompt too long");
    // Exactly 16 positions fit; a 17th does not.
    let got = logits(step(gpu, &mut m, &[input(1, 0, &p[..16])]).unwrap());
    assert_same_bits(&got, &fresh[..16 * v], "16 positions vs a fresh model");
    let r = expect_error(
        "a 17th position with max_position_embeddings 16",
        "sequence 1 would reach 17 positions, beyond the model's context of 16",
        || step(gpu, &mut m, &[input(1, 16, &p[16..17])]),
    );
    failures.extend(r.err());
    assert_eq!(m.kv.len(1), 16);
    m.free(1);
    still_works(gpu, &mut m, &fresh, 16, "a position too far");
    report(failures);
}

#[test]
fn running_out_of_kv_pages_names_the_pool() {
    let Some(gpu) = common::gpu() else { return };
    let fresh = fresh_logits(gpu);
    let p = prompt(P);
    let long = prompt(65);
    let dir = fixture(A);
    let mut failures = Vec::new();
    // Each pool in turn too small for a 65-position prompt (two 64-key pages).
    for (pages, error) in [
        (
            (1, 3),
            "the KV cache's full-attention pool has 1 free page(s); this step needs 2 more",
        ),
        (
            (3, 1),
            "the KV cache's sliding-window pool has 1 free page(s); this step needs 2 more",
        ),
    ] {
        let what = format!("65 positions with (full, sliding) pages {pages:?}");
        let mut m = load_run(
            gpu,
            &dir,
            RunOptions {
                kv_max_binding: None,
                max_rows: 256,
                pages,
            },
        );
        let r = expect_error(&what, error, || step(gpu, &mut m, &[input(1, 0, &long)]));
        failures.extend(r.err());
        assert_eq!(m.kv.len(1), 0, "{what}");
        let now = (
            m.kv.full.free_pages() as u32,
            m.kv.sliding.free_pages() as u32,
        );
        assert_eq!(now, pages, "{what}: free pages after the error");
        still_works(gpu, &mut m, &fresh, P, &what);
    }
    // Two sequences where only one fits: the one that fits can go on afterwards.
    let mut m = load_run(
        gpu,
        &dir,
        RunOptions {
            kv_max_binding: None,
            max_rows: 256,
            pages: (2, 8),
        },
    );
    let v = m.config.vocab;
    let got = logits(step(gpu, &mut m, &[input(1, 0, &p[..40])]).unwrap());
    assert_same_bits(&got, &fresh[..40 * v], "sequence 1's first 40 rows");
    let r = expect_error(
        "two new sequences and one free full-attention page",
        "the KV cache's full-attention pool has 0 free page(s); this step needs 1 more",
        || step(gpu, &mut m, &[input(2, 0, &p[..40]), input(3, 0, &p[..40])]),
    );
    failures.extend(r.err());
    assert_eq!((m.kv.len(1), m.kv.len(2), m.kv.len(3)), (40, 0, 0));
    let got = logits(step(gpu, &mut m, &[input(1, 40, &p[40..])]).unwrap());
    assert_same_bits(
        &got,
        &fresh[40 * v..],
        "sequence 1 continued after running out of pages",
    );
    report(failures);
}

/// Known gap (crates/onepath-model/src/step.rs): a step that runs out of pages is not undone.
/// `piece` reserves pages sequence by sequence, so the sequences before the one that failed
/// keep the pages they took (here sequence 2 keeps the pool's last page, and a later step for
/// sequence 3 alone is refused).
#[test]
fn a_step_that_runs_out_of_pages_takes_none() {
    let Some(gpu) = common::gpu() else { return };
    let p = prompt(P);
    let run = RunOptions {
        kv_max_binding: None,
        max_rows: 256,
        pages: (1, 8),
    };
    let mut m = load_run(gpu, &fixture(A), run);
    let before = (m.kv.full.free_pages(), m.kv.sliding.free_pages());
    let e = step(gpu, &mut m, &[input(2, 0, &p[..40]), input(3, 0, &p[..40])]).unwrap_err();
    assert!(e.to_string().contains("full-attention pool"), "{e}");
    let after = (m.kv.full.free_pages(), m.kv.sliding.free_pages());
    assert_eq!(
        after, before,
        "free (full, sliding) pages after the failed step"
    );
}

/// Known gap (crates/onepath-model/src/step.rs): a step cut into pieces (`max_rows`) that runs
/// out of pages in a later piece keeps the earlier pieces: their positions count as cached
/// although the caller got an error, and the same step retried is refused ("has 64 positions
/// cached").
#[test]
fn a_cut_step_that_runs_out_of_pages_caches_nothing() {
    let Some(gpu) = common::gpu() else { return };
    let run = RunOptions {
        kv_max_binding: None,
        max_rows: 32,
        pages: (1, 8),
    };
    let mut m = load_run(gpu, &fixture(A), run);
    // 100 positions in 32-row pieces: the third piece needs a second full-attention page.
    let e = step(gpu, &mut m, &[input(1, 0, &prompt(100))]).unwrap_err();
    assert!(e.to_string().contains("full-attention pool"), "{e}");
    assert_eq!(m.kv.len(1), 0, "positions cached by the failed step");
}
