//! Request bodies of `/v1/completions` and `/v1/chat/completions`, parsed and checked.
//!
//! Every field OpenAI defines for these endpoints is known here. Those the server implements
//! are used; those it does not are an error when given a value that would change the answer
//! (`n: 2`, `logit_bias`, a penalty), never silently ignored. Unknown fields are an error too.

use crate::error::ApiError;
use onepath_engine::Request;
use onepath_text::{ChatMessage, Role, SamplingParams};
use serde::Deserialize;
use serde_json::Value;

/// Most stop strings per request (OpenAI's limit).
const MAX_STOPS: usize = 4;

#[derive(Deserialize)]
#[serde(untagged)]
pub enum PromptIn {
    Text(String),
    Tokens(Vec<u32>),
    /// Lists of prompts: parsed only to refuse them by name.
    Many(Vec<Value>),
}

#[derive(Deserialize)]
#[serde(untagged)]
pub enum StopIn {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
    /// OpenAI's random padding of chunks against length side channels: accepted, not added
    /// (loopback and local deployments; it changes no answer).
    #[allow(dead_code)]
    pub include_obfuscation: Option<bool>,
}

/// Fields both endpoints share.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompletionBody {
    pub model: String,
    pub prompt: PromptIn,
    pub max_tokens: Option<usize>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    /// Not OpenAI's; llama-server's and vLLM's extension.
    pub top_k: Option<usize>,
    pub seed: Option<u64>,
    pub stop: Option<StopIn>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    /// The legacy form: how many alternatives per token (0-5; OpenAI's limit).
    pub logprobs: Option<usize>,
    pub n: Option<usize>,
    pub best_of: Option<usize>,
    pub echo: Option<bool>,
    pub suffix: Option<String>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub logit_bias: Option<serde_json::Map<String, Value>>,
    /// An end-user id for the caller's own monitoring: accepted, it changes no answer.
    #[allow(dead_code)]
    pub user: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub enum ContentIn {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
}

#[derive(Deserialize)]
pub struct MessageIn {
    pub role: String,
    pub content: Option<ContentIn>,
    /// Accepted for a participant's name; the Gemma turn format has no place for it.
    #[allow(dead_code)]
    pub name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatBody {
    pub model: String,
    pub messages: Vec<MessageIn>,
    pub max_tokens: Option<usize>,
    pub max_completion_tokens: Option<usize>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<usize>,
    pub seed: Option<u64>,
    pub stop: Option<StopIn>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub logprobs: bool,
    pub top_logprobs: Option<usize>,
    pub n: Option<usize>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub logit_bias: Option<serde_json::Map<String, Value>>,
    /// As in [`CompletionBody::user`].
    #[allow(dead_code)]
    pub user: Option<String>,
    pub tools: Option<Vec<Value>>,
    pub tool_choice: Option<Value>,
    pub response_format: Option<Value>,
}

/// What the handlers need from either body.
pub struct Parsed {
    pub model: String,
    pub prompt: Prompt,
    pub req: Request,
    pub stream: bool,
    pub include_usage: bool,
    /// Alternatives per token when logprobs were asked for.
    pub logprobs: Option<usize>,
}

pub enum Prompt {
    Text(String),
    Tokens(Vec<u32>),
    Chat(Vec<ChatMessage>),
}

fn bad(param: &str, msg: impl Into<String>) -> ApiError {
    ApiError::invalid(Some(param), msg)
}

fn unsupported_if(cond: bool, param: &str, what: &str) -> Result<(), ApiError> {
    if cond {
        Err(bad(
            param,
            format!("`{param}` {what} is not supported by this server"),
        ))
    } else {
        Ok(())
    }
}

/// Refuses penalties, biases and more than one choice: each would change the answer.
fn common_unsupported(
    n: Option<usize>,
    presence: Option<f32>,
    frequency: Option<f32>,
    bias: &Option<serde_json::Map<String, Value>>,
) -> Result<(), ApiError> {
    unsupported_if(n.is_some_and(|n| n != 1), "n", "other than 1")?;
    unsupported_if(
        presence.is_some_and(|p| p != 0.0),
        "presence_penalty",
        "other than 0",
    )?;
    unsupported_if(
        frequency.is_some_and(|p| p != 0.0),
        "frequency_penalty",
        "other than 0",
    )?;
    unsupported_if(
        bias.as_ref().is_some_and(|b| !b.is_empty()),
        "logit_bias",
        "",
    )
}

fn sampling(
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<usize>,
    seed: Option<u64>,
) -> Result<SamplingParams, ApiError> {
    // OpenAI's default temperature is 1; a request that gives none samples at 1.
    let t = temperature.unwrap_or(1.0);
    if !t.is_finite() || !(0.0..=2.0).contains(&t) {
        return Err(bad(
            "temperature",
            format!("temperature must be in [0, 2], got {t}"),
        ));
    }
    if let Some(p) = top_p
        && !(p > 0.0 && p <= 1.0)
    {
        return Err(bad("top_p", format!("top_p must be in (0, 1], got {p}")));
    }
    if top_k == Some(0) {
        return Err(bad("top_k", "top_k must be at least 1"));
    }
    Ok(SamplingParams {
        temperature: t,
        top_k,
        top_p: top_p.filter(|p| *p < 1.0),
        seed: seed.unwrap_or(0),
    })
}

fn stops(stop: Option<StopIn>) -> Result<Vec<String>, ApiError> {
    let list = match stop {
        None => vec![],
        Some(StopIn::One(s)) => vec![s],
        Some(StopIn::Many(v)) => v,
    };
    if list.len() > MAX_STOPS {
        return Err(bad(
            "stop",
            format!("at most {MAX_STOPS} stop strings, got {}", list.len()),
        ));
    }
    if list.iter().any(String::is_empty) {
        return Err(bad("stop", "a stop string is empty"));
    }
    Ok(list)
}

fn max_tokens(v: Option<usize>, default: usize) -> Result<usize, ApiError> {
    match v {
        Some(0) => Err(bad("max_tokens", "max_tokens must be at least 1")),
        Some(n) => Ok(n),
        None => Ok(default),
    }
}

/// Parses JSON text into `T`, naming the problem as OpenAI-style errors do.
pub fn from_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::invalid(
            None,
            "the request body is empty; send a JSON object",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        let what = if e.is_syntax() || e.is_eof() {
            "malformed JSON"
        } else {
            "invalid request"
        };
        ApiError::invalid(None, format!("{what}: {e}"))
    })
}

