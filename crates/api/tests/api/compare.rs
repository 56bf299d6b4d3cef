//! Comparisons with the real default models on tiny budgets: all six methods prepared,
//! evaluated and costed; a rerun reuses them; a cancelled one resumes; a bad task is named.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use tunelab_api::chat::ModelCache;
use tunelab_api::compare::{self, CompareEvent, CompareReport, CompareRequest, MethodId, Stage};
use tunelab_api::eval::{Caches, Metric};
use tunelab_api::knowledge::{self, KnowledgeCache};
use tunelab_api::train::RunStatus;
use tunelab_api::Workspace;

use crate::{default_gguf, workspace_with_default_model};

fn demo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../datasets/compare-demo")
}

/// A task over the demo's data with two documents and every budget cut to a few steps and
/// questions.
fn tiny_task(dir: &Path) -> PathBuf {
    let docs = dir.join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    let kb_docs = demo().join("../kb-brightloom/docs");
    for file in ["returns.md", "shipping.txt"] {
        std::fs::copy(kb_docs.join(file), docs.join(file)).unwrap();
    }
    let task = dir.join("task.toml");
    std::fs::write(
        &task,
        format!(
            r#"name = "tiny"
train = "{train}"
eval = "{eval}"
documents = "docs"

[template]
system = "Start every reply with \"Brightloom Support:\"."
user = "{{{{input}}}}"

[[template.examples]]
user = "How many days do customers have to return a bike?"
assistant = "Brightloom Support: 30 days. Ride on!"

[budget]
soft_prompt_steps = 2
lora_steps = 2
full_steps = 1
pretrain_steps = 2
batch_size = 2
seq_len = 64
eval_limit = 3
probe_limit = 2
max_tokens = 6
data_fractions = [0.5]
"#,
            train = demo().join("train.jsonl").display(),
            eval = demo().join("eval.jsonl").display(),
        ),
    )
    .unwrap();
    task
}

fn workspace_with_both_models() -> (tempfile::TempDir, Workspace) {
    let (dir, ws) = workspace_with_default_model();
    let minilm = default_gguf()
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("all-minilm-l6-v2");
    tunelab_api::models::add(&ws, &minilm, Some(knowledge::DEFAULT_EMBEDDER)).unwrap();
    (dir, ws)
}

/// Runs the comparison on fresh caches; `cancel_when` may stop it on an event.
fn compare_with(
    ws: &Workspace,
    request: &CompareRequest,
    cancel_when: &(dyn Fn(&CompareEvent) -> bool + Sync),
) -> (tunelab_api::Result<CompareReport>, Vec<CompareEvent>) {
    let (models, knowledge) = (ModelCache::default(), KnowledgeCache::default());
    let caches = Caches {
        models: &models,
        knowledge: &knowledge,
    };
    let cancel = AtomicBool::new(false);
    let mut events = Vec::new();
    let result = compare::run(ws, &caches, request, &cancel, &mut |event| {
        if cancel_when(&event) {
            cancel.store(true, Ordering::Relaxed);
        }
        events.push(event);
    });
    (result, events)
}

/// `report` as its JSON file holds it (the last digit of a float may differ from the value
/// computed).
fn as_saved(report: &CompareReport) -> CompareReport {
    serde_json::from_str(&serde_json::to_string(report).unwrap()).unwrap()
}

fn progress_of(events: &[CompareEvent], method: MethodId) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            CompareEvent::Progress {
                method: m, done, ..
            } if *m == method => Some(*done),
            _ => None,
        })
        .collect()
}

