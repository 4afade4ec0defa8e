//! Typed gRPC clients for the bridge's interop tests: generated at build time from the `.proto`
//! files oxrmi emits for the test interfaces (kept in `proto/`; a test checks they are exactly
//! what oxrmi emits today), compiled with protox, so no `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "oxrmi/test/counter.proto",
        "oxrmi/test/bank.proto",
        "oxrmi/test/account.proto",
        "oxrmi/test/who_am_i.proto",
        "oxrmi/registry.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed=proto/{f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(false)
        .compile_fds(fds)?;
    Ok(())
}
