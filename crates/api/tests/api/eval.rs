//! Evaluations with the real default model: scores, reuse, resume, retrieval and the judge.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use tunelab_api::chat::ModelCache;
use tunelab_api::eval::{self, Caches, EvalEvent, EvalRequest, EvalSummary, Metric};
use tunelab_api::knowledge::{self, CreateKnowledgeBase, KnowledgeCache};
use tunelab_api::train::RunStatus;
use tunelab_api::{ErrorCode, Workspace};

use crate::{default_gguf, workspace_with_default_model};

fn write_rows(dir: &Path, rows: &[&str]) -> PathBuf {
    let path = dir.join("eval.jsonl");
    std::fs::write(&path, rows.join("\n")).unwrap();
    path
}

/// Runs `request` on fresh caches; returns the summary and every event.
fn evaluate(
    ws: &Workspace,
    request: &EvalRequest,
    cancel_after: Option<u32>,
) -> (tunelab_api::Result<EvalSummary>, Vec<EvalEvent>) {
    let (models, knowledge) = (ModelCache::default(), KnowledgeCache::default());
    let caches = Caches {
        models: &models,
        knowledge: &knowledge,
    };
    let cancel = AtomicBool::new(false);
    let mut events = Vec::new();
    let result = eval::run(ws, &caches, request, &cancel, &mut |event| {
        if let (EvalEvent::Row { done, .. }, Some(n)) = (&event, cancel_after) {
            if *done >= n {
                cancel.store(true, Ordering::Relaxed);
            }
        }
        events.push(event);
    });
    (result, events)
}

const QUESTIONS: [&str; 4] = [
    r#"{"prompt": "What is the capital of France? Answer with one word.", "reference": "Paris", "must_contain": ["Paris"]}"#,
    r#"{"messages": [{"role": "system", "content": "Reply with JSON only."}, {"role": "user", "content": "Give a JSON object whose key a is 1."}, {"role": "assistant", "content": "{\"a\": 1}"}], "json": true}"#,
    r#"{"prompt": "Say hello to Sam.", "regex": "(?i)\\bsam\\b"}"#,
    r#"{"prompt": "What is the capital of France? Answer with one word.", "reference": "Tomato soup with basil"}"#,
];

