//! The tokenizer: `tokenizer.json` through the `tokenizers` crate, special tokens by name, and an
//! incremental decoder.

use std::path::Path;
use std::sync::Arc;

use crate::chat::ChatStyle;
use crate::error::{Result, TextError};

/// A Hugging Face `tokenizer.json` tokenizer (BPE with byte fallback, as Gemma ships it).
///
/// Cloning is cheap (the tables are shared), so a [`StreamDecoder`] or a
/// [`crate::StopChecker`] can hold its own copy.
#[derive(Clone)]
pub struct Tokenizer {
    inner: Arc<Inner>,
}

struct Inner {
    tok: tokenizers::Tokenizer,
    vocab_size: usize,
    special: SpecialTokens,
    chat_style: Option<ChatStyle>,
}

/// Control tokens, found by name in the vocabulary (`None` where the tokenizer lacks one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpecialTokens {
    /// `<bos>`.
    pub bos: Option<u32>,
    /// `<eos>`.
    pub eos: Option<u32>,
    /// `<pad>`.
    pub pad: Option<u32>,
    /// `<unk>`.
    pub unk: Option<u32>,
    /// Start of a turn: `<|turn>` (Gemma 4) or `<start_of_turn>` (Gemma 3).
    pub start_of_turn: Option<u32>,
    /// End of a turn: `<turn|>` (Gemma 4) or `<end_of_turn>` (Gemma 3).
    pub end_of_turn: Option<u32>,
}

impl SpecialTokens {
    /// The tokens that end a model's reply: end of turn, then `<eos>` (those present, no
    /// duplicates).
    pub fn stop_ids(&self) -> Vec<u32> {
        let mut ids = Vec::new();
        for id in [self.end_of_turn, self.eos].into_iter().flatten() {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids
    }
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.inner.vocab_size)
            .field("special", &self.inner.special)
            .field("chat_style", &self.inner.chat_style)
            .finish()
    }
}

fn tok_err(e: tokenizers::Error) -> TextError {
    TextError::Tokenizer(e.to_string())
}

/// Whether a token's text is a byte-fallback token, `<0xNN>`.
fn is_byte_token(token: &str) -> bool {
    let b = token.as_bytes();
    b.len() == 6
        && b.starts_with(b"<0x")
        && b[5] == b'>'
        && b[3].is_ascii_hexdigit()
        && b[4].is_ascii_hexdigit()
}

