//! Runs as the app starts them: a run stopped part-way resumes from its checkpoint with its own
//! settings and finishes where an uninterrupted run would.

use std::sync::atomic::{AtomicBool, Ordering};

use tunelab_api::runs::{self, TrainEvent, TrainRequest};
use tunelab_api::train::{self, Method, RunStatus};

use crate::workspace_with_default_model;
use tunelab_api::ErrorCode;

fn request() -> TrainRequest {
    TrainRequest {
        method: Method::Lora,
        model: tunelab_api::DEFAULT_MODEL.into(),
        data: std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../datasets/lora-json-extract/train.jsonl")
            .to_string_lossy()
            .into_owned(),
        max_steps: 4,
        batch_size: 1,
        seq_len: 224,
        lr: None,
        rank: None,
        alpha: None,
        virtual_tokens: None,
        preset: None,
    }
}

#[test]
fn method_settings_reach_the_run_configuration_and_bad_ones_name_their_field() {
    let dir = tempfile::tempdir().unwrap();
    let ws = tunelab_api::Workspace::open(Some(dir.path().into())).unwrap();
    let config = TrainRequest {
        rank: Some(8),
        alpha: Some(16.0),
        ..request()
    }
    .to_config(&ws)
    .unwrap();
    assert_eq!((config.lora.rank, config.lora.alpha), (8, 16.0));
    let config = TrainRequest {
        method: Method::SoftPrompt,
        virtual_tokens: Some(12),
        ..request()
    }
    .to_config(&ws)
    .unwrap();
    assert_eq!(config.soft_prompt.num_virtual_tokens, 12);
    let config = TrainRequest {
        method: Method::Pretrain,
        preset: Some("1m".into()),
        ..request()
    }
    .to_config(&ws)
    .unwrap();
    assert_eq!(config.pretrain.preset.as_str(), "1m");
    // The app's runs go where the workspace's device setting says.
    assert_eq!(config.device, tunelab_api::DeviceChoice::Auto);
    let cpu = tunelab_api::settings::Settings {
        device: tunelab_api::DeviceChoice::Cpu,
    };
    tunelab_api::settings::save(&ws, &cpu).unwrap();
    assert_eq!(
        request().to_config(&ws).unwrap().device,
        tunelab_api::DeviceChoice::Cpu
    );
    for (bad, field) in [
        (
            TrainRequest {
                rank: Some(0),
                ..request()
            },
            "(`lora.rank`) 0 is out of range",
        ),
        (
            TrainRequest {
                alpha: Some(-1.0),
                ..request()
            },
            "(`lora.alpha`) -1 is out of range",
        ),
        (
            TrainRequest {
                method: Method::SoftPrompt,
                virtual_tokens: Some(9999),
                ..request()
            },
            "(`soft_prompt.num_virtual_tokens`) 9999 is out of range",
        ),
        (
            TrainRequest {
                preset: Some("huge".into()),
                ..request()
            },
            "unknown size preset `huge`",
        ),
        (
            TrainRequest {
                lr: Some(3.0),
                ..request()
            },
            "(`train.lr`) 3 is not between 0 and 1",
        ),
    ] {
        let err = bad.to_config(&ws).unwrap_err();
        assert!(err.message.contains(field), "{}", err.message);
    }
}

#[test]
fn a_cancelled_run_resumes_from_its_checkpoint_and_finishes() {
    let (_dir, ws) = workspace_with_default_model();
    let cancel = AtomicBool::new(false);
    let mut steps = Vec::new();
    let mut seen_running = None;
    let stopped = runs::start(&ws, &request(), &cancel, &mut |e| {
        if let TrainEvent::Step { step, .. } = e {
            steps.push(step);
            if step == 1 {
                // While it trains, the list says so, names this process, and resume refuses.
                let listed = runs::list(&ws).unwrap().remove(0);
                let refused = runs::resume(&ws, &listed.id, &AtomicBool::new(false), &mut |_| {});
                seen_running = Some((listed, refused));
            }
            if step == 2 {
                cancel.store(true, Ordering::Relaxed);
            }
        }
    })
    .unwrap();
    let (listed, refused) = seen_running.expect("step 1 was seen");
    assert_eq!(listed.status, RunStatus::Running);
    assert!(!listed.can_resume);
    assert_eq!(listed.holder.unwrap().pid, std::process::id());
    let refused = refused.unwrap_err();
    assert_eq!(refused.code, ErrorCode::Busy);
    assert!(
        refused.message.contains("still training"),
        "{}",
        refused.message
    );
    assert!(runs::list(&ws).unwrap()[0].can_resume);
    assert_eq!(stopped.status, RunStatus::Cancelled);
    assert_eq!(steps, vec![1, 2]);
    assert!(!stopped.has_artifact);

    cancel.store(false, Ordering::Relaxed);
    let mut events = Vec::new();
    let finished = runs::resume(&ws, &stopped.id, &cancel, &mut |e| events.push(e)).unwrap();
    assert!(
        matches!(&events[0], TrainEvent::Started { run_id } if *run_id == stopped.id),
        "{events:?}"
    );
    let resumed: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            TrainEvent::Step { step, .. } => Some(*step),
            _ => None,
        })
        .collect();
    assert_eq!(
        resumed,
        vec![3, 4],
        "the resumed run starts after its checkpoint"
    );
    assert_eq!(finished.status, RunStatus::Completed);
    assert_eq!(finished.steps, 4);
    assert!(finished.has_artifact);
    // One run in the list, not two.
    assert_eq!(runs::list(&ws).unwrap().len(), 1);

    let err = runs::resume(&ws, &stopped.id, &cancel, &mut |_| {}).unwrap_err();
    assert!(err.message.contains("already finished"), "{}", err.message);
    // Started again in its own folder, a completed run is refused and left as it was.
    let dir = ws.runs_dir().join(&stopped.id);
    let before = std::fs::read(dir.join("summary.json")).unwrap();
    let config = request().to_config(&ws).unwrap();
    let mut quiet = NoProgress;
    let err = train::run(&ws, &config, &dir, &mut quiet, &cancel).unwrap_err();
    assert!(
        err.message.contains("already holds a completed run"),
        "{}",
        err.message
    );
    assert_eq!(std::fs::read(dir.join("summary.json")).unwrap(), before);
    assert!(dir.join("artifact/adapter_model.safetensors").is_file());
    assert_eq!(
        runs::resume(&ws, "nope", &cancel, &mut |_| {})
            .unwrap_err()
            .code,
        ErrorCode::NotFound
    );
    assert!(runs::resume(&ws, "../escape", &cancel, &mut |_| {}).is_err());
}

struct NoProgress;

impl train::ProgressSink for NoProgress {
    fn step(&mut self, _: &train::StepMetrics) {}
    fn eval(&mut self, _: &train::EvalMetrics) {}
}

#[test]
fn a_run_that_fails_after_it_started_says_why_in_the_list() {
    let (dir, ws) = workspace_with_default_model();
    // Rows without any text to learn from: the run starts, then finds nothing usable.
    let data = dir.path().join("empty.jsonl");
    std::fs::write(&data, "{\"prompt\": \"\", \"completion\": \"\"}\n").unwrap();
    let request = TrainRequest {
        data: data.to_string_lossy().into_owned(),
        ..request()
    };
    let err = runs::start(&ws, &request, &AtomicBool::new(false), &mut |_| {}).unwrap_err();
    let listed = runs::list(&ws).unwrap().remove(0);
    assert_eq!(listed.status, RunStatus::Failed);
    assert_eq!(listed.error.as_ref(), Some(&err));
    assert!(!listed.can_resume, "nothing to resume from");
}
