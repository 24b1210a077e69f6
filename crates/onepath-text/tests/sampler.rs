//! The sampler against brute-force computations written from the definitions (probabilities
//! normalised first, sets found by enumeration), not from the crate's code.

mod common;

use common::Rng;
use onepath_text::{
    SampleError, SamplingParams, greedy, sample, token_logprob, top_logprobs, uniform,
};

fn params(temperature: f32, top_k: Option<usize>, top_p: Option<f32>, seed: u64) -> SamplingParams {
    SamplingParams {
        temperature,
        top_k,
        top_p,
        seed,
    }
}

fn random_logits(rng: &mut Rng, n: usize, levels: u64) -> Vec<f32> {
    (0..n)
        .map(|_| (rng.below(levels) as f32 - levels as f32 / 2.0) * 0.37)
        .collect()
}

/// Ids by logit descending, id ascending (a plain stable sort on the logit: the ids start in
/// ascending order).
fn ranked(logits: &[f32]) -> Vec<usize> {
    let mut ids: Vec<usize> = (0..logits.len()).collect();
    ids.sort_by(|&a, &b| logits[b].partial_cmp(&logits[a]).unwrap());
    ids
}

/// The sampling distribution from the definitions: softmax(l / T) over the top k, then the
/// smallest prefix whose probability reaches p, renormalised. Index = token id.
fn brute_probs(logits: &[f32], t: f64, top_k: Option<usize>, top_p: Option<f32>) -> Vec<f64> {
    let order = ranked(logits);
    let k = top_k.unwrap_or(order.len()).min(order.len());
    let kept = &order[..k];
    let max = logits[kept[0]] as f64;
    let z: f64 = kept
        .iter()
        .map(|&i| ((logits[i] as f64 - max) / t).exp())
        .sum();
    let mut p: Vec<f64> = vec![0.0; logits.len()];
    for &i in kept {
        p[i] = ((logits[i] as f64 - max) / t).exp() / z;
    }
    if let Some(top_p) = top_p {
        let mut cum = 0.0;
        let mut m = kept.len();
        for (j, &i) in kept.iter().enumerate() {
            cum += p[i];
            if cum >= top_p as f64 - 1e-12 {
                m = j + 1;
                break;
            }
        }
        let mass: f64 = kept[..m].iter().map(|&i| p[i]).sum();
        let mut q = vec![0.0; logits.len()];
        for &i in &kept[..m] {
            q[i] = p[i] / mass;
        }
        p = q;
    }
    p
}

/// The token an inverse-CDF draw of `u` picks from `probs`, walking the ranked order.
fn brute_draw(logits: &[f32], probs: &[f64], u: f64) -> u32 {
    let mut cum = 0.0;
    let mut last = 0;
    for i in ranked(logits) {
        if probs[i] > 0.0 {
            cum += probs[i];
            last = i;
            if cum > u {
                return i as u32;
            }
        }
    }
    last as u32
}

#[test]
fn greedy_is_argmax_with_lowest_id_on_ties() {
    assert_eq!(greedy(&[1.0, 3.0, 3.0, 2.0]).unwrap(), 1);
    assert_eq!(greedy(&[-0.0, 0.0]).unwrap(), 0);
    assert_eq!(greedy(&[0.0, -0.0]).unwrap(), 0);
    assert_eq!(greedy(&[f32::NEG_INFINITY, -5.0]).unwrap(), 1);
    let mut rng = Rng(5);
    for _ in 0..200 {
        let n = 1 + rng.below(50) as usize;
        let logits = random_logits(&mut rng, n, 9);
        let mut best = 0;
        for i in 1..logits.len() {
            if logits[i] > logits[best] {
                best = i;
            }
        }
        let g = SamplingParams::greedy();
        assert_eq!(sample(&logits, &g, rng.next()).unwrap(), best as u32);
        // temperature 0 ignores top_k, top_p and the seed.
        let g2 = params(0.0, Some(1), Some(0.01), 77);
        assert_eq!(sample(&logits, &g2, 3).unwrap(), best as u32);
    }
}

#[test]
fn sample_matches_brute_force_inverse_cdf() {
    let mut rng = Rng(11);
    for case in 0..300 {
        let n = 2 + rng.below(12) as usize;
        let logits = random_logits(&mut rng, n, 7);
        let t = [0.3f32, 0.7, 1.0, 1.9][rng.below(4) as usize];
        let top_k = [None, Some(1), Some(2), Some(5), Some(100)][rng.below(5) as usize];
        let top_p = [None, Some(0.3f32), Some(0.8), Some(1.0)][rng.below(4) as usize];
        let seed = rng.next();
        let p = params(t, top_k, top_p, seed);
        let probs = brute_probs(&logits, t as f64, top_k, top_p);
        for pos in 0..40 {
            let got = sample(&logits, &p, pos).unwrap();
            let want = brute_draw(&logits, &probs, uniform(seed, pos));
            assert_eq!(got, want, "case {case} pos {pos} {logits:?} {p:?}");
        }
    }
}

