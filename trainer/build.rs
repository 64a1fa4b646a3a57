include!("../build/link_libtorch.rs");

fn main() {
    link_libtorch();
    compile_aten_ops();
    compile_c10d_shim();
}

/// Where torch-sys found libtorch's headers: beside the libraries (the wheel's
/// torch/include, libtorch's include), or LIBTORCH_INCLUDE's include/ for a libtorch
/// outside Python that sets it. None when torch-sys said nothing of where libtorch is.
fn libtorch_include() -> Option<std::path::PathBuf> {
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB").ok()?;
    Some(match std::env::var("LIBTORCH_INCLUDE") {
        Ok(dir) if std::env::var_os("LIBTORCH_USE_PYTORCH").is_none() => {
            std::path::Path::new(&dir).join("include")
        }
        _ => std::path::Path::new(&lib).join("../include"),
    })
}

/// A C++ compiler set as torch-sys compiles its own C++ against `include`. The wheels
/// since torch 2.7 use the C++11 ABI; torch-sys reads the same variable for a libtorch
/// outside Python.
fn libtorch_cpp(include: &std::path::Path) -> cc::Build {
    let cxx11_abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={cxx11_abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT");
    build
}

/// Compiles trainer/aten/ (the ATen kernels plumb calls that tch does not bind: the
/// fused AdamW) and sets `cfg(plumb_fused_adamw)`; without libtorch's headers the
/// optimizer updates through tch's tensor ops instead.
fn compile_aten_ops() {
    println!("cargo:rerun-if-changed=aten");
    println!("cargo:rustc-check-cfg=cfg(plumb_fused_adamw)");
    let Some(include) = libtorch_include() else {
        return;
    };
    if !include.join("ATen/ops/_fused_adamw.h").exists() {
        println!("cargo:warning=this libtorch has no fused AdamW: plumb's optimizer uses tch's tensor ops");
        return;
    }
    libtorch_cpp(&include).file("aten/adamw.cpp").compile("plumb_aten");
    // After the archive, so that its references to ATen resolve (torch-sys links these
    // too, earlier).
    println!("cargo:rustc-link-search=native={}", std::env::var("DEP_TCH_LIBTORCH_LIB").unwrap_or_default());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
    println!("cargo:rustc-cfg=plumb_fused_adamw");
}

/// Compiles trainer/c10d/shim.cpp (plumb's binding to c10d) against the headers of the
/// libtorch torch-sys links, with torch-sys's own flags, and links libtorch_cpu, whose
/// c10d symbols the shim calls (torch-sys links it too; naming it here keeps the order),
/// then sets `cfg(plumb_c10d)`. A libtorch without c10d's headers still builds plumb,
/// which then trains in one process only and says so when asked for more
/// (src/distributed.rs).
fn compile_c10d_shim() {
    println!("cargo:rerun-if-changed=c10d");
    println!("cargo:rerun-if-env-changed=LIBTORCH_INCLUDE");
    println!("cargo:rerun-if-env-changed=LIBTORCH_USE_PYTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    println!("cargo:rustc-check-cfg=cfg(plumb_c10d)");
    let (Ok(lib), Some(include)) = (std::env::var("DEP_TCH_LIBTORCH_LIB"), libtorch_include()) else {
        return;
    };
    let header = include.join("torch/csrc/distributed/c10d/ProcessGroupGloo.hpp");
    if !header.exists() {
        println!(
            "cargo:warning={} is missing: plumb builds without c10d and trains in one process only",
            header.display()
        );
        return;
    }
    let mut build = libtorch_cpp(&include);
    // Declarations of the gloo types ProcessGroupGloo.hpp names (c10d/gloo/README.md).
    build.include("c10d").define("USE_C10D_GLOO", None).file("c10d/shim.cpp");
    println!("cargo:rustc-check-cfg=cfg(plumb_nccl)");
    let nccl = nccl_includes(&include, std::path::Path::new(&lib));
    if let Some(dirs) = &nccl {
        for dir in dirs {
            build.include(dir);
        }
        build.define("USE_C10D_NCCL", None).define("PLUMB_NCCL", None);
    }
    build.compile("plumb_c10d");
    if nccl.is_some() {
        // ProcessGroupNCCL is in libtorch_cuda, which link_libtorch links as a whole.
        println!("cargo:rustc-link-lib=dylib=torch_cuda");
        println!("cargo:rustc-cfg=plumb_nccl");
    }
    println!("cargo:rustc-link-search=native={lib}");
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
    println!("cargo:rustc-cfg=plumb_c10d");
}

/// The include directories ProcessGroupNCCL.hpp needs beyond libtorch's: CUDA's runtime
/// headers (with `crt/` and CCCL's `nv/target`) and NCCL's `nccl.h`. They come from the
/// wheel's NVIDIA packages beside torch (nvidia/cu13, nvidia/nccl; scripts/bootstrap
/// installs the header-only nvidia-cuda-crt and nvidia-cuda-cccl), else from `CUDA_HOME`
/// and `NCCL_INCLUDE_DIR`. None, and the shim uses Gloo alone, when libtorch has no CUDA
/// library or a header is missing.
fn nccl_includes(include: &std::path::Path, lib: &std::path::Path) -> Option<Vec<std::path::PathBuf>> {
    println!("cargo:rerun-if-env-changed=CUDA_HOME");
    println!("cargo:rerun-if-env-changed=NCCL_INCLUDE_DIR");
    if !lib.join("libtorch_cuda.so").exists()
        || !include.join("torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp").exists()
    {
        return None;
    }
    let nvidia = include.join("../../nvidia");
    let from_env =
        |name: &str, tail: &str| std::env::var_os(name).map(|d| std::path::PathBuf::from(d).join(tail));
    let first_with = |candidates: Vec<Option<std::path::PathBuf>>, file: &str| {
        candidates.into_iter().flatten().find(|dir| dir.join(file).exists())
    };
    let cuda = first_with(
        vec![
            Some(nvidia.join("cu13/include")),
            Some(nvidia.join("cuda_runtime/include")),
            from_env("CUDA_HOME", "include"),
        ],
        "crt/host_config.h",
    )?;
    let cccl = first_with(vec![Some(cuda.clone()), Some(cuda.join("cccl"))], "nv/target")?;
    let nccl =
        first_with(vec![Some(nvidia.join("nccl/include")), from_env("NCCL_INCLUDE_DIR", "")], "nccl.h")?;
    if !cuda.join("cuda_runtime_api.h").exists() {
        return None;
    }
    Some(vec![cuda, cccl, nccl])
}