#[test]
fn an_evaluation_scores_every_row_saves_them_and_a_rerun_reuses_it() {
    let (dir, ws) = workspace_with_default_model();
    let data = write_rows(dir.path(), &QUESTIONS);
    let request = EvalRequest {
        data,
        max_tokens: 24,
        ..Default::default()
    };
    let (summary, events) = evaluate(&ws, &request, None);
    let summary = summary.expect("evaluation runs");
    assert_eq!(summary.status, RunStatus::Completed);
    assert_eq!((summary.answered, summary.config.rows), (4, 4));
    assert_eq!(summary.config.model, tunelab_api::DEFAULT_MODEL);
    assert!(matches!(
        events[0],
        EvalEvent::Started {
            total: 4,
            done: 0,
            ..
        }
    ));
    // Every metric the rows allow, and none they do not (no knowledge base, no judge).
    assert_eq!(
        summary.config.metrics,
        [
            Metric::ExactMatch,
            Metric::ContainsAll,
            Metric::TokenF1,
            Metric::RougeL,
            Metric::Regex,
            Metric::Json,
            Metric::Perplexity
        ]
    );
    let detail = eval::show(&ws, &summary.id).unwrap();
    assert_eq!(detail.rows.len(), 4);
    let paris = &detail.rows[0];
    assert!(paris.answer.contains("Paris"), "{}", paris.answer);
    assert_eq!(paris.scores[&Metric::ContainsAll], 1.0);
    assert_eq!(paris.stop_reason, tunelab_api::chat::StopReason::Eos);
    // Only the metrics each row asks for: the third has no reference, only a pattern.
    assert!(detail.rows[1].scores.contains_key(&Metric::Json));
    assert!(detail.rows[1].scores.contains_key(&Metric::TokenF1));
    assert_eq!(
        detail.rows[2].scores.keys().collect::<Vec<_>>(),
        [&Metric::Regex]
    );
    assert_eq!(detail.rows[1].line, 2);
    // The model's own answer is far likelier than soup: perplexity per token says so.
    let per_token =
        |r: &eval::EvalRowResult| r.reference_nll.unwrap() / f64::from(r.reference_tokens.unwrap());
    assert!(per_token(&detail.rows[0]) * 2.0 < per_token(&detail.rows[3]));
    for score in &summary.scores {
        let e = &score.estimate;
        assert!(e.low <= e.value && e.value <= e.high, "{score:?}");
    }
    let ppl = summary
        .scores
        .iter()
        .find(|s| s.metric == Metric::Perplexity)
        .unwrap();
    assert!(!ppl.higher_is_better && ppl.estimate.value > 1.0 && ppl.estimate.rows == 3);
    // No configuration around the bare question: nothing added to its prompt, or to the model.
    assert_eq!(summary.cost.extra_context_tokens_mean, 0.0);
    assert_eq!(summary.cost.footprint, eval::Footprint::default());
    assert!(
        summary.cost.latency_p50_s > 0.0
            && summary.cost.latency_p95_s >= summary.cost.latency_p50_s
    );
    assert_eq!(summary.cost.device, "cpu");

    // The same request again: the finished evaluation as it was saved, not a second one.
    let saved = eval::show(&ws, &summary.id).unwrap().item.summary.unwrap();
    assert_eq!(
        (saved.id.as_str(), saved.answered),
        (summary.id.as_str(), 4)
    );
    let (again, events) = evaluate(&ws, &request, None);
    assert_eq!(again.unwrap(), saved);
    assert!(
        matches!(&events[..], [EvalEvent::Reused { .. }]),
        "{events:?}"
    );
    assert_eq!(eval::list(&ws).unwrap().len(), 1);

    // Other data under the same name is refused, naming the folder.
    let other = write_rows(dir.path(), &QUESTIONS[..2]);
    let err = evaluate(
        &ws,
        &EvalRequest {
            data: other,
            name: Some(summary.id.clone()),
            ..request.clone()
        },
        None,
    )
    .0
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::Exists);
    assert!(
        err.message.contains("other settings or data"),
        "{}",
        err.message
    );
}

#[test]
fn a_cancelled_evaluation_keeps_its_rows_and_resumes_from_them() {
    let (dir, ws) = workspace_with_default_model();
    let request = EvalRequest {
        data: write_rows(dir.path(), &QUESTIONS),
        max_tokens: 16,
        metrics: vec![Metric::TokenF1, Metric::ExactMatch],
        ..Default::default()
    };
    let (first, _) = evaluate(&ws, &request, Some(2));
    let first = first.unwrap();
    assert_eq!((first.status, first.answered), (RunStatus::Cancelled, 2));
    let listed = eval::list(&ws).unwrap();
    assert_eq!(listed[0].status, RunStatus::Cancelled);
    let before = eval::show(&ws, &first.id).unwrap().rows;

    let (second, events) = evaluate(&ws, &request, None);
    let second = second.unwrap();
    assert!(
        matches!(
            events[0],
            EvalEvent::Started {
                done: 2,
                total: 4,
                ..
            }
        ),
        "{:?}",
        events[0]
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, EvalEvent::Row { .. }))
            .count(),
        2
    );
    assert_eq!(
        (second.status, second.answered, second.id.as_str()),
        (RunStatus::Completed, 4, first.id.as_str())
    );
    let after = eval::show(&ws, &second.id).unwrap().rows;
    // The first two rows are the ones answered before, timings and all.
    assert_eq!(after[..2], before[..]);
    assert_eq!(
        after.iter().map(|r| r.index).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
}

