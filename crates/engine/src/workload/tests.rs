use super::*;
use crate::workload::plan::{Pools, RequestSource, plan};

const BASE: &str = "name: t\nbundle: resnet\ndataset: fashion-mnist\nseed: 3\n";

fn parse(segments: &str) -> Result<Workload, WorkloadError> {
    Workload::from_yaml_str(&format!("{BASE}segments:\n{segments}"), "t.yaml")
}

fn err(segments: &str) -> String {
    parse(segments).unwrap_err().to_string()
}

fn pools() -> Pools {
    Pools {
        classes: (0..10)
            .map(|c| (c * 100..c * 100 + 100).collect())
            .collect(),
        domains: vec![],
    }
}

#[test]
fn parses_defaults_and_normalises_the_mix() {
    let w =
        parse("  - requests: 10\n  - requests: 5\n    class_mix: {sneaker: 3, bag: 1}\n").unwrap();
    assert_eq!((w.batch_size, w.split, w.len()), (16, SplitKind::Test, 15));
    let Mix::Classes(mix) = &w.mixes[1] else {
        panic!()
    };
    assert_eq!((mix[7], mix[8], mix[0]), (0.75, 0.25, 0.0));
    let Mix::Classes(uniform) = &w.mixes[0] else {
        panic!()
    };
    assert!(uniform.iter().all(|&p| (p - 0.1).abs() < 1e-12));
}

#[test]
fn errors_name_the_field_and_value() {
    let e = err("  - requests: 10\n    class_mix: {sneakers: 1}\n");
    assert!(
        e.contains("segments[0].class_mix") && e.contains("\"sneakers\""),
        "{e}"
    );
    let e = err("  - requests: 10\n  - requests: 4\n    corruption: {noise_sigma: 2.5}\n");
    assert!(
        e.contains("segments[1].corruption.noise_sigma") && e.contains("2.5"),
        "{e}"
    );
    let e = err("  - requests: 0\n");
    assert!(e.contains("segments[0].requests"), "{e}");
    let e = err("  - requests: 3\n    domain: movie\n");
    assert!(e.contains("segments[0].domain"), "{e}");
    let e = err("  - requests: 3\n    corruption: {fog: 1}\n");
    assert!(e.contains("fog"), "{e}");
    let e = err("  - requests: 3\n  - requests: 3\n    ramp_requests: 9\n");
    assert!(e.contains("segments[1].ramp_requests"), "{e}");
    let e = Workload::from_yaml_str(
        "name: t\nbundle: b\ndataset: imagenet\nsegments: []\n",
        "x.yaml",
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("x.yaml") && e.contains("imagenet"), "{e}");
}