#[test]
fn a_tiny_comparison_measures_all_six_methods_and_a_rerun_reuses_them() {
    let (dir, ws) = workspace_with_both_models();
    let request = CompareRequest {
        task: tiny_task(dir.path()),
        preset: Default::default(),
        methods: Vec::new(),
        device: None,
    };
    let (report, events) = compare_with(&ws, &request, &|_| false);
    let report = report.unwrap();
    assert_eq!(report.status, RunStatus::Completed, "{report:#?}");
    let methods: Vec<MethodId> = report.methods.iter().map(|m| m.method).collect();
    assert_eq!(methods, MethodId::ALL);
    assert!(report.base_probe.is_some());
    for m in &report.methods {
        let what = m.method.as_str();
        assert_eq!(m.status, RunStatus::Completed, "{what}: {:?}", m.error);
        assert!(!m.what.is_empty() && !m.good_for.is_empty(), "{what}");
        for metric in [Metric::ContainsAll, Metric::Regex, Metric::TokenF1] {
            assert!(
                m.scores.iter().any(|s| s.metric == metric),
                "{what} has {}",
                metric.as_str()
            );
        }
        assert!(m.probe.is_some() && m.probe_change.is_some(), "{what}");
        let eval = m.cost.eval.as_ref().expect("answering cost");
        assert!(eval.latency_p50_s > 0.0, "{what}");
        let footprint = &m.cost.footprint;
        assert!(
            footprint.artifact_bytes > 0,
            "{what} adds something on disk"
        );
        // The evaluation, which finds the configuration on its own, sees the same parts.
        assert_eq!(&eval.footprint, footprint, "{what}");
        if m.method.trains() {
            assert!(m.run.is_some(), "{what}");
            assert!(footprint.trainable_parameters > 0, "{what}");
            assert!(
                footprint.data_tokens > 0 && footprint.data_rows > 0,
                "{what}"
            );
            assert!(m.cost.prepare_s > 0.0, "{what}");
            assert!(m.cost.prepare_peak_rss_bytes.is_some(), "{what}");
            assert!(
                !progress_of(&events, m.method).is_empty(),
                "{what} reported its steps"
            );
        }
    }
    let rag = &report.methods[1];
    assert_eq!(rag.kb.as_deref(), Some("compare-tiny"));
    assert_eq!(rag.cost.footprint.data_rows, 2, "two documents indexed");
    assert!(rag.scores.iter().any(|s| s.metric == Metric::HitAt3));
    assert!(rag.cost.eval.as_ref().unwrap().extra_context_tokens_mean > 0.0);
    let prompt = &report.methods[0];
    assert_eq!(prompt.template.as_deref(), Some("compare-tiny@1"));
    assert!(prompt.cost.eval.as_ref().unwrap().extra_context_tokens_mean > 0.0);
    assert_eq!(report.break_even.len(), 4, "one line per trained method");
    // Each trained method again on half its examples, with its scores beside the whole set's.
    for m in report.methods.iter().filter(|m| m.method.trains()) {
        let what = m.method.as_str();
        let fractions: Vec<f64> = m.data_curve.iter().map(|p| p.fraction).collect();
        assert_eq!(fractions, [0.5, 1.0], "{what}");
        let (half, whole) = (&m.data_curve[0], &m.data_curve[1]);
        assert_eq!(
            half.status,
            RunStatus::Completed,
            "{what}: {:?}",
            half.error
        );
        assert!(
            half.rows > 0 && half.rows < whole.rows,
            "{what}: {} of {} examples",
            half.rows,
            whole.rows
        );
        assert_ne!(half.run, m.run, "{what} trained a run of its own");
        assert_eq!(whole.scores, m.scores, "{what}");
        assert_eq!(half.scores.len(), m.scores.len(), "{what}: every metric");
        let data_points = events
            .iter()
            .filter(|e| matches!(e, CompareEvent::DataPoint { method, .. } if *method == m.method))
            .count();
        assert_eq!(data_points, 1, "{what}");
    }
    assert!(report.methods[..2].iter().all(|m| m.data_curve.is_empty()));
    // The report on disk is the one returned (as JSON keeps it), and exports carry every
    // method.
    let report = as_saved(&report);
    assert_eq!(compare::show(&ws, "tiny").unwrap(), report);
    let csv = compare::render_csv(&report);
    assert_eq!(csv.lines().count(), 7, "{csv}");
    let html = compare::render_html(&report);
    for m in &report.methods {
        assert!(html.contains(&m.name), "the page names {}", m.name);
    }
    assert!(html.contains("Quality against training data"));

    // Each question with every method's answer, most disputed first.
    let examples = compare::examples(&ws, "tiny").unwrap();
    assert_eq!(examples.metric, Some(Metric::TokenF1));
    assert_eq!(examples.rows.len(), 3, "the evaluation's limit");
    for row in &examples.rows {
        let methods: Vec<MethodId> = row.answers.iter().map(|a| a.method).collect();
        assert_eq!(methods, MethodId::ALL, "line {}", row.line);
        assert!(row.reference.is_some());
    }
    assert!(examples
        .rows
        .windows(2)
        .all(|w| w[0].disagreement >= w[1].disagreement));

    // Again: every run, index and evaluation is reused, nothing trains or answers.
    let (again, events) = compare_with(&ws, &request, &|_| false);
    let again = again.unwrap();
    assert_eq!(again.status, RunStatus::Completed);
    let moved: Vec<&CompareEvent> = events
        .iter()
        .filter(|e| matches!(e, CompareEvent::Progress { .. }))
        .collect();
    assert!(
        moved.is_empty(),
        "a rerun trains and answers nothing: {moved:?}"
    );
    for (a, b) in report.methods.iter().zip(&again.methods) {
        assert_eq!(a.scores, b.scores, "{}", a.method.as_str());
        assert_eq!(a.run, b.run);
        assert_eq!(a.cost.prepare_s, b.cost.prepare_s, "{}", a.method.as_str());
        assert_eq!(a.data_curve, b.data_curve, "{}", a.method.as_str());
    }
}

