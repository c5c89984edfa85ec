//! With the `torch` feature: an rpath to libtorch's `lib/` (from torch-sys, `DEP_TCH_LIBTORCH_LIB`)
//! so the `eddy` binary and its tests run without `LD_LIBRARY_PATH`.

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
}
