//! Shared build script for every package that links libtorch (`build = "../../build-support/torch_rpath.rs"`).
//!
//! `torch-sys` (links = "tch") publishes its lib folder as `DEP_TCH_LIBTORCH_LIB` to
//! packages that depend on it directly. We turn that into
//! - an rpath, so binaries and tests run without `LD_LIBRARY_PATH`;
//! - `--no-as-needed -ltorch_cuda` when the CUDA build is present: nothing in our
//!   code references a CUDA symbol, so the linker would otherwise drop
//!   `libtorch_cuda.so` and `tch::Cuda::is_available()` would be false on a GPU machine.

use std::{env, path::Path};

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib) = env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    if Path::new(&lib).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-Wl,-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
