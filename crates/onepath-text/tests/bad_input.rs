//! Bad input gives errors naming the problem, never a panic.

mod common;

use common::{Turns, byte_id, tokenizer, tokenizer_json};
use onepath_text::{TextError, Tokenizer};

#[test]
fn missing_file() {
    let path = std::env::temp_dir().join("onepath-text-no-such-dir/tokenizer.json");
    let err = Tokenizer::from_file(&path).unwrap_err();
    assert!(matches!(err, TextError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("not found"), "{err}");
    assert!(
        err.to_string().contains("onepath-text-no-such-dir"),
        "{err}"
    );
}

#[test]
fn a_directory_is_not_a_file() {
    let err = Tokenizer::from_file(std::env::temp_dir()).unwrap_err();
    assert!(matches!(err, TextError::Io { .. }), "{err}");
}

#[test]
fn malformed_json() {
    for bytes in [
        &b""[..],
        b"{",
        b"not json",
        b"[1, 2, 3]",
        b"{\"model\": {\"type\": \"BPE\", \"vocab\": 7}}",
        b"\xff\xfe\x00",
    ] {
        let err = Tokenizer::from_bytes(bytes).unwrap_err();
        assert!(matches!(err, TextError::Malformed(_)), "{bytes:?}: {err}");
        assert!(
            err.to_string().starts_with("malformed tokenizer JSON"),
            "{err}"
        );
    }
    // Truncated in the middle of a real file.
    let json = tokenizer_json(Turns::Gemma4);
    let err = Tokenizer::from_bytes(&json.as_bytes()[..json.len() / 2]).unwrap_err();
    assert!(matches!(err, TextError::Malformed(_)), "{err}");
}

#[test]
fn loads_from_a_file_too() {
    let dir = std::env::temp_dir().join(format!("onepath-text-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tokenizer.json");
    std::fs::write(&path, tokenizer_json(Turns::Gemma4)).unwrap();
    let tok = Tokenizer::from_file(&path).unwrap();
    assert_eq!(tok.vocab_size(), common::vocab(Turns::Gemma4).len());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ids_out_of_range() {
    let tok = tokenizer(Turns::Gemma4);
    let n = tok.vocab_size() as u32;
    let err = tok.decode(&[byte_id(b'a'), n]).unwrap_err();
    assert!(
        matches!(err, TextError::TokenOutOfRange { id, vocab_size } if id == n && vocab_size == n as usize),
        "{err}"
    );
    assert!(err.to_string().contains(&n.to_string()), "{err}");
    assert!(tok.decode_with(&[u32::MAX], true).is_err());
    let mut dec = tok.stream_decoder(false);
    assert!(dec.step(n).is_err());
    // The failed step left the decoder usable.
    assert_eq!(dec.step(byte_id(b'a')).unwrap(), "");
    assert_eq!(dec.flush().unwrap(), "a");
}

#[test]
fn invalid_utf8_bytes() {
    let tok = tokenizer(Turns::Gemma4);
    for (bytes, valid_up_to) in [
        (&b"\xff"[..], 0),
        (b"abc\xc3", 3),
        (b"ab\xe4\xb8", 2),
        (b"\xed\xa0\x80", 0), // a UTF-16 surrogate
        (b"ok\x80ok", 2),
    ] {
        let err = tok.encode_bytes(bytes, true).unwrap_err();
        assert!(
            matches!(err, TextError::InvalidUtf8 { valid_up_to: v } if v == valid_up_to),
            "{bytes:?}: {err}"
        );
    }
    assert_eq!(
        tok.encode_bytes("é".as_bytes(), false).unwrap(),
        tok.encode("é", false).unwrap()
    );
}

#[test]
fn no_bos_token() {
    let json = tokenizer_json(Turns::Gemma4).replace("<bos>", "<xbos>");
    let tok = Tokenizer::from_bytes(json.as_bytes()).unwrap();
    assert!(tok.encode("a", false).is_ok());
    let err = tok.encode("a", true).unwrap_err();
    assert!(matches!(err, TextError::MissingToken("<bos>")), "{err}");
}
