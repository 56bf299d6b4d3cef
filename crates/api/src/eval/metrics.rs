//! The scores an evaluation gives an answer, and the confidence interval of their mean.
//!
//! Text metrics compare normalised words: lower case, punctuation and the articles a, an and
//! the dropped, whitespace collapsed, so that "The Paris." and "paris" match. Every score lies
//! in 0..=1 except perplexity, which is aggregated over tokens, not rows.

use serde::{Deserialize, Serialize};
use ts_rs::TS;
use tunelab_train::data::split::SplitMix64;

/// One way of scoring answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, TS)]
#[serde(rename_all = "kebab-case")]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub enum Metric {
    /// The normalised answer equals the normalised reference.
    ExactMatch,
    /// Every string of the row's `must_contain` appears in the answer (case ignored).
    ContainsAll,
    /// Harmonic mean of word precision and recall against the reference.
    TokenF1,
    /// F-measure of the longest common word subsequence with the reference.
    RougeL,
    /// The answer matches the row's `regex` (anywhere in it).
    Regex,
    /// The answer parses as JSON, when the row asks for it.
    Json,
    /// e^(mean negative log-likelihood per reference token), the reference forced as the
    /// answer. Lower is better.
    Perplexity,
    /// The row's `source` is among the first three passages the knowledge base returns: the
    /// passages a grounded answer is given.
    #[serde(rename = "hit-at-3")]
    HitAt3,
    /// Mean reciprocal rank of the row's `source` in the first ten passages.
    Mrr,
    /// A local model's grade of the answer against the reference with a rubric, 1–5 mapped
    /// to 0–1. A judge's opinion, not a measurement.
    Judge,
}

impl Metric {
    pub const ALL: [Metric; 10] = [
        Metric::ExactMatch,
        Metric::ContainsAll,
        Metric::TokenF1,
        Metric::RougeL,
        Metric::Regex,
        Metric::Json,
        Metric::Perplexity,
        Metric::HitAt3,
        Metric::Mrr,
        Metric::Judge,
    ];

    /// The name on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::ExactMatch => "exact-match",
            Metric::ContainsAll => "contains-all",
            Metric::TokenF1 => "token-f1",
            Metric::RougeL => "rouge-l",
            Metric::Regex => "regex",
            Metric::Json => "json",
            Metric::Perplexity => "perplexity",
            Metric::HitAt3 => "hit-at-3",
            Metric::Mrr => "mrr",
            Metric::Judge => "judge",
        }
    }

    pub fn higher_is_better(self) -> bool {
        self != Metric::Perplexity
    }
}

impl std::str::FromStr for Metric {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Metric::ALL
            .into_iter()
            .find(|m| m.as_str() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = Metric::ALL.iter().map(|m| m.as_str()).collect();
                format!("unknown metric `{text}`; choose from {}", names.join(", "))
            })
    }
}

/// Lower case, no punctuation, no articles, single spaces.
pub fn normalize(text: &str) -> String {
    words(text).join(" ")
}

fn words(text: &str) -> Vec<String> {
    let cleaned: String = text
        .chars()
        .map(|c| match c.is_alphanumeric() {
            true => c.to_lowercase().next().unwrap_or(c),
            false => ' ',
        })
        .collect();
    cleaned
        .split_whitespace()
        .filter(|w| !matches!(*w, "a" | "an" | "the"))
        .map(str::to_string)
        .collect()
}

pub fn exact_match(answer: &str, reference: &str) -> f64 {
    f64::from(u8::from(normalize(answer) == normalize(reference)))
}

/// 1 when every needle is in the answer, case ignored.
pub fn contains_all(answer: &str, needles: &[String]) -> f64 {
    let answer = answer.to_lowercase();
    f64::from(u8::from(
        needles.iter().all(|n| answer.contains(&n.to_lowercase())),
    ))
}

