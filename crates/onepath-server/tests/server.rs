//! The server on loopback: 64 concurrent streaming clients (some hang up early, some send bad
//! requests) each get exactly their solo output; bad requests get 4xx JSON; the server stays
//! up and every page is free at the end; a full queue answers 429.

mod common;

use common::*;
use onepath_engine::EngineConfig;
use serde_json::{Value, json};

const MODEL: &str = "b-q4";

/// Distinct requests: prompts of different lengths, greedy and seeded sampling, stop ids.
fn bodies() -> Vec<Value> {
    (0..8u32)
        .map(|i| {
            let prompt: Vec<u32> = (0..(3 + 11 * i))
                .map(|j| 4 + (j * 37 + i * 101) % 500)
                .collect();
            let mut b = json!({
                "model": MODEL,
                "prompt": prompt,
                "max_tokens": 6 + i % 4,
                "temperature": 0,
            });
            if i % 3 == 1 {
                b["temperature"] = json!(0.8);
                b["seed"] = json!(100 + i);
                b["top_k"] = json!(50);
            }
            if i % 2 == 0 {
                b["logprobs"] = json!(2);
            }
            b
        })
        .collect()
}

/// Text-free answer of a whole completion: token strings and logprobs (the fixture has no
/// tokenizer, so each token shows as `<id>`).
fn answer_of_whole(v: &Value) -> Value {
    let c = &v["choices"][0];
    json!([c["text"], c["logprobs"], c["finish_reason"], c["token_ids"]])
}

/// The same from a stream's chunks: concatenated text, per-token logprob entries.
fn answer_of_stream(data: &[String]) -> Value {
    let mut text = String::new();
    let (mut toks, mut lps, mut tops, mut finish) = (vec![], vec![], vec![], Value::Null);
    let mut ids = vec![];
    for d in &data[..data.len() - 1] {
        let v: Value = serde_json::from_str(d).unwrap();
        let c = &v["choices"][0];
        text.push_str(c["text"].as_str().unwrap_or(""));
        if let Some(t) = c["token_ids"].as_array() {
            ids.extend(t.clone());
        }
        if let Some(lp) = c["logprobs"].as_object() {
            toks.extend(lp["tokens"].as_array().unwrap().clone());
            lps.extend(lp["token_logprobs"].as_array().unwrap().clone());
            tops.extend(lp["top_logprobs"].as_array().unwrap().clone());
        }
        if !c["finish_reason"].is_null() {
            finish = c["finish_reason"].clone();
        }
    }
    let lp = if toks.is_empty() {
        Value::Null
    } else {
        json!({"tokens": toks, "token_logprobs": lps, "top_logprobs": tops})
    };
    json!([text, lp, finish, ids])
}

