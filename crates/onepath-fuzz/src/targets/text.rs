//! Tokenizer input (`onepath-text`, the shipped kjv-tiny tokenizer): arbitrary bytes through
//! `encode_bytes` (invalid UTF-8 included) and `chat_prompt`, arbitrary ids through `decode`
//! and the `StreamDecoder`, whose pieces must concatenate to the full decode.

use crate::Outcome;
use onepath_text::{ChatMessage, Tokenizer};
use std::sync::OnceLock;

fn tokenizer() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(
        || match Tokenizer::from_bytes(onepath_model::shipped::TOKENIZER) {
            Ok(t) => t,
            Err(e) => panic!("the shipped tokenizer does not load: {e}"),
        },
    )
}

pub fn seeds() -> Vec<Vec<u8>> {
    let texts: [&[u8]; 8] = [
        b"In the beginning God created the heaven and the earth.",
        b"And the LORD said unto Moses, <start_of_turn>user\nWho was Moses?<end_of_turn>",
        "Blessed are the meek: for they shall inherit the earth. \u{1F54A}\u{fe0f} \u{5d0}\u{5dc}"
            .as_bytes(),
        b"<bos><eos><pad><|turn>model\n<turn|>",
        b"\xff\xfe invalid \xc3\x28 utf-8 \xed\xa0\x80",
        b"",
        b"   \t\n\r\n  ",
        &[0, 1, 2, 0x7f, 0x80, 0xc0, 0xf5],
    ];
    let mut out = Vec::new();
    for (mode, t) in (0u8..4).flat_map(|m| texts.iter().map(move |t| (m, t))) {
        let mut s = vec![mode];
        s.extend_from_slice(t);
        out.push(s);
    }
    out
}

/// Ids from bytes: mostly inside the vocabulary (plus a few past it), sometimes any u32.
fn ids(data: &[u8], vocab: u32) -> Vec<u32> {
    data.chunks(4)
        .map(|c| {
            let mut b = [0u8; 4];
            b[..c.len()].copy_from_slice(c);
            let v = u32::from_le_bytes(b);
            if v >> 28 == 0xf { v } else { v % (vocab + 4) }
        })
        .collect()
}

pub fn tokenizer_target(data: &[u8]) -> Outcome {
    let tok = tokenizer();
    // A prompt of a few KiB covers what longer ones would; the stream decoder re-decodes a
    // window per id, so ids are capped lower still.
    let data = &data[..data.len().min(4096)];
    let Some((&mode, rest)) = data.split_first() else {
        return Err("empty".into());
    };
    let vocab = tok.vocab_size() as u32;
    match mode % 4 {
        0 => {
            let ids = tok
                .encode_bytes(rest, mode & 4 != 0)
                .map_err(|e| e.to_string())?;
            tok.decode(&ids).map_err(|e| e.to_string())?;
        }
        1 => {
            let ids = ids(rest, vocab);
            tok.decode_with(&ids, mode & 4 != 0)
                .map_err(|e| e.to_string())?;
        }
        2 => {
            let ids = ids(&rest[..rest.len().min(1024)], vocab);
            let skip = mode & 4 != 0;
            tok.check_ids(&ids).map_err(|e| e.to_string())?;
            let full = tok.decode_with(&ids, skip).map_err(|e| e.to_string())?;
            let mut dec = tok.stream_decoder(skip);
            let mut text = String::new();
            for &id in &ids {
                text.push_str(&dec.step(id).map_err(|e| e.to_string())?);
            }
            text.push_str(&dec.flush().map_err(|e| e.to_string())?);
            assert_eq!(
                text, full,
                "StreamDecoder pieces differ from decode of {ids:?}"
            );
        }
        _ => {
            let content = String::from_utf8_lossy(rest);
            let msgs = [ChatMessage::user(content.as_ref())];
            tok.chat_prompt(&msgs, true).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}
