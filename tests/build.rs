//! Generates the server side of the Agones SDK's gRPC API from the protos of the very `agones`
//! crate the game server's client is built from, for the fake SDK server in
//! tests/tests/agones.rs (Agones' own SDK server needs a Kubernetes cluster).
//!
//! And finds out which of the system tools and privileges some tests need this machine has:
//! each sets a `cfg` (`has_haproxy`, `is_root`, ...) that those tests are ignored without, so
//! that a test that cannot run here is reported as not run (`ignored`, with what it needs),
//! never as passed. In CI (`CI` set and not `false`) every tool `.ci/run` installs counts as
//! present: there a missing one fails its tests instead.

use std::path::PathBuf;
use std::process::Command;

/// The tools some tests need, and whether `.ci/run` installs them (in CI they are then taken as
/// present, and a missing one fails its tests).
const TOOLS: [(&str, bool); 15] = [
    ("chromium", true),
    ("docker-compose", true),
    ("haproxy", true),
    ("ip", true),
    ("kubectl", false),
    ("kubernetes-validate", true),
    ("nft", true),
    ("node", true),
    ("npm", true),
    ("prlimit", true),
    ("prometheus", true),
    ("promtool", true),
    ("python3", true),
    ("ss", true),
    ("tc", true),
];

fn main() {
    probe_prerequisites();
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

/// Sets `has_<tool>` for each tool found on the `PATH` and `is_root` when building as root.
fn probe_prerequisites() {
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
    println!("cargo:rerun-if-env-changed=CI");
    println!("cargo:rerun-if-env-changed=PATH");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .filter(|dir| dir.is_dir())
        .collect();
    // A tool installed later changes its directory: the probe runs again.
    for dir in &dirs {
        println!("cargo:rerun-if-changed={}", dir.display());
    }
    for (tool, installed_by_ci) in TOOLS {
        let cfg = format!("has_{}", tool.replace('-', "_"));
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        if (ci && installed_by_ci) || dirs.iter().any(|dir| dir.join(tool).is_file()) {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
    println!("cargo::rustc-check-cfg=cfg(is_root)");
    let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|uids| uids.split_whitespace().nth(1))
            == Some("0")
    });
    if ci || root {
        println!("cargo::rustc-cfg=is_root");
    }
}