/// 20 000 draws from a 4-token softmax: the counts fit the probabilities (Pearson chi-square
/// with 3 degrees of freedom below 16.27, its 0.999 quantile).
#[test]
fn draws_follow_the_softmax() {
    let logits = [2.0f32, 1.0, 0.5, -1.0];
    for (t, top_k, top_p, seed) in [
        (1.0f32, None, None, 7u64),
        (0.6, None, None, 8),
        (1.5, Some(3), None, 9),
        (1.0, None, Some(0.85f32), 10),
    ] {
        let p = params(t, top_k, top_p, seed);
        let probs = brute_probs(&logits, t as f64, top_k, top_p);
        let n = 20_000u64;
        let mut counts = [0u64; 4];
        for pos in 0..n {
            counts[sample(&logits, &p, pos).unwrap() as usize] += 1;
        }
        let mut chi2 = 0.0;
        let mut df = 0;
        for i in 0..4 {
            if probs[i] == 0.0 {
                assert_eq!(counts[i], 0, "token {i} is outside the kept set: {p:?}");
                continue;
            }
            let e = probs[i] * n as f64;
            chi2 += (counts[i] as f64 - e).powi(2) / e;
            df += 1;
        }
        let limit = [0.0, 10.83, 13.82, 16.27][df - 1];
        assert!(
            chi2 <= limit,
            "chi2 {chi2} (df {}) for {p:?}: {counts:?} vs {probs:?}",
            df - 1
        );
    }
}

#[test]
fn top_p_keeps_the_smallest_set_reaching_p() {
    // Distinct logits, 6 tokens: find the nucleus by enumerating all subsets.
    let logits = [0.1f32, 1.7, -0.4, 1.1, 0.6, -2.0];
    let full = brute_probs(&logits, 1.0, None, None);
    for top_p in [0.05f32, 0.4, 0.5, 0.75, 0.9, 0.99, 1.0] {
        let mut best: Option<(u32, f64, u32)> = None; // (size, mass, mask)
        for mask in 1u32..64 {
            let mass: f64 = (0..6).filter(|i| mask >> i & 1 == 1).map(|i| full[i]).sum();
            if mass < top_p as f64 - 1e-12 {
                continue;
            }
            let size = mask.count_ones();
            let better = match best {
                None => true,
                Some((s, m, _)) => size < s || (size == s && mass > m),
            };
            if better {
                best = Some((size, mass, mask));
            }
        }
        let mask = best.unwrap().2;
        let p = params(1.0, None, Some(top_p), 3);
        let mut seen = 0u32;
        for pos in 0..3000 {
            seen |= 1 << sample(&logits, &p, pos).unwrap();
        }
        assert_eq!(
            seen, mask,
            "top_p {top_p}: seen {seen:06b}, nucleus {mask:06b}"
        );
    }
}

#[test]
fn top_k_on_a_large_vocabulary_with_ties() {
    // 20 000 logits on 40 levels: many ties, so the selection must break them by id.
    let mut rng = Rng(21);
    let logits = random_logits(&mut rng, 20_000, 40);
    for k in [1usize, 7, 64, 1000] {
        let p = params(0.8, Some(k), None, 5);
        let allowed: Vec<usize> = ranked(&logits)[..k].to_vec();
        let probs = brute_probs(&logits, 0.8, Some(k), None);
        for pos in 0..50 {
            let got = sample(&logits, &p, pos).unwrap();
            assert!(
                allowed.contains(&(got as usize)),
                "k {k}: {got} not among the top k"
            );
            assert_eq!(
                got,
                brute_draw(&logits, &probs, uniform(5, pos)),
                "k {k} pos {pos}"
            );
        }
    }
}

