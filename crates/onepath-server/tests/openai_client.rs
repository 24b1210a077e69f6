//! A real OpenAI client library (the `async-openai` crate) against the server on the shipped
//! model: both endpoints, whole and streamed; a stream's text equals the whole answer's, and
//! seeded sampling gives the same text twice.

mod common;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::types::chat::{
    ChatCompletionRequestSystemMessageArgs, ChatCompletionRequestUserMessageArgs,
    CreateChatCompletionRequestArgs, Prompt,
};
use async_openai::types::completions::CreateCompletionRequestArgs;
use common::*;
use futures_util::StreamExt;
use onepath_engine::EngineConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_openai_drives_both_endpoints_whole_and_streamed() {
    let Some(engine) = engine(&Which::Shipped, 4, EngineConfig::default()) else {
        return;
    };
    let s = start(engine, "kjv-tiny", 1 << 20).await;
    let client = Client::with_config(
        OpenAIConfig::new()
            .with_api_base(s.url("/v1"))
            .with_api_key("unused"),
    );

    // Completions, greedy: whole, then streamed.
    let req = CreateCompletionRequestArgs::default()
        .model("kjv-tiny")
        .prompt(Prompt::String("In the beginning".into()))
        .max_tokens(12u32)
        .temperature(0.0)
        .build()
        .unwrap();
    let whole = client
        .completions()
        .create(req.clone())
        .await
        .expect("completion");
    let text = whole.choices[0].text.clone();
    assert!(!text.trim().is_empty(), "the shipped model writes text");
    let usage = whole.usage.expect("usage");
    assert_eq!(usage.completion_tokens, 12);
    let mut stream = client
        .completions()
        .create_stream(req)
        .await
        .expect("stream");
    let mut streamed = String::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("chunk");
        if let Some(c) = chunk.choices.first() {
            streamed.push_str(&c.text);
        }
    }
    assert_eq!(streamed, text, "a stream's text equals the whole answer's");

    // Chat, seeded sampling: whole, then streamed with usage.
    let messages = vec![
        ChatCompletionRequestSystemMessageArgs::default()
            .content("Answer in the words of the King James Bible.")
            .build()
            .unwrap()
            .into(),
        ChatCompletionRequestUserMessageArgs::default()
            .content("Who made the heaven and the earth?")
            .build()
            .unwrap()
            .into(),
    ];
    let req = CreateChatCompletionRequestArgs::default()
        .model("kjv-tiny")
        .messages(messages)
        .max_completion_tokens(16u32)
        .temperature(0.8)
        .seed(42)
        .build()
        .unwrap();
    let whole = client.chat().create(req.clone()).await.expect("chat");
    let answer = whole.choices[0].message.content.clone().unwrap_or_default();
    assert!(!answer.is_empty());
    let mut stream = client.chat().create_stream(req).await.expect("chat stream");
    let mut streamed = String::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("chat chunk");
        for c in &chunk.choices {
            streamed.push_str(c.delta.content.as_deref().unwrap_or(""));
        }
    }
    assert_eq!(
        streamed, answer,
        "seeded sampling: the same text streamed and whole"
    );

    // An error reaches the client as OpenAI's error object.
    let bad = CreateCompletionRequestArgs::default()
        .model("no-such-model")
        .prompt(Prompt::String("x".into()))
        .build()
        .unwrap();
    let err = client
        .completions()
        .create(bad)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown model"), "{err}");
    s.stop().await;
}
