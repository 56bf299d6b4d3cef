//! Text generation: prefill the prompt once, then decode token by token from the key/value
//! cache, sampling with temperature, top-k, top-p and a repetition penalty, streaming text as
//! soon as it forms whole characters, and stopping on EOS, a stop string or the token budget.

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::time::Instant;

use candle_core::{DType, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::model::{Cache, Transformer};
use crate::tokenizer::TextTokenizer;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplingParams {
    /// 0 means greedy decoding.
    pub temperature: f32,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
    /// 1.0 disables it; above 1.0 discourages repeating tokens of the answer so far. The prompt is
    /// left out on purpose: penalising the question's own words pushes small models away from
    /// the right answer ("What is the capital of France?" must be free to say "France").
    pub repetition_penalty: f32,
    pub seed: Option<u64>,
    pub max_tokens: usize,
    pub stop: Vec<String>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.3,
            top_k: Some(50),
            top_p: Some(0.9),
            repetition_penalty: 1.1,
            seed: None,
            max_tokens: 512,
            stop: Vec::new(),
        }
    }
}

impl SamplingParams {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(EngineError::InvalidRequest(m));
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return bad(format!(
                "temperature must be 0 or more, got {}",
                self.temperature
            ));
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return bad(format!("top_p must be in (0, 1], got {p}"));
            }
        }
        if self.top_k == Some(0) {
            return bad("top_k must be at least 1".into());
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return bad(format!(
                "repetition_penalty must be positive, got {}",
                self.repetition_penalty
            ));
        }
        if self.max_tokens == 0 {
            return bad("max_tokens must be at least 1".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    Eos,
    StopString,
    MaxTokens,
    /// The model's context window is full.
    ContextFull,
    /// The answer fell into a loop, repeating the same tokens over and over.
    Repetition,
    Cancelled,
}

#[derive(Debug, Clone)]
pub struct Generation {
    pub text: String,
    pub token_ids: Vec<u32>,
    pub prompt_tokens: usize,
    pub prefill_seconds: f64,
    pub decode_seconds: f64,
    pub stop_reason: StopReason,
}

impl Generation {
    pub fn prefill_tokens_per_second(&self) -> f64 {
        rate(self.prompt_tokens, self.prefill_seconds)
    }

    /// Tokens after the first (which comes out of the prefill) over the time spent decoding them.
    pub fn decode_tokens_per_second(&self) -> f64 {
        rate(self.token_ids.len().saturating_sub(1), self.decode_seconds)
    }
}

fn rate(tokens: usize, seconds: f64) -> f64 {
    if seconds > 0.0 {
        tokens as f64 / seconds
    } else {
        0.0
    }
}

/// Picks the next token from a logits vector.
pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
}

impl Sampler {
    pub fn new(params: &SamplingParams) -> Self {
        let rng = match params.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        Sampler {
            params: params.clone(),
            rng,
        }
    }

    pub fn sample(&mut self, logits: &[f32], context: &HashSet<u32>) -> u32 {
        let mut logits = logits.to_vec();
        let penalty = self.params.repetition_penalty;
        if penalty != 1.0 {
            for &id in context {
                if let Some(l) = logits.get_mut(id as usize) {
                    *l = if *l > 0.0 { *l / penalty } else { *l * penalty };
                }
            }
        }
        if self.params.temperature == 0.0 {
            return argmax(&logits);
        }
        let t = self.params.temperature;
        let mut candidates: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, l)| (i as u32, l / t))
            .collect();
        candidates.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
        if let Some(k) = self.params.top_k {
            candidates.truncate(k.max(1));
        }
        let max = candidates[0].1;
        let mut probs: Vec<f32> = candidates.iter().map(|(_, l)| (l - max).exp()).collect();
        let total: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
        if let Some(top_p) = self.params.top_p {
            let mut cumulative = 0.0;
            let mut keep = probs.len();
            for (i, p) in probs.iter().enumerate() {
                cumulative += p;
                if cumulative >= top_p {
                    keep = i + 1;
                    break;
                }
            }
            probs.truncate(keep);
            candidates.truncate(keep);
        }
        let total: f32 = probs.iter().sum();
        let mut r = self.rng.random::<f32>() * total;
        for (i, p) in probs.iter().enumerate() {
            r -= p;
            if r <= 0.0 {
                return candidates[i].0;
            }
        }
        candidates[probs.len() - 1].0
    }
}

fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best as u32
}

/// Turns a growing list of token ids into text deltas that never split a character.
struct TextStream<'a> {
    tokenizer: &'a TextTokenizer,
    ids: Vec<u32>,
    prefix_offset: usize,
    read_offset: usize,
}

impl<'a> TextStream<'a> {
    fn push(&mut self, id: u32) -> Result<String> {
        self.ids.push(id);
        let prefix = self
            .tokenizer
            .decode(&self.ids[self.prefix_offset..self.read_offset], true)?;
        let full = self
            .tokenizer
            .decode(&self.ids[self.prefix_offset..], true)?;
        if full.len() > prefix.len()
            && !full.ends_with('\u{FFFD}')
            && full.is_char_boundary(prefix.len())
        {
            self.prefix_offset = self.read_offset;
            self.read_offset = self.ids.len();
            Ok(full[prefix.len()..].to_string())
        } else {
            Ok(String::new())
        }
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of some stop string: that much
/// text is held back from the stream until it is known not to start a stop string.
fn held_back(text: &str, stops: &[String]) -> usize {
    let mut hold = 0;
    for stop in stops {
        for len in (1..stop.len()).rev() {
            if len <= text.len()
                && text.is_char_boundary(text.len() - len)
                && stop.is_char_boundary(len)
                && text.ends_with(&stop[..len])
            {
                hold = hold.max(len);
                break;
            }
        }
    }
    hold
}

/// True when the tail of `tokens` is one short block repeated many times ("fashion, fashion,
/// fashion, ..."), the failure mode of small models that users most dislike. A block of `p`
/// tokens counts as a loop once it fills the last max(4p, 32) tokens.
pub fn is_looping(tokens: &[u32]) -> bool {
    (1..=32).any(|p| {
        let span = (4 * p).max(32);
        tokens.len() >= span && {
            let tail = &tokens[tokens.len() - span..];
            tail.iter()
                .enumerate()
                .skip(p)
                .all(|(i, t)| *t == tail[i - p])
        }
    })
}

/// Generates a continuation of `prompt_ids`. `on_text` receives each new piece of text and may
/// return `ControlFlow::Break` to cancel.
pub fn generate(
    model: &Transformer,
    tokenizer: &TextTokenizer,
    prompt_ids: &[u32],
    eos_ids: &[u32],
    params: &SamplingParams,
    on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
) -> Result<Generation> {
    params.validate()?;
    if prompt_ids.is_empty() {
        return Err(EngineError::InvalidRequest("the prompt is empty".into()));
    }
    let context_limit = model.config.max_position_embeddings;
    let virtual_tokens = model.virtual_tokens();
    if prompt_ids.len() + virtual_tokens >= context_limit {
        return Err(EngineError::InvalidRequest(format!(
            "the prompt has {} tokens (and the soft prompt {virtual_tokens}), but the model's context window is {context_limit}",
            prompt_ids.len()
        )));
    }
    let device = model.device().clone();
    let mut cache = Cache::new(&model.config);
    let mut sampler = Sampler::new(params);
    let mut context: HashSet<u32> = HashSet::new();
    let mut stream = TextStream {
        tokenizer,
        ids: Vec::new(),
        prefix_offset: 0,
        read_offset: 0,
    };
    let mut text = String::new();
    let mut emitted = 0;
    let mut generated = Vec::new();

    let start = Instant::now();
    let input = Tensor::new(prompt_ids, &device)?.unsqueeze(0)?;
    let mut logits = model.forward_last(&input, Some(&mut cache))?;
    let prefill_seconds = start.elapsed().as_secs_f64();
    let decode_start = Instant::now();

    let stop_reason = loop {
        let row: Vec<f32> = logits.squeeze(0)?.to_dtype(DType::F32)?.to_vec1()?;
        let next = sampler.sample(&row, &context);
        if eos_ids.contains(&next) {
            break StopReason::Eos;
        }
        generated.push(next);
        context.insert(next);
        text.push_str(&stream.push(next)?);

        if let Some(pos) = params
            .stop
            .iter()
            .filter_map(|s| text.find(s.as_str()))
            .min()
        {
            text.truncate(pos);
            if text.len() > emitted && on_text(&text[emitted..]).is_break() {
                break StopReason::Cancelled;
            }
            break StopReason::StopString;
        }
        let safe = text.len() - held_back(&text, &params.stop);
        if safe > emitted {
            let piece = text[emitted..safe].to_string();
            emitted = safe;
            if on_text(&piece).is_break() {
                break StopReason::Cancelled;
            }
        }
        if generated.len() >= params.max_tokens {
            break StopReason::MaxTokens;
        }
        if is_looping(&generated) {
            break StopReason::Repetition;
        }
        if prompt_ids.len() + generated.len() >= context_limit {
            break StopReason::ContextFull;
        }
        let input = Tensor::new(&[next], &device)?.unsqueeze(0)?;
        logits = model.forward_last(&input, Some(&mut cache))?;
    };
    if stop_reason != StopReason::StopString
        && stop_reason != StopReason::Cancelled
        && text.len() > emitted
    {
        let _ = on_text(&text[emitted..]);
    }
    Ok(Generation {
        text,
        token_ids: generated,
        prompt_tokens: prompt_ids.len(),
        prefill_seconds,
        decode_seconds: decode_start.elapsed().as_secs_f64(),
        stop_reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_picks_the_largest_logit() {
        let mut s = Sampler::new(&SamplingParams {
            temperature: 0.0,
            ..Default::default()
        });
        assert_eq!(s.sample(&[0.1, 3.0, -1.0], &HashSet::new()), 1);
    }

    #[test]
    fn repetition_penalty_can_flip_the_choice() {
        let params = SamplingParams {
            temperature: 0.0,
            repetition_penalty: 2.0,
            ..Default::default()
        };
        let mut s = Sampler::new(&params);
        let seen: HashSet<u32> = [1].into_iter().collect();
        assert_eq!(s.sample(&[2.0, 3.0], &seen), 0, "3.0 / 2 falls below 2.0");
    }

    #[test]
    fn a_seed_makes_sampling_repeatable_and_top_k_1_is_greedy() {
        let params = SamplingParams {
            temperature: 1.0,
            top_k: None,
            top_p: None,
            seed: Some(7),
            ..Default::default()
        };
        let mut logits: Vec<f32> = (0..50).map(|i| (i % 7) as f32 * 0.3).collect();
        logits[6] = 2.5;
        let a: Vec<u32> = {
            let mut s = Sampler::new(&params);
            (0..20)
                .map(|_| s.sample(&logits, &HashSet::new()))
                .collect()
        };
        let b: Vec<u32> = {
            let mut s = Sampler::new(&params);
            (0..20)
                .map(|_| s.sample(&logits, &HashSet::new()))
                .collect()
        };
        assert_eq!(a, b);
        let mut s = Sampler::new(&SamplingParams {
            top_k: Some(1),
            seed: Some(1),
            repetition_penalty: 1.0,
            ..Default::default()
        });
        assert_eq!(s.sample(&logits, &HashSet::new()), 6);
    }

    #[test]
    fn text_that_may_start_a_stop_string_is_held_back() {
        let stops = vec!["</answer>".to_string()];
        assert_eq!(held_back("Paris</ans", &stops), 5);
        assert_eq!(held_back("Paris", &stops), 0);
        assert_eq!(held_back("a <", &stops), 1);
    }

    #[test]
    fn loops_are_told_apart_from_ordinary_text() {
        let fashion: Vec<u32> = [7, 8].iter().copied().cycle().take(40).collect();
        assert!(
            is_looping(&fashion),
            "a two-token block repeated 20 times is a loop"
        );
        let phrase: Vec<u32> = (0..12).cycle().take(50).collect();
        assert!(
            is_looping(&phrase),
            "a 12-token sentence repeated four times is a loop"
        );
        let counting: Vec<u32> = (0..200).collect();
        assert!(!is_looping(&counting), "text that moves on is not a loop");
        let short: Vec<u32> = [7, 8].iter().copied().cycle().take(20).collect();
        assert!(
            !is_looping(&short),
            "a few repeats are allowed (lists, emphasis)"
        );
    }

    #[test]
    fn invalid_parameters_are_named() {
        let err = SamplingParams {
            top_p: Some(1.5),
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(err.to_string().contains("top_p"));
    }
}
