//! The server's request bodies: `POST /v1/completions` and `/v1/chat/completions` JSON, parsed
//! and checked as the handlers do (`onepath_server::check_body`).

use crate::Outcome;

/// Valid bodies of both endpoints; the first byte of an input picks the endpoint.
pub fn seeds() -> Vec<Vec<u8>> {
    [
        r#"C{"model": "m", "prompt": "In the beginning", "max_tokens": 16}"#,
        r#"C{"model": "m", "prompt": [2, 17, 9], "temperature": 0.7, "top_p": 0.9, "top_k": 40, "seed": 3, "stop": ["\n", "END"], "logprobs": 2, "stream": true, "stream_options": {"include_usage": true}}"#,
        r#"H{"model": "m", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], "max_completion_tokens": 8}"#,
        r#"H{"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}], "logprobs": true, "top_logprobs": 3, "stream": true, "seed": 1, "n": 1, "tool_choice": "none"}"#,
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

/// `C` + body: completions; anything else: chat.
pub fn request(data: &[u8]) -> Outcome {
    let (chat, body) = match data.split_first() {
        Some((b'C', rest)) => (false, rest),
        Some((_, rest)) => (true, rest),
        None => (true, data),
    };
    onepath_server::check_body(chat, body)
}
