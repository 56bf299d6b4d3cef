//! The check every export passes before it is kept: reload what was written and compare it
//! with the model as Tunelab answers with it — the tokenizer, the chat template on a
//! multi-turn conversation, the tokens that end a turn, logits within the tolerance of the
//! format, greedy answers, and an Ollama Modelfile's template and stops.

use std::path::Path;

use serde::{Deserialize, Serialize};
use ts_rs::TS;
use tunelab_engine::gguf_write::GgufQuant;
use tunelab_engine::{Device, LoadedModel, Message, Precision, SamplingParams};

use super::ExportFormat;
use crate::error::{ApiError, Result};

/// One thing the check compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "kebab-case")]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub enum CheckKind {
    /// The export's tokenizer gives the same ids.
    Tokenizer,
    /// The export renders a conversation exactly as the model's chat template does.
    ChatTemplate,
    /// Every weight tensor within the format's rounding of the source's.
    Weights,
    /// The token that ends an assistant's turn is one the export stops at.
    EndOfTurn,
    /// Logits of every position within the format's tolerance.
    Logits,
    /// Greedy answers token for token.
    Greedy,
    /// The Modelfile's template renders the same prompt; its stops include the end of a turn.
    Ollama,
}

impl CheckKind {
    pub const ALL: [CheckKind; 7] = [
        CheckKind::Tokenizer,
        CheckKind::ChatTemplate,
        CheckKind::Weights,
        CheckKind::EndOfTurn,
        CheckKind::Logits,
        CheckKind::Greedy,
        CheckKind::Ollama,
    ];

    /// The check's name in words, as reports and the app show it.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckKind::Tokenizer => "tokenizer",
            CheckKind::ChatTemplate => "chat template",
            CheckKind::Weights => "weights",
            CheckKind::EndOfTurn => "end of turn",
            CheckKind::Logits => "logits",
            CheckKind::Greedy => "greedy answers",
            CheckKind::Ollama => "Ollama Modelfile",
        }
    }
}

/// One comparison's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct CheckItem {
    pub check: CheckKind,
    pub passed: bool,
    /// What was compared and what came out, in words.
    pub detail: String,
}

/// Everything the check found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct ExportCheck {
    pub passed: bool,
    pub items: Vec<CheckItem>,
    /// Prompts whose logits and greedy answers were compared.
    pub prompts: usize,
    /// The largest logit difference at any position, in standard deviations of the model's
    /// own logits there.
    pub max_logit_error: f64,
    /// What the format allows for `max_logit_error`.
    pub logit_tolerance: f64,
    /// Positions where both pick the same most likely next token.
    pub top1_agreement: f64,
    /// What the format allows at least for `top1_agreement`.
    pub top1_tolerance: f64,
    /// Greedy tokens that matched, of those compared.
    pub greedy_matched: usize,
    pub greedy_compared: usize,
    /// The largest relative difference of a weight tensor, and what the format allows.
    pub max_weight_error: f64,
    pub weight_tolerance: f64,
    /// The tensor with that difference (Hugging Face name).
    pub worst_weight: String,
}

/// How close an export must come to its source.
struct Tolerance {
    /// Largest relative error of any weight tensor, `‖export − source‖ / ‖source‖`: what
    /// catches a damaged or misplaced tensor in every format, by name.
    weights: f64,
    /// Largest logit difference, in standard deviations of the model's own logits.
    logits: f64,
    /// Least share of positions where both pick the same most likely token.
    top1: f64,
    /// Whether greedy answers must match token for token.
    greedy_exact: bool,
}

