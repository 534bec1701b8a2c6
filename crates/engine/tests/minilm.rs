//! MiniLM and its tokenizer against the plain-PyTorch reference in
//! `tests/fixtures/minilm_reference.json` (made by `scripts/make_minilm_fixture.py`),
//! on the real model files fetched by `scripts/bootstrap.sh data`.

use std::path::PathBuf;

use apparate_engine::{
    EngineError,
    data::data_dir,
    minilm::{MiniLm, masked_mean_pool},
    text::{DEFAULT_MAX_TOKENS, TextTokenizer},
};
use serde_json::Value;
use tch::{Device, Kind, Tensor};

struct Reference {
    texts: Vec<String>,
    ids: Vec<Vec<u32>>,
    embeddings: Vec<Vec<f64>>,
}

fn reference() -> Reference {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/minilm_reference.json"
    );
    let json: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(json["max_len"], DEFAULT_MAX_TOKENS);
    let sentences = json["sentences"].as_array().unwrap();
    let numbers = |v: &Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    Reference {
        texts: sentences
            .iter()
            .map(|s| s["text"].as_str().unwrap().to_owned())
            .collect(),
        ids: sentences
            .iter()
            .map(|s| numbers(&s["ids"]).into_iter().map(|x| x as u32).collect())
            .collect(),
        embeddings: sentences.iter().map(|s| numbers(&s["embedding"])).collect(),
    }
}

fn model_dir() -> PathBuf {
    let dir = data_dir().join("minilm");
    assert!(
        dir.join("model.safetensors").exists(),
        "{} is missing: run `scripts/bootstrap.sh data` (or set APPARATE_DATA)",
        dir.display()
    );
    dir
}

fn tokenizer() -> TextTokenizer {
    TextTokenizer::from_file(&model_dir().join("tokenizer.json"), DEFAULT_MAX_TOKENS).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_device(Device::Cpu) - b.to_device(Device::Cpu))
        .abs()
        .max()
        .double_value(&[])
}

#[test]
fn token_ids_match_the_python_tokenizer() {
    let reference = reference();
    let tok = tokenizer();
    for (text, ids) in reference.texts.iter().zip(&reference.ids) {
        assert_eq!(&tok.ids(text).unwrap(), ids, "{text}");
    }
    // The batch path gives the same ids, right-padded with [PAD] to the longest row.
    let batch = tok.encode(&reference.texts, Device::Cpu).unwrap();
    let rows: Vec<Vec<i64>> = Vec::try_from(&batch.input_ids).unwrap();
    for (row, ids) in rows.iter().zip(&reference.ids) {
        let (real, pad) = row.split_at(ids.len());
        assert!(real.iter().zip(ids).all(|(&a, &b)| a == i64::from(b)));
        assert!(pad.iter().all(|&p| p == 0));
    }
    // The long sentence was cut at 128 tokens, still ending in [SEP].
    assert!(
        reference
            .ids
            .iter()
            .any(|ids| ids.len() == DEFAULT_MAX_TOKENS)
    );
    assert!(reference.ids.iter().all(|ids| ids.last() == Some(&102)));
}

#[test]
fn batches_pad_to_their_longest_sentence_not_to_128() {
    let tok = tokenizer();
    let texts = ["a short one", "a somewhat longer sentence than that"];
    let batch = tok.encode(&texts, Device::Cpu).unwrap();
    let lengths: Vec<usize> = texts.iter().map(|t| tok.ids(t).unwrap().len()).collect();
    let longest = *lengths.iter().max().unwrap() as i64;
    assert_eq!(batch.input_ids.size(), [2, longest]);
    assert_eq!(batch.input_ids.kind(), Kind::Int64);
    assert_eq!(batch.attention_mask.kind(), Kind::Int64);
    let mask_rows: Vec<i64> = batch
        .attention_mask
        .sum_dim_intlist(1, false, None)
        .try_into()
        .unwrap();
    assert_eq!(mask_rows, [lengths[0] as i64, lengths[1] as i64]);
    // Padding is [PAD] = 0 exactly where the mask is 0.
    let pad = batch.input_ids.masked_select(&batch.attention_mask.eq(0));
    assert!(pad.numel() > 0 && pad.eq(0).all().int64_value(&[]) == 1);

    let empty = tok.encode::<&str>(&[], Device::Cpu).unwrap();
    assert_eq!(empty.input_ids.size(), [0, 0]);
}

