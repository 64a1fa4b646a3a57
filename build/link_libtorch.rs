// Shared by the build scripts of every package whose binaries or tests link libtorch
// (included with `include!`, so there is one copy of this logic).
//
// torch-sys tells its direct dependents where libtorch lives (its `links = "tch"` key
// exports DEP_TCH_LIBTORCH_LIB). Two things are missing from what it links:
// - libtorch_cuda: nothing references its symbols directly, so the linker's default
//   `--as-needed` drops it and CUDA is then silently unavailable at run time;
// - an rpath, without which binaries need LD_LIBRARY_PATH to find libtorch.
fn link_libtorch() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    let lib = std::path::Path::new(&lib);
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
