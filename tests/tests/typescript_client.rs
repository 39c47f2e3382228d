//! The TypeScript client library (`clients/typescript`) checked with the rest of the suite:
//! strict types, the browser bundle and the demo page (games/rooms/static/play.html, which
//! inlines the package) against fresh builds of their sources, and its own tests (the
//! codec against PROTOCOL.md's vectors, the core on a fake clock, and plays and faults against
//! this build of the server binary), with Node 20 and npm.

use std::path::PathBuf;
use std::process::Command;

use system_tests::process::game_server_binary;
use system_tests::{has_tool, in_ci, need};

fn package() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("clients")
        .join("typescript")
}

/// Runs `npm args` in the package; panics with its output unless it succeeds.
fn npm(args: &[&str]) {
    let output = Command::new("npm")
        .args(args)
        .current_dir(package())
        .env("GAME_SERVER_BIN", game_server_binary())
        .env("CI", if in_ci() { "true" } else { "" })
        .output()
        .expect("run npm");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // The summary the test runner prints, for the log.
    for line in text.lines().filter(|l| l.starts_with("# ")) {
        println!("npm {}: {line}", args.join(" "));
    }
    assert!(
        output.status.success(),
        "npm {} failed:\n{text}",
        args.join(" ")
    );
}

#[test]
#[cfg_attr(not(all(has_node, has_npm)), ignore = "needs Node 20 and npm")]
fn the_typescript_client_typechecks_bundles_reproducibly_and_passes_its_tests() {
    need(has_tool("node") && has_tool("npm"), "Node 20 and npm");
    if !package().join("node_modules").exists() {
        // .ci/run installs them first; a fresh checkout installs them here, from the lockfile.
        npm(&["ci", "--no-audit", "--no-fund"]);
    }
    npm(&["run", "typecheck"]);
    npm(&["run", "check-bundle"]);
    npm(&["run", "check-page"]);
    npm(&["test"]);
}
