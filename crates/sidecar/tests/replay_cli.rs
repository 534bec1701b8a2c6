//! `apparate-sidecar replay` over a synthetic drifting trace, through the real binary.

use std::path::PathBuf;
use std::process::Command;

use apparate_controller::LatencyProfile;
use apparate_controller::synthetic::SyntheticSpec;

/// A sidecar file with a loose budget and no chunk-coverage aim, so exits open after one
/// chunk of this short trace.
fn loose_config(tag: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("replay-{tag}.yaml"));
    std::fs::write(
        &path,
        "controller:\n  accuracy_budget: 0.05\n  chunk_coverage: 0\n",
    )
    .unwrap();
    path
}

fn write_inputs(tag: &str) -> (PathBuf, PathBuf) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let trace = dir.join(format!("replay-{tag}.jsonl"));
    let profile = dir.join(format!("replay-{tag}-profile.yaml"));
    let t = SyntheticSpec::drifting(11, 8, 4).generate();
    std::fs::write(&trace, t.to_jsonl_string().unwrap()).unwrap();
    let p = LatencyProfile::synthetic(8, 10.0, 0.004);
    std::fs::write(&profile, p.to_yaml_string().unwrap()).unwrap();
    (trace, profile)
}

fn replay(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_apparate-sidecar"))
        .arg("replay")
        .args(args)
        .env_remove("APPARATE_SIDECAR_CONFIG")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn replay_prints_one_row_per_chunk_and_the_summary() {
    let (trace, profile) = write_inputs("ours");
    let config = loose_config("ours");
    let (code, stdout, stderr) = replay(&[
        "--trace",
        trace.to_str().unwrap(),
        "--profile",
        profile.to_str().unwrap(),
        "--policy",
        "ours",
        "--config",
        config.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].contains("p50_saving") && lines[0].contains("thresholds"));
    // 3 phases × 4 chunks of 64 requests.
    let rows: Vec<&str> = lines[1..]
        .iter()
        .take_while(|l| !l.is_empty())
        .copied()
        .collect();
    assert_eq!(rows.len(), 12, "{stdout}");
    assert!(
        stdout.contains("policy ours: 768 requests in 12 chunks"),
        "{stdout}"
    );
    // The controller opens ramps after the first chunk: some later row saves latency.
    let savings: Vec<f64> = rows
        .iter()
        .map(|r| r.split_whitespace().nth(4).unwrap().parse().unwrap())
        .collect();
    assert!(savings[0] <= 0.0, "chunk 0 runs closed ramps: {stdout}");
    assert!(savings.iter().any(|&s| s > 0.1), "{stdout}");
}

#[test]
fn replay_oracle_and_static_and_bad_flags() {
    let (trace, profile) = write_inputs("others");
    let t = trace.to_str().unwrap();
    let p = profile.to_str().unwrap();
    let (code, oracle, stderr) = replay(&["--trace", t, "--profile", p, "--policy", "oracle"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(oracle.contains("policy oracle"), "{oracle}");
    let (code, stat, stderr) = replay(&["--trace", t, "--profile", p, "--policy", "static-shared"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stat.contains("policy static_shared"), "{stat}");

    let (code, _, stderr) = replay(&[
        "--trace",
        t,
        "--profile",
        p,
        "--policy",
        "greedy",
        "--statistical",
    ]);
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("--statistical"), "{stderr}");

    // A profile with the wrong number of ramps is named.
    let small = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("replay-small-profile.yaml");
    std::fs::write(
        &small,
        LatencyProfile::synthetic(3, 10.0, 0.004)
            .to_yaml_string()
            .unwrap(),
    )
    .unwrap();
    let (code, _, stderr) = replay(&["--trace", t, "--profile", small.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("3"), "{stderr}");
}
