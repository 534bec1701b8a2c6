//! The vaderSentiment crowd-rated sentences (Hutto & Gilbert, ICWSM 2014) as binary sentiment.
//!
//! Four corpora from four domains are what make the NLP workloads drift (movie reviews →
//! Amazon reviews → tweets → NYT editorials). Each file is a TSV of `id`, the mean of about
//! twenty human ratings in [-4, 4], and the text. A sentence is positive (1) when its mean
//! is above zero and negative (0) when below; exact zeros carry no sentiment and are dropped.
//!
//! The shipped files are valid UTF-8 with CRLF line ends and no final newline; they are
//! still decoded lossily, so one stray byte costs a replacement character, not the corpus.

use std::{fmt, path::Path};

use apparate_controller::rng::SplitMix64;

use super::read_file;
use crate::{EngineError, Result};

/// The highest mean rating the VADER raters could give (and minus the lowest).
const MAX_SCORE: f64 = 4.0;

/// Seed of the default split, fixed so every run and every machine sees the same test set.
pub const DEFAULT_SPLIT_SEED: u64 = 0x00A9_9A7A_7E5E_ED00;

/// One of the four VADER corpora.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Domain {
    /// Rotten Tomatoes snippets (10,605 rated sentences).
    Movie,
    /// Amazon product review sentences (3,708).
    Amazon,
    /// Tweets (4,200).
    Tweets,
    /// New York Times opinion-piece sentences (5,190).
    Editorials,
}

impl Domain {
    /// All domains, in the order the drifting workloads visit them.
    pub const ALL: [Self; 4] = [Self::Movie, Self::Amazon, Self::Tweets, Self::Editorials];

    /// The corpus file inside the `vader` data folder.
    pub fn file_name(self) -> &'static str {
        match self {
            Self::Movie => "movieReviewSnippets_GroundTruth.txt",
            Self::Amazon => "amazonReviewSnippets_GroundTruth.txt",
            Self::Tweets => "tweets_GroundTruth.txt",
            Self::Editorials => "nytEditorialSnippets_GroundTruth.txt",
        }
    }

    /// The short name used in configs and reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Movie => "movie",
            Self::Amazon => "amazon",
            Self::Tweets => "tweets",
            Self::Editorials => "editorials",
        }
    }

    /// Parses a short name (`movie`, `amazon`, `tweets`, `editorials`).
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name() == text)
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One rated sentence with its binary label.
#[derive(Debug, Clone, PartialEq)]
pub struct TextExample {
    /// The corpus's own id (`1`, `1_2`, ...), unique within its domain.
    pub id: String,
    /// The sentence as the raters saw it (HTML entities such as `&amp;` left as they are).
    pub text: String,
    /// 1 = positive, 0 = negative.
    pub label: u8,
    /// Which corpus it came from.
    pub domain: Domain,
}

/// Which share of the examples is held out, and the seed that picks them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SplitSpec {
    /// Share of the examples in the test half, in [0, 1]; rounded to a whole count.
    pub test_fraction: f64,
    /// Seed of the shuffle; the same seed always picks the same examples.
    pub seed: u64,
}

impl Default for SplitSpec {
    /// 80 % train, 20 % test, with [`DEFAULT_SPLIT_SEED`].
    fn default() -> Self {
        Self {
            test_fraction: 0.2,
            seed: DEFAULT_SPLIT_SEED,
        }
    }
}

/// Train and test halves of a corpus, each in the file's original order.
#[derive(Debug, Clone, PartialEq)]
pub struct TextSplit {
    pub train: Vec<TextExample>,
    pub test: Vec<TextExample>,
}

/// Loads one corpus from `dir` (normally `data_dir()/vader`), dropping zero-rated sentences.
pub fn load_vader(dir: &Path, domain: Domain) -> Result<Vec<TextExample>> {
    let path = dir.join(domain.file_name());
    let bytes = read_file(&path)?;
    parse_corpus(&String::from_utf8_lossy(&bytes), domain).map_err(|reason| EngineError::BadData {
        path: path.clone(),
        reason,
    })
}

/// Loads one corpus and splits it with `spec`.
pub fn load_vader_split(dir: &Path, domain: Domain, spec: SplitSpec) -> Result<TextSplit> {
    split_examples(load_vader(dir, domain)?, spec)
}

/// Splits `examples` into train and test deterministically.
///
/// A Fisher-Yates shuffle driven by splitmix64 chooses exactly `round(n * test_fraction)`
/// test examples; each half then keeps the input order. A seeded shuffle (rather than,
/// say, a hash of the id) gives an exact 80/20 split, so the test set's size never
/// depends on luck, and results stay comparable across runs and machines. Split each
/// domain on its own so every domain keeps the same share.
pub fn split_examples(examples: Vec<TextExample>, spec: SplitSpec) -> Result<TextSplit> {
    if !(0.0..=1.0).contains(&spec.test_fraction) {
        return Err(EngineError::InvalidInput(format!(
            "test_fraction {} is not in [0, 1]",
            spec.test_fraction
        )));
    }
    let n = examples.len();
    // Exact for any corpus that fits in memory; the fraction was checked to be in [0, 1].
    let n_test = ((n as f64) * spec.test_fraction).round() as usize;
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = SplitMix64::new(spec.seed);
    for i in (1..n).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let mut is_test = vec![false; n];
    for &i in &order[..n_test] {
        is_test[i] = true;
    }
    let (test, train) = examples
        .into_iter()
        .zip(is_test)
        .partition::<Vec<_>, _>(|(_, t)| *t);
    Ok(TextSplit {
        train: train.into_iter().map(|(e, _)| e).collect(),
        test: test.into_iter().map(|(e, _)| e).collect(),
    })
}

/// Parses a whole corpus; the error is the reason, with its line number, for `BadData`.
fn parse_corpus(text: &str, domain: Domain) -> std::result::Result<Vec<TextExample>, String> {
    let mut examples = Vec::new();
    for (index, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            continue;
        }
        let example =
            parse_line(line, domain).map_err(|why| format!("line {}: {why}", index + 1))?;
        examples.extend(example);
    }
    if examples.is_empty() {
        return Err("holds no rated sentences".to_owned());
    }
    Ok(examples)
}

/// Parses `id \t score \t text`; `None` for a zero score, which has no sentiment to learn.
fn parse_line(line: &str, domain: Domain) -> std::result::Result<Option<TextExample>, String> {
    let mut fields = line.splitn(3, '\t');
    let (Some(id), Some(score), Some(text)) = (fields.next(), fields.next(), fields.next()) else {
        return Err("expected 3 tab-separated fields: id, mean score, text".to_owned());
    };
    let value: f64 = score
        .trim()
        .parse()
        .map_err(|_| format!("score `{score}` is not a number"))?;
    if !(-MAX_SCORE..=MAX_SCORE).contains(&value) {
        return Err(format!("score {value} is outside [-4, 4]"));
    }
    let text = text.trim();
    if text.is_empty() {
        return Err("the text is empty".to_owned());
    }
    if value == 0.0 {
        return Ok(None);
    }
    Ok(Some(TextExample {
        id: id.trim().to_owned(),
        text: text.to_owned(),
        label: u8::from(value > 0.0),
        domain,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_scores_are_dropped_and_signs_become_labels() {
        let corpus = "1\t0.5\tgood\r\n2\t0\tmeh\r\n3\t-1.25\tbad\r\n";
        let got = parse_corpus(corpus, Domain::Movie).unwrap();
        let labels: Vec<_> = got.iter().map(|e| (e.id.as_str(), e.label)).collect();
        assert_eq!(labels, [("1", 1), ("3", 0)]);
    }
}