fn strip_offsets(mut a: Value) -> Value {
    if let Some(o) = a[1].as_object_mut() {
        o.remove("text_offset");
    }
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_streams_disconnects_and_bad_requests() {
    let cfg = EngineConfig {
        max_running: 64,
        step_tokens: 128,
        chunk: 32,
        max_waiting: 256,
        prefix_cache: true,
    };
    let Some(engine) = engine(&Which::Fixture(MODEL), 64, cfg) else {
        return;
    };
    let s = start(engine, MODEL, 64 * 1024).await;
    let c = client();
    let url = s.url("/v1/completions");
    let bodies = bodies();
    // Solo answers, one request at a time.
    let mut solo = Vec::new();
    for b in &bodies {
        let (status, v) = post(&c, &url, &b.to_string()).await;
        assert_eq!(status, 200, "{v}");
        solo.push(strip_offsets(answer_of_whole(&v)));
    }
    let mut tasks = Vec::new();
    // 64 good streaming clients.
    for k in 0..64 {
        let (c, url, b) = (c.clone(), url.clone(), bodies[k % bodies.len()].clone());
        tasks.push(tokio::spawn(async move {
            let mut b = b;
            b["stream"] = json!(true);
            let data = stream(&c, &url, &b).await;
            (k % 8, Some(strip_offsets(answer_of_stream(&data))))
        }));
    }
    // 8 clients that hang up after the first chunk.
    for (k, b) in bodies.iter().enumerate() {
        let (c, url, b) = (c.clone(), url.clone(), b.clone());
        tasks.push(tokio::spawn(async move {
            let mut b = b;
            b["stream"] = json!(true);
            b["max_tokens"] = json!(200);
            let mut r = c.post(&url).json(&b).send().await.unwrap();
            assert_eq!(r.status().as_u16(), 200);
            let _first = r.chunk().await.unwrap();
            drop(r);
            (k, None)
        }));
    }
    // Bad requests, beside the good ones.
    let bad: Vec<(String, u16, &str)> = vec![
        ("{\"model\": ".into(), 400, "malformed JSON"),
        (
            json!({"model": "other", "prompt": [5]}).to_string(),
            400,
            "unknown model \"other\"",
        ),
        (
            json!({"model": MODEL, "prompt": [5], "temperature": 9}).to_string(),
            400,
            "temperature must be in [0, 2], got 9",
        ),
        (
            json!({"model": MODEL, "prompt": [5], "max_tokens": 5000}).to_string(),
            400,
            "beyond the model's context of 4096",
        ),
        (
            json!({"model": MODEL, "prompt": [5, 9999]}).to_string(),
            400,
            "token id 9999 at position 1 is outside the vocabulary",
        ),
        (
            json!({"model": MODEL, "prompt": [5], "n": 2}).to_string(),
            400,
            "`n` other than 1 is not supported",
        ),
        (
            json!({"model": MODEL, "prompt": [5], "frobnicate": 1}).to_string(),
            400,
            "unknown field `frobnicate`",
        ),
        (
            json!({"model": MODEL, "prompt": "text"}).to_string(),
            400,
            "no tokenizer.json",
        ),
        (
            json!({"model": MODEL, "prompt": [5], "max_tokens": 0}).to_string(),
            400,
            "max_tokens must be at least 1",
        ),
        (
            format!(
                "{{\"model\": \"{MODEL}\", \"prompt\": [{}]}}",
                vec!["5"; 40000].join(",")
            ),
            413,
            "length limit",
        ),
    ];
    for (body, want_status, want) in bad {
        let (c, url) = (c.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let (status, v) = post(&c, &url, &body).await;
            assert_eq!(status, want_status, "{v}");
            let msg = v["error"]["message"].as_str().unwrap_or_default();
            assert!(msg.contains(want), "expected {want:?} in {msg:?}");
            (usize::MAX, None)
        }));
    }
    for t in tasks {
        let (k, got) = t.await.expect("client task");
        if let Some(got) = got {
            assert_eq!(got, solo[k], "a streamed request differs from its solo run");
        }
    }
    // A wrong path is 404 JSON; the server is still up.
    let r = c.get(s.url("/v1/nothing")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let r = c.get(s.url("/health")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let m: Value = c
        .get(s.url("/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(m["data"][0]["id"], MODEL);
    assert_idle_and_pages_free(&c, &s).await;
    let m = metrics(&c, &s).await;
    assert!(metric(&m, "onepath_requests_finished_total{reason=\"cancelled\"}") >= 8.0);
    assert!(metric(&m, "onepath_time_to_first_token_seconds_count") >= 72.0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_429_and_the_rest_complete() {
    let cfg = EngineConfig {
        max_running: 1,
        step_tokens: 32,
        chunk: 32,
        max_waiting: 1,
        prefix_cache: false,
    };
    let Some(engine) = engine(&Which::Fixture(MODEL), 1, cfg) else {
        return;
    };
    let s = start(engine, MODEL, 1 << 20).await;
    let c = client();
    let body = json!({"model": MODEL, "prompt": [5, 6, 7], "max_tokens": 30, "temperature": 0});
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let (c, url, b) = (c.clone(), s.url("/v1/completions"), body.to_string());
        tasks.push(tokio::spawn(async move { post(&c, &url, &b).await }));
    }
    let mut codes = Vec::new();
    for t in tasks {
        let (status, v) = t.await.unwrap();
        if status == 429 {
            assert_eq!(v["error"]["code"], "queue_full", "{v}");
        } else {
            assert_eq!(status, 200, "{v}");
        }
        codes.push(status);
    }
    assert!(
        codes.contains(&429),
        "six requests on one slot and a queue of one: {codes:?}"
    );
    assert!(codes.contains(&200));
    assert_idle_and_pages_free(&c, &s).await;
    s.stop().await;
}
