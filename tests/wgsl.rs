//! Shader checks without a GPU: every `.wgsl` file under `wgsl/` (the directory is enumerated,
//! so new files are covered automatically) parses with naga, validates with the capabilities of
//! a WebGPU device without optional features (no shader-f16, no subgroups: [`core_caps`]) and
//! with all of them, and,
//! for every value of its `override` constants the ops use, translates to Metal Shading Language
//! and to SPIR-V. Also: the constants of the numerical contract agree between the WGSL and the
//! Rust planner, and every file is a kernel the ops crate compiles.

use naga::back::{msl, spv};
use naga::valid::{Capabilities, ValidationFlags, Validator};
use naga::{Expression, Literal, Module, ShaderStage};
use std::path::PathBuf;

/// `(file name, source)` of every `.wgsl` file in `wgsl/`, sorted by name.
fn wgsl_files() -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("wgsl");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wgsl"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no .wgsl file found in {}",
        dir.display()
    );
    files
}

/// What wgpu grants a WebGPU-compliant adapter with no optional feature: naga's defaults plus
/// `SHADER_FLOAT16_IN_FLOAT32` (`unpack2x16float` etc., core WGSL builtins that naga gates only
/// for downlevel GL targets; wgpu sets it from the `SHADER_F16_IN_F32` downlevel flag, see
/// `wgpu_naga_bridge::features_to_naga_capabilities`). Notably absent: `SHADER_FLOAT16` (the
/// `f16` extension) and `SUBGROUP`.
fn core_caps() -> Capabilities {
    Capabilities::default() | Capabilities::SHADER_FLOAT16_IN_FLOAT32
}

fn parse(name: &str, src: &str) -> Module {
    naga::front::wgsl::parse_str(src)
        .unwrap_or_else(|e| panic!("{name} does not parse:\n{}", e.emit_to_string(src)))
}

fn validate(name: &str, src: &str, module: &Module, caps: Capabilities) -> naga::valid::ModuleInfo {
    Validator::new(ValidationFlags::all(), caps)
        .validate(module)
        .unwrap_or_else(|e| {
            panic!(
                "{name} does not validate with {caps:?}:\n{}",
                e.emit_to_string(src)
            )
        })
}

/// The values each override takes in the ops crate; an override not listed keeps its default
/// (and must have one).
fn override_values(name: &str) -> Vec<f64> {
    match name {
        "D" => onepath::ops::sdpa::HEAD_DIMS
            .iter()
            .map(|&d| d as f64)
            .collect(),
        "KV_F16" | "MIXED" => vec![0.0, 1.0],
        _ => vec![],
    }
}

/// Every combination of override values for `module`.
fn override_sets(module: &Module) -> Vec<Vec<(String, f64)>> {
    let mut sets = vec![vec![]];
    for (_, o) in module.overrides.iter() {
        let name = o.name.clone().expect("overrides are named");
        let values = override_values(&name);
        if values.is_empty() {
            assert!(
                o.init.is_some(),
                "override {name} has no default and no test value"
            );
            continue;
        }
        let mut next = Vec::new();
        for s in &sets {
            for &v in &values {
                let mut s = s.clone();
                s.push((name.clone(), v));
                next.push(s);
            }
        }
        sets = next;
    }
    sets
}

fn compute_entry_points(module: &Module) -> Vec<String> {
    let eps: Vec<String> = module
        .entry_points
        .iter()
        .filter(|e| e.stage == ShaderStage::Compute)
        .map(|e| e.name.clone())
        .collect();
    assert!(!eps.is_empty(), "no compute entry point");
    eps
}

#[test]
fn every_shader_parses_and_validates() {
    for (name, src) in wgsl_files() {
        let module = parse(&name, &src);
        validate(&name, &src, &module, core_caps());
        validate(&name, &src, &module, Capabilities::all());
        compute_entry_points(&module);
    }
}

#[test]
fn every_shader_translates_to_msl_and_spirv() {
    for (name, src) in wgsl_files() {
        let module = parse(&name, &src);
        let info = validate(&name, &src, &module, core_caps());
        let mut translated = 0;
        for ep in compute_entry_points(&module) {
            for set in override_sets(&module) {
                translated += 1;
                let what = format!("{name} `{ep}` with {set:?}");
                let mut constants = naga::back::PipelineConstants::default();
                for (k, v) in &set {
                    constants.insert(k.clone(), *v);
                }
                let (m, i) = naga::back::pipeline_constants::process_overrides(
                    &module,
                    &info,
                    Some((ShaderStage::Compute, &ep)),
                    &constants,
                )
                .unwrap_or_else(|e| panic!("{what}: overrides: {e}"));
                // Every override is now a constant holding the value given.
                assert!(
                    !m.global_expressions
                        .iter()
                        .any(|(_, e)| matches!(e, Expression::Override(_))),
                    "{what}: override expressions left after processing"
                );
                for (k, v) in &set {
                    assert_eq!(
                        const_f64(&m, k),
                        *v,
                        "{what}: value of {k} after processing"
                    );
                }

                let msl_opts = msl::Options {
                    lang_version: (2, 0),
                    ..Default::default()
                };
                let msl_pipe = msl::PipelineOptions {
                    entry_point: Some((ShaderStage::Compute, ep.clone())),
                    ..Default::default()
                };
                let (text, _) = msl::write_string(&m, &i, &msl_opts, &msl_pipe)
                    .unwrap_or_else(|e| panic!("{what}: MSL: {e:?}"));
                assert!(
                    text.contains("kernel void"),
                    "{what}: no MSL kernel in the output"
                );

                let spv_pipe = spv::PipelineOptions {
                    shader_stage: ShaderStage::Compute,
                    entry_point: ep.clone(),
                };
                let words = spv::write_vec(&m, &i, &spv::Options::default(), Some(&spv_pipe))
                    .unwrap_or_else(|e| panic!("{what}: SPIR-V: {e:?}"));
                assert_eq!(
                    words.first(),
                    Some(&0x0723_0203),
                    "{what}: SPIR-V magic number"
                );
            }
        }
        eprintln!("{name}: {translated} specialisations translated to MSL and SPIR-V");
        assert!(translated > 0);
    }
}

