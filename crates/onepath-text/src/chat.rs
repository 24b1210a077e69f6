//! The Gemma chat format, built in token ids.
//!
//! Gemma 4 ([`ChatStyle::Gemma4`]), as its E2B/E4B chat template renders plain-text messages:
//!
//! ```text
//! <bos><|turn>system\n{system}<turn|>\n<|turn>user\n{text}<turn|>\n<|turn>model\n
//! ```
//!
//! - each message is its own turn `<|turn>{role}\n{content}<turn|>\n`, roles `system`, `user`
//!   and `model` (`assistant` is an alias of `model`). Gemma 4 has a real system turn; the
//!   template writes a leading system message as the first turn, and so do we;
//! - content is trimmed of leading and trailing whitespace (Jinja's `trim`, Python's
//!   `str.strip`); a model message also loses its thinking (`<|channel>…<channel|>`), as the
//!   template's `strip_thinking` does;
//! - `add_generation_prompt` appends `<|turn>model\n`. The 26B/31B templates then add an empty
//!   thought channel (`<|channel>thought\n<channel|>`) when thinking is off; E2B/E4B do not, and
//!   neither does this function. Thinking (`<|think|>`), tools and images are not built here.
//! - Not reproduced: the template's merging of consecutive `assistant` messages into one turn
//!   (it applies only to the role spelled `assistant`); here every message is its own turn.
//!
//! Gemma 3 ([`ChatStyle::Gemma3`], for tokenizers that have `<start_of_turn>` instead): the same
//! with `<start_of_turn>` / `<end_of_turn>`, no system turn (a leading system message is put at
//! the start of the first user turn, followed by a blank line, as Gemma 3's template does), and
//! roles alternating user / model starting with user (anything else is an error, as there).
//!
//! The control tokens are the tokenizer's own ids; the text between two of them is encoded as
//! ordinary text, piece by piece, which gives the same ids as encoding the rendered prompt in one
//! go (control tokens split the text first). Like Hugging Face's `apply_chat_template`, control
//! tokens spelled inside a message's content become control tokens.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Result, TextError};
use crate::tokenizer::Tokenizer;

/// Who speaks a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions for the model (`system`).
    System,
    /// The user (`user`).
    User,
    /// The model (`model`, or its alias `assistant`).
    #[serde(alias = "assistant")]
    Model,
}

impl Role {
    /// The name the turn format writes: `system`, `user` or `model`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Model => "model",
        }
    }
}

impl FromStr for Role {
    type Err = TextError;

    /// `system`, `user`, `model` or `assistant`; anything else is [`TextError::UnknownRole`].
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "system" => Ok(Role::System),
            "user" => Ok(Role::User),
            "model" | "assistant" => Ok(Role::Model),
            _ => Err(TextError::UnknownRole(s.to_string())),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who speaks.
    pub role: Role,
    /// What is said (plain text).
    pub content: String,
}

impl ChatMessage {
    /// A message.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        ChatMessage {
            role,
            content: content.into(),
        }
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }

    /// A model message.
    pub fn model(content: impl Into<String>) -> Self {
        Self::new(Role::Model, content)
    }

    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }
}

/// The turn format a tokenizer's control tokens spell (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChatStyle {
    /// `<|turn>` / `<turn|>`, with a system turn.
    Gemma4,
    /// `<start_of_turn>` / `<end_of_turn>`, no system turn.
    Gemma3,
}

/// A rendered prompt: control tokens and the text between them.
enum Piece {
    Token(u32),
    Text(String),
}

