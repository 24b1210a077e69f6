//! `shader-stats FILE.wgsl [NAME=VALUE ...] [--ir DIR]`: compiles one WGSL kernel the way wgpu
//! does for onepath (naga to SPIR-V, override constants applied, no run-time checks) and asks
//! the Vulkan driver, through VK_KHR_pipeline_executable_properties, what it made of it:
//! registers, shared memory, spills, ... as the driver names them. With `--ir DIR`, the
//! driver's internal representations (where it offers any) are written to DIR.
//!
//! A developer tool for tuning kernels on a real GPU; nothing in onepath depends on it.

use ash::{khr, vk};
use std::ffi::CString;
use std::process::ExitCode;

type R<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> R<()> {
    let mut args = std::env::args().skip(1);
    let file = args
        .next()
        .ok_or("usage: shader-stats FILE.wgsl [NAME=VALUE ...] [--ir DIR]")?;
    let mut constants = naga::back::PipelineConstants::default();
    let mut ir_dir = None;
    while let Some(a) = args.next() {
        if a == "--ir" {
            ir_dir = Some(args.next().ok_or("--ir needs a directory")?);
        } else {
            let (k, v) = a
                .split_once('=')
                .ok_or(format!("expected NAME=VALUE, got {a}"))?;
            constants.insert(k.to_string(), v.parse::<f64>()?);
        }
    }
    let spv = spirv(&std::fs::read_to_string(&file)?, &constants)?;
    let bindings = binding_kinds(&std::fs::read_to_string(&file)?)?;
    unsafe { stats(&spv, &bindings, ir_dir.as_deref()) }
}

/// SPIR-V for entry point `main` with the overrides applied, as wgpu builds it for a trusted
/// module (no bounds checks, no loop counters, no workgroup-memory zeroing).
fn spirv(src: &str, constants: &naga::back::PipelineConstants) -> R<Vec<u32>> {
    let module = naga::front::wgsl::parse_str(src).map_err(|e| e.emit_to_string(src))?;
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
    .validate(&module)?;
    let (module, info) = naga::back::pipeline_constants::process_overrides(
        &module,
        &info,
        Some((naga::ShaderStage::Compute, "main")),
        constants,
    )?;
    let options = naga::back::spv::Options {
        lang_version: (1, 3),
        bounds_check_policies: naga::proc::BoundsCheckPolicies {
            index: naga::proc::BoundsCheckPolicy::Unchecked,
            buffer: naga::proc::BoundsCheckPolicy::Unchecked,
            image_load: naga::proc::BoundsCheckPolicy::Unchecked,
            binding_array: naga::proc::BoundsCheckPolicy::Unchecked,
        },
        zero_initialize_workgroup_memory: naga::back::spv::ZeroInitializeWorkgroupMemoryMode::None,
        force_loop_bounding: false,
        ..Default::default()
    };
    let pipeline = naga::back::spv::PipelineOptions {
        shader_stage: naga::ShaderStage::Compute,
        entry_point: "main".into(),
    };
    Ok(naga::back::spv::write_vec(
        &module,
        &info,
        &options,
        Some(&pipeline),
    )?)
}

/// Descriptor type of each `@group(0) @binding(i)` (uniform or storage buffer), in order.
fn binding_kinds(src: &str) -> R<Vec<vk::DescriptorType>> {
    let module = naga::front::wgsl::parse_str(src).map_err(|e| e.emit_to_string(src))?;
    let mut kinds = Vec::new();
    for (_, g) in module.global_variables.iter() {
        if let Some(b) = &g.binding {
            let ty = match g.space {
                naga::AddressSpace::Uniform => vk::DescriptorType::UNIFORM_BUFFER,
                naga::AddressSpace::Storage { .. } => vk::DescriptorType::STORAGE_BUFFER,
                _ => return Err(format!("binding {} is not a buffer", b.binding).into()),
            };
            let i = b.binding as usize;
            if kinds.len() <= i {
                kinds.resize(i + 1, vk::DescriptorType::STORAGE_BUFFER);
            }
            kinds[i] = ty;
        }
    }
    Ok(kinds)
}

