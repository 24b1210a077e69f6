//! A small Gemma-like tokenizer.json built in the tests: BPE with byte fallback, the normalizer
//! `' ' -> '▁'`, the decoder Replace / ByteFallback / Fuse, as Gemma's tokenizer.json has them.
#![allow(dead_code)]

use serde_json::{Value, json};

/// Ids of the small vocabulary, fixed here so the tests know them without asking the code.
pub const PAD: u32 = 0;
pub const EOS: u32 = 1;
pub const BOS: u32 = 2;
pub const UNK: u32 = 3;
pub const TURN_START: u32 = 4;
pub const TURN_END: u32 = 5;
/// `<0x00>` .. `<0xFF>` are ids `BYTE0 ..= BYTE0 + 255`.
pub const BYTE0: u32 = 6;

/// The id of the byte-fallback token for `b`.
pub fn byte_id(b: u8) -> u32 {
    BYTE0 + b as u32
}

/// Which turn tokens the small tokenizer has.
#[derive(Clone, Copy)]
pub enum Turns {
    Gemma4,
    Gemma3,
    None,
}

/// Tokens after the bytes: printable ASCII except space, '▁', '\n', '\t', two accented letters,
/// then merged tokens (each made by the merge listed with it).
pub fn plain_tokens() -> Vec<String> {
    let mut v: Vec<String> = (0x21u8..=0x7e).map(|b| (b as char).to_string()).collect();
    for s in ["▁", "\n", "\t", "ü", "é"] {
        v.push(s.to_string());
    }
    for (a, b) in MERGES {
        v.push(format!("{a}{b}"));
    }
    v
}

/// Merges in rank order.
pub const MERGES: [(&str, &str); 6] = [
    ("h", "e"),
    ("l", "l"),
    ("he", "ll"),
    ("hell", "o"),
    ("▁", "w"),
    ("▁", "▁"),
];

/// All token texts, index = id.
pub fn vocab(turns: Turns) -> Vec<String> {
    let (start, end) = match turns {
        Turns::Gemma4 => ("<|turn>", "<turn|>"),
        Turns::Gemma3 => ("<start_of_turn>", "<end_of_turn>"),
        Turns::None => ("<unused0>", "<unused1>"),
    };
    let mut v: Vec<String> = ["<pad>", "<eos>", "<bos>", "<unk>", start, end]
        .iter()
        .map(|s| s.to_string())
        .collect();
    v.extend((0..=255u8).map(|b| format!("<0x{b:02X}>")));
    v.extend(plain_tokens());
    v
}

/// The id of a token text in [`vocab`].
pub fn id_of(turns: Turns, token: &str) -> u32 {
    vocab(turns)
        .iter()
        .position(|t| t == token)
        .unwrap_or_else(|| panic!("no token {token:?}")) as u32
}

/// The tokenizer.json text.
pub fn tokenizer_json(turns: Turns) -> String {
    let v = vocab(turns);
    let vocab_map: serde_json::Map<String, Value> = v
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), json!(i)))
        .collect();
    let added: Vec<Value> = v[..6]
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({"id": i, "content": t, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let merges: Vec<Value> = MERGES.iter().map(|(a, b)| json!([a, b])).collect();
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
        "pre_tokenizer": {"type": "Split", "pattern": {"String": " "},
                          "behavior": "MergedWithPrevious", "invert": false},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<bos>", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<bos>", "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<bos>": {"id": "<bos>", "ids": [BOS], "tokens": ["<bos>"]}}
        },
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"}
        ]},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": "<unk>",
            "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
            "vocab": vocab_map, "merges": merges
        }
    })
    .to_string()
}

pub fn tokenizer(turns: Turns) -> onepath_text::Tokenizer {
    onepath_text::Tokenizer::from_bytes(tokenizer_json(turns).as_bytes())
        .expect("the small tokenizer loads")
}

/// A tiny deterministic generator for test inputs (xorshift64*).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