/// Lossless forms must agree to rounding. Quantized GGUF files lose what their blocks lose:
/// their weights are held to the quantization's own error, and their logits only to a floor
/// that a broken model falls below, since requantizing a 4-bit base (as the default model is)
/// changes a small model's answers measurably (docs/export.md has the measurements).
fn tolerance(format: ExportFormat, quant: Option<GgufQuant>) -> Tolerance {
    let t = |weights, logits, top1, greedy_exact| Tolerance {
        weights,
        logits,
        top1,
        greedy_exact,
    };
    match (format, quant) {
        (ExportFormat::Peft, _) | (ExportFormat::Gguf, Some(GgufQuant::F32)) => {
            t(1e-6, 1e-3, 1.0, true)
        }
        // 16-bit rounding can tip a near tie, so greedy answers are reported, not required.
        (ExportFormat::Merged, _) | (ExportFormat::Gguf, Some(GgufQuant::F16)) => {
            t(2e-3, 0.05, 0.95, false)
        }
        (ExportFormat::Gguf, Some(GgufQuant::Q8_0)) => t(0.02, 1.0, 0.85, false),
        (ExportFormat::Gguf, _) => t(0.25, 12.0, 0.4, false),
    }
}

/// Conversations the template check renders: with a system message and without one (where
/// many templates put a default system text of their own).
fn conversations() -> [Vec<Message>; 2] {
    let turns = vec![
        Message::new("user", "What is the capital of France?"),
        Message::new("assistant", "Paris."),
        Message::new("user", "And of Italy? Answer in one word."),
    ];
    let mut with_system = vec![Message::new(
        "system",
        "You answer in as few words as you can.",
    )];
    with_system.extend(turns.clone());
    [with_system, turns]
}

/// Questions whose logits and greedy answers are compared.
const PROMPTS: [&str; 3] = [
    "Give me three tips for keeping a sourdough starter alive.",
    "What is 17 times 23?",
    "Write a haiku about a home server.",
];

/// Text the tokenizers must split alike: digits, accents, emoji, code and special tokens.
const TOKENIZER_TEXT: &str = "Prices rose 12.5% in 2024 — naïve café owners 🙂 said: fn main() { println!(\"hi\"); }\n\n\tTabs  and  spaces.";

/// Tokens each greedy answer runs to.
const GREEDY_TOKENS: usize = 16;

