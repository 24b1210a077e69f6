//! The engine never changes an answer: under staggered arrivals, chunked prefill, preemption,
//! prefix sharing and cancellation, every completed request's tokens, logits and logprobs
//! equal its solo run bit for bit, and no page is left behind.

mod common;

use common::*;
use onepath_engine::{EngineConfig, EngineError, FinishReason, Request};
use onepath_text::SamplingParams;

const MODEL: &str = "b-q4";
const VOCAB: u32 = 512;

/// Mixed lengths and limits; every third request samples (seeded), every other asks for
/// logprobs; all return their logits so the comparison covers every row.
fn requests() -> Vec<Request> {
    let lens = [1, 5, 40, 64, 65, 130, 200, 17];
    let max = [12, 3, 20, 8, 16, 5, 10, 24];
    (0..lens.len())
        .map(|i| {
            let mut r = Request::greedy(prompt(i as u64, lens[i], VOCAB), max[i]);
            if i % 3 == 1 {
                r.sampling = SamplingParams {
                    temperature: 0.9,
                    top_k: Some(40),
                    top_p: Some(0.95),
                    seed: 7 + i as u64,
                };
            }
            if i % 2 == 0 {
                r.logprobs = Some(3);
            }
            r.logits = true;
            r
        })
        .collect()
}

fn assert_same(got: &[Outcome], want: &[Outcome], what: &str) {
    assert!(
        want.iter()
            .flat_map(|o| &o.logits)
            .all(|l| l.len() == VOCAB as usize),
        "every token's logits are compared"
    );
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g.same_answer(w),
            "{what}: request {i} differs from its solo run\n got  {:?} {:?}\n want {:?} {:?}",
            g.tokens,
            g.reason,
            w.tokens,
            w.reason
        );
    }
}

#[test]
fn staggered_arrivals_and_chunked_prefill_equal_solo_runs() {
    let Some(mut e) = engine(MODEL, (64, 64), small_steps()) else {
        return;
    };
    let reqs = requests();
    let want = solo(&mut e, &reqs);
    assert!(
        want.iter().any(|o| o.tokens.len() > 5),
        "outputs too short to test much"
    );
    for k in [0u64, 1, 3] {
        let arrivals: Vec<_> = reqs
            .iter()
            .enumerate()
            .map(|(i, r)| (i as u64 * k, r.clone()))
            .collect();
        let got = drive(&mut e, &arrivals, &[]);
        assert_same(&got, &want, &format!("a request every {k} steps"));
        assert_no_page_leaked(&mut e);
    }
}

#[test]
fn preemption_under_a_tiny_page_budget_recomputes_the_same_tokens() {
    // 6 full pages (384 positions) for four requests of up to 3 pages each.
    let cfg = EngineConfig {
        max_running: 4,
        ..small_steps()
    };
    let Some(mut e) = engine(MODEL, (6, 12), cfg) else {
        return;
    };
    let reqs: Vec<Request> = (0..4)
        .map(|i| {
            let mut r = Request::greedy(prompt(40 + i, 100 + 7 * i as usize, VOCAB), 60);
            r.ignore_eos = true;
            r.logits = true;
            r
        })
        .collect();
    let want = solo(&mut e, &reqs);
    let before = e.stats().preemptions;
    let arrivals: Vec<_> = reqs.iter().map(|r| (0, r.clone())).collect();
    let got = drive(&mut e, &arrivals, &[]);
    assert!(
        e.stats().preemptions > before,
        "the page budget should have forced a preemption: {:?}",
        e.stats()
    );
    assert!(got.iter().any(|o| o.usage.preemptions > 0));
    assert_same(&got, &want, "under preemption");
    assert_no_page_leaked(&mut e);
}

#[test]
fn prefix_cache_shares_pages_and_changes_nothing() {
    let Some(mut e) = engine(MODEL, (64, 64), small_steps()) else {
        return;
    };
    let system = prompt(99, 150, VOCAB);
    let reqs: Vec<Request> = (0..4)
        .map(|i| {
            let mut p = system.clone();
            p.extend(prompt(200 + i, 3 + 20 * i as usize, VOCAB));
            let mut r = Request::greedy(p, 12);
            r.logits = true;
            r.logprobs = Some(2);
            r
        })
        .collect();
    let want = solo(&mut e, &reqs);
    // One at a time (the later ones find the first one's pages), then all at once.
    let one_by_one: Vec<_> = reqs
        .iter()
        .enumerate()
        .map(|(i, r)| (i as u64 * 40, r.clone()))
        .collect();
    let got = drive(&mut e, &one_by_one, &[]);
    assert_same(&got, &want, "with the prefix cache, one by one");
    for o in &got[1..] {
        assert_eq!(
            o.usage.cached_tokens, 128,
            "two whole pages of the shared prefix"
        );
    }
    let together: Vec<_> = reqs.iter().map(|r| (0, r.clone())).collect();
    let got = drive(&mut e, &together, &[]);
    assert_same(&got, &want, "with the prefix cache, together");
    assert!(e.stats().cached_tokens >= 3 * 128);
    assert_no_page_leaked(&mut e);
}

