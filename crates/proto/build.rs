//! Compiles `proto/apparate/v1/*.proto` with the pure-Rust `protox` compiler,
//! so no system `protoc` is ever needed.

use std::{env, fs, path::PathBuf};

use prost::Message;

const PROTOS: &[&str] = &["apparate/v1/inference.proto", "apparate/v1/control.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(PROTOS, ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    // Served by gRPC reflection so grpcurl works without the .proto files.
    fs::write(out.join("apparate_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