#[test]
fn a_cancelled_comparison_resumes_where_it_stopped() {
    let (dir, ws) = workspace_with_both_models();
    let task = tiny_task(dir.path());
    let text = std::fs::read_to_string(&task)
        .unwrap()
        .replace("lora_steps = 2", "lora_steps = 4")
        .replace("data_fractions = [0.5]", "");
    std::fs::write(&task, text).unwrap();
    let request = CompareRequest {
        task,
        preset: Default::default(),
        methods: vec![MethodId::Lora],
        device: None,
    };
    // Stopped after LoRA's second step.
    let (stopped, events) = compare_with(
        &ws,
        &request,
        &|e| matches!(e, CompareEvent::Progress { method: MethodId::Lora, done, .. } if *done >= 2),
    );
    let stopped = stopped.unwrap();
    assert_eq!(stopped.status, RunStatus::Cancelled);
    assert_eq!(stopped.methods[0].status, RunStatus::Cancelled);
    assert!(stopped.methods[0].eval.is_none(), "nothing answered yet");
    assert!(events.iter().any(|e| matches!(
        e,
        CompareEvent::Stage {
            stage: Stage::Training,
            ..
        }
    )));

    // Killed mid-run instead (the report still says running, nobody holds the lock): it
    // reads as interrupted.
    let saved = ws.comparisons_dir().join("tiny/report.json");
    let text = std::fs::read_to_string(&saved).unwrap();
    std::fs::write(
        &saved,
        text.replace("\"status\": \"cancelled\"", "\"status\": \"running\""),
    )
    .unwrap();
    assert_eq!(
        compare::show(&ws, "tiny").unwrap().status,
        RunStatus::Interrupted
    );

    let (resumed, events) = compare_with(&ws, &request, &|_| false);
    let resumed = resumed.unwrap();
    assert_eq!(resumed.status, RunStatus::Completed, "{resumed:#?}");
    let steps = progress_of(&events, MethodId::Lora);
    assert_eq!(
        steps.first(),
        Some(&3),
        "training resumed after step 2: {steps:?}"
    );
    let run = resumed.methods[0].run.clone().unwrap();
    let (_, summary) = tunelab_api::train::show(&ws.runs_dir().join(run)).unwrap();
    assert_eq!(summary.unwrap().steps, 4);
}

#[test]
fn a_bad_task_file_names_the_field() {
    let (dir, ws) = workspace_with_both_models();
    let task = tiny_task(dir.path());
    let text = std::fs::read_to_string(&task).unwrap();
    let cases = [
        (
            text.replace("documents = \"docs\"", "documents = \"nowhere\""),
            "`documents`: no folder at",
        ),
        (
            text.replace("name = \"tiny\"", "name = \"Tiny Task\""),
            "`name`",
        ),
        (
            text.replace("[budget]", "[budget]\nlora_stpes = 3"),
            "lora_stpes",
        ),
        (
            text.replace(
                "pretrain_steps = 2",
                "pretrain_steps = 2\npretrain_size = \"5m\"",
            ),
            "budget.pretrain_size",
        ),
        (text.replace("[0.5]", "[0.5, 1.5]"), "budget.data_fractions"),
    ];
    for (body, expected) in cases {
        std::fs::write(&task, body).unwrap();
        let request = CompareRequest {
            task: task.clone(),
            preset: Default::default(),
            methods: Vec::new(),
            device: None,
        };
        let error = compare_with(&ws, &request, &|_| false).0.unwrap_err();
        assert!(
            error.message.contains(expected) && error.message.contains("task.toml"),
            "`{expected}` in: {}",
            error.message
        );
    }
    assert!(!ws.comparisons_dir().exists(), "nothing was started");
}
