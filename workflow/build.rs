//! Generates the gRPC serving code from `proto/serving.proto` with `protox` (a pure-Rust proto
//! compiler: no `protoc` binary needed) and `tonic-prost-build`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/serving.proto");
    let fds = protox::compile(["proto/serving.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