/// Word-level F1 (each word counted as often as it occurs in both).
pub fn token_f1(answer: &str, reference: &str) -> f64 {
    let (a, r) = (words(answer), words(reference));
    if a.is_empty() || r.is_empty() {
        return f64::from(u8::from(a.is_empty() && r.is_empty()));
    }
    let mut left: std::collections::HashMap<&str, usize> = Default::default();
    for w in &r {
        *left.entry(w).or_default() += 1;
    }
    let mut common = 0usize;
    for w in &a {
        if let Some(n) = left.get_mut(w.as_str()).filter(|n| **n > 0) {
            *n -= 1;
            common += 1;
        }
    }
    f_measure(common, a.len(), r.len())
}

/// ROUGE-L F-measure (β = 1) over normalised words.
pub fn rouge_l(answer: &str, reference: &str) -> f64 {
    let (a, r) = (words(answer), words(reference));
    if a.is_empty() || r.is_empty() {
        return f64::from(u8::from(a.is_empty() && r.is_empty()));
    }
    // Longest common subsequence, one row of the table at a time.
    let mut row = vec![0usize; r.len() + 1];
    for wa in &a {
        let mut diagonal = 0;
        for (j, wr) in r.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = match wa == wr {
                true => diagonal + 1,
                false => above.max(row[j]),
            };
            diagonal = above;
        }
    }
    f_measure(row[r.len()], a.len(), r.len())
}

fn f_measure(common: usize, predicted: usize, expected: usize) -> f64 {
    if common == 0 {
        return 0.0;
    }
    let precision = common as f64 / predicted as f64;
    let recall = common as f64 / expected as f64;
    2.0 * precision * recall / (precision + recall)
}

/// 1 when the answer, trimmed and without a Markdown code fence around it, parses as JSON.
pub fn json_valid(answer: &str) -> f64 {
    let text = answer.trim();
    let text = text
        .strip_prefix("```json")
        .or_else(|| text.strip_prefix("```"))
        .and_then(|t| t.strip_suffix("```"))
        .unwrap_or(text);
    f64::from(u8::from(
        serde_json::from_str::<serde_json::Value>(text.trim()).is_ok(),
    ))
}

/// 1 / rank of the first passage from `source` among `retrieved` (best first), 0 when absent.
pub fn reciprocal_rank(retrieved: &[String], source: &str) -> f64 {
    retrieved
        .iter()
        .position(|s| same_source(s, source))
        .map_or(0.0, |i| 1.0 / (i + 1) as f64)
}

/// Whether a retrieved source (as the knowledge base stored it) is the one a row names: the
/// same path, or the same file name when the row gives only a name.
pub fn same_source(stored: &str, named: &str) -> bool {
    let file = |s: &str| {
        std::path::Path::new(s)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
    };
    stored == named || (!named.contains('/') && file(stored).as_deref() == Some(named))
}

/// The grade in a judge's reply: its first digit 1–5, mapped to 0..=1.
pub fn judge_grade(reply: &str) -> Option<f64> {
    reply
        .chars()
        .find(|c| ('1'..='5').contains(c))
        .and_then(|c| c.to_digit(10))
        .map(|d| f64::from(d - 1) / 4.0)
}

/// A metric's value over a set of rows, with its 95% interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct Estimate {
    pub value: f64,
    pub low: f64,
    pub high: f64,
    /// Rows that were scored on this metric.
    pub rows: u32,
}

/// Resamples the interval is drawn from.
pub const RESAMPLES: usize = 1000;

