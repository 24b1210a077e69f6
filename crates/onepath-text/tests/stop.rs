//! StopChecker on the small tokenizer.

mod common;

use common::{EOS, TURN_END, Turns, byte_id, tokenizer};
use onepath_text::{StopChecker, StopReason, StopStep, TextError};

/// Feeds the ids of `text`, one by one, then `tail`; returns every step.
fn run(checker: &mut StopChecker, ids: &[u32]) -> Vec<StopStep> {
    ids.iter().map(|&id| checker.push(id).unwrap()).collect()
}

fn texts(steps: &[StopStep]) -> Vec<&str> {
    steps.iter().map(|s| s.text.as_str()).collect()
}

fn char_ids(s: &str) -> Vec<u32> {
    let tok = tokenizer(Turns::Gemma4);
    // One token per character: encode each character alone.
    s.chars()
        .flat_map(|c| tok.encode(&c.to_string(), false).unwrap())
        .collect()
}

#[test]
fn stop_token_ends_and_its_text_is_not_emitted() {
    let tok = tokenizer(Turns::Gemma4);
    let mut c = StopChecker::new(&tok, &tok.special().stop_ids(), &[] as &[&str]).unwrap();
    let mut ids = char_ids("ab");
    ids.push(TURN_END);
    let steps = run(&mut c, &ids);
    assert_eq!(texts(&steps), ["a", "b", ""]);
    assert_eq!(steps[2].stop, Some(StopReason::Token(TURN_END)));
    assert_eq!(c.stopped(), Some(StopReason::Token(TURN_END)));
    // After the stop nothing more comes out.
    let after = c.push(char_ids("c")[0]).unwrap();
    assert_eq!(after.text, "");
    assert_eq!(after.stop, Some(StopReason::Token(TURN_END)));
}

#[test]
fn held_character_is_released_before_a_stop_token() {
    let tok = tokenizer(Turns::Gemma4);
    let mut c = StopChecker::new(&tok, &[EOS], &[] as &[&str]).unwrap();
    let mut ids: Vec<u32> = "中".bytes().map(byte_id).collect();
    ids.push(EOS);
    let steps = run(&mut c, &ids);
    assert_eq!(texts(&steps), ["", "", "", "中"]);
    assert_eq!(steps[3].stop, Some(StopReason::Token(EOS)));
}

#[test]
fn stop_string_across_tokens_is_held_then_cut() {
    let tok = tokenizer(Turns::Gemma4);
    let mut c = StopChecker::new(&tok, &[], &["END", "xyz"]).unwrap();
    let steps = run(&mut c, &char_ids("abEN"));
    // "E" and "EN" might begin "END": held back.
    assert_eq!(texts(&steps), ["a", "b", "", ""]);
    let s = c.push(char_ids("D")[0]).unwrap();
    assert_eq!(s.text, "");
    assert_eq!(s.stop, Some(StopReason::String(0)));
}

#[test]
fn false_start_is_released() {
    let tok = tokenizer(Turns::Gemma4);
    let mut c = StopChecker::new(&tok, &[], &["END"]).unwrap();
    let steps = run(&mut c, &char_ids("aENx"));
    assert_eq!(texts(&steps), ["a", "", "", "ENx"]);
    assert!(steps.iter().all(|s| s.stop.is_none()));
    // At the end, held text comes out.
    let mut c = StopChecker::new(&tok, &[], &["END"]).unwrap();
    let steps = run(&mut c, &char_ids("aEN"));
    assert_eq!(texts(&steps), ["a", "", ""]);
    let fin = c.finish().unwrap();
    assert_eq!(fin.text, "EN");
    assert_eq!(fin.stop, None);
}

#[test]
fn stop_string_inside_one_token_cuts_before_it() {
    let tok = tokenizer(Turns::Gemma4);
    // "hello" is one token: the stop string "ll" lies inside it.
    let hello = tok.encode("hello", false).unwrap();
    assert_eq!(hello.len(), 1);
    let mut c = StopChecker::new(&tok, &[], &["zz", "ll"]).unwrap();
    let s = c.push(hello[0]).unwrap();
    assert_eq!(s.text, "he");
    assert_eq!(s.stop, Some(StopReason::String(1)));
}

#[test]
fn earliest_match_wins() {
    let tok = tokenizer(Turns::Gemma4);
    let mut c = StopChecker::new(&tok, &[], &["cd", "bcd"]).unwrap();
    let steps = run(&mut c, &char_ids("abcd"));
    let last = steps.last().unwrap();
    assert_eq!(
        steps.iter().map(|s| s.text.as_str()).collect::<String>(),
        "a"
    );
    assert_eq!(last.stop, Some(StopReason::String(1)));
}

#[test]
fn stop_string_completed_by_text_released_at_a_stop_token() {
    let tok = tokenizer(Turns::Gemma4);
    // "中" (held as byte tokens) completes the stop string "a中" only when EOS releases it.
    let mut c = StopChecker::new(&tok, &[EOS], &["a中"]).unwrap();
    let mut ids = char_ids("xa");
    ids.extend("中".bytes().map(byte_id));
    ids.push(EOS);
    let steps = run(&mut c, &ids);
    assert_eq!(
        steps.iter().map(|s| s.text.as_str()).collect::<String>(),
        "x"
    );
    assert_eq!(steps.last().unwrap().stop, Some(StopReason::String(0)));
}

#[test]
fn multibyte_stop_strings_hold_on_char_boundaries() {
    let tok = tokenizer(Turns::Gemma4);
    let mut c = StopChecker::new(&tok, &[], &["üé!"]).unwrap();
    let steps = run(&mut c, &char_ids("aüéb"));
    assert_eq!(texts(&steps), ["a", "", "", "üéb"]);
}

#[test]
fn empty_stop_string_is_an_error() {
    let tok = tokenizer(Turns::Gemma4);
    let err = StopChecker::new(&tok, &[], &["ok", ""]).unwrap_err();
    assert!(matches!(err, TextError::InvalidStop(_)), "{err}");
}
