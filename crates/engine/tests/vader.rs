//! The VADER loaders parse the real corpora fetched by `scripts/bootstrap.sh data`.

use std::{collections::HashSet, path::PathBuf};

use apparate_engine::{
    EngineError,
    data::{Domain, SplitSpec, data_dir, load_vader, load_vader_split, split_examples},
};

fn vader_dir() -> PathBuf {
    let dir = data_dir().join("vader");
    assert!(
        dir.join(Domain::Movie.file_name()).exists(),
        "{} is missing: run `scripts/bootstrap.sh data` (or set APPARATE_DATA)",
        dir.display()
    );
    dir
}

/// A scratch folder per test, so parallel tests never share files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("apparate-vader-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn each_corpus_has_its_published_size_less_the_zero_rated_sentences() {
    // (rated sentences in the paper, of which rated exactly 0, positive).
    let expected = [
        (Domain::Movie, 10_605, 37, 5_242),
        (Domain::Amazon, 3_708, 98, 2_128),
        (Domain::Tweets, 4_200, 4, 2_897),
        (Domain::Editorials, 5_190, 244, 2_204),
    ];
    for (domain, rated, zeros, positive) in expected {
        let examples = load_vader(&vader_dir(), domain).unwrap();
        assert_eq!(examples.len(), rated - zeros, "{domain}");
        let ones = examples.iter().filter(|e| e.label == 1).count();
        assert_eq!(ones, positive, "{domain}");
        assert!(examples.iter().all(|e| e.label <= 1 && e.domain == domain));
        assert!(
            examples
                .iter()
                .all(|e| !e.text.is_empty() && !e.text.ends_with('\r'))
        );
        let ids: HashSet<_> = examples.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids.len(), examples.len(), "{domain}: ids are unique");
    }
}

#[test]
fn text_is_decoded_with_its_accents() {
    let movie = load_vader(&vader_dir(), Domain::Movie).unwrap();
    assert!(movie.iter().any(|e| e.text.contains('é')));
    assert_eq!(movie[0].id, "1");
    assert!(
        movie[0].text.starts_with("The Rock is destined"),
        "{}",
        movie[0].text
    );
}

#[test]
fn default_split_is_exactly_80_20_disjoint_and_repeatable() {
    let dir = vader_dir();
    let split = load_vader_split(&dir, Domain::Tweets, SplitSpec::default()).unwrap();
    assert_eq!((split.train.len(), split.test.len()), (3_357, 839));
    let train: HashSet<_> = split.train.iter().map(|e| e.id.as_str()).collect();
    assert!(split.test.iter().all(|e| !train.contains(e.id.as_str())));
    assert_eq!(
        load_vader_split(&dir, Domain::Tweets, SplitSpec::default()).unwrap(),
        split
    );
    // Each half keeps the file's order.
    let all = load_vader(&dir, Domain::Tweets).unwrap();
    let index = |id: &str| all.iter().position(|e| e.id == id).unwrap();
    for half in [&split.train, &split.test] {
        let order: Vec<usize> = half.iter().map(|e| index(&e.id)).collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]));
    }
}

#[test]
fn another_seed_picks_another_test_set() {
    let examples = load_vader(&vader_dir(), Domain::Amazon).unwrap();
    let a = split_examples(examples.clone(), SplitSpec::default()).unwrap();
    let b = split_examples(
        examples,
        SplitSpec {
            seed: 7,
            ..SplitSpec::default()
        },
    )
    .unwrap();
    assert_eq!(a.test.len(), b.test.len());
    assert_ne!(a.test, b.test);
}

#[test]
fn bad_test_fraction_is_refused() {
    let spec = SplitSpec {
        test_fraction: 1.5,
        ..SplitSpec::default()
    };
    let err = split_examples(Vec::new(), spec).unwrap_err();
    assert!(matches!(err, EngineError::InvalidInput(_)), "{err}");
}

#[test]
fn missing_corpus_says_how_to_fetch() {
    let err = load_vader(&scratch("missing"), Domain::Tweets).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, EngineError::MissingData { .. }), "{text}");
    assert!(
        text.contains("tweets_GroundTruth.txt") && text.contains("scripts/bootstrap.sh data"),
        "{text}"
    );
}

#[test]
fn malformed_line_is_named_by_file_and_number() {
    let dir = scratch("malformed");
    let file = dir.join(Domain::Editorials.file_name());
    std::fs::write(&file, "1_1\t0.4\tfine\r\n1_2\tgreat\tnot a score\r\n").unwrap();
    let bad_score = load_vader(&dir, Domain::Editorials)
        .unwrap_err()
        .to_string();
    std::fs::write(&file, "1_1\t0.4\tfine\n\n1_3\t1.5\n").unwrap();
    let short_line = load_vader(&dir, Domain::Editorials)
        .unwrap_err()
        .to_string();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        bad_score.contains("nytEditorialSnippets_GroundTruth.txt")
            && bad_score.contains("line 2")
            && bad_score.contains("`great`"),
        "{bad_score}"
    );
    assert!(
        short_line.contains("line 3") && short_line.contains("3 tab-separated fields"),
        "{short_line}"
    );
}

#[test]
fn stray_non_utf8_bytes_do_not_lose_the_corpus() {
    let dir = scratch("latin1");
    // "caf\xe9" is Latin-1, not UTF-8: the sentence survives with a replacement character.
    std::fs::write(
        dir.join(Domain::Movie.file_name()),
        b"1\t2.0\tcaf\xe9 ok\n2\t0\tx\n",
    )
    .unwrap();
    let examples = load_vader(&dir, Domain::Movie).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(examples.len(), 1);
    assert_eq!(examples[0].text, "caf\u{FFFD} ok");
    assert_eq!(examples[0].label, 1);
}
