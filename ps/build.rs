//! Generates the gRPC code of `proto/eddy_ps.proto` with `protox` (a pure-Rust protobuf
//! compiler), so building needs no `protoc` binary.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/eddy_ps.proto");
    let fds = protox::compile(["eddy_ps.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