/// The statistic over all `n` rows and its 95% percentile-bootstrap interval: `stat` is
/// called with row indices, once with 0..n and then with `RESAMPLES` draws with replacement
/// from a generator seeded by `seed`, so the same rows always give the same interval.
pub fn bootstrap(n: usize, seed: u64, stat: impl Fn(&[usize]) -> f64) -> Option<Estimate> {
    if n == 0 {
        return None;
    }
    let all: Vec<usize> = (0..n).collect();
    let value = stat(&all);
    let mut rng = SplitMix64(seed ^ 0x7E57_AB1E);
    let mut draws = Vec::with_capacity(RESAMPLES);
    let mut sample = vec![0usize; n];
    for _ in 0..RESAMPLES {
        for s in sample.iter_mut() {
            *s = draw_below(&mut rng, n);
        }
        let v = stat(&sample);
        if v.is_finite() {
            draws.push(v);
        }
    }
    draws.sort_by(f64::total_cmp);
    let at = |q: f64| draws[((draws.len() - 1) as f64 * q).round() as usize];
    let (low, high) = match draws.is_empty() {
        true => (value, value),
        false => (at(0.025), at(0.975)),
    };
    Some(Estimate {
        value,
        low,
        high,
        rows: n as u32,
    })
}

/// The mean of `scores` with its interval.
pub fn mean_estimate(scores: &[f64], seed: u64) -> Option<Estimate> {
    bootstrap(scores.len(), seed, |rows| {
        mean(rows.iter().map(|&i| scores[i]))
    })
}

/// The mean of the values (NaN for none).
pub fn mean(values: impl ExactSizeIterator<Item = f64>) -> f64 {
    let n = values.len();
    values.sum::<f64>() / n as f64
}

/// Perplexity over rows of (summed negative log-likelihood, tokens), weighting each row by its
/// tokens, with its interval.
pub fn perplexity_estimate(rows: &[(f64, u32)], seed: u64) -> Option<Estimate> {
    bootstrap(rows.len(), seed, |sample| {
        perplexity(sample.iter().map(|&i| rows[i]))
    })
}

/// e to the mean negative log-likelihood per token over rows of (summed NLL, tokens); NaN
/// without tokens.
pub fn perplexity(rows: impl Iterator<Item = (f64, u32)>) -> f64 {
    let (nll, tokens) = rows.fold((0.0, 0u64), |(s, t), (nll, n)| (s + nll, t + u64::from(n)));
    match tokens {
        0 => f64::NAN,
        t => (nll / t as f64).exp(),
    }
}