impl Tokenizer {
    /// Loads a `tokenizer.json` file. Errors: [`TextError::NotFound`], [`TextError::Io`],
    /// [`TextError::Malformed`].
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                TextError::NotFound {
                    path: path.to_path_buf(),
                }
            } else {
                TextError::Io {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
        Self::from_bytes(&bytes)
    }

    /// Parses the bytes of a `tokenizer.json`. Error: [`TextError::Malformed`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let tok = tokenizers::Tokenizer::from_bytes(bytes)
            .map_err(|e| TextError::Malformed(e.to_string()))?;
        Ok(Self::from_tokenizers(tok))
    }

    /// Wraps a tokenizer built with the `tokenizers` crate.
    pub fn from_tokenizers(tok: tokenizers::Tokenizer) -> Self {
        let max_added = tok
            .get_added_tokens_decoder()
            .keys()
            .max()
            .map(|&id| id as usize + 1);
        let vocab_size = tok.get_vocab_size(false).max(max_added.unwrap_or(0));
        let id = |name: &str| tok.token_to_id(name);
        // Start and end of turn come as a pair from one family: Gemma 4's names first.
        let (start_of_turn, end_of_turn, chat_style) = match (id("<|turn>"), id("<turn|>")) {
            (Some(s), Some(e)) => (Some(s), Some(e), Some(ChatStyle::Gemma4)),
            _ => match (id("<start_of_turn>"), id("<end_of_turn>")) {
                (Some(s), Some(e)) => (Some(s), Some(e), Some(ChatStyle::Gemma3)),
                _ => (None, None, None),
            },
        };
        let special = SpecialTokens {
            bos: id("<bos>"),
            eos: id("<eos>"),
            pad: id("<pad>"),
            unk: id("<unk>"),
            start_of_turn,
            end_of_turn,
        };
        Tokenizer {
            inner: Arc::new(Inner {
                tok,
                vocab_size,
                special,
                chat_style,
            }),
        }
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner.tok
    }

    /// Number of token ids: one more than the largest id of the vocabulary or of an added token.
    /// Gemma 3's tokenizer.json: 262145 (262144 entries plus `<image_soft_token>`). This can
    /// differ from the width of a model's logits (padded, or without such extra tokens).
    pub fn vocab_size(&self) -> usize {
        self.inner.vocab_size
    }

    /// The id of a token given by its exact text (e.g. `"<bos>"`, `"▁the"`), if it exists.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.tok.token_to_id(token)
    }

    /// The text of a token id as the vocabulary spells it (e.g. `"▁the"`, `"<0x0A>"`).
    pub fn token_text(&self, id: u32) -> Option<String> {
        if id as usize >= self.inner.vocab_size {
            return None;
        }
        self.inner.tok.id_to_token(id)
    }

    /// The control tokens found by name.
    pub fn special(&self) -> &SpecialTokens {
        &self.inner.special
    }

    /// Which turn format the tokenizer's control tokens spell: [`ChatStyle::Gemma4`] when it has
    /// `<|turn>` and `<turn|>`, [`ChatStyle::Gemma3`] when it has `<start_of_turn>` and
    /// `<end_of_turn>` instead, `None` otherwise.
    pub fn chat_style(&self) -> Option<ChatStyle> {
        self.inner.chat_style
    }

    /// The `<bos>` id, or [`TextError::MissingToken`].
    pub fn bos(&self) -> Result<u32> {
        self.inner
            .special
            .bos
            .ok_or(TextError::MissingToken("<bos>"))
    }

    /// Encodes text, preceded by `<bos>` if `add_bos` (the tokenizer's own post-processor is not
    /// applied, so nothing else is added). Control tokens spelled in the text (`<bos>`,
    /// `<turn|>`, …) become those tokens, as in Hugging Face's `encode`.
    ///
    /// Text from a command line or a socket may not be UTF-8: convert it with
    /// [`Tokenizer::encode_bytes`], which reports invalid bytes as an error.
    pub fn encode(&self, text: &str, add_bos: bool) -> Result<Vec<u32>> {
        let encoding = self.inner.tok.encode(text, false).map_err(tok_err)?;
        let mut ids = Vec::with_capacity(encoding.len() + 1);
        if add_bos {
            ids.push(self.bos()?);
        }
        ids.extend_from_slice(encoding.get_ids());
        Ok(ids)
    }

    /// [`Tokenizer::encode`] for raw bytes: [`TextError::InvalidUtf8`] unless they are UTF-8.
    pub fn encode_bytes(&self, bytes: &[u8], add_bos: bool) -> Result<Vec<u32>> {
        let text = std::str::from_utf8(bytes).map_err(|e| TextError::InvalidUtf8 {
            valid_up_to: e.valid_up_to(),
        })?;
        self.encode(text, add_bos)
    }

    /// Checks that every id names a token: [`TextError::TokenOutOfRange`] otherwise.
    pub fn check_ids(&self, ids: &[u32]) -> Result<()> {
        for &id in ids {
            self.check_id(id)?;
        }
        Ok(())
    }

    fn check_id(&self, id: u32) -> Result<String> {
        self.token_text(id).ok_or(TextError::TokenOutOfRange {
            id,
            vocab_size: self.inner.vocab_size,
        })
    }

    /// Decodes ids to text, control tokens included (`<bos>` decodes to `"<bos>"`).
    /// Error: [`TextError::TokenOutOfRange`] for an id outside the vocabulary.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.decode_with(ids, false)
    }

    /// Decodes ids to text, leaving out special tokens (`<bos>`, `<eos>`, turn markers, …) if
    /// `skip_special`.
    pub fn decode_with(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.check_ids(ids)?;
        self.inner.tok.decode(ids, skip_special).map_err(tok_err)
    }

    /// A decoder that turns tokens into text one at a time (see [`StreamDecoder`]).
    pub fn stream_decoder(&self, skip_special: bool) -> StreamDecoder {
        StreamDecoder {
            tok: self.clone(),
            skip_special,
            ids: Vec::new(),
            prefix: 0,
            read: 0,
        }
    }
}