#[test]
fn a_knowledge_base_is_scored_on_retrieval_and_what_its_passages_add() {
    let (dir, ws) = workspace_with_default_model();
    let minilm = default_gguf()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("all-minilm-l6-v2");
    tunelab_api::models::add(&ws, &minilm, Some(knowledge::DEFAULT_EMBEDDER)).unwrap();
    let kb_cache = KnowledgeCache::default();
    knowledge::create(
        &ws,
        &kb_cache,
        &CreateKnowledgeBase {
            name: "shop".into(),
            embedder: None,
            chunking: None,
        },
    )
    .unwrap();
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/kb-brightloom/docs");
    knowledge::add(
        &ws,
        &kb_cache,
        "shop",
        &[
            docs.join("returns.md"),
            docs.join("shipping.txt"),
            docs.join("warranty.html"),
        ],
        &std::sync::atomic::AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap();
    let questions = std::fs::read_to_string(docs.join("../questions.jsonl")).unwrap();
    let rows: Vec<&str> = questions
        .lines()
        .filter(|l| {
            ["returns.md", "shipping.txt", "warranty.html"]
                .iter()
                .any(|s| l.contains(s))
        })
        .take(4)
        .collect();
    assert_eq!(rows.len(), 4);
    let data = write_rows(dir.path(), &rows);

    // Retrieval metrics need the knowledge base.
    let err = evaluate(
        &ws,
        &EvalRequest {
            data: data.clone(),
            metrics: vec![Metric::HitAt3],
            ..Default::default()
        },
        None,
    )
    .0
    .unwrap_err();
    assert!(
        err.message
            .contains("metric `hit-at-3` needs a knowledge base (--kb)"),
        "{}",
        err.message
    );

    let summary = evaluate(
        &ws,
        &EvalRequest {
            data,
            kb: Some("shop".into()),
            max_tokens: 24,
            metrics: vec![Metric::HitAt3, Metric::Mrr, Metric::TokenF1],
            ..Default::default()
        },
        None,
    )
    .0
    .unwrap();
    let score = |m: Metric| {
        summary
            .scores
            .iter()
            .find(|s| s.metric == m)
            .unwrap()
            .estimate
            .value
    };
    assert!(score(Metric::HitAt3) >= 0.75, "{:?}", summary.scores);
    assert!(score(Metric::Mrr) >= 0.5 && score(Metric::Mrr) <= 1.0);
    // The passages are the configuration's extra context, counted per question.
    assert!(
        summary.cost.extra_context_tokens_mean > 50.0,
        "{:?}",
        summary.cost
    );
    // What the knowledge base adds: its three documents and its index on disk, nothing trained.
    let footprint = summary.cost.footprint;
    assert_eq!(
        (footprint.data_rows, footprint.trainable_parameters),
        (3, 0)
    );
    assert!(footprint.artifact_bytes > 10_000, "{footprint:?}");
    let rows = eval::show(&ws, &summary.id).unwrap().rows;
    assert!(rows
        .iter()
        .all(|r| r.grounded == Some(true) && !r.retrieved.is_empty()));
}

#[test]
fn a_judge_grades_each_answer_and_is_labelled_as_a_judge() {
    let (dir, ws) = workspace_with_default_model();
    let request = EvalRequest {
        data: write_rows(dir.path(), &[QUESTIONS[0], QUESTIONS[3]]),
        max_tokens: 12,
        judge: Some(tunelab_api::DEFAULT_MODEL.into()),
        metrics: vec![Metric::Judge, Metric::ExactMatch],
        ..Default::default()
    };
    let (summary, events) = evaluate(&ws, &request, None);
    let summary = summary.unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, EvalEvent::Judged { .. }))
            .count(),
        2
    );
    let rows = eval::show(&ws, &summary.id).unwrap().rows;
    assert!(rows.iter().all(|r| r.judge_reply.is_some()), "{rows:?}");
    if let Some(judge) = summary.scores.iter().find(|s| s.metric == Metric::Judge) {
        assert_eq!(judge.label, "judge (smollm2-135m-instruct)");
    }
    // Without a judge model there is no judge metric to ask for.
    let err = evaluate(
        &ws,
        &EvalRequest {
            judge: None,
            ..request
        },
        None,
    )
    .0
    .unwrap_err();
    assert!(
        err.message.contains("needs a judge model"),
        "{}",
        err.message
    );
}
