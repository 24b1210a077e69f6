//! Bad `config.json` files: each gives an error naming the problem, never a panic.
//! (see tests/gemma4_bad_input/mod.rs for how the inputs are made).

mod common;
mod gemma4_bad_input;
mod gemma4_common;
use gemma4_bad_input::*;
use onepath_model::Config;
use serde_json::json;

// ---------------------------------------------------------------------------------------------
// config.json alone.

struct ConfigCase {
    what: String,
    fixture: &'static str,
    edits: Vec<Edit>,
    error: String,
}

fn case(what: &str, fixture: &'static str, edits: Vec<Edit>, error: &str) -> ConfigCase {
    ConfigCase {
        what: format!("{fixture}: {what}"),
        fixture,
        edits,
        error: error.to_string(),
    }
}

fn config_cases() -> Vec<ConfigCase> {
    use Edit::*;
    let mut cases = vec![
        case(
            "model_type llama",
            A,
            vec![Set("model_type", json!("llama"))],
            "unsupported model: model_type `llama`: onepath runs Gemma 4 text decoders \
             (gemma4 / gemma4_text)",
        ),
        case(
            "text_config.model_type gemma3_text",
            B,
            vec![Set("model_type", json!("gemma3_text"))],
            "unsupported model: model_type `gemma3_text`",
        ),
        case(
            "no model_type",
            A,
            vec![Remove("model_type")],
            "config: config.json has no `model_type` (required: gemma4 or gemma4_text)",
        ),
        case(
            "enable_moe_block",
            A,
            vec![Set("enable_moe_block", json!(true))],
            "unsupported model: Gemma 4 with a mixture-of-experts block (26B-A4B): \
             not supported yet",
        ),
        case(
            "num_experts 128",
            B,
            vec![Set("num_experts", json!(128))],
            "mixture-of-experts block (26B-A4B): not supported yet",
        ),
        case(
            "layer_types one short",
            A,
            vec![Set(
                "layer_types",
                json!([
                    "sliding_attention",
                    "sliding_attention",
                    "full_attention",
                    "sliding_attention",
                    "full_attention"
                ]),
            )],
            "config: config.json lists 5 layer_types for 6 layers",
        ),
        case(
            "num_hidden_layers 9 with 8 layer_types",
            B,
            vec![Set("num_hidden_layers", json!(9))],
            "config: config.json lists 8 layer_types for 9 layers",
        ),
        case(
            "layer_types not a list",
            A,
            vec![Set("layer_types", json!("sliding_attention"))],
            "config: config.json `layer_types` is \"sliding_attention\", expected a list",
        ),
        case(
            "an unknown layer type",
            A,
            vec![Set(
                "layer_types",
                json!([
                    "sliding_attention",
                    "sliding_attention",
                    "full_attention",
                    "chunked_attention",
                    "sliding_attention",
                    "full_attention"
                ]),
            )],
            "config: config.json `layer_types[3]` is \"chunked_attention\", expected \
             sliding_attention or full_attention",
        ),
        case(
            "neither global_head_dim nor per_layer_config",
            A,
            vec![Remove("per_layer_config")],
            "config: config.json has no `global_head_dim` (nor a `per_layer_config` block: \
             the full layers' head dim is unknown)",
        ),
        case(
            "neither global_head_dim nor per_layer_config",
            B,
            vec![Remove("global_head_dim")],
            "config: config.json has no `global_head_dim` (nor a `per_layer_config` block: \
             the full layers' head dim is unknown)",
        ),
        case(
            "per_layer_config without a full layer's entry",
            A,
            vec![Remove("per_layer_config.5")],
            "config: config.json has no `per_layer_config.5` (a full layer's overrides)",
        ),
        case(
            "per_layer_config with two full-layer shapes",
            A,
            vec![Set("per_layer_config.5.head_dim", json!(256))],
            "config: per_layer_config gives full layers different shapes ((128, 2) and (256, 2))",
        ),
        case(
            "num_kv_shared_layers = layers",
            A,
            vec![Set("num_kv_shared_layers", json!(6))],
            "config: num_kv_shared_layers 6 leaves no layer computing K/V of 6 layers",
        ),
        case(
            "num_kv_shared_layers > layers",
            B,
            vec![Set("num_kv_shared_layers", json!(9))],
            "config: num_kv_shared_layers 9 leaves no layer computing K/V of 8 layers",
        ),
        case(
            "KV-shared full layers with no full layer to share from",
            A,
            vec![Set("num_kv_shared_layers", json!(4))],
            "config: no layer before the KV-shared ones computes full-attention K/V for them \
             to share",
        ),
        case(
            "num_kv_shared_layers a string",
            A,
            vec![Set("num_kv_shared_layers", json!("2"))],
            "config: config.json `num_kv_shared_layers` is \"2\", expected a non-negative integer",
        ),
        case(
            "use_double_wide_mlp a number",
            A,
            vec![Set("use_double_wide_mlp", json!(1))],
            "config: config.json `use_double_wide_mlp` is 1, expected true or false",
        ),
        case(
            "final_logit_softcapping a string",
            B,
            vec![Set("final_logit_softcapping", json!("30"))],
            "config: config.json `final_logit_softcapping` is \"30\", expected a number",
        ),
        case(
            "heads not divisible by KV heads",
            A,
            vec![Set("num_attention_heads", json!(3))],
            "config: sliding layers: 3 query heads do not group over 2 KV heads",
        ),
        case(
            "no KV heads",
            A,
            vec![Set("num_key_value_heads", json!(0))],
            "config: sliding layers: 4 query heads do not group over 0 KV heads",
        ),
        case(
            "full layers' KV heads do not divide the heads",
            B,
            vec![Set("num_global_key_value_heads", json!(4))],
            "config: full layers: 2 query heads do not group over 4 KV heads",
        ),
        case(
            "head_dim 0",
            A,
            vec![Set("head_dim", json!(0))],
            "config: sliding layers: head_dim 0 must be positive and even",
        ),
        case(
            "odd global_head_dim",
            B,
            vec![Set("global_head_dim", json!(127))],
            "config: full layers: head_dim 127 must be positive and even",
        ),
        case(
            "hidden_size 0",
            A,
            vec![Set("hidden_size", json!(0))],
            "config: hidden_size, num_hidden_layers, num_attention_heads and vocab_size must \
             be positive",
        ),
        case(
            "sliding_window 0",
            B,
            vec![Set("sliding_window", json!(0))],
            "config: sliding_window must be positive",
        ),
        case(
            "partial_rotary_factor 0",
            A,
            vec![Set(
                "rope_parameters.full_attention.partial_rotary_factor",
                json!(0.0),
            )],
            "config: full layers: bad RoPE parameters",
        ),
        case(
            "no sliding RoPE parameters",
            B,
            vec![Remove("rope_parameters.sliding_attention")],
            "config: config.json has no `rope_parameters.sliding_attention` (required)",
        ),
        case(
            "no hidden_size_per_layer_input",
            A,
            vec![Remove("hidden_size_per_layer_input")],
            "config: config.json has no `hidden_size_per_layer_input` (required; 0 for none)",
        ),
        case(
            "a per-layer-input vocabulary smaller than the vocabulary",
            A,
            vec![Set("vocab_size_per_layer_input", json!(256))],
            "unsupported model: vocab_size_per_layer_input 256 is smaller than vocab_size 512",
        ),
        case(
            "no hidden_size",
            B,
            vec![Remove("hidden_size")],
            "config: config.json has no `hidden_size` (required)",
        ),
        case(
            "a multimodal config with text_config a string",
            B,
            vec![SetRoot("text_config", json!("gemma4_text"))],
            "config: config.json `text_config` is \"gemma4_text\", expected an object",
        ),
    ];
    for fixture in [A, B] {
        for key in DIFFERS {
            cases.push(case(
                &format!("no {key}"),
                fixture,
                vec![Remove(key)],
                &format!(
                    "config: config.json has no `{key}` (required: transformers and mlx-lm \
                     default it differently)"
                ),
            ));
        }
    }
    cases
}

#[test]
fn the_fixture_configs_parse() {
    for name in [A, B, "a-bf16", "a-q4", "b-bf16", "b-q4"] {
        let text = std::fs::read_to_string(fixture(name).join("config.json")).unwrap();
        Config::from_json(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn bad_configs_give_errors_naming_the_problem() {
    let mut failures = Vec::new();
    for (what, text) in [
        ("not JSON", "{\"model_type\": \"gemma4_text\","),
        ("empty", ""),
    ] {
        let r = expect_error(what, "config: config.json is not valid JSON: ", || {
            Config::from_json(text)
        });
        failures.extend(r.err());
    }
    let r = expect_error(
        "a JSON list",
        "config: config.json has no `model_type`",
        || Config::from_json("[1, 2]"),
    );
    failures.extend(r.err());
    for c in config_cases() {
        let text = edited(c.fixture, &c.edits).to_string();
        let r = expect_error(&c.what, &c.error, || Config::from_json(&text));
        failures.extend(r.err());
    }
    report(failures);
}
