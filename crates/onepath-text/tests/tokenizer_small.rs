//! The tokenizer wrapper on a small tokenizer.json built here (see common/mod.rs): the expected
//! ids follow from that vocabulary and its merges, worked out by hand.

mod common;

use common::{BOS, EOS, PAD, Rng, TURN_END, TURN_START, Turns, UNK, byte_id, id_of, tokenizer};
use onepath_text::{ChatStyle, SpecialTokens};

fn id(t: &str) -> u32 {
    id_of(Turns::Gemma4, t)
}

#[test]
fn special_tokens_found_by_name() {
    let tok = tokenizer(Turns::Gemma4);
    assert_eq!(
        *tok.special(),
        SpecialTokens {
            bos: Some(BOS),
            eos: Some(EOS),
            pad: Some(PAD),
            unk: Some(UNK),
            start_of_turn: Some(TURN_START),
            end_of_turn: Some(TURN_END),
        }
    );
    assert_eq!(tok.chat_style(), Some(ChatStyle::Gemma4));
    assert_eq!(tok.special().stop_ids(), vec![TURN_END, EOS]);
    assert_eq!(tok.vocab_size(), common::vocab(Turns::Gemma4).len());

    let g3 = tokenizer(Turns::Gemma3);
    assert_eq!(g3.chat_style(), Some(ChatStyle::Gemma3));
    assert_eq!(g3.special().start_of_turn, Some(TURN_START));
    assert_eq!(g3.special().end_of_turn, Some(TURN_END));

    let none = tokenizer(Turns::None);
    assert_eq!(none.chat_style(), None);
    assert_eq!(none.special().end_of_turn, None);
    assert_eq!(none.special().stop_ids(), vec![EOS]);
}

#[test]
fn token_lookup() {
    let tok = tokenizer(Turns::Gemma4);
    assert_eq!(tok.token_id("hello"), Some(id("hello")));
    assert_eq!(tok.token_id("<0x41>"), Some(byte_id(0x41)));
    assert_eq!(tok.token_id("not a token"), None);
    assert_eq!(tok.token_text(id("▁w")).as_deref(), Some("▁w"));
    assert_eq!(tok.token_text(tok.vocab_size() as u32), None);
}

#[test]
fn encode_follows_merges_and_byte_fallback() {
    let tok = tokenizer(Turns::Gemma4);
    // "hello world" -> "hello▁world"; merges by rank: he, ll, hell, hello, ▁w.
    assert_eq!(
        tok.encode("hello world", false).unwrap(),
        vec![id("hello"), id("▁w"), id("o"), id("r"), id("l"), id("d")]
    );
    assert_eq!(
        tok.encode("hello", true).unwrap(),
        vec![BOS, id("hello")],
        "<bos> only when asked, and nothing else from the post-processor"
    );
    // 中 is not in the vocabulary: its UTF-8 bytes E4 B8 AD as byte-fallback tokens.
    let expected: Vec<u32> = "中ü"
        .bytes()
        .take(3)
        .map(byte_id)
        .chain([id("ü")])
        .collect();
    assert_eq!(tok.encode("中ü", false).unwrap(), expected);
    // Control tokens spelled in the text are control tokens.
    assert_eq!(
        tok.encode("<|turn>he<turn|>", false).unwrap(),
        vec![TURN_START, id("he"), TURN_END]
    );
    assert_eq!(tok.encode("", false).unwrap(), Vec::<u32>::new());
}

#[test]
fn round_trip() {
    let tok = tokenizer(Turns::Gemma4);
    for text in [
        "hello world",
        "  two  spaces\tand a tab\n",
        "Grüße, café, 中文, 😀👩‍💻, عربى",
        "<bos>control<turn|> tokens",
        "",
    ] {
        let ids = tok.encode(text, false).unwrap();
        assert_eq!(tok.decode(&ids).unwrap(), text, "{text:?}");
    }
    assert_eq!(tok.decode(&[BOS, id("hello")]).unwrap(), "<bos>hello");
    assert_eq!(
        tok.decode_with(&[BOS, id("hello"), EOS], true).unwrap(),
        "hello"
    );
}