#[test]
fn truncation_length_is_configurable() {
    let tok = TextTokenizer::from_file(&model_dir().join("tokenizer.json"), 8).unwrap();
    let ids = tok
        .ids("one two three four five six seven eight nine ten")
        .unwrap();
    assert_eq!(ids.len(), 8);
    assert_eq!((ids[0], ids[7]), (101, 102));
    let err = TextTokenizer::from_file(&model_dir().join("tokenizer.json"), 1).unwrap_err();
    assert!(matches!(err, EngineError::InvalidInput(_)), "{err}");
}

#[test]
fn sentence_embeddings_match_the_pytorch_reference() {
    let reference = reference();
    let want = Tensor::from_slice(&reference.embeddings.concat())
        .view([reference.texts.len() as i64, 384])
        .to_kind(Kind::Float);
    // The CPU always; the GPU as well where libtorch sees one, since serving runs there.
    let mut devices = vec![Device::Cpu];
    if tch::Cuda::is_available() {
        devices.push(Device::Cuda(0));
    }
    for device in devices {
        let model = MiniLm::load(&model_dir(), device).unwrap();
        assert_eq!((model.num_layers(), model.hidden_size()), (6, 384));
        let batch = tokenizer().encode(&reference.texts, device).unwrap();
        let got = model
            .sentence_embedding(&batch.input_ids, &batch.attention_mask)
            .unwrap();
        assert_eq!(got.device(), device);
        assert_eq!(got.size(), want.size());
        assert!(!got.requires_grad());
        let diff = max_abs_diff(&got, &want);
        println!(
            "{device:?}: max abs diff over all 384 dims of {} sentences: {diff:.2e}",
            reference.texts.len()
        );
        assert!(diff < 1e-4, "{device:?}: max abs diff {diff}");
    }
}

#[test]
fn layer_by_layer_walk_equals_forward_all() {
    let model = MiniLm::load(&model_dir(), Device::Cpu).unwrap();
    let batch = tokenizer()
        .encode(
            &["the plot is thin", "but the acting is wonderful, truly"],
            Device::Cpu,
        )
        .unwrap();
    let (ids, mask) = (&batch.input_ids, &batch.attention_mask);
    let all = model.forward_all(ids, mask).unwrap();
    assert_eq!(all.len(), model.num_layers());
    let mut hidden = model.embed(ids).unwrap();
    for (i, expected) in all.iter().enumerate() {
        hidden = model.layer(i, &hidden, mask).unwrap();
        assert_eq!(hidden.size(), [2, ids.size()[1], 384]);
        assert_eq!(max_abs_diff(&hidden, expected), 0.0, "layer {i}");
    }
    let err = model.layer(6, &hidden, mask).unwrap_err();
    assert!(err.to_string().contains("layer 6 does not exist"), "{err}");
}

