//! The chat format on the small tokenizer: the expected prompts are written out from the
//! format (Gemma 4: `<bos><|turn>user\n{text}<turn|>\n<|turn>model\n`; Gemma 3:
//! `<start_of_turn>` / `<end_of_turn>`, system folded into the first user turn).

mod common;

use common::{BOS, TURN_END, TURN_START, Turns, tokenizer};
use onepath_text::{ChatMessage, Role, TextError};

#[test]
fn gemma4_single_user_turn() {
    let tok = tokenizer(Turns::Gemma4);
    let msgs = [ChatMessage::user("hello")];
    assert_eq!(
        tok.chat_prompt_text(&msgs, true).unwrap(),
        "<bos><|turn>user\nhello<turn|>\n<|turn>model\n"
    );
    let mut expected = vec![BOS, TURN_START];
    expected.extend(tok.encode("user\nhello", false).unwrap());
    expected.push(TURN_END);
    expected.extend(tok.encode("\n", false).unwrap());
    expected.push(TURN_START);
    expected.extend(tok.encode("model\n", false).unwrap());
    assert_eq!(tok.chat_prompt(&msgs, true).unwrap(), expected);
}

#[test]
fn gemma4_system_model_and_trimming() {
    let tok = tokenizer(Turns::Gemma4);
    let msgs = [
        ChatMessage::system("  Be brief. \n"),
        ChatMessage::user("\thello world "),
        ChatMessage::new(
            "assistant".parse::<Role>().unwrap(),
            "<|channel>thought\nweighing it<channel|> hi ",
        ),
        ChatMessage::user("again"),
    ];
    let text = "<bos><|turn>system\nBe brief.<turn|>\n<|turn>user\nhello world<turn|>\n\
                <|turn>model\nhi<turn|>\n<|turn>user\nagain<turn|>\n<|turn>model\n";
    assert_eq!(tok.chat_prompt_text(&msgs, true).unwrap(), text);
    // Built piece by piece, the ids equal those of the rendered prompt encoded in one go.
    assert_eq!(
        tok.chat_prompt(&msgs, true).unwrap(),
        tok.encode(text, false).unwrap()
    );
    // Without the generation prompt the last turn is closed and nothing follows.
    let ids = tok.chat_prompt(&msgs, false).unwrap();
    let nl = tok.encode("\n", false).unwrap();
    assert_eq!(ids[ids.len() - 1 - nl.len()], TURN_END);
    assert!(ids.ends_with(&nl));
    // No messages: <bos> and the generation prompt.
    assert_eq!(
        tok.chat_prompt_text(&[], true).unwrap(),
        "<bos><|turn>model\n"
    );
}

#[test]
fn gemma4_later_system_message_is_its_own_turn() {
    let tok = tokenizer(Turns::Gemma4);
    let msgs = [ChatMessage::user("a"), ChatMessage::system("b")];
    assert_eq!(
        tok.chat_prompt_text(&msgs, false).unwrap(),
        "<bos><|turn>user\na<turn|>\n<|turn>system\nb<turn|>\n"
    );
}

#[test]
fn gemma3_fallback() {
    let tok = tokenizer(Turns::Gemma3);
    let msgs = [
        ChatMessage::system("Be brief."),
        ChatMessage::user(" hello "),
        ChatMessage::model("hi"),
        ChatMessage::user("again"),
    ];
    let text = "<bos><start_of_turn>user\nBe brief.\n\nhello<end_of_turn>\n\
                <start_of_turn>model\nhi<end_of_turn>\n<start_of_turn>user\nagain<end_of_turn>\n\
                <start_of_turn>model\n";
    assert_eq!(tok.chat_prompt_text(&msgs, true).unwrap(), text);
    let ids = tok.chat_prompt(&msgs, true).unwrap();
    assert_eq!(ids, tok.encode(text, false).unwrap());
    assert_eq!(ids[..2], [BOS, TURN_START]);
}

#[test]
fn gemma3_rejects_what_it_cannot_express() {
    let tok = tokenizer(Turns::Gemma3);
    for msgs in [
        vec![ChatMessage::model("first")],
        vec![ChatMessage::user("a"), ChatMessage::user("b")],
        vec![ChatMessage::user("a"), ChatMessage::system("b")],
        vec![ChatMessage::system("alone")],
    ] {
        let err = tok.chat_prompt(&msgs, true).unwrap_err();
        assert!(matches!(err, TextError::InvalidChat(_)), "{msgs:?}: {err}");
    }
}

#[test]
fn no_turn_tokens_is_an_error() {
    let tok = tokenizer(Turns::None);
    let err = tok
        .chat_prompt(&[ChatMessage::user("a")], true)
        .unwrap_err();
    assert!(matches!(err, TextError::MissingToken(_)), "{err}");
    assert!(err.to_string().contains("turn"), "{err}");
}

#[test]
fn messages_from_json() {
    let msgs: Vec<ChatMessage> = serde_json::from_str(
        r#"[{"role":"system","content":"s"},{"role":"user","content":"u"},
            {"role":"assistant","content":"a"},{"role":"model","content":"m"}]"#,
    )
    .unwrap();
    let roles: Vec<Role> = msgs.iter().map(|m| m.role).collect();
    assert_eq!(roles, [Role::System, Role::User, Role::Model, Role::Model]);
    assert!(serde_json::from_str::<ChatMessage>(r#"{"role":"tool","content":"x"}"#).is_err());
}