/// Streams `ids`, returning the pieces (the flush last).
fn stream(tok: &onepath_text::Tokenizer, ids: &[u32], skip: bool) -> Vec<String> {
    let mut dec = tok.stream_decoder(skip);
    let mut pieces: Vec<String> = ids.iter().map(|&i| dec.step(i).unwrap()).collect();
    pieces.push(dec.flush().unwrap());
    assert!(dec.held().is_empty());
    pieces
}

#[test]
fn streaming_holds_a_character_split_over_byte_tokens() {
    let tok = tokenizer(Turns::Gemma4);
    // "a中😀b": a, E4 B8 AD, F0 9F 98 80, b.
    let mut ids = vec![id("a")];
    ids.extend("中😀".bytes().map(byte_id));
    ids.push(id("b"));
    let pieces = stream(&tok, &ids, false);
    // The two characters are released with the next ordinary token, whole.
    let mut expected = vec!["a".to_string()];
    expected.extend(std::iter::repeat_n(String::new(), 7));
    expected.push("中😀b".to_string());
    expected.push(String::new());
    assert_eq!(pieces, expected);

    // At the end of the stream, flush releases the held character.
    let ids: Vec<u32> = "中".bytes().map(byte_id).collect();
    let pieces = stream(&tok, &ids, false);
    assert_eq!(pieces, vec!["", "", "", "中"]);

    // An incomplete character at the end comes out as the decoder's U+FFFD, one per byte.
    let pieces = stream(&tok, &[id("a"), byte_id(0xE4), byte_id(0xB8)], false);
    assert_eq!(pieces.concat(), "a\u{FFFD}\u{FFFD}");
}

#[test]
fn streaming_keeps_spaces_and_skips_specials() {
    let tok = tokenizer(Turns::Gemma4);
    let ids = tok.encode("hello world  hello", false).unwrap();
    let pieces = stream(&tok, &ids, false);
    assert_eq!(pieces.concat(), "hello world  hello");
    assert_eq!(pieces[0], "hello");
    assert_eq!(pieces[1], " w");

    let ids = [BOS, id("a"), TURN_END, id("b"), EOS];
    assert_eq!(stream(&tok, &ids, true).concat(), "ab");
    assert_eq!(stream(&tok, &ids, false).concat(), "<bos>a<turn|>b<eos>");
}

/// The pieces of any id sequence, valid UTF-8 or not, concatenate to `decode` of the whole.
#[test]
fn streaming_equals_full_decode_on_random_ids() {
    let tok = tokenizer(Turns::Gemma4);
    let n = tok.vocab_size() as u64;
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for case in 0..300 {
        let len = 1 + rng.below(40) as usize;
        let ids: Vec<u32> = (0..len)
            .map(|_| {
                // Mostly byte tokens, which is where the difficulty lies.
                if rng.below(3) == 0 {
                    rng.below(n) as u32
                } else {
                    byte_id(rng.below(256) as u8)
                }
            })
            .collect();
        for skip in [false, true] {
            let pieces = stream(&tok, &ids, skip);
            assert_eq!(
                pieces.concat(),
                tok.decode_with(&ids, skip).unwrap(),
                "case {case} {ids:?}"
            );
        }
    }
}

/// Random valid text: the stream never shows U+FFFD and reproduces the text.
#[test]
fn streaming_valid_text_has_no_broken_characters() {
    let tok = tokenizer(Turns::Gemma4);
    let alphabet: Vec<char> = "ab helo\twü€中😀𓀀é\u{300}".chars().collect();
    let mut rng = Rng(99);
    for _ in 0..200 {
        let len = 1 + rng.below(30) as usize;
        let text: String = (0..len)
            .map(|_| alphabet[rng.below(alphabet.len() as u64) as usize])
            .collect();
        let ids = tok.encode(&text, false).unwrap();
        let pieces = stream(&tok, &ids, false);
        assert!(pieces.iter().all(|p| !p.contains('\u{FFFD}')), "{text:?}");
        assert_eq!(pieces.concat(), text);
    }
}