#[test]
fn same_seed_and_position_same_token_whatever_else() {
    let mut rng = Rng(31);
    let logits = random_logits(&mut rng, 500, 30);
    let p = params(1.0, Some(40), Some(0.9), 1234);
    let forward: Vec<u32> = (0..200)
        .map(|pos| sample(&logits, &p, pos).unwrap())
        .collect();
    // Backwards, interleaved with other requests' draws, and on other threads.
    let mut backward = vec![0; 200];
    for pos in (0..200).rev() {
        let _ = sample(&logits, &params(0.7, None, None, pos), pos);
        backward[pos as usize] = sample(&logits, &p, pos).unwrap();
    }
    assert_eq!(forward, backward);
    let threads: Vec<_> = (0..4usize)
        .map(|t| {
            let logits = logits.clone();
            std::thread::spawn(move || {
                (0..200usize)
                    .map(|pos| sample(&logits, &p, ((pos + 50 * t) % 200) as u64).unwrap())
                    .collect::<Vec<u32>>()
            })
        })
        .collect();
    for (t, h) in threads.into_iter().enumerate() {
        let got = h.join().unwrap();
        for (i, &tok) in got.iter().enumerate() {
            assert_eq!(tok, forward[(i + 50 * t) % 200]);
        }
    }
    // The draw is a function of (seed, position): another seed gives another sequence.
    let other: Vec<u32> = (0..200)
        .map(|pos| sample(&logits, &SamplingParams { seed: 1235, ..p }, pos).unwrap())
        .collect();
    assert_ne!(forward, other);
}

#[test]
fn masked_tokens_are_never_chosen() {
    let logits = [f32::NEG_INFINITY, 0.0, f32::NEG_INFINITY, 0.0];
    let p = params(2.0, None, None, 1);
    for pos in 0..500 {
        let t = sample(&logits, &p, pos).unwrap();
        assert!(t == 1 || t == 3);
    }
}

#[test]
fn invalid_params_are_errors() {
    let logits = [0.0f32, 1.0];
    let bad = [
        (
            params(f32::NAN, None, None, 0),
            SampleError::InvalidTemperature(f32::NAN),
        ),
        (
            params(-0.5, None, None, 0),
            SampleError::InvalidTemperature(-0.5),
        ),
        (
            params(f32::INFINITY, None, None, 0),
            SampleError::InvalidTemperature(f32::INFINITY),
        ),
        (
            params(1.0, None, Some(0.0), 0),
            SampleError::InvalidTopP(0.0),
        ),
        (
            params(1.0, None, Some(1.5), 0),
            SampleError::InvalidTopP(1.5),
        ),
        (
            params(1.0, None, Some(-0.1), 0),
            SampleError::InvalidTopP(-0.1),
        ),
        (params(1.0, Some(0), None, 0), SampleError::InvalidTopK),
    ];
    for (p, want) in bad {
        let err = sample(&logits, &p, 0).unwrap_err();
        // NaN != NaN: compare the messages.
        assert_eq!(err.to_string(), want.to_string(), "{p:?}");
        assert_eq!(p.validate().unwrap_err().to_string(), want.to_string());
    }
    let nan_p = params(1.0, None, Some(f32::NAN), 0);
    assert!(matches!(nan_p.validate(), Err(SampleError::InvalidTopP(_))));
    assert!(params(0.0, Some(1), Some(1.0), 0).validate().is_ok());
}

#[test]
fn bad_logits_are_errors_naming_the_position() {
    let p = params(1.0, None, None, 0);
    let err = sample(&[0.0, 1.0, f32::NAN], &p, 17).unwrap_err();
    assert_eq!(
        err,
        SampleError::NanLogit {
            position: Some(17),
            token: 2
        }
    );
    assert!(err.to_string().contains("position 17"), "{err}");
    assert!(err.to_string().contains("token 2"), "{err}");
    // Greedy checks too.
    assert!(matches!(
        sample(&[f32::NAN], &SamplingParams::greedy(), 4),
        Err(SampleError::NanLogit {
            position: Some(4),
            token: 0
        })
    ));
    assert!(matches!(
        sample(&[0.0, f32::INFINITY], &p, 1),
        Err(SampleError::InfiniteLogit {
            position: Some(1),
            token: 1
        })
    ));
    assert_eq!(
        sample(&[f32::NEG_INFINITY; 3], &p, 9),
        Err(SampleError::AllMasked { position: Some(9) })
    );
    assert_eq!(sample(&[], &p, 0), Err(SampleError::EmptyLogits));
    assert_eq!(greedy(&[]), Err(SampleError::EmptyLogits));
    assert!(matches!(
        top_logprobs(&[f32::NAN], 1),
        Err(SampleError::NanLogit { .. })
    ));
}

