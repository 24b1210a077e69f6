//! `GET /metrics`: the engine's load in Prometheus' text format.

use onepath_engine::{FinishReason, Stats};
use std::collections::VecDeque;
use std::fmt::Write;
use std::time::{Duration, Instant};

/// Time-to-first-token histogram bounds (seconds).
const TTFT_BUCKETS: [f64; 10] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Tokens/s is measured over this much recent time.
const RATE_WINDOW: Duration = Duration::from_secs(10);

#[derive(Default)]
pub struct Metrics {
    stats: Stats,
    /// (time, generated tokens so far) over the rate window.
    samples: VecDeque<(Instant, u64)>,
    ttft_counts: [u64; TTFT_BUCKETS.len()],
    ttft_sum: f64,
    ttft_n: u64,
    /// Finished requests by reason: stop, length, cancelled, error.
    finished: [u64; 4],
}

impl Metrics {
    pub fn observe(&mut self, stats: Stats, now: Instant) {
        self.stats = stats;
        self.samples.push_back((now, stats.generated_tokens));
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW)
        {
            self.samples.pop_front();
        }
    }

    pub fn first_token(&mut self, d: Duration) {
        let s = d.as_secs_f64();
        for (i, b) in TTFT_BUCKETS.iter().enumerate() {
            if s <= *b {
                self.ttft_counts[i] += 1;
            }
        }
        self.ttft_sum += s;
        self.ttft_n += 1;
    }

    pub fn finished(&mut self, reason: &FinishReason) {
        let i = match reason {
            FinishReason::Stop => 0,
            FinishReason::Length => 1,
            FinishReason::Cancelled => 2,
            FinishReason::Error(_) => 3,
        };
        self.finished[i] += 1;
    }

    fn tokens_per_second(&self) -> f64 {
        match (self.samples.front(), self.samples.back()) {
            (Some((t0, n0)), Some((t1, n1))) if t1 > t0 => {
                (n1 - n0) as f64 / t1.duration_since(*t0).as_secs_f64()
            }
            _ => 0.0,
        }
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let s = &self.stats;
        let mut o = String::new();
        let mut gauge = |name: &str, help: &str, kind: &str, lines: &[(String, f64)]| {
            let _ = writeln!(
                o,
                "# HELP onepath_{name} {help}\n# TYPE onepath_{name} {kind}"
            );
            for (labels, v) in lines {
                let _ = writeln!(o, "onepath_{name}{labels} {v}");
            }
        };
        let one = |v: f64| vec![(String::new(), v)];
        let pools = |f: (usize, usize)| {
            vec![
                ("{pool=\"full\"}".to_string(), f.0 as f64),
                ("{pool=\"sliding\"}".to_string(), f.1 as f64),
            ]
        };
        gauge(
            "requests_running",
            "Requests being computed.",
            "gauge",
            &one(s.running as f64),
        );
        gauge(
            "requests_waiting",
            "Requests queued for KV pages or a slot.",
            "gauge",
            &one(s.waiting as f64),
        );
        gauge(
            "kv_pages_free",
            "Free KV-cache pages per pool.",
            "gauge",
            &pools(s.free_pages),
        );
        gauge(
            "kv_pages_total",
            "KV-cache pages per pool.",
            "gauge",
            &pools(s.total_pages),
        );
        gauge(
            "kv_pages_prefix_cached",
            "Pages only the prefix cache holds (free once evicted).",
            "gauge",
            &pools(s.cached_pages),
        );
        gauge(
            "generated_tokens_total",
            "Tokens generated.",
            "counter",
            &one(s.generated_tokens as f64),
        );
        gauge(
            "prefix_cache_hit_tokens_total",
            "Prompt positions taken from the prefix cache.",
            "counter",
            &one(s.cached_tokens as f64),
        );
        gauge(
            "preemptions_total",
            "Requests preempted (recomputed later, same tokens).",
            "counter",
            &one(s.preemptions as f64),
        );
        gauge(
            "steps_total",
            "Engine steps.",
            "counter",
            &one(s.steps as f64),
        );
        gauge(
            "tokens_per_second",
            "Generated tokens per second over the last 10 s.",
            "gauge",
            &one(self.tokens_per_second()),
        );
        let reasons = ["stop", "length", "cancelled", "error"];
        let fin: Vec<(String, f64)> = reasons
            .iter()
            .zip(self.finished)
            .map(|(r, n)| (format!("{{reason=\"{r}\"}}"), n as f64))
            .collect();
        gauge(
            "requests_finished_total",
            "Finished requests by how they ended.",
            "counter",
            &fin,
        );
        let _ = writeln!(
            o,
            "# HELP onepath_time_to_first_token_seconds From arrival to the first token.\n\
             # TYPE onepath_time_to_first_token_seconds histogram"
        );
        for (b, n) in TTFT_BUCKETS.iter().zip(self.ttft_counts) {
            let _ = writeln!(
                o,
                "onepath_time_to_first_token_seconds_bucket{{le=\"{b}\"}} {n}"
            );
        }
        let _ = writeln!(
            o,
            "onepath_time_to_first_token_seconds_bucket{{le=\"+Inf\"}} {n}\n\
             onepath_time_to_first_token_seconds_sum {}\n\
             onepath_time_to_first_token_seconds_count {n}",
            self.ttft_sum,
            n = self.ttft_n
        );
        o
    }
}