#[test]
fn padding_does_not_change_a_sentence_embedding() {
    let model = MiniLm::load(&model_dir(), Device::Cpu).unwrap();
    let tok = tokenizer();
    let texts = [
        "Effective but too tepid biopic",
        "ok",
        "A long, winding and ultimately rewarding film about grief, family and the sea.",
    ];
    let batch = tok.encode(&texts, Device::Cpu).unwrap();
    let together = model
        .sentence_embedding(&batch.input_ids, &batch.attention_mask)
        .unwrap();
    for (i, text) in texts.iter().enumerate() {
        let alone = tok.encode(&[text], Device::Cpu).unwrap();
        let single = model
            .sentence_embedding(&alone.input_ids, &alone.attention_mask)
            .unwrap();
        let diff = max_abs_diff(&single, &together.get(i as i64).unsqueeze(0));
        assert!(diff < 1e-5, "{text}: {diff}");
    }
    // The pool used by ramps ignores padded positions too: zeroing them changes nothing.
    let last = model
        .forward_all(&batch.input_ids, &batch.attention_mask)
        .unwrap()
        .pop()
        .unwrap();
    let cleaned = &last * batch.attention_mask.unsqueeze(-1).to_kind(Kind::Float);
    let pooled = masked_mean_pool(&last, &batch.attention_mask).unwrap();
    assert_eq!(
        max_abs_diff(
            &pooled,
            &masked_mean_pool(&cleaned, &batch.attention_mask).unwrap()
        ),
        0.0
    );
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let model = MiniLm::load(&model_dir(), Device::Cpu).unwrap();
    let too_long = Tensor::ones([1, 513], (Kind::Int64, Device::Cpu));
    let err = model.embed(&too_long).unwrap_err();
    assert!(err.to_string().contains("513 tokens exceed"), "{err}");
    let floats = Tensor::ones([1, 4], (Kind::Float, Device::Cpu));
    assert!(matches!(
        model.embed(&floats),
        Err(EngineError::InvalidInput(_))
    ));
    let hidden = Tensor::zeros([2, 4, 384], (Kind::Float, Device::Cpu));
    let wrong_mask = Tensor::ones([2, 5], (Kind::Int64, Device::Cpu));
    assert!(matches!(
        model.layer(0, &hidden, &wrong_mask),
        Err(EngineError::InvalidInput(_))
    ));
}

#[test]
fn an_empty_batch_gives_an_empty_result() {
    let model = MiniLm::load(&model_dir(), Device::Cpu).unwrap();
    let batch = tokenizer().encode::<&str>(&[], Device::Cpu).unwrap();
    let got = model
        .sentence_embedding(&batch.input_ids, &batch.attention_mask)
        .unwrap();
    assert_eq!(got.size(), [0, 384]);
}

#[test]
fn missing_model_says_how_to_fetch() {
    let err = MiniLm::load(std::path::Path::new("/nonexistent/minilm"), Device::Cpu).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, EngineError::MissingData { .. }), "{text}");
    assert!(
        text.contains("config.json") && text.contains("scripts/bootstrap.sh data"),
        "{text}"
    );
    let err = TextTokenizer::from_file(std::path::Path::new("/nonexistent/tokenizer.json"), 128)
        .unwrap_err();
    assert!(
        err.to_string().contains("scripts/bootstrap.sh data"),
        "{err}"
    );
}

#[test]
fn weights_that_do_not_fit_the_config_are_named() {
    let dir = std::env::temp_dir().join(format!("apparate-minilm-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(model_dir().join("config.json"), dir.join("config.json")).unwrap();
    let wrong = Tensor::zeros([10, 384], (Kind::Float, Device::Cpu));
    Tensor::write_safetensors(
        &[("embeddings.word_embeddings.weight", &wrong)],
        dir.join("model.safetensors"),
    )
    .unwrap();
    let shape = MiniLm::load(&dir, Device::Cpu).unwrap_err().to_string();
    let only_position = Tensor::zeros([512, 384], (Kind::Float, Device::Cpu));
    Tensor::write_safetensors(
        &[("embeddings.position_embeddings.weight", &only_position)],
        dir.join("model.safetensors"),
    )
    .unwrap();
    let missing = MiniLm::load(&dir, Device::Cpu).unwrap_err().to_string();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        shape.contains("model.safetensors")
            && shape.contains("[10, 384]")
            && shape.contains("[30522, 384]"),
        "{shape}"
    );
    assert!(
        missing.contains("`embeddings.word_embeddings.weight` is missing"),
        "{missing}"
    );
}