impl CompletionBody {
    pub fn parse(self) -> Result<Parsed, ApiError> {
        common_unsupported(
            self.n,
            self.presence_penalty,
            self.frequency_penalty,
            &self.logit_bias,
        )?;
        unsupported_if(
            self.best_of.is_some_and(|n| n != 1),
            "best_of",
            "other than 1",
        )?;
        unsupported_if(self.echo == Some(true), "echo", "true")?;
        unsupported_if(self.suffix.is_some(), "suffix", "")?;
        let prompt = match self.prompt {
            PromptIn::Text(t) => Prompt::Text(t),
            PromptIn::Tokens(t) => Prompt::Tokens(t),
            PromptIn::Many(list) => {
                return Err(bad(
                    "prompt",
                    format!(
                        "got a list of {} prompts (or a list that is not token ids): give one \
                         prompt per request, a string or a list of token ids",
                        list.len()
                    ),
                ));
            }
        };
        if let Some(n) = self.logprobs
            && n > 5
        {
            return Err(bad(
                "logprobs",
                format!("logprobs must be in 0..=5, got {n}"),
            ));
        }
        // OpenAI's default for completions is 16 tokens.
        let mut req = Request::greedy(Vec::new(), max_tokens(self.max_tokens, 16)?);
        req.sampling = sampling(self.temperature, self.top_p, self.top_k, self.seed)?;
        req.stop_strings = stops(self.stop)?;
        req.logprobs = self.logprobs;
        Ok(Parsed {
            model: self.model,
            prompt,
            req,
            stream: self.stream,
            include_usage: self.stream_options.is_some_and(|o| o.include_usage),
            logprobs: self.logprobs,
        })
    }
}

impl ChatBody {
    pub fn parse(self) -> Result<Parsed, ApiError> {
        common_unsupported(
            self.n,
            self.presence_penalty,
            self.frequency_penalty,
            &self.logit_bias,
        )?;
        unsupported_if(
            self.tools.as_ref().is_some_and(|t| !t.is_empty()),
            "tools",
            "",
        )?;
        unsupported_if(
            self.tool_choice.as_ref().is_some_and(|t| t != "none"),
            "tool_choice",
            "other than \"none\"",
        )?;
        unsupported_if(
            self.response_format
                .as_ref()
                .is_some_and(|f| f.get("type").is_some_and(|t| t != "text")),
            "response_format",
            "other than {\"type\": \"text\"}",
        )?;
        if self.messages.is_empty() {
            return Err(bad("messages", "messages is empty"));
        }
        let mut messages = Vec::new();
        for (i, m) in self.messages.into_iter().enumerate() {
            let role: Role = m.role.parse().map_err(|_| {
                bad(
                    "messages",
                    format!(
                        "messages[{i}].role is {:?}; expected system, user or assistant",
                        m.role
                    ),
                )
            })?;
            let content = match m.content {
                None => String::new(),
                Some(ContentIn::Text(t)) => t,
                Some(ContentIn::Parts(parts)) => {
                    let mut s = String::new();
                    for (j, p) in parts.into_iter().enumerate() {
                        match (p.kind.as_str(), p.text) {
                            ("text", Some(t)) => s.push_str(&t),
                            (kind, _) => {
                                return Err(bad(
                                    "messages",
                                    format!(
                                        "messages[{i}].content[{j}] is of type {kind:?}; only \
                                         text parts are supported"
                                    ),
                                ));
                            }
                        }
                    }
                    s
                }
            };
            messages.push(ChatMessage::new(role, content));
        }
        let top = match (self.logprobs, self.top_logprobs) {
            (false, Some(_)) => {
                return Err(bad("top_logprobs", "top_logprobs needs logprobs: true"));
            }
            (true, Some(n)) if n > 20 => {
                return Err(bad(
                    "top_logprobs",
                    format!("top_logprobs must be in 0..=20, got {n}"),
                ));
            }
            (true, n) => Some(n.unwrap_or(0)),
            (false, None) => None,
        };
        // Without a limit a chat reply may run to the end of the context.
        let limit = self.max_completion_tokens.or(self.max_tokens);
        let mut req = Request::greedy(Vec::new(), max_tokens(limit, usize::MAX)?);
        req.sampling = sampling(self.temperature, self.top_p, self.top_k, self.seed)?;
        req.stop_strings = stops(self.stop)?;
        req.logprobs = top;
        Ok(Parsed {
            model: self.model,
            prompt: Prompt::Chat(messages),
            req,
            stream: self.stream,
            include_usage: self.stream_options.is_some_and(|o| o.include_usage),
            logprobs: top,
        })
    }
}