#[test]
fn top_logprobs_against_naive_log_softmax() {
    let logits = [1.0f32, 3.0, 3.0, 2.0, f32::NEG_INFINITY];
    let z: f64 = logits.iter().map(|&l| (l as f64).exp()).sum();
    let lp = |i: usize| ((logits[i] as f64).exp() / z).ln();
    let got = top_logprobs(&logits, 3).unwrap();
    let ids: Vec<u32> = got.iter().map(|x| x.0).collect();
    assert_eq!(ids, [1, 2, 3]);
    for &(id, v) in &got {
        assert!(
            (v - lp(id as usize)).abs() < 1e-12,
            "{id}: {v} vs {}",
            lp(id as usize)
        );
    }
    let all = top_logprobs(&logits, 99).unwrap();
    assert_eq!(all.iter().map(|x| x.0).collect::<Vec<_>>(), [1, 2, 3, 0, 4]);
    assert_eq!(all[4].1, f64::NEG_INFINITY);
    let total: f64 = all.iter().map(|x| x.1.exp()).sum();
    assert!((total - 1.0).abs() < 1e-12);
    assert!(top_logprobs(&logits, 0).unwrap().is_empty());

    // Large logits: no overflow (the naive formula would give inf / inf).
    let big = [1000.0f32, 999.0];
    let got = top_logprobs(&big, 2).unwrap();
    let want0 = -(1.0 + (-1.0f64).exp()).ln();
    assert!((got[0].1 - want0).abs() < 1e-12);
    assert!((got[1].1 - (want0 - 1.0)).abs() < 1e-12);
}

#[test]
fn token_logprob_equals_top_logprobs_bits_and_checks_the_id() {
    let logits = [1.0f32, 3.0, -0.0, 2.0, f32::NEG_INFINITY];
    for (id, v) in top_logprobs(&logits, 5).unwrap() {
        assert_eq!(
            token_logprob(&logits, id).unwrap().to_bits(),
            v.to_bits(),
            "{id}"
        );
    }
    assert_eq!(
        token_logprob(&logits, 5),
        Err(SampleError::TokenOutOfRange { id: 5, vocab: 5 })
    );
    assert!(matches!(
        token_logprob(&[f32::NAN], 0),
        Err(SampleError::NanLogit { .. })
    ));
}

#[test]
fn uniform_is_a_pure_function_of_seed_and_position() {
    assert_eq!(uniform(3, 10), uniform(3, 10));
    assert_ne!(uniform(3, 10), uniform(3, 11));
    assert_ne!(uniform(3, 10), uniform(4, 10));
    // Mean and spread of 100 000 draws: 1/2 and 1/12 within 5 standard errors.
    let n = 100_000;
    let xs: Vec<f64> = (0..n).map(|p| uniform(42, p)).collect();
    let mean = xs.iter().sum::<f64>() / n as f64;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
    assert!(
        (mean - 0.5).abs() < 5.0 * (1.0f64 / 12.0 / n as f64).sqrt(),
        "{mean}"
    );
    assert!((var - 1.0 / 12.0).abs() < 0.002, "{var}");
}

/// A Gemma-sized vocabulary (262144 logits) without top_k: nothing bounds the candidates.
#[test]
fn full_vocabulary() {
    let mut rng = Rng(41);
    // A wide spread (most tokens weigh 0) and a narrow one (none does).
    for (levels, t, top_p) in [
        (2000, 1.0f32, Some(0.95f32)),
        (20, 0.7, None),
        (20, 1.3, Some(0.5)),
    ] {
        let logits = random_logits(&mut rng, 262_144, levels);
        let p = params(t, None, top_p, 8);
        let probs = brute_probs(&logits, t as f64, None, top_p);
        let t0 = std::time::Instant::now();
        let got: Vec<u32> = (0..3)
            .map(|pos| sample(&logits, &p, pos).unwrap())
            .collect();
        eprintln!(
            "sample over 262144 logits ({p:?}): {:.1} ms each",
            t0.elapsed().as_secs_f64() * 1e3 / 3.0
        );
        let want: Vec<u32> = (0..3)
            .map(|pos| brute_draw(&logits, &probs, uniform(8, pos)))
            .collect();
        assert_eq!(got, want, "{p:?}");
    }
}

#[test]
fn extreme_temperatures() {
    // Tiny: only the tied best tokens, both of them.
    let logits = [1.0f32, 3.0, 3.0, 2.0];
    let p = params(1e-30, None, None, 2);
    let mut seen = [0u32; 4];
    for pos in 0..400 {
        seen[sample(&logits, &p, pos).unwrap() as usize] += 1;
    }
    assert_eq!((seen[0], seen[3]), (0, 0));
    assert!(seen[1] > 150 && seen[2] > 150, "{seen:?}");
    // Huge: close to uniform.
    let p = params(1e6, None, None, 3);
    let mut seen = [0u32; 4];
    for pos in 0..4000 {
        seen[sample(&logits, &p, pos).unwrap() as usize] += 1;
    }
    assert!(seen.iter().all(|&c| (880..1120).contains(&c)), "{seen:?}");
}