/// Python's `str.strip()` whitespace (what Jinja's `trim` removes): Unicode White_Space plus the
/// separators U+001C..U+001F, which Python counts and Rust's `char::is_whitespace` does not.
fn trim_py(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

/// Gemma 4's `strip_thinking`: drops each `<|channel>…<channel|>` span (and an unclosed
/// `<|channel>…` before a `<channel|>`), then trims.
fn strip_thinking(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for part in s.split("<channel|>") {
        match part.find("<|channel>") {
            Some(i) => out.push_str(&part[..i]),
            None => out.push_str(part),
        }
    }
    trim_py(&out).to_string()
}

fn render(
    style: ChatStyle,
    bos: u32,
    start: u32,
    end: u32,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
) -> Result<Vec<Piece>> {
    let mut out = vec![Piece::Token(bos)];
    let mut turn = |role: Role, body: &str| {
        out.push(Piece::Token(start));
        out.push(Piece::Text(format!("{}\n{body}", role.as_str())));
        out.push(Piece::Token(end));
        out.push(Piece::Text("\n".to_string()));
    };
    match style {
        ChatStyle::Gemma4 => {
            for m in messages {
                let body = match m.role {
                    Role::Model => strip_thinking(&m.content),
                    Role::System | Role::User => trim_py(&m.content).to_string(),
                };
                turn(m.role, &body);
            }
        }
        ChatStyle::Gemma3 => {
            let (prefix, rest, offset) = match messages.first() {
                Some(m) if m.role == Role::System => {
                    if messages.len() == 1 {
                        return Err(TextError::InvalidChat(
                            "a system message needs a user message after it: Gemma 3 has no \
                             system turn and puts it at the start of the first user turn"
                                .to_string(),
                        ));
                    }
                    (format!("{}\n\n", m.content), &messages[1..], 1)
                }
                _ => (String::new(), messages, 0),
            };
            for (i, m) in rest.iter().enumerate() {
                let expected = if i % 2 == 0 { Role::User } else { Role::Model };
                if m.role == Role::System {
                    return Err(TextError::InvalidChat(format!(
                        "message {}: Gemma 3 has no system turn; only a first system message is \
                         supported",
                        i + offset
                    )));
                }
                if m.role != expected {
                    return Err(TextError::InvalidChat(format!(
                        "message {} is {}: Gemma 3 roles must alternate user / model, starting \
                         with user",
                        i + offset,
                        m.role
                    )));
                }
                let lead = if i == 0 { prefix.as_str() } else { "" };
                turn(m.role, &format!("{lead}{}", trim_py(&m.content)));
            }
        }
    }
    if add_generation_prompt {
        out.push(Piece::Token(start));
        out.push(Piece::Text("model\n".to_string()));
    }
    Ok(out)
}

impl Tokenizer {
    fn render_chat(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<Vec<Piece>> {
        let special = self.special();
        let (Some(style), Some(start), Some(end)) = (
            self.chat_style(),
            special.start_of_turn,
            special.end_of_turn,
        ) else {
            return Err(TextError::MissingToken(
                "turn (neither <|turn>/<turn|> nor <start_of_turn>/<end_of_turn>)",
            ));
        };
        render(
            style,
            self.bos()?,
            start,
            end,
            messages,
            add_generation_prompt,
        )
    }

    /// The prompt for a conversation in the tokenizer's turn format (see the [module
    /// docs](crate::chat)), as token ids starting with `<bos>`; with `add_generation_prompt`
    /// it ends with the opening of a model turn (`<|turn>model\n`), ready for generation.
    ///
    /// Errors: [`TextError::MissingToken`] when the tokenizer has no `<bos>` or no turn tokens;
    /// [`TextError::InvalidChat`] for a conversation Gemma 3's format cannot express.
    pub fn chat_prompt(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        for piece in self.render_chat(messages, add_generation_prompt)? {
            match piece {
                Piece::Token(id) => ids.push(id),
                Piece::Text(text) => ids.extend(self.encode(&text, false)?),
            }
        }
        Ok(ids)
    }

    /// The same prompt as text, control tokens spelled out (for logs and comparisons with
    /// Hugging Face's `apply_chat_template(..., tokenize=False)`).
    pub fn chat_prompt_text(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String> {
        let mut text = String::new();
        for piece in self.render_chat(messages, add_generation_prompt)? {
            match piece {
                Piece::Token(id) => text.push_str(&self.decode(&[id])?),
                Piece::Text(t) => text.push_str(&t),
            }
        }
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trim_matches_python_strip() {
        // Python: " \x1c\u3000a b\t\x1f\n".strip() == "a b"
        assert_eq!(trim_py(" \u{1c}\u{3000}a b\t\u{1f}\n"), "a b");
        // U+200B (zero width space) is not whitespace for Python either.
        assert_eq!(trim_py("\u{200b}a"), "\u{200b}a");
    }

    #[test]
    fn strip_thinking_like_the_template() {
        assert_eq!(
            strip_thinking("<|channel>thought\nhmm<channel|>Answer "),
            "Answer"
        );
        assert_eq!(
            strip_thinking("a<|channel>x<channel|>b<|channel>y<channel|>c"),
            "abc"
        );
        assert_eq!(strip_thinking("  plain  "), "plain");
    }

    #[test]
    fn roles_parse() {
        assert_eq!("assistant".parse::<Role>().unwrap(), Role::Model);
        assert_eq!("model".parse::<Role>().unwrap(), Role::Model);
        assert!(matches!(
            "tool".parse::<Role>(),
            Err(TextError::UnknownRole(r)) if r == "tool"
        ));
        let m: ChatMessage =
            serde_json::from_str(r#"{"role":"assistant","content":"hi"}"#).unwrap();
        assert_eq!(m, ChatMessage::model("hi"));
    }
}
