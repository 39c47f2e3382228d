//! CI smoke: every workload at a tiny scale against the debug game-server and the baseline (and
//! mosquitto, where installed), so the harness cannot rot. It asserts that each workload produced
//! its figures, nothing about speed.
//!
//! Mosquitto's rows need the `mosquitto` package, Node's `ws` rows Node and the TypeScript
//! client's `npm ci`: without them they are skipped with a message, except under CI (`CI=true`),
//! where a missing peer fails the test (.ci/run installs both).

use std::path::PathBuf;

use bench::procs::{Binaries, Build};
use bench::report;
use bench::workloads::{Scale, WORKLOADS};

#[test]
fn every_workload_produces_its_figures() {
    let _ = bench::raise_fd_limit();
    let bins = Binaries::beside_current_exe(
        Some(PathBuf::from(env!("CARGO_BIN_EXE_baseline"))),
        Build::IfMissing,
    )
    .expect("server binaries");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let names: Vec<String> = WORKLOADS.iter().map(|w| (*w).to_owned()).collect();
    let (measures, errors) = runtime.block_on(bench::run_all(&names, &bins, &Scale::smoke(), 1, 1));
    assert!(errors.is_empty(), "workloads failed: {errors:#?}");
    let rows = report::summarize(&measures);
    for workload in [
        "1 hold",
        "2 detect",
        "3 storm",
        "4 throughput",
        "5 metrics",
        "6 memory",
        "7 rooms",
        "8 fanout",
        "9 burst",
        "10 transports",
    ] {
        assert!(
            rows.iter().any(|r| r.first.workload == workload),
            "no figure for {workload}"
        );
    }
    for row in &rows {
        assert!(
            row.ours.is_some(),
            "{} / {}: no figure for the game server",
            row.first.workload,
            row.first.metric
        );
        if matches!(
            row.first.goal,
            report::Goal::RatioAtLeast(_) | report::Goal::RatioAtMost(_)
        ) {
            // A tiny run can leave the baseline at exactly zero (no CPU tick in a second), and a
            // ratio to zero does not exist: the harness must still have measured the baseline.
            assert!(
                row.ratio.is_some() || row.baseline == Some(0.0),
                "{} / {}: no baseline figure to compare with",
                row.first.workload,
                row.first.metric
            );
        }
    }
    // Every session of the tiny runs joined and was reaped.
    let not_reaped = rows
        .iter()
        .find(|r| r.first.metric.contains("not reaped"))
        .and_then(|r| r.ours);
    assert_eq!(not_reaped, Some(0.0));
    let table = report::table(&rows);
    assert!(table.lines().count() >= rows.len() + 2, "{table}");
    let mosquitto_rows = rows
        .iter()
        .filter(|r| r.first.metric.contains("mosquitto"))
        .count();
    if bench::mqtt::mosquitto().is_some() {
        assert_eq!(
            mosquitto_rows, 7,
            "mosquitto is installed: its rows (hold, detect, and over TLS)\n{table}"
        );
        for row in rows.iter().filter(|r| r.first.metric.contains("mosquitto")) {
            assert!(
                row.baseline.is_some() && row.first.note.is_some(),
                "{}: no mosquitto figure or note",
                row.first.metric
            );
        }
        assert!(table.contains("mosquitto -c FILE"), "{table}");
    } else if std::env::var("CI").as_deref() == Ok("true") {
        panic!("mosquitto is not installed, and CI must measure it: apt-get install mosquitto");
    } else {
        eprintln!(
            "SKIPPED: mosquitto is not installed (apt-get install mosquitto): its rows were not measured"
        );
        assert_eq!(mosquitto_rows, 0);
    }
    let ws_rows: Vec<_> = rows
        .iter()
        .filter(|r| r.first.metric.contains("Node ws"))
        .collect();
    match bench::wspeer::available() {
        Ok(_) => {
            assert_eq!(ws_rows.len(), 2, "Node's ws is there: its rows\n{table}");
            for row in ws_rows {
                assert!(
                    row.baseline.is_some() && row.first.note.is_some(),
                    "{}: no ws figure or note",
                    row.first.metric
                );
            }
        }
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("the ws peer cannot run ({why}), and CI must measure it")
        }
        Err(why) => {
            eprintln!("SKIPPED: the ws peer cannot run ({why}): its rows were not measured");
            assert!(ws_rows.is_empty());
        }
    }
}

#[test]
fn the_results_section_is_replaced_between_the_markers() {
    let dir = std::env::temp_dir().join(format!("bench-markers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("BENCHMARKS.md");
    std::fs::write(&path, "# Title\n\nbefore\n").expect("write");
    report::write_between_markers(&path, "first").expect("append");
    report::write_between_markers(&path, "second").expect("replace");
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(text.starts_with("# Title\n\nbefore\n"), "{text}");
    assert!(
        text.contains(&format!("{}\nsecond\n{}", report::BEGIN, report::END)),
        "{text}"
    );
    assert!(!text.contains("first"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
