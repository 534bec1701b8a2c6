//! Every controller file shipped in `configs/` parses, validates, and documents the defaults.

use apparate_controller::ControllerConfig;

#[test]
fn shipped_controller_yaml_parses_and_states_the_defaults() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/controller.yaml");
    let text = std::fs::read_to_string(path).expect("configs/controller.yaml");
    let parsed = ControllerConfig::from_yaml_str(&text).expect("valid controller config");
    assert_eq!(
        parsed,
        ControllerConfig::default(),
        "configs/controller.yaml must show the defaults"
    );
}

#[test]
fn a_bad_value_is_named_in_the_error() {
    let err = ControllerConfig::from_yaml_str("accuracy_budget: 1.5\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("accuracy_budget") && err.contains("1.5"),
        "{err}"
    );
    let err = ControllerConfig::from_yaml_str("chunk_sise: 64\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("chunk_sise"), "{err}");
}