/// A resampled row index in `0..n` from the top 53 bits of the next draw.
fn draw_below(rng: &mut SplitMix64, n: usize) -> usize {
    ((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * n as f64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalising_drops_case_punctuation_and_articles() {
        assert_eq!(
            normalize("  The Eiffel-Tower, in PARIS! "),
            "eiffel tower in paris"
        );
        assert_eq!(exact_match("Paris.", "paris"), 1.0);
        assert_eq!(exact_match("Paris, France", "Paris"), 0.0);
    }

    #[test]
    fn token_f1_counts_shared_words_once_each() {
        let f1 = token_f1("the cat sat on the red mat", "a cat on mat");
        // Words: [cat, sat, on, red, mat] vs [cat, on, mat]: 3 common, p 3/5, r 1.
        assert!((f1 - 0.75).abs() < 1e-12, "{f1}");
        assert_eq!(token_f1("dog dog", "dog"), 2.0 * 0.5 / 1.5);
        assert_eq!(token_f1("", ""), 1.0);
        assert_eq!(token_f1("x", ""), 0.0);
        assert_eq!(token_f1("blue", "red"), 0.0);
    }

    #[test]
    fn rouge_l_follows_the_longest_common_subsequence() {
        // LCS of "police killed the gunman" and "police kill the gunman" (article dropped):
        // [police, gunman], 2 of 3 words each side.
        let r = rouge_l("police killed the gunman", "police kill the gunman");
        assert!((r - 2.0 / 3.0).abs() < 1e-12, "{r}");
        // Order matters, unlike F1: same words reversed share a subsequence of one.
        assert!((rouge_l("one two three", "three two one") - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(rouge_l("same words here", "Same words, here."), 1.0);
    }

    #[test]
    fn format_checks() {
        assert_eq!(
            contains_all("Returns within 30 Days", &["30 days".into()]),
            1.0
        );
        assert_eq!(
            contains_all("30 days", &["30 days".into(), "EUR".into()]),
            0.0
        );
        assert_eq!(json_valid(r#" {"a": [1, 2]} "#), 1.0);
        assert_eq!(json_valid("```json\n{\"a\": 1}\n```"), 1.0);
        assert_eq!(json_valid("{\"a\": 1"), 0.0);
        assert_eq!(json_valid("Sure! {\"a\": 1}"), 0.0);
    }

    #[test]
    fn retrieval_ranks_match_paths_or_file_names() {
        let got: Vec<String> = ["docs/faq.json", "/home/u/docs/returns.md", "shipping.txt"]
            .map(String::from)
            .into();
        assert_eq!(reciprocal_rank(&got, "returns.md"), 0.5);
        assert_eq!(reciprocal_rank(&got, "shipping.txt"), 1.0 / 3.0);
        assert_eq!(reciprocal_rank(&got, "/home/u/docs/returns.md"), 0.5);
        assert_eq!(reciprocal_rank(&got, "other/returns.md"), 0.0);
        assert_eq!(reciprocal_rank(&got, "warranty.html"), 0.0);
    }

    #[test]
    fn a_judge_grade_is_its_first_digit_in_range() {
        assert_eq!(judge_grade("Score: 4/5"), Some(0.75));
        assert_eq!(judge_grade("1"), Some(0.0));
        assert_eq!(judge_grade("0 then 5"), Some(1.0));
        assert_eq!(judge_grade("excellent"), None);
    }

    #[test]
    fn metric_names_round_trip() {
        for m in Metric::ALL {
            assert_eq!(m.as_str().parse::<Metric>(), Ok(m));
            assert_eq!(serde_json::to_value(m).unwrap(), m.as_str());
        }
        assert!("bleu".parse::<Metric>().unwrap_err().contains("token-f1"));
    }

    #[test]
    fn perplexity_weights_rows_by_their_tokens() {
        // 2 tokens at nll 1 each and 6 tokens at nll 0.5 each: mean 5/8 per token.
        let e = perplexity_estimate(&[(2.0, 2), (3.0, 6)], 1).unwrap();
        assert!((e.value - (5.0f64 / 8.0).exp()).abs() < 1e-12);
        assert!(e.low <= e.value && e.value <= e.high);
    }

    #[test]
    fn the_interval_is_seeded_and_shrinks_with_more_rows() {
        let scores: Vec<f64> = (0..40).map(|i| f64::from(i % 3 == 0)).collect();
        let a = mean_estimate(&scores, 7).unwrap();
        assert_eq!(a, mean_estimate(&scores, 7).unwrap());
        let more: Vec<f64> = scores.iter().cycle().take(400).copied().collect();
        let b = mean_estimate(&more, 7).unwrap();
        assert!(b.high - b.low < (a.high - a.low) / 2.0, "{a:?} {b:?}");
        assert_eq!(mean_estimate(&[], 7), None);
        let constant = mean_estimate(&[1.0; 5], 7).unwrap();
        assert_eq!((constant.low, constant.high), (1.0, 1.0));
    }

    #[test]
    fn the_95_percent_interval_covers_the_true_mean_about_95_times_in_100() {
        // 300 synthetic evaluations of 80 rows, each row right with probability 0.7.
        let mut rng = SplitMix64(42);
        let trials = 300;
        let covered = (0..trials)
            .filter(|&t| {
                let scores: Vec<f64> = (0..80)
                    .map(|_| f64::from(rng.next_u64() % 10 < 7))
                    .collect();
                let e = mean_estimate(&scores, t).unwrap();
                e.low <= 0.7 && 0.7 <= e.high
            })
            .count();
        let rate = covered as f64 / trials as f64;
        // Percentile intervals run a little narrow at this size; 300 trials add ±2.5 points.
        assert!((0.88..=0.99).contains(&rate), "coverage {rate}");
    }
}