#[test]
fn cancellation_frees_pages_at_once_and_touches_no_one_else() {
    let Some(mut e) = engine(MODEL, (64, 64), small_steps()) else {
        return;
    };
    let mut reqs = requests();
    for r in &mut reqs {
        r.ignore_eos = true;
    }
    let want = solo(&mut e, &reqs);
    // Request 2 is cancelled while running, request 7 while still waiting (it arrives at
    // step 9 and max_running 8 keeps it queued only if the others run; cancel it at once).
    let arrivals: Vec<_> = reqs
        .iter()
        .enumerate()
        .map(|(i, r)| (if i == 7 { 9 } else { 0 }, r.clone()))
        .collect();
    let got = drive(&mut e, &arrivals, &[(4, 2), (9, 7)]);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        if i == 2 || i == 7 {
            assert_eq!(g.reason, FinishReason::Cancelled, "request {i}");
            assert!(
                w.tokens.starts_with(&g.tokens),
                "a cancelled request's tokens so far"
            );
        } else {
            assert!(
                g.same_answer(w),
                "request {i} changed by others' cancellation"
            );
        }
    }
    // Pages come back the moment a running request is cancelled.
    let id = e.add(reqs[6].clone()).unwrap();
    pollster::block_on(e.step());
    let held = e.stats().free_pages;
    assert!(e.cancel(id).is_some());
    let after = e.stats().free_pages;
    assert!(after.0 > held.0, "{held:?} -> {after:?}");
    assert!(e.cancel(id).is_none(), "a request ends once");
    assert_no_page_leaked(&mut e);
}

#[test]
fn bad_requests_are_refused_with_the_reason() {
    let cfg = EngineConfig {
        max_waiting: 2,
        ..small_steps()
    };
    let Some(mut e) = engine(MODEL, (4, 8), cfg) else {
        return;
    };
    let msg = |r: Request, e: &mut onepath_engine::Engine| e.add(r).unwrap_err().to_string();
    let ok = Request::greedy(vec![5, 6, 7], 4);
    let cases: Vec<(Request, &str)> = vec![
        (Request::greedy(vec![], 4), "the prompt is empty"),
        (
            Request::greedy(vec![5, 600], 4),
            "token id 600 at position 1 is outside the vocabulary (size 512)",
        ),
        (Request::greedy(vec![5], 0), "max_tokens must be at least 1"),
        (
            Request::greedy(vec![5; 4000], 100),
            "4100 positions (4000 prompt + 100 max tokens), beyond the model's context of 4096",
        ),
        (
            Request::greedy(vec![5; 300], 10),
            "needs 5 full-attention KV pages, more than the cache holds (4)",
        ),
        (
            Request {
                stop_strings: vec!["x".into()],
                ..ok.clone()
            },
            "stop strings need a tokenizer",
        ),
        (
            Request {
                stop_ids: vec![9999],
                ..ok.clone()
            },
            "stop token 9999 is outside the vocabulary",
        ),
        (
            Request {
                logprobs: Some(21),
                ..ok.clone()
            },
            "top logprobs is 21; at most 20",
        ),
        (
            Request {
                sampling: SamplingParams {
                    temperature: -1.0,
                    ..SamplingParams::greedy()
                },
                ..ok.clone()
            },
            "temperature must be finite and >= 0, got -1",
        ),
    ];
    for (r, want) in cases {
        let got = msg(r, &mut e);
        assert!(got.contains(want), "expected {want:?} in {got:?}");
    }
    assert!(!e.has_work(), "refused requests leave nothing behind");
    e.add(ok.clone()).unwrap();
    e.add(ok.clone()).unwrap();
    assert!(matches!(e.add(ok.clone()), Err(EngineError::QueueFull(2))));
}