/// Turns tokens into text one at a time, as they are generated.
///
/// Contract: the pieces returned by [`StreamDecoder::step`] and then [`StreamDecoder::flush`]
/// concatenate to exactly `tokenizer.decode_with(&all_ids, skip_special)`, and no piece ends
/// inside a character. To get there the decoder holds text back:
/// - while the last token is a byte-fallback token (`<0xNN>`): the tokenizer's byte-fallback
///   decoder turns a whole run of byte tokens into U+FFFD per byte when any part of the run is
///   not UTF-8, so a run's text is only final once a non-byte token ends it. A character spelled
///   in byte tokens is therefore released with the next ordinary token (or by `flush`). With
///   `skip_special`, skipped special tokens are left out before the decoder runs, so they
///   neither end a run nor release text;
/// - while the text ends in U+FFFD (a character still incomplete, for byte-level tokenizers);
/// - while the decoded text does not extend what was already released.
///
/// Each step decodes a window starting one emitted piece back, so decoders that treat the first
/// token specially (e.g. strip a leading space) see the same context as a full decode.
#[derive(Debug, Clone)]
pub struct StreamDecoder {
    tok: Tokenizer,
    skip_special: bool,
    ids: Vec<u32>,
    /// `ids[prefix..read]` is the context already released; `ids[read..]` is held.
    prefix: usize,
    read: usize,
}

impl StreamDecoder {
    /// Adds one token; returns the text it completes (often empty while text is held back).
    /// Error: [`TextError::TokenOutOfRange`].
    pub fn step(&mut self, id: u32) -> Result<String> {
        let token = self.tok.check_id(id)?;
        self.ids.push(id);
        let skipped = self.skip_special
            && self
                .tok
                .inner
                .tok
                .get_added_vocabulary()
                .is_special_token(&token);
        // A skipped special token adds no text and, being left out before the decoder runs,
        // does not end a run of byte tokens either.
        if skipped || is_byte_token(&token) {
            return Ok(String::new());
        }
        self.release(false)
    }

    /// Releases whatever is still held (at the end of generation); the decoder can go on
    /// afterwards.
    pub fn flush(&mut self) -> Result<String> {
        self.release(true)
    }

    /// Ids not yet released as text.
    pub fn held(&self) -> &[u32] {
        &self.ids[self.read..]
    }

    fn release(&mut self, at_end: bool) -> Result<String> {
        if self.read == self.ids.len() {
            return Ok(String::new());
        }
        let dec = |ids: &[u32]| {
            self.tok
                .inner
                .tok
                .decode(ids, self.skip_special)
                .map_err(tok_err)
        };
        let before = dec(&self.ids[self.prefix..self.read])?;
        let now = dec(&self.ids[self.prefix..])?;
        let extends = now.starts_with(&before);
        if !at_end && (!extends || now.ends_with('\u{FFFD}')) {
            return Ok(String::new());
        }
        let piece = if extends {
            now[before.len()..].to_string()
        } else {
            // Not reachable with a byte-fallback or byte-level decoder; release what differs
            // after the longest common prefix rather than lose text.
            let common = before
                .char_indices()
                .zip(now.chars())
                .find(|((_, a), b)| a != b)
                .map_or(before.len().min(now.len()), |((i, _), _)| i);
            now[common..].to_string()
        };
        if piece.is_empty() && !at_end {
            // Nothing new (e.g. a skipped special token): keep the window where it is, so the
            // next piece is decoded with the same context.
            return Ok(piece);
        }
        self.prefix = self.read;
        self.read = self.ids.len();
        // Keep only the context window.
        self.ids.drain(..self.prefix);
        self.read -= self.prefix;
        self.prefix = 0;
        Ok(piece)
    }
}

#[cfg(test)]
mod tests {
    use super::is_byte_token;

    #[test]
    fn byte_tokens() {
        assert!(is_byte_token("<0x0A>"));
        assert!(is_byte_token("<0xff>"));
        assert!(!is_byte_token("<0xG0>"));
        assert!(!is_byte_token("<0x0A"));
        assert!(!is_byte_token("<0x0A>>"));
        assert!(!is_byte_token("▁the"));
    }
}
