//! Every sidecar file in `configs/` parses and validates; the shipped one states the
//! defaults; bad configuration makes the real binary exit with status 64, naming the field.

use std::path::{Path, PathBuf};
use std::process::Command;

use apparate_sidecar::SidecarConfig;

fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs")
}

#[test]
fn every_sidecar_config_parses_and_the_shipped_one_states_the_defaults() {
    let mut seen = 0;
    for entry in std::fs::read_dir(configs_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.starts_with("sidecar") && name.ends_with(".yaml")) {
            continue;
        }
        let cfg = SidecarConfig::from_file(&path).unwrap();
        cfg.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
        seen += 1;
    }
    assert!(seen >= 1, "no sidecar*.yaml in configs/");
    let shipped = SidecarConfig::from_file(&configs_dir().join("sidecar.yaml")).unwrap();
    assert_eq!(
        shipped,
        SidecarConfig::default(),
        "configs/sidecar.yaml must show the defaults"
    );
}

fn sidecar(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_apparate-sidecar"));
    cmd.args(args).env_remove("APPARATE_SIDECAR_CONFIG");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn bad_file_flag_or_env_value_exits_64_naming_the_field() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let bad = dir.join("sidecar-bad-renew.yaml");
    std::fs::write(&bad, "renew_fraction: 3.0\n").unwrap();
    let out = sidecar(&["run", "--config", bad.to_str().unwrap()], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("renew_fraction") && stderr.contains('3'),
        "{stderr}"
    );

    let typo = dir.join("sidecar-typo.yaml");
    std::fs::write(&typo, "server:\n  endpont: http://x:1\n").unwrap();
    let out = sidecar(&["run", "--config", typo.to_str().unwrap()], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("endpont"), "{stderr}");

    // A flag overrides the (valid) file and is validated too.
    let shipped = configs_dir().join("sidecar.yaml");
    let out = sidecar(
        &[
            "run",
            "-c",
            shipped.to_str().unwrap(),
            "--server",
            "localhost:50051",
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("server.endpoint") && stderr.contains("localhost:50051"),
        "{stderr}"
    );

    // So does an environment variable.
    let out = sidecar(&["run"], &[("APPARATE_SIDECAR_ACCURACY_BUDGET", "-1")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("controller.accuracy_budget") && stderr.contains("-1"),
        "{stderr}"
    );

    let out = sidecar(&["run", "--config", "/nonexistent/sidecar.yaml"], &[]);
    assert_eq!(out.status.code(), Some(64));
}
