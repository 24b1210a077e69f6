//! Response bodies: whole completions, stream chunks, logprobs, usage, in OpenAI's shapes.

use onepath_engine::{Event, FinishReason, TokenLogprob, Usage};
use onepath_text::Tokenizer;
use serde_json::{Value, json};

/// Which endpoint a response is for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Completions,
    Chat,
}

/// What every chunk of one response repeats.
pub struct Meta {
    pub id: String,
    pub created: u64,
    pub model: String,
    pub endpoint: Endpoint,
}

/// A finished (or running) answer.
#[derive(Default)]
pub struct Answer {
    pub text: String,
    pub tokens: Vec<u32>,
    pub logprobs: Vec<TokenLogprob>,
    pub finish: Option<FinishReason>,
    pub usage: Usage,
}

impl Answer {
    /// Takes one event; true once finished.
    pub fn take(&mut self, ev: Event) -> bool {
        match ev {
            Event::Token {
                token,
                text,
                logprob,
                ..
            } => {
                self.tokens.push(token);
                self.text.push_str(&text);
                self.logprobs.extend(logprob);
                false
            }
            Event::Finished {
                reason,
                usage,
                text,
                ..
            } => {
                self.text.push_str(&text);
                self.finish = Some(reason);
                self.usage = usage;
                true
            }
        }
    }
}

pub fn usage_json(u: &Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
    })
}

fn piece(tok: Option<&Tokenizer>, id: u32) -> String {
    tok.and_then(|t| t.decode_with(&[id], false).ok())
        .unwrap_or_else(|| format!("<{id}>"))
}

/// Logprobs of `tokens` in the endpoint's shape (`None`: not asked for).
pub fn logprobs_json(
    endpoint: Endpoint,
    tok: Option<&Tokenizer>,
    tokens: &[u32],
    lps: &[TokenLogprob],
    text_offset: usize,
) -> Value {
    match endpoint {
        Endpoint::Completions => {
            let mut offset = text_offset;
            let mut offsets = Vec::new();
            for &t in tokens {
                offsets.push(offset);
                offset += piece(tok, t).len();
            }
            json!({
                "tokens": tokens.iter().map(|&t| piece(tok, t)).collect::<Vec<_>>(),
                "token_logprobs": lps.iter().map(|l| l.logprob).collect::<Vec<_>>(),
                "top_logprobs": lps.iter().map(|l| {
                    l.top.iter().map(|(id, v)| (piece(tok, *id), json!(v))).collect::<serde_json::Map<_, _>>()
                }).collect::<Vec<_>>(),
                "text_offset": offsets,
            })
        }
        Endpoint::Chat => {
            let entry = |id: u32, v: f64| {
                let s = piece(tok, id);
                json!({"token": s, "logprob": v, "bytes": s.as_bytes()})
            };
            let content: Vec<Value> = tokens
                .iter()
                .zip(lps)
                .map(|(&t, l)| {
                    let mut e = entry(t, l.logprob);
                    e["top_logprobs"] =
                        Value::Array(l.top.iter().map(|(id, v)| entry(*id, *v)).collect());
                    e
                })
                .collect();
            json!({ "content": content })
        }
    }
}

fn finish_str(r: &Option<FinishReason>) -> Value {
    match r {
        Some(r) => json!(r.as_openai()),
        None => Value::Null,
    }
}

/// The whole response of a request that asked for no stream.
pub fn whole(meta: &Meta, a: &Answer, tok: Option<&Tokenizer>, logprobs: bool) -> Value {
    let lp = if logprobs {
        logprobs_json(meta.endpoint, tok, &a.tokens, &a.logprobs, 0)
    } else {
        Value::Null
    };
    let mut choice = match meta.endpoint {
        Endpoint::Completions => json!({
            "index": 0, "text": a.text, "logprobs": lp, "finish_reason": finish_str(&a.finish),
        }),
        Endpoint::Chat => json!({
            "index": 0,
            "message": {"role": "assistant", "content": a.text},
            "logprobs": lp,
            "finish_reason": finish_str(&a.finish),
        }),
    };
    // Not OpenAI's: the generated token ids (a stop token excluded), for checking answers
    // bit for bit and for models without a tokenizer.
    choice["token_ids"] = json!(a.tokens);
    json!({
        "id": meta.id,
        "object": match meta.endpoint {
            Endpoint::Completions => "text_completion",
            Endpoint::Chat => "chat.completion",
        },
        "created": meta.created,
        "model": meta.model,
        "choices": [choice],
        "usage": usage_json(&a.usage),
    })
}

/// One stream chunk: new `text` (with its tokens' logprobs), or the end (`finish`), or the
/// opening (chat: the assistant role).
pub struct Chunk<'a> {
    pub text: &'a str,
    /// The token ids of `text` (not OpenAI's field; see [`whole`]).
    pub tokens: &'a [u32],
    pub logprobs: Option<Value>,
    pub finish: Option<&'a FinishReason>,
    pub role: bool,
}

pub fn chunk(meta: &Meta, c: Chunk<'_>, include_usage: bool) -> Value {
    let finish = c.finish.map_or(Value::Null, |r| json!(r.as_openai()));
    let lp = c.logprobs.unwrap_or(Value::Null);
    let mut choice = match meta.endpoint {
        Endpoint::Completions => {
            json!({"index": 0, "text": c.text, "logprobs": lp, "finish_reason": finish})
        }
        Endpoint::Chat => {
            let delta = if c.role {
                json!({"role": "assistant", "content": ""})
            } else if c.finish.is_some() && c.text.is_empty() {
                json!({})
            } else {
                json!({"content": c.text})
            };
            json!({"index": 0, "delta": delta, "logprobs": lp, "finish_reason": finish})
        }
    };
    if !c.tokens.is_empty() {
        choice["token_ids"] = json!(c.tokens);
    }
    let mut v = json!({
        "id": meta.id,
        "object": match meta.endpoint {
            Endpoint::Completions => "text_completion",
            Endpoint::Chat => "chat.completion.chunk",
        },
        "created": meta.created,
        "model": meta.model,
        "choices": [choice],
    });
    if include_usage {
        // OpenAI: every chunk carries `usage: null` except the last, which has it.
        v["usage"] = Value::Null;
    }
    v
}

/// The extra last chunk of `stream_options.include_usage`: no choices, the usage.
pub fn usage_chunk(meta: &Meta, u: &Usage) -> Value {
    let mut v = chunk(
        meta,
        Chunk {
            text: "",
            tokens: &[],
            logprobs: None,
            finish: None,
            role: false,
        },
        false,
    );
    v["choices"] = json!([]);
    v["usage"] = usage_json(u);
    v
}