unsafe fn stats(spv: &[u32], kinds: &[vk::DescriptorType], ir_dir: Option<&str>) -> R<()> {
    let entry = unsafe { ash::Entry::load()? };
    let app = vk::ApplicationInfo::default().api_version(vk::API_VERSION_1_3);
    let inst = unsafe {
        entry.create_instance(
            &vk::InstanceCreateInfo::default().application_info(&app),
            None,
        )?
    };
    let pds = unsafe { inst.enumerate_physical_devices()? };
    let pd = *pds
        .iter()
        .max_by_key(|&&pd| {
            let t = unsafe { inst.get_physical_device_properties(pd) }.device_type;
            (t == vk::PhysicalDeviceType::DISCRETE_GPU) as u8
        })
        .ok_or("no Vulkan device")?;
    let props = unsafe { inst.get_physical_device_properties(pd) };
    println!("device: {:?}", props.device_name_as_c_str()?);
    let ext = khr::pipeline_executable_properties::NAME;
    let has = unsafe { inst.enumerate_device_extension_properties(pd)? }
        .iter()
        .any(|e| e.extension_name_as_c_str() == Ok(ext));
    if !has {
        return Err(format!("the driver does not offer {ext:?}").into());
    }
    let mut feat = vk::PhysicalDevicePipelineExecutablePropertiesFeaturesKHR::default()
        .pipeline_executable_info(true);
    let prio = [1.0];
    let qci = [vk::DeviceQueueCreateInfo::default()
        .queue_family_index(0)
        .queue_priorities(&prio)];
    let names = [ext.as_ptr()];
    let dci = vk::DeviceCreateInfo::default()
        .queue_create_infos(&qci)
        .enabled_extension_names(&names)
        .push_next(&mut feat);
    let dev = unsafe { inst.create_device(pd, &dci, None)? };
    let pe = khr::pipeline_executable_properties::Device::new(&inst, &dev);

    let sm = unsafe {
        dev.create_shader_module(&vk::ShaderModuleCreateInfo::default().code(spv), None)?
    };
    let b: Vec<_> = kinds
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            vk::DescriptorSetLayoutBinding::default()
                .binding(i as u32)
                .descriptor_type(t)
                .descriptor_count(1)
                .stage_flags(vk::ShaderStageFlags::COMPUTE)
        })
        .collect();
    let dsl = unsafe {
        dev.create_descriptor_set_layout(
            &vk::DescriptorSetLayoutCreateInfo::default().bindings(&b),
            None,
        )?
    };
    let layouts = [dsl];
    let pl = unsafe {
        dev.create_pipeline_layout(
            &vk::PipelineLayoutCreateInfo::default().set_layouts(&layouts),
            None,
        )?
    };
    let name = CString::new("main")?;
    let stage = vk::PipelineShaderStageCreateInfo::default()
        .stage(vk::ShaderStageFlags::COMPUTE)
        .module(sm)
        .name(&name);
    let mut flags = vk::PipelineCreateFlags::CAPTURE_STATISTICS_KHR;
    if ir_dir.is_some() {
        flags |= vk::PipelineCreateFlags::CAPTURE_INTERNAL_REPRESENTATIONS_KHR;
    }
    let cpci = vk::ComputePipelineCreateInfo::default()
        .stage(stage)
        .layout(pl)
        .flags(flags);
    let p = unsafe {
        dev.create_compute_pipelines(vk::PipelineCache::null(), &[cpci], None)
            .map_err(|(_, e)| e)?[0]
    };
    let execs = unsafe {
        pe.get_pipeline_executable_properties(&vk::PipelineInfoKHR::default().pipeline(p))?
    };
    for (i, e) in execs.iter().enumerate() {
        println!(
            "executable {i}: {:?} (subgroup size {})",
            e.name_as_c_str()?,
            e.subgroup_size
        );
        let info = vk::PipelineExecutableInfoKHR::default()
            .pipeline(p)
            .executable_index(i as u32);
        for s in unsafe { pe.get_pipeline_executable_statistics(&info)? } {
            let v = unsafe {
                match s.format {
                    vk::PipelineExecutableStatisticFormatKHR::BOOL32 => format!("{}", s.value.b32),
                    vk::PipelineExecutableStatisticFormatKHR::INT64 => format!("{}", s.value.i64),
                    vk::PipelineExecutableStatisticFormatKHR::UINT64 => format!("{}", s.value.u64),
                    _ => format!("{}", s.value.f64),
                }
            };
            println!("  {:<40} {v}", s.name_as_c_str()?.to_string_lossy());
        }
        if let Some(dir) = ir_dir {
            ir(&pe, &info, dir, i)?;
        }
    }
    Ok(())
}

/// Writes the driver's internal representations of executable `i` to DIR.
fn ir(
    pe: &khr::pipeline_executable_properties::Device,
    info: &vk::PipelineExecutableInfoKHR,
    dir: &str,
    i: usize,
) -> R<()> {
    let mut reps = unsafe { pe.get_pipeline_executable_internal_representations(info)? };
    let mut bufs: Vec<Vec<u8>> = reps.iter().map(|r| vec![0u8; r.data_size]).collect();
    for (r, b) in reps.iter_mut().zip(bufs.iter_mut()) {
        r.p_data = b.as_mut_ptr().cast();
    }
    // Second call fills the buffers (the ash wrapper only sizes them, so call the raw fn).
    let mut n = reps.len() as u32;
    let res = unsafe {
        (pe.fp().get_pipeline_executable_internal_representations_khr)(
            pe.device(),
            info,
            &mut n,
            reps.as_mut_ptr(),
        )
    };
    if res != vk::Result::SUCCESS {
        return Err(format!("internal representations: {res:?}").into());
    }
    std::fs::create_dir_all(dir)?;
    for (j, (r, b)) in reps.iter().zip(&bufs).enumerate() {
        let name = r
            .name_as_c_str()?
            .to_string_lossy()
            .replace(['/', ' '], "_");
        let path = format!("{dir}/exec{i}_{j}_{name}.txt");
        let end = if r.is_text == vk::TRUE {
            b.iter().position(|&c| c == 0).unwrap_or(b.len())
        } else {
            b.len()
        };
        std::fs::write(&path, &b[..end])?;
        println!("  wrote {path} ({} bytes)", end);
    }
    Ok(())
}