/// The u32 value of the module-scope `const` called `name`.
fn const_u32(module: &Module, name: &str) -> u32 {
    let v = const_f64(module, name);
    assert!(
        v >= 0.0 && v.fract() == 0.0,
        "const {name} = {v} is not a u32"
    );
    v as u32
}

/// The value of the module-scope constant `name` (u32, i32, f32 or bool) as f64.
fn const_f64(module: &Module, name: &str) -> f64 {
    let (_, c) = module
        .constants
        .iter()
        .find(|(_, c)| c.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no const {name}"));
    match module.global_expressions[c.init] {
        Expression::Literal(Literal::U32(v)) => f64::from(v),
        Expression::Literal(Literal::I32(v)) => f64::from(v),
        Expression::Literal(Literal::F32(v)) => f64::from(v),
        Expression::Literal(Literal::Bool(v)) => f64::from(u8::from(v)),
        ref e => panic!("const {name} is {e:?}, expected a scalar literal"),
    }
}

#[test]
fn chunk_and_group_constants_match_the_planner() {
    let (name, src) = wgsl_files()
        .into_iter()
        .find(|(n, _)| n == "sdpa_chunk.wgsl")
        .expect("wgsl/sdpa_chunk.wgsl");
    let module = parse(&name, &src);
    assert_eq!(
        const_u32(&module, "CHUNK"),
        onepath::ops::sdpa::CHUNK,
        "CHUNK"
    );
    assert_eq!(
        const_u32(&module, "ROWS") as usize,
        onepath::ops::sdpa::GROUP_ROWS,
        "ROWS"
    );
    assert_eq!(
        const_u32(&module, "GROUP_WORDS") as usize,
        onepath::ops::sdpa::GROUP_WORDS,
        "GROUP_WORDS"
    );
    for file in ["sdpa_chunk.wgsl", "sdpa_chunk_row.wgsl"] {
        let (name, src) = wgsl_files()
            .into_iter()
            .find(|(n, _)| n == file)
            .expect("the chunk kernels");
        assert_eq!(
            const_u32(&parse(&name, &src), "PAGE"),
            onepath::ops::sdpa::PAGE_KEYS,
            "PAGE in {file}"
        );
    }
}

/// The quantized GEMV kernel's rows of x per workgroup are the host's (it sizes the grid with
/// them): the override's default (the host passes every plan's value, `QPlan::mt`).
#[test]
fn matmul_constants_match_the_host() {
    let module = |file: &str| {
        let (name, src) = wgsl_files()
            .into_iter()
            .find(|(n, _)| n == file)
            .unwrap_or_else(|| panic!("wgsl/{file}"));
        parse(&name, &src)
    };
    let q = module("qmatmul.wgsl");
    let (_, o) = q
        .overrides
        .iter()
        .find(|(_, o)| o.name.as_deref() == Some("MT"))
        .expect("qmatmul.wgsl: override MT");
    let init = o.init.expect("override MT has a default");
    assert!(
        matches!(q.global_expressions[init], Expression::Literal(Literal::U32(v)) if v as usize == onepath::ops::qmm::MT),
        "qmatmul.wgsl: MT's default is not the host's MT"
    );
}

/// The tiled matmul's tile and the combine step's grid are the host's (it sizes the grids and
/// the scratch planes with them).
#[test]
fn tiled_matmul_constants_match_the_host() {
    use onepath::ops::qmm;
    let find = |file: &str| {
        let (name, src) = wgsl_files()
            .into_iter()
            .find(|(n, _)| n == file)
            .unwrap_or_else(|| panic!("wgsl/{file}"));
        parse(&name, &src)
    };
    for file in ["qmatmul_tiled.wgsl", "matmul_dense_tiled.wgsl"] {
        let tiled = find(file);
        assert_eq!(const_u32(&tiled, "BM") as usize, qmm::TILE_M, "{file}: BM");
        assert_eq!(const_u32(&tiled, "BN") as usize, qmm::TILE_N, "{file}: BN");
    }
    let combine = find("qmatmul_combine.wgsl");
    assert_eq!(const_u32(&combine, "WG") as usize, qmm::COMBINE_WG, "WG");
    assert_eq!(
        const_u32(&combine, "GRID_X") as usize,
        qmm::COMBINE_GRID_X,
        "GRID_X"
    );
}

/// Every file in `wgsl/` is compiled by the ops crate, from the file's current text.
#[test]
fn every_shader_is_a_registered_kernel() {
    for (name, src) in wgsl_files() {
        let k = onepath::ops::kernels::ALL
            .iter()
            .find(|k| format!("{}.wgsl", k.name) == name)
            .unwrap_or_else(|| panic!("{name} is not in onepath_ops::kernels::ALL"));
        assert_eq!(
            k.source, src,
            "{name}: the kernel's source differs from the file"
        );
    }
}