#[test]
fn text_segments_need_a_domain_and_no_pixels() {
    let text = "name: n\nbundle: minilm\ndataset: vader\nsegments:\n";
    let ok = Workload::from_yaml_str(&format!("{text}  - requests: 4\n    domain: tweets\n"), "n")
        .unwrap();
    assert_eq!(ok.mixes, vec![Mix::Domain(Domain::Tweets)]);
    let e = Workload::from_yaml_str(&format!("{text}  - requests: 4\n"), "n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("segments[0].domain: required"), "{e}");
    let e = Workload::from_yaml_str(
        &format!("{text}  - requests: 4\n    domain: tweets\n    class_mix: {{positive: 1}}\n"),
        "n",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("segments[0].class_mix"), "{e}");
}

#[test]
fn plans_are_deterministic_and_follow_the_mix() {
    let w = parse("  - requests: 400\n    class_mix: {trouser: 1}\n  - requests: 400\n    class_mix: {bag: 1, sandal: 1}\n    corruption: {contrast: 0.5}\n").unwrap();
    let a = plan(&w, &pools());
    assert_eq!(a, plan(&w, &pools()));
    for r in &a {
        let RequestSource::Image {
            class,
            index,
            corruption,
            ..
        } = r.source
        else {
            panic!()
        };
        assert_eq!(index / 100, class as usize, "drawn from its class's pool");
        if r.segment == 0 {
            assert_eq!((class, corruption.contrast), (1, 1.0));
        } else {
            assert!(class == 8 || class == 5);
            assert_eq!(corruption.contrast, 0.5);
        }
    }
    // 400 requests from a 100-image pool: every image shown, 4 times each.
    let mut shown: Vec<usize> = a[..400]
        .iter()
        .map(|r| match r.source {
            RequestSource::Image { index, .. } => index,
            RequestSource::Text { .. } => unreachable!(),
        })
        .collect();
    shown.sort_unstable();
    shown.dedup();
    assert_eq!(shown.len(), 100);
    let mut other = w.clone();
    other.seed = 4;
    assert_ne!(a, plan(&other, &pools()));
}

#[test]
fn ramps_blend_gradually_from_the_previous_segment() {
    let w = parse("  - requests: 10\n  - requests: 10\n    ramp_requests: 4\n    corruption: {noise_sigma: 0.5}\n").unwrap();
    let sigmas: Vec<f64> = plan(&w, &pools())
        .iter()
        .map(|r| match r.source {
            RequestSource::Image { corruption, .. } => corruption.noise_sigma,
            RequestSource::Text { .. } => unreachable!(),
        })
        .collect();
    assert!(sigmas[..10].iter().all(|&s| s == 0.0));
    let ramp: Vec<f64> = sigmas[10..14]
        .iter()
        .map(|s| (s * 10.0).round() / 10.0)
        .collect();
    assert_eq!(ramp, vec![0.1, 0.2, 0.3, 0.4]);
    assert!(sigmas[14..].iter().all(|&s| s == 0.5));
}

#[test]
fn truncation_keeps_the_head_of_the_stream() {
    let w = parse("  - requests: 10\n  - requests: 10\n    ramp_requests: 5\n  - requests: 10\n")
        .unwrap();
    let t = w.truncated(13);
    assert_eq!(
        (t.len(), t.segments.len(), t.segments[1].ramp_requests),
        (13, 2, 3)
    );
    assert_eq!(plan(&t, &pools())[..], plan(&w, &pools())[..13]);
}

/// Every shipped workload parses and validates.
#[test]
fn every_shipped_workload_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/workloads");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let w = Workload::from_yaml_file(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                w.segments.len() >= 2,
                "{}: a workload should drift",
                path.display()
            );
            seen += 1;
        }
    }
    assert!(
        seen >= 3,
        "expected the shipped workloads in {}",
        dir.display()
    );
}

/// The real Fashion-MNIST test split through a two-segment stream: shapes, ground truth,
/// determinism, and a corruption that really darkens the night.
#[test]
fn streams_real_images_deterministically() {
    let w = parse("  - requests: 64\n    class_mix: {bag: 1}\n  - requests: 64\n    class_mix: {bag: 1}\n    corruption: {brightness: -0.3, noise_sigma: 0.05}\n").unwrap();
    let dir = crate::data::data_dir();
    let stream = WorkloadStream::open(&w, &dir).unwrap();
    assert_eq!(stream.len(), 128);
    let batches: Vec<WorkloadBatch> = stream.batches(48).collect();
    assert_eq!(
        batches.iter().map(|b| b.requests.len()).collect::<Vec<_>>(),
        vec![48, 48, 32]
    );
    let again = WorkloadStream::open(&w, &dir).unwrap().batch(48, 48);
    let mean = |b: &WorkloadBatch| match &b.input {
        BatchInput::Images(x) => {
            assert_eq!(x.size()[1..], [1, 28, 28]);
            x.mean(tch::Kind::Float).double_value(&[])
        }
        BatchInput::Texts(_) => unreachable!(),
    };
    let (BatchInput::Images(a), BatchInput::Images(b)) = (&batches[1].input, &again.input) else {
        unreachable!()
    };
    assert!(a.equal(b), "same file, same pixels");
    assert!(batches.iter().all(|b| b.labels.iter().all(|&l| l == 8)));
    let day = stream.batch(0, 64);
    let night = stream.batch(64, 64);
    assert!(
        mean(&night) < mean(&day) - 0.1,
        "{} vs {}",
        mean(&night),
        mean(&day)
    );
}
