//! Evidence for `record` → replay → `eval`: a quick bundle, a slice of a shipped workload,
//! and the invariants every evaluation table must satisfy.

use std::{path::PathBuf, process::Command};

use serde_json::Value;

fn apparate(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_apparate"))
        .args(args)
        .env("APPARATE_THREADS", "2")
        .env("APPARATE_DEVICE", "cpu")
        .output()
        .expect("run apparate");
    assert!(
        out.status.success(),
        "apparate {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn record_replay_eval_table_invariants() {
    let tmp = std::env::temp_dir().join(format!("apparate-eval-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let s = |p: PathBuf| p.to_string_lossy().into_owned();
    let bundle = s(tmp.join("bundle"));
    let trace = s(tmp.join("trace.jsonl"));
    let json = s(tmp.join("eval.json"));
    let workload = s(repo().join("configs/workloads/fmnist-day-night.yaml"));
    apparate(&["prepare", "--model", "resnet", "--quick", "--out", &bundle]);
    // 1,280 requests = 20 chunks of the day segment.
    apparate(&[
        "record",
        "--bundle",
        &bundle,
        "--workload",
        &workload,
        "--limit",
        "1280",
        "--out",
        &trace,
    ]);
    let table = apparate(&[
        "eval",
        "--trace",
        &trace,
        "--bundle",
        &bundle,
        "--json",
        &json,
        "--plots",
        &s(tmp.join("plots")),
    ]);
    assert!(table.contains("oracle"), "{table}");

    let parsed: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let rows = parsed["rows"].as_array().unwrap();
    let get = |policy: &str| rows.iter().find(|r| r["policy"] == policy).unwrap();
    let f = |r: &Value, k: &str| r[k].as_f64().unwrap();
    assert_eq!(rows.len(), 7, "every policy once");
    assert!(
        rows.iter()
            .all(|r| r["requests"] == 1280 && r["chunks"] == 20)
    );

    let none = get("no_exits");
    assert_eq!(f(none, "accuracy"), 1.0);
    assert_eq!(f(none, "saving_mean"), 0.0);
    assert_eq!(f(none, "saving_p50"), 0.0);
    assert_eq!(f(none, "share_over_budget"), 0.0);

    let oracle = get("oracle");
    assert_eq!(f(oracle, "accuracy"), 1.0);
    assert!(
        f(oracle, "saving_mean") > 0.0,
        "quick ramps agree often enough to save"
    );
    for r in rows.iter().filter(|r| f(r, "accuracy") == 1.0) {
        for k in ["saving_mean", "saving_p25", "saving_p50", "saving_p95"] {
            assert!(f(oracle, k) >= f(r, k), "oracle {k} below {}", r["policy"]);
        }
    }
    for r in rows {
        assert!(f(r, "worst_chunk_accuracy") <= f(r, "accuracy") + 1e-12);
        assert!((0.0..=1.0).contains(&f(r, "share_over_budget")));
    }
    for plot in ["config", "accuracy", "latency-cdf"] {
        let svg = std::fs::read_to_string(tmp.join(format!("plots/trace-{plot}.svg"))).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("<polyline"),
            "{plot}"
        );
    }
    let _ = std::fs::remove_dir_all(&tmp);
}
