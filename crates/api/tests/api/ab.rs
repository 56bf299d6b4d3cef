//! The prompt studio's A/B test with the real default model: two template versions answer the
//! same questions, each side is an evaluation of its own (reused when run again), and the diff
//! pairs their rows.

use std::sync::atomic::AtomicBool;

use tunelab_api::chat::ModelCache;
use tunelab_api::eval::{self, AbSide, Caches, EvalEvent, TemplateAbRequest};
use tunelab_api::knowledge::KnowledgeCache;
use tunelab_api::prompts::{self, PromptTemplate, PromptVariable, TemplateRef};

use crate::workspace_with_default_model;
use tunelab_api::ErrorCode;

fn template(system: &str) -> PromptTemplate {
    PromptTemplate {
        system: system.into(),
        user: "{{input}}".into(),
        variables: vec![PromptVariable {
            name: "input".into(),
            value: "What is the capital of France?".into(),
        }],
        examples: Vec::new(),
    }
}

fn side(version: Option<u32>) -> Option<TemplateRef> {
    Some(TemplateRef {
        name: "house".into(),
        version,
    })
}

#[test]
fn an_ab_test_pairs_two_template_versions_and_reuses_its_sides() {
    let (dir, ws) = workspace_with_default_model();
    prompts::save(&ws, "house", "", &template("Answer in one word.")).unwrap();
    let house = "Always begin your answer with the words 'Dear customer,' and then answer.";
    prompts::save(&ws, "house", "house format", &template(house)).unwrap();
    let data = dir.path().join("questions.jsonl");
    std::fs::write(
        &data,
        [
            r#"{"prompt": "What is the capital of France?", "reference": "Paris"}"#,
            r#"{"prompt": "What is the capital of Italy?", "reference": "Rome"}"#,
            r#"{"prompt": "Name a primary colour.", "reference": "Red"}"#,
        ]
        .join("\n"),
    )
    .unwrap();
    let (models, knowledge) = (ModelCache::default(), KnowledgeCache::default());
    let caches = Caches {
        models: &models,
        knowledge: &knowledge,
    };
    let request = TemplateAbRequest {
        data: data.clone(),
        model: tunelab_api::DEFAULT_MODEL.into(),
        a: side(Some(1)),
        // The latest version, pinned when the test runs.
        b: side(None),
        max_tokens: 16,
        limit: None,
    };
    let ab = |request: &TemplateAbRequest| {
        let mut events = Vec::new();
        let result = eval::template_ab(&ws, &caches, request, &AtomicBool::new(false), &mut |e| {
            events.push(e)
        });
        (result, events)
    };
    let (diff, events) = ab(&request);
    let diff = diff.unwrap();
    assert_eq!(diff.paired_rows, 3);
    assert_eq!(diff.a.config.template, side(Some(1)));
    assert_eq!(diff.b.config.template, side(Some(2)));
    for s in [AbSide::A, AbSide::B] {
        let rows = events
            .iter()
            .filter(|e| e.side == s && matches!(e.event, EvalEvent::Row { .. }))
            .count();
        assert_eq!(rows, 3, "{s:?} answered every question");
    }
    assert!(!diff.metrics.is_empty());
    for m in &diff.metrics {
        assert!(
            (m.difference.value - (m.b.value - m.a.value)).abs() < 1e-9,
            "{m:?}"
        );
        assert!(m.difference.low <= m.difference.value && m.difference.value <= m.difference.high);
        assert_eq!(m.a.rows, 3);
    }
    // The other system text changes the answers: every row listed differs, the largest change
    // of a score first.
    assert!(!diff.rows.is_empty());
    assert!(diff.rows.iter().all(|r| r.a_answer != r.b_answer));
    let change = |r: &eval::RowDiff| {
        r.a_scores
            .iter()
            .map(|(m, a)| (r.b_scores[m] - a).abs())
            .fold(0.0, f64::max)
    };
    let changes: Vec<f64> = diff.rows.iter().map(change).collect();
    assert!(changes.windows(2).all(|w| w[0] >= w[1]), "{changes:?}");

    // Again: both sides are the evaluations made before.
    let (again, events) = ab(&request);
    assert_eq!(again.unwrap().rows.len(), diff.rows.len());
    assert!(events
        .iter()
        .all(|e| matches!(e.event, EvalEvent::Reused { .. })));

    // The same version on both sides (named two ways), or no template on either, is refused.
    for (a, b) in [(side(Some(2)), side(None)), (None, None)] {
        let (err, _) = ab(&TemplateAbRequest {
            a,
            b,
            ..request.clone()
        });
        assert_eq!(err.unwrap_err().code, ErrorCode::InvalidInput);
    }
    // Evaluations of different files are not set side by side.
    let other = dir.path().join("other.jsonl");
    std::fs::write(&other, r#"{"prompt": "Say hi.", "reference": "Hi"}"#).unwrap();
    let (third, _) = ab(&TemplateAbRequest {
        data: other,
        limit: Some(1),
        a: None,
        ..request.clone()
    });
    let err = eval::diff(&ws, &diff.a.id, &third.unwrap().b.id).unwrap_err();
    assert!(err.message.contains("different evaluation files"), "{err}");
}
