//! Without an endpoint nothing is exported, and a second `init` is refused by name.

use apparate_telemetry::{TelemetryConfig, TelemetryError, init, inject_context};

#[test]
fn logs_only_without_endpoint_and_second_init_is_an_error() {
    let cfg = TelemetryConfig::default();
    let guard = init(&cfg).unwrap();
    assert_eq!(guard.endpoint(), None);
    // No OpenTelemetry layer: nothing to propagate.
    assert!(inject_context(&tracing::info_span!("x")).is_empty());
    assert!(matches!(
        init(&cfg),
        Err(TelemetryError::AlreadyInitialized(_))
    ));
    guard.shutdown();
}
