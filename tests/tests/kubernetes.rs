//! The Kubernetes manifests under deploy/kubernetes, validated offline: every Kubernetes object
//! against the API's schemas with `kubernetes-validate --strict` (the Agones kinds, which it does
//! not know, through the pod template they carry, wrapped as a Pod), the Agones fields against
//! what the server does, and the whole directory through `kubectl kustomize` where kubectl is
//! installed.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml_ng::Value;
use system_tests::need_tools;
use system_tests::process::{ScratchDir, run};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes")
}

fn load(file: &str) -> Value {
    let text = std::fs::read_to_string(dir().join(file)).expect("read the manifest");
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{file} is not YAML: {e}"))
}

/// Runs `kubernetes-validate --strict` on `path`; panics with its output unless it passed.
fn validate(path: &Path) {
    let ran = run(Command::new("kubernetes-validate")
        .arg("--strict")
        .arg(path));
    let text = format!("{}{}", ran.stdout, ran.stderr);
    assert!(
        ran.status.success() && text.contains("passed") && !text.contains("WARN"),
        "{}: {text}",
        path.display()
    );
}

#[test]
#[cfg_attr(
    not(has_kubernetes_validate),
    ignore = "needs kubernetes-validate (pip install kubernetes-validate)"
)]
fn the_manifests_validate_against_the_kubernetes_schemas() {
    need_tools(&["kubernetes-validate"], "pip install kubernetes-validate");
    validate(&dir().join("prometheus-scrape.yaml"));
    // The Fleet's pod template, as the Pod Agones makes of it.
    let fleet = load("fleet.yaml");
    let template = &fleet["spec"]["template"]["spec"]["template"];
    let mut pod: Value =
        serde_yaml_ng::from_str("apiVersion: v1\nkind: Pod\nmetadata:\n  name: game-server-pod\n")
            .expect("a Pod");
    pod["metadata"]["labels"] = template["metadata"]["labels"].clone();
    pod["metadata"]["annotations"] = template["metadata"]["annotations"].clone();
    pod["spec"] = template["spec"].clone();
    let pod = serde_yaml_ng::to_string(&pod).expect("serialize the Pod");
    let scratch = ScratchDir::new("kubernetes");
    let path = scratch.path().join("fleet-pod.yaml");
    std::fs::write(&path, pod).expect("write the Pod");
    validate(&path);
}