/// Compares the export in `dir` with `reference` (the source as chat answers with it).
pub(crate) fn check(
    reference: &LoadedModel,
    dir: &Path,
    format: ExportFormat,
    quant: Option<GgufQuant>,
    modelfile: Option<&str>,
    on_item: &mut dyn FnMut(&CheckItem),
) -> Result<ExportCheck> {
    let export = load_export(reference, dir, format)?;
    let mut items = Vec::new();
    let mut push = |item: CheckItem| {
        on_item(&item);
        items.push(item);
    };

    push(tokenizer_check(reference, &export)?);
    push(template_check(reference, &export)?);
    let end_of_turn = end_of_turn(reference)?;
    push(end_of_turn_check(reference, &export, end_of_turn.as_ref()));

    let tol = tolerance(format, quant);
    let (weights_item, max_weight_error, worst_weight) =
        weights_check(reference, &export, tol.weights)?;
    push(weights_item);
    let (error_tol, top1_tol, greedy_exact) = (tol.logits, tol.top1, tol.greedy_exact);
    let mut max_error = 0f64;
    let (mut agree, mut positions) = (0usize, 0usize);
    let (mut matched, mut compared) = (0usize, 0usize);
    let mut first_difference = None;
    for question in PROMPTS {
        let prompt = reference.render_chat(&[Message::new("user", question)])?;
        let ids = reference.tokenizer.encode(&prompt, false)?;
        let a = reference.transformer.logits(&ids)?;
        let b = export.transformer.logits(&ids)?;
        let (error, same, n) = logit_distance(&a, &b)?;
        max_error = max_error.max(error);
        agree += same;
        positions += n;
        let greedy = |m: &LoadedModel| -> Result<Vec<u32>> {
            let params = SamplingParams {
                temperature: 0.0,
                max_tokens: GREEDY_TOKENS,
                ..Default::default()
            };
            let g = tunelab_engine::generate(
                &m.transformer,
                &m.tokenizer,
                &ids,
                &m.eos_ids,
                &params,
                &mut |_| std::ops::ControlFlow::Continue(()),
            )?;
            Ok(g.token_ids)
        };
        let (x, y) = (greedy(reference)?, greedy(&export)?);
        let same_prefix = x.iter().zip(&y).take_while(|(p, q)| p == q).count();
        matched += same_prefix;
        compared += x.len().max(y.len());
        if first_difference.is_none() && (same_prefix < x.len() || x.len() != y.len()) {
            first_difference = Some(format!(
                "“{question}” — the model answers {:?}, the export {:?}",
                reference.tokenizer.decode(&x, true).unwrap_or_default(),
                export.tokenizer.decode(&y, true).unwrap_or_default()
            ));
        }
    }
    let top1 = agree as f64 / positions.max(1) as f64;
    let logits_ok = max_error <= error_tol && top1 >= top1_tol;
    push(CheckItem {
        check: CheckKind::Logits,
        passed: logits_ok,
        detail: format!(
            "over {positions} positions of {} prompts the largest difference is {max_error:.4} standard deviations (allowed {error_tol}) and the most likely token agrees at {:.1}% (at least {:.0}%)",
            PROMPTS.len(),
            top1 * 100.0,
            top1_tol * 100.0
        ),
    });
    let greedy_ok = !greedy_exact || matched == compared;
    push(CheckItem {
        check: CheckKind::Greedy,
        passed: greedy_ok,
        detail: match &first_difference {
            None => format!("{matched} of {compared} greedy tokens match"),
            Some(diff) if greedy_exact => format!(
                "{matched} of {compared} greedy tokens match; this format must match every one: {diff}"
            ),
            Some(diff) => format!(
                "{matched} of {compared} greedy tokens match (rounding and quantization change a word where two are nearly tied, and the answers part there; the weights and logits checks hold the export): {diff}"
            ),
        },
    });
    if let Some(name) = modelfile {
        push(super::ollama::check(
            reference,
            &dir.join(name),
            end_of_turn.as_ref(),
        )?);
    }
    Ok(ExportCheck {
        passed: items.iter().all(|i| i.passed),
        items,
        prompts: PROMPTS.len(),
        max_logit_error: max_error,
        logit_tolerance: error_tol,
        top1_agreement: top1,
        top1_tolerance: top1_tol,
        greedy_matched: matched,
        greedy_compared: compared,
        max_weight_error,
        weight_tolerance: tol.weights,
        worst_weight,
    })
}

/// Every weight of the export against the source's (an attached adapter folded in), by
/// relative error; names the worst tensor.
fn weights_check(
    reference: &LoadedModel,
    export: &LoadedModel,
    tolerance: f64,
) -> Result<(CheckItem, f64, String)> {
    let mut worst = (0f64, String::new());
    let names = reference.transformer.weight_names();
    let theirs = export.transformer.weight_names();
    if let Some(missing) = names.iter().find(|n| !theirs.contains(n)) {
        let item = CheckItem {
            check: CheckKind::Weights,
            passed: false,
            detail: format!("the export has no {missing}"),
        };
        return Ok((item, f64::INFINITY, missing.clone()));
    }
    for name in &names {
        let a = reference.transformer.dense_weight(name)?;
        let b = export.transformer.dense_weight(name)?;
        let error = relative_error(&a, &b).map_err(ApiError::from)?;
        if error > worst.0 || worst.1.is_empty() {
            worst = (error, name.clone());
        }
    }
    let (error, name) = worst;
    let item = CheckItem {
        check: CheckKind::Weights,
        passed: error <= tolerance,
        detail: format!(
            "{} tensors; the largest relative difference is {error:.2e} in {name} (allowed {tolerance:.0e})",
            names.len()
        ),
    };
    Ok((item, error, name))
}

