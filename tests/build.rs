//! Generates the server side of the Agones SDK's gRPC API from the protos of the very `agones`
//! crate the game server's client is built from, for the fake SDK server in
//! tests/tests/agones.rs (Agones' own SDK server needs a Kubernetes cluster).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../Cargo.lock");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("manifest dir"))
        .join("..")
        .join("Cargo.toml");
    let target = std::env::var("TARGET").expect("target");
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--filter-platform",
            &target,
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .output()
        .expect("run cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("cargo metadata JSON");
    let agones = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "agones")
        .and_then(|p| p["manifest_path"].as_str())
        .map(PathBuf::from)
        .expect("the agones package in the dependency graph");
    let proto = agones
        .parent()
        .expect("the agones crate's directory")
        .join("proto");
    tonic_build::configure()
        .build_client(false)
        .build_server(true)
        .compile_protos(
            &[
                proto.join("sdk/sdk.proto"),
                proto.join("sdk/beta/beta.proto"),
            ],
            &[
                proto.join("googleapis"),
                proto.join("grpc-gateway"),
                proto.join("sdk"),
                proto.join("sdk/beta"),
            ],
        )
        .expect("compile the Agones SDK protos");
}