#[test]
fn the_fleet_matches_what_the_server_does_under_agones() {
    let fleet = load("fleet.yaml");
    let spec = &fleet["spec"]["template"]["spec"];
    assert_eq!(fleet["kind"], "Fleet");
    assert_eq!(spec["health"]["disabled"], false);
    assert_eq!(spec["eviction"]["safe"], "OnUpgrade");
    // The server keeps these two counters; their capacities are what it is configured with:
    // its defaults, or what the Fleet's environment sets.
    let defaults = game_engine::config::Config::default();
    let pod = &spec["template"]["spec"];
    let container = &pod["containers"][0];
    let env = container["env"].as_sequence().expect("env");
    let set = |name: &str| {
        env.iter()
            .find(|e| e["name"] == name)
            .and_then(|e| e["value"].as_str())
            .and_then(|v| v.parse::<u64>().ok())
    };
    let players = spec["counters"]["players"]["capacity"].as_u64();
    let rooms = spec["counters"]["rooms"]["capacity"].as_u64();
    assert_eq!(
        players,
        Some(
            set("GAMESERVER__SERVER__MAX_SESSIONS").unwrap_or(defaults.server.max_sessions as u64)
        )
    );
    assert_eq!(
        rooms,
        Some(set("GAMESERVER__ROOMS__MAX_ROOMS").unwrap_or(defaults.rooms.max_rooms as u64))
    );
    // The autoscaler counts spare rooms: a server full of players must not show spare rooms,
    // so rooms run out no later than sessions do (rooms of at least 10 players here).
    let (players, rooms) = (players.unwrap_or(0), rooms.unwrap_or(u64::MAX));
    assert!(
        rooms * 10 <= players,
        "{rooms} rooms of 10 is more than {players} sessions: full servers would look spare"
    );
    // Only the game port is exposed through Agones; the admin port never is.
    let ports = spec["ports"].as_sequence().expect("ports");
    assert_eq!(ports.len(), 1, "{ports:?}");
    assert_eq!(ports[0]["containerPort"].as_u64(), Some(7777));
    // The health checks must outlast the server's pings (agones.health_interval, 2 s).
    let period = spec["health"]["periodSeconds"].as_u64().expect("period");
    assert!(
        period >= 2 * defaults.agones.health_interval.as_secs(),
        "health.periodSeconds {period}"
    );
    // Kubernetes must give the drain its time before it kills the process.
    let grace = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("grace");
    let needed =
        (defaults.shutdown.drain_timeout + game_engine::Shutdown::EXIT_MARGIN).as_secs() + 5;
    assert!(
        grace >= needed,
        "terminationGracePeriodSeconds {grace} < {needed}"
    );
    assert!(
        env.iter()
            .any(|e| e["name"] == "GAMESERVER__AGONES__ENABLED" && e["value"] == "true"),
        "{env:?}"
    );
    let readiness = &container["readinessProbe"]["httpGet"];
    assert_eq!(readiness["path"], "/readyz");

    let autoscaler = load("fleetautoscaler.yaml");
    assert_eq!(autoscaler["spec"]["fleetName"], fleet["metadata"]["name"]);
    assert_eq!(autoscaler["spec"]["policy"]["type"], "Counter");
    assert_eq!(autoscaler["spec"]["policy"]["counter"]["key"], "rooms");

    let allocation = load("allocation.yaml");
    let selectors = allocation["spec"]["selectors"]
        .as_sequence()
        .expect("selectors");
    assert!(
        selectors
            .iter()
            .all(|s| { s["matchLabels"]["agones.dev/fleet"] == fleet["metadata"]["name"] })
    );
    assert!(
        selectors
            .iter()
            .any(|s| s["counters"]["players"]["minAvailable"].as_u64().is_some()),
        "an allocation chooses by the players counter"
    );
    // A draining server (labelled by the server through the SDK) is never chosen.
    assert!(
        selectors.iter().all(|s| {
            s["matchExpressions"].as_sequence().is_some_and(|rules| {
                rules.iter().any(|r| {
                    r["key"] == "agones.dev/sdk-draining" && r["operator"] == "DoesNotExist"
                })
            })
        }),
        "every selector excludes draining servers: {selectors:?}"
    );
}

#[test]
fn the_kustomization_applies_every_manifest_but_the_per_match_allocation() {
    let kustomization = load("kustomization.yaml");
    let resources: Vec<String> = kustomization["resources"]
        .as_sequence()
        .expect("resources")
        .iter()
        .filter_map(|r| r.as_str().map(str::to_owned))
        .collect();
    let mut manifests: Vec<String> = std::fs::read_dir(dir())
        .expect("deploy/kubernetes")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| {
            name.ends_with(".yaml") && name != "kustomization.yaml" && name != "allocation.yaml"
        })
        .collect();
    manifests.sort();
    let mut listed = resources.clone();
    listed.sort();
    assert_eq!(listed, manifests, "kustomization.yaml resources");
}

/// kubectl is not a Debian package: where it is installed, it builds the directory.
#[test]
#[cfg_attr(not(has_kubectl), ignore = "needs kubectl (not a Debian package)")]
fn kubectl_kustomize_builds_the_directory() {
    need_tools(&["kubectl"], "not a Debian package");
    let built = run(Command::new("kubectl").arg("kustomize").arg(dir())).expect_success();
    for kind in ["kind: Fleet", "kind: FleetAutoscaler", "kind: ConfigMap"] {
        assert!(
            built.contains(kind),
            "{kind} missing from the kustomization"
        );
    }
}
