include!("../build/link_libtorch.rs");

fn main() {
    link_libtorch();
    compile_c10d_shim();
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
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    // Where torch-sys found the headers: beside the libraries (the wheel's
    // torch/include, libtorch's include), or LIBTORCH_INCLUDE's include/ for a libtorch
    // outside Python that sets it.
    let include = match std::env::var("LIBTORCH_INCLUDE") {
        Ok(dir) if std::env::var_os("LIBTORCH_USE_PYTORCH").is_none() => {
            std::path::Path::new(&dir).join("include")
        }
        _ => std::path::Path::new(&lib).join("../include"),
    };
    let header = include.join("torch/csrc/distributed/c10d/ProcessGroupGloo.hpp");
    if !header.exists() {
        println!(
            "cargo:warning={} is missing: plumb builds without c10d and trains in one process only",
            header.display()
        );
        return;
    }
    // The wheels since torch 2.7 use the C++11 ABI; torch-sys reads the same variable
    // for a libtorch outside Python.
    let cxx11_abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        // Declarations of the gloo types ProcessGroupGloo.hpp names (c10d/gloo/README.md).
        .include("c10d")
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={cxx11_abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .define("USE_C10D_GLOO", None)
        .file("c10d/shim.cpp")
        .compile("plumb_c10d");
    println!("cargo:rustc-link-search=native={lib}");
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
    println!("cargo:rustc-cfg=plumb_c10d");
}