/// `‖a − b‖ / ‖a‖` (Frobenius norms).
fn relative_error(
    a: &tunelab_engine::Tensor,
    b: &tunelab_engine::Tensor,
) -> tunelab_engine::Result<f64> {
    let sq = |t: &tunelab_engine::Tensor| -> tunelab_engine::Result<f64> {
        Ok(t.sqr()?.sum_all()?.to_scalar::<f32>()? as f64)
    };
    if a.dims() != b.dims() {
        return Ok(f64::INFINITY);
    }
    Ok((sq(&(a - b)?)? / sq(a)?.max(1e-30)).sqrt())
}

/// The export as another tool would load it, here on the CPU as chat holds it.
fn load_export(reference: &LoadedModel, dir: &Path, format: ExportFormat) -> Result<LoadedModel> {
    let cpu = Device::Cpu;
    match format {
        ExportFormat::Peft => {
            let mut model = tunelab_engine::load(&reference.summary.path, Precision::Native, &cpu)?;
            use tunelab_train::methods::{lora, peft_type, soft_prompt};
            match peft_type(dir)?.as_str() {
                "LORA" => {
                    lora::load_peft(dir, &mut model.transformer)?;
                }
                _ => {
                    soft_prompt::load_peft(dir, &mut model.transformer)?;
                }
            }
            Ok(model)
        }
        ExportFormat::Merged => Ok(tunelab_engine::load(dir, Precision::Native, &cpu)?),
        ExportFormat::Gguf => {
            let file = std::fs::read_dir(dir)
                .map_err(|e| ApiError::io(dir, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .find(|p| p.extension().is_some_and(|e| e == "gguf"))
                .ok_or_else(|| {
                    ApiError::not_found(format!("{} has no .gguf file", dir.display()))
                })?;
            Ok(tunelab_engine::load(&file, Precision::Native, &cpu)?)
        }
    }
}

fn tokenizer_check(reference: &LoadedModel, export: &LoadedModel) -> Result<CheckItem> {
    let prompt = reference.render_chat(&conversations()[0])?;
    for text in [TOKENIZER_TEXT, prompt.as_str()] {
        for special in [false, true] {
            let (a, b) = (
                reference.tokenizer.encode(text, special)?,
                export.tokenizer.encode(text, special)?,
            );
            if a != b {
                let at = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
                return Ok(CheckItem {
                    check: CheckKind::Tokenizer,
                    passed: false,
                    detail: format!(
                        "the export splits text differently from token {at} on ({} against {} tokens{})",
                        b.len(),
                        a.len(),
                        if special { ", with the beginning-of-text token" } else { "" }
                    ),
                });
            }
        }
    }
    Ok(CheckItem {
        check: CheckKind::Tokenizer,
        passed: true,
        detail:
            "the same token ids for plain text, digits, emoji, code and a rendered conversation"
                .into(),
    })
}

fn template_check(reference: &LoadedModel, export: &LoadedModel) -> Result<CheckItem> {
    if !export.summary.has_chat_template {
        return Ok(CheckItem {
            check: CheckKind::ChatTemplate,
            passed: false,
            detail: "the export has no chat template, so the tools that load it would fall back to a generic format the model was not trained on".into(),
        });
    }
    for (i, conversation) in conversations().iter().enumerate() {
        let (a, b) = (
            reference.render_chat(conversation)?,
            export.render_chat(conversation)?,
        );
        if a != b {
            return Ok(CheckItem {
                check: CheckKind::ChatTemplate,
                passed: false,
                detail: format!(
                    "the export renders a {}-turn conversation{} differently: expected {a:?}, got {b:?}",
                    conversation.len(),
                    if i == 0 { " with a system message" } else { "" }
                ),
            });
        }
    }
    Ok(CheckItem {
        check: CheckKind::ChatTemplate,
        passed: true,
        detail: "a three-turn conversation renders the same, with and without a system message"
            .into(),
    })
}

/// The token that ends an assistant's turn in the model's chat template (`<|im_end|>`,
/// `<|eot_id|>`, `</s>`, ...), with its text; `None` when the template does not show it.
pub(crate) fn end_of_turn(model: &LoadedModel) -> Result<Option<(u32, String)>> {
    const ANSWER: &str = "Fine, thank you.";
    let text = model.template.render(
        &[
            Message::new("user", "How are you?"),
            Message::new("assistant", ANSWER),
        ],
        false,
        model.tokenizer.bos_token(),
        model.tokenizer.eos_token(),
    )?;
    let Some(at) = text.rfind(ANSWER) else {
        return Ok(None);
    };
    let after = &text[at + ANSWER.len()..];
    let ids = model.tokenizer.encode(after, false)?;
    Ok(ids
        .first()
        .map(|id| (*id, model.tokenizer.id_to_token(*id).unwrap_or_default())))
}

fn end_of_turn_check(
    reference: &LoadedModel,
    export: &LoadedModel,
    end_of_turn: Option<&(u32, String)>,
) -> CheckItem {
    // What the export itself declares (GGUF eos/eot ids, config.json and
    // generation_config.json), not the end-of-turn names Tunelab's loader adds on its own:
    // other tools stop only where the file says.
    let declared = &export.summary.config.eos_token_ids;
    let missing: Vec<u32> = reference
        .summary
        .config
        .eos_token_ids
        .iter()
        .copied()
        .filter(|id| !declared.contains(id))
        .collect();
    let name = |id: u32| {
        reference
            .tokenizer
            .id_to_token(id)
            .unwrap_or_else(|| id.to_string())
    };
    if let Some((id, text)) = end_of_turn {
        if !declared.contains(id) {
            return CheckItem {
                check: CheckKind::EndOfTurn,
                passed: false,
                detail: format!(
                    "the export's end-of-sequence ids {declared:?} leave out {text} (id {id}), which ends an answer in its chat template: other tools would generate past the end of the turn"
                ),
            };
        }
    }
    if !missing.is_empty() {
        let names: Vec<String> = missing.iter().map(|id| name(*id)).collect();
        return CheckItem {
            check: CheckKind::EndOfTurn,
            passed: false,
            detail: format!(
                "the export's end-of-sequence ids {declared:?} leave out {} that the model stops at",
                names.join(", ")
            ),
        };
    }
    CheckItem {
        check: CheckKind::EndOfTurn,
        passed: true,
        detail: match end_of_turn {
            Some((id, text)) => format!(
                "answers end at {text} (id {id}), which the export declares as end of sequence"
            ),
            None => {
                "the chat template shows no end-of-turn token; the end-of-sequence ids match".into()
            }
        },
    }
}

/// The largest difference between two `(t, vocab)` logit tables, in standard deviations of
/// `a`'s logits at that position; how many positions pick the same top token, and how many
/// positions there are.
fn logit_distance(
    a: &tunelab_engine::Tensor,
    b: &tunelab_engine::Tensor,
) -> Result<(f64, usize, usize)> {
    let internal = |e: tunelab_engine::EngineError| ApiError::from(e);
    let to_rows = |t: &tunelab_engine::Tensor| -> Result<Vec<Vec<f32>>> {
        t.to_dtype(tunelab_engine::DType::F32)
            .and_then(|t| t.to_vec2::<f32>())
            .map_err(|e| internal(e.into()))
    };
    let (a, b) = (to_rows(a)?, to_rows(b)?);
    let mut worst = 0f64;
    let mut same = 0;
    for (x, y) in a.iter().zip(&b) {
        let n = x.len() as f64;
        let mean = x.iter().map(|v| *v as f64).sum::<f64>() / n;
        let var = x.iter().map(|v| (*v as f64 - mean).powi(2)).sum::<f64>() / n;
        let std = var.sqrt().max(1e-6);
        let diff = x
            .iter()
            .zip(y)
            .map(|(p, q)| (*p as f64 - *q as f64).abs())
            .fold(0.0, f64::max);
        worst = worst.max(diff / std);
        if argmax(x) == argmax(y) {
            same += 1;
        }
    }
    Ok((worst, same, a.len().min(b.len())))
}

fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
        .unwrap_or(0)
}
