//! `prepare --model minilm --quick` → bundle → load → serve text, on the real movie
//! reviews and the real all-MiniLM-L6-v2 files (seconds to a minute on two cores).

use apparate_engine::{
    Bundle,
    data::data_dir,
    device::set_threads,
    minilm::{MiniLm, masked_mean_pool},
    model::{Family, HeadOutput},
    prepare::{PrepareOptions, prepare_minilm},
};
use tch::{Device, Tensor};

const TEXTS: [&str; 3] = [
    "A gorgeous, witty, seductive movie.",
    "The plot is a mess and the acting is even worse, a tedious waste of two hours.",
    "It is a film.",
];

#[test]
fn quick_minilm_bundle_serves_text_exactly_like_the_plain_model() {
    set_threads(2);
    let opts = PrepareOptions {
        quick: true,
        bootstrap_share: 0.5,
        seed: 3,
        ..PrepareOptions::new(Family::Minilm, Device::Cpu)
    };
    let bundle = prepare_minilm(&opts, &mut |_, _, _, _| {})
        .expect("prepare (needs scripts/bootstrap.sh data)");
    let report = &bundle.report;
    eprintln!("{report:#?}");
    assert!(
        report.final_accuracy > 0.65,
        "head accuracy {}",
        report.final_accuracy
    );
    assert_eq!(
        report.ramps.len(),
        5,
        "a candidate after every encoder layer but the last"
    );
    for ramp in &report.ramps {
        // Two roughly balanced classes: chance is about 50 %.
        assert!(
            ramp.accuracy > 0.55 && ramp.agreement > 0.55,
            "{ramp:?} is no better than chance"
        );
    }

    let dir = std::env::temp_dir().join(format!("apparate-minilm-{}", std::process::id()));
    bundle.save(&dir).unwrap();
    let loaded = Bundle::load(&dir, Device::Cpu);
    let head_weights = Tensor::read_safetensors(dir.join("weights.safetensors")).unwrap();
    let copied: Vec<bool> = ["config.json", "model.safetensors", "tokenizer.json"]
        .iter()
        .map(|f| dir.join("encoder").join(f).is_file())
        .collect();
    std::fs::remove_dir_all(&dir).unwrap();
    let loaded = loaded.unwrap();
    assert_eq!(copied, [true; 3], "the bundle carries the encoder's files");
    assert_eq!(loaded.manifest, bundle.manifest);
    assert_eq!(loaded.report, bundle.report);

    let (ids, mask) = loaded.encode_texts(&TEXTS).unwrap();
    assert_eq!(ids.size()[0], 3);
    assert_eq!(ids.size(), mask.size());
    let mut seen = Vec::new();
    let fin = loaded
        .model
        .forward_exits(&ids, Some(&mask), &[4, 0], |id, out| seen.push((id, out)));
    assert_eq!(seen.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [0, 4]);
    let (all_ramps, _) = loaded.model.forward_all_ramps(&ids, Some(&mask));
    for (id, out) in &seen {
        assert_eq!(out, &HeadOutput::from_logits(&all_ramps[*id as usize]));
    }

    // The final answer equals the plain model computed without the stage loop: the whole
    // encoder, masked mean pool, then the head's weights as the bundle stores them.
    let encoder = MiniLm::load(&data_dir().join("minilm"), Device::Cpu).unwrap();
    let last = encoder.forward_all(&ids, &mask).unwrap().pop().unwrap();
    let pooled = masked_mean_pool(&last, &mask).unwrap();
    let weight = |name: &str| {
        head_weights
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{name} missing"))
            .1
            .shallow_clone()
    };
    let plain = pooled.linear(
        &weight("backbone.head.fc.weight"),
        Some(&weight("backbone.head.fc.bias")),
    );
    let expected = HeadOutput::from_logits(&plain);
    assert_eq!(fin.labels, expected.labels);
    for (a, b) in fin.confidences.iter().zip(&expected.confidences) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
    let original = bundle.model.forward_final(&ids, Some(&mask));
    assert_eq!(
        fin,
        HeadOutput::from_logits(&original),
        "reload changed answers"
    );

    let long = "x".repeat(5000);
    let err = loaded.encode_texts(&[TEXTS[0], &long]).unwrap_err();
    assert!(err.to_string().contains("text 1"), "{err}");
}
