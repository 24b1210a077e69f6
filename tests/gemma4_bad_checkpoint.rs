//! Checkpoints that contradict their config: errors naming the tensor and both shapes.
//! (see tests/gemma4_bad_input/mod.rs for how the inputs are made).

mod common;
mod gemma4_bad_input;
mod gemma4_common;
use gemma4_bad_input::*;
use serde_json::json;

// ---------------------------------------------------------------------------------------------
// The checkpoint against its config.

struct LoadCase {
    what: String,
    /// The config's text (None: no config.json).
    config: Option<String>,
    files: Files,
    error: String,
}

fn load_cases() -> Vec<LoadCase> {
    use Edit::*;
    use TensorEdit::*;
    let cfg = |name: &str, edits: &[Edit]| Some(edited(name, edits).to_string());
    let plain = |name: &str| cfg(name, &[]);
    let mk = |what: &str, config: Option<String>, files: Files, error: &str| LoadCase {
        what: what.to_string(),
        config,
        files,
        error: error.to_string(),
    };
    vec![
        mk(
            "a-f32: no config.json",
            None,
            Files::Fixture(A),
            "config.json: No such file",
        ),
        mk(
            "a-f32: no checkpoint",
            plain(A),
            Files::Nothing,
            "no model.safetensors or model.safetensors.index.json found",
        ),
        mk(
            "a-f32: model.safetensors is not safetensors",
            plain(A),
            Files::Bytes(b"not a safetensors file".to_vec()),
            "safetensors file `model.safetensors`: ",
        ),
        mk(
            "a-f32: a layer without q_proj",
            plain(A),
            Files::Bytes(edited_tensors(
                A,
                &[Omit("model.layers.1.self_attn.q_proj.weight")],
            )),
            "the checkpoint has no tensor `model.layers.1.self_attn.q_proj.weight`",
        ),
        mk(
            "a-f32: a layer without k_norm",
            plain(A),
            Files::Bytes(edited_tensors(
                A,
                &[Omit("model.layers.3.self_attn.k_norm.weight")],
            )),
            "the checkpoint has no tensor `model.layers.3.self_attn.k_norm.weight`",
        ),
        mk(
            "a-f32: no per_layer_projection_norm",
            plain(A),
            Files::Bytes(edited_tensors(
                A,
                &[Omit("model.per_layer_projection_norm.weight")],
            )),
            "the checkpoint has no tensor `model.per_layer_projection_norm.weight`",
        ),
        mk(
            "a-f32: no embedding",
            plain(A),
            Files::Bytes(edited_tensors(A, &[Omit("model.embed_tokens.weight")])),
            "the checkpoint has no tensor `embed_tokens.weight (under model., \
             model.language_model. or language_model.model.)`",
        ),
        mk(
            "b-f32: a sliding layer without v_proj",
            plain(B),
            Files::Bytes(edited_tensors(
                B,
                &[Omit(
                    "model.language_model.layers.4.self_attn.v_proj.weight",
                )],
            )),
            "the checkpoint has no tensor `model.language_model.layers.4.self_attn.v_proj.weight`",
        ),
        mk(
            "a-f32: untied embeddings and no lm_head",
            cfg(A, &[Set("tie_word_embeddings", json!(false))]),
            Files::Fixture(A),
            "the checkpoint has no tensor `lm_head.weight`",
        ),
        mk(
            "a-f32: num_kv_shared_layers 1 where the checkpoint shares 2",
            cfg(A, &[Set("num_kv_shared_layers", json!(1))]),
            Files::Fixture(A),
            "the checkpoint has no tensor `model.layers.4.self_attn.k_proj.weight`",
        ),
        mk(
            "a-f32: 2 heads where q_proj has 4",
            cfg(A, &[Set("num_attention_heads", json!(2))]),
            Files::Fixture(A),
            "tensor `model.layers.0.self_attn.q_proj.weight` has shape [256, 128]; the config \
             implies [128, 128]",
        ),
        mk(
            "a-f32: hidden_size 192",
            cfg(A, &[Set("hidden_size", json!(192))]),
            Files::Fixture(A),
            "tensor `model.embed_tokens.weight` has shape [512, 128]; the config implies \
             [512, 192]",
        ),
        mk(
            "a-f32: vocab_size 1024",
            cfg(
                A,
                &[
                    Set("vocab_size", json!(1024)),
                    Set("vocab_size_per_layer_input", json!(1024)),
                ],
            ),
            Files::Fixture(A),
            "tensor `model.embed_tokens.weight` has shape [512, 128]; the config implies \
             [1024, 128]",
        ),
        mk(
            "a-f32: no double-wide MLP",
            cfg(A, &[Set("use_double_wide_mlp", json!(false))]),
            Files::Fixture(A),
            "tensor `model.layers.4.mlp.gate_proj.weight` has shape [512, 128]; the config \
             implies [256, 128]",
        ),
        mk(
            "a-f32: hidden_size_per_layer_input 8",
            cfg(A, &[Set("hidden_size_per_layer_input", json!(8))]),
            Files::Fixture(A),
            "tensor `model.embed_tokens_per_layer.weight` has shape [512, 96]; the config \
             implies [512, 48]",
        ),
        mk(
            "b-f32: 2 full-layer KV heads where k_proj has 1",
            cfg(B, &[Set("num_global_key_value_heads", json!(2))]),
            Files::Fixture(B),
            "tensor `model.language_model.layers.2.self_attn.k_proj.weight` has shape \
             [128, 128]; the config implies [256, 128]",
        ),
        mk(
            "a-f32: a per-layer embedding twice as wide",
            plain(A),
            Files::Bytes(edited_tensors(
                A,
                &[Reshape(
                    "model.embed_tokens_per_layer.weight",
                    vec![512, 192],
                )],
            )),
            "tensor `model.embed_tokens_per_layer.weight` has shape [512, 192]; the config \
             implies [512, 96]",
        ),
        mk(
            "a-f32: a per-layer embedding with fewer rows",
            plain(A),
            Files::Bytes(edited_tensors(
                A,
                &[Reshape(
                    "model.embed_tokens_per_layer.weight",
                    vec![256, 96],
                )],
            )),
            "tensor `model.embed_tokens_per_layer.weight` has shape [256, 96]; the config \
             implies [512, 96]",
        ),
        mk(
            "a-f32: a short final norm",
            plain(A),
            Files::Bytes(edited_tensors(A, &[Reshape("model.norm.weight", vec![64])])),
            "tensor `model.norm.weight` has shape [64]; the config implies [128]",
        ),
        mk(
            "a-f32: a final norm in f64",
            plain(A),
            Files::Bytes(edited_tensors(A, &[ToF64("model.norm.weight")])),
            "tensor `model.norm.weight` in `model.safetensors`: unsupported dtype F64",
        ),
        mk(
            "a-f32: a layer_scalar of two values",
            plain(A),
            Files::Bytes(edited_tensors(
                A,
                &[Reshape("model.layers.0.layer_scalar", vec![2])],
            )),
            "tensor `model.layers.0.layer_scalar` has shape [2]; the config implies [1]",
        ),
        mk(
            "a-f32: a 3-D q_proj",
            plain(A),
            Files::Bytes(edited_tensors(
                A,
                &[Reshape(
                    "model.layers.0.self_attn.q_proj.weight",
                    vec![256, 128, 1],
                )],
            )),
            "tensor `model.layers.0.self_attn.q_proj.weight`: expected a 2-D tensor, found \
             shape [256, 128, 1]",
        ),
        mk(
            "a-q4: no quantization entry",
            cfg(
                "a-q4",
                &[Remove("quantization"), Remove("quantization_config")],
            ),
            Files::Fixture("a-q4"),
            "`model.embed_tokens` is quantized (has .scales/.biases) but no quantization \
             config covers it",
        ),
    ]
}

/// The checks refuse none of the fixtures as they are.
#[test]
fn the_fixture_checkpoints_load() {
    let Some(gpu) = common::gpu() else { return };
    for name in [A, B, "a-bf16", "a-q4", "b-bf16", "b-q4"] {
        if let Err(e) = load_dir(gpu, &fixture(name)) {
            panic!("{name}: {e}");
        }
    }
}

#[test]
fn checkpoints_that_contradict_their_config_give_errors_naming_the_tensor() {
    let Some(gpu) = common::gpu() else { return };
    let mut failures = Vec::new();
    for (i, c) in load_cases().into_iter().enumerate() {
        let dir = ModelDir::new(&format!("load-{i}"), c.config.as_deref(), c.files);
        let r = expect_error(&c.what, &c.error, || load_dir(gpu, &dir.0));
        failures.extend(r.err());
    }
    report(failures);
}
