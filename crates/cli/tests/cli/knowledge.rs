//! Knowledge bases from the command line: create, add the sample company's documents, search,
//! and answer with citations.

use std::path::Path;

use crate::{add_default_gguf, default_minilm, json, tunelab};

#[test]
fn a_knowledge_base_of_the_sample_company_searches_and_answers_with_citations() {
    let home = tempfile::tempdir().unwrap();
    let h = Some(home.path());
    let minilm = default_minilm();
    let entry = json(&tunelab(
        h,
        &["models", "add", minilm.to_str().unwrap(), "--json"],
    ));
    assert_eq!(entry["name"], "all-minilm-l6-v2");
    assert_eq!(entry["role"], "embedding", "{entry}");
    add_default_gguf(home.path(), "smollm2-135m-instruct");

    let info = json(&tunelab(h, &["kb", "create", "brightloom", "--json"]));
    assert_eq!(info["embedder"], "all-minilm-l6-v2");
    assert_eq!(info["dimension"], 384);
    assert_eq!(info["chunking"]["size"], 200);
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/kb-brightloom/docs");
    let docs = docs.canonicalize().unwrap();
    let report = json(&tunelab(
        h,
        &["kb", "add", "brightloom", docs.to_str().unwrap(), "--json"],
    ));
    assert_eq!(report["added"].as_array().unwrap().len(), 11, "{report}");
    assert!(report["failed"].as_array().unwrap().is_empty());

    let list = json(&tunelab(h, &["kb", "list", "--json"]));
    assert_eq!(list[0]["documents"], 11);

    let question = "How many holiday days do employees get?";
    for mode in ["hybrid", "vector", "text"] {
        let hits = json(&tunelab(
            h,
            &[
                "kb",
                "search",
                "brightloom",
                question,
                "--mode",
                mode,
                "--k",
                "3",
                "--json",
            ],
        ));
        let hits = hits.as_array().unwrap();
        assert_eq!(hits.len(), 3, "{mode}");
        let top = &hits[0];
        assert!(
            top["source"].as_str().unwrap().ends_with("handbook.md"),
            "{mode}: {top}"
        );
        assert!(
            top["text"].as_str().unwrap().contains("28 days"),
            "{mode}: {top}"
        );
        assert_eq!(
            top["location"]["section"], "Time off › Holidays",
            "{mode}: {top}"
        );
        assert!(top["score"].as_f64().unwrap() > 0.0);
    }

    let answer = json(&tunelab(
        h,
        &[
            "chat",
            "--kb",
            "brightloom",
            "--prompt",
            question,
            "--temperature",
            "0",
            "--max-tokens",
            "60",
            "--json",
        ],
    ));
    assert_eq!(answer["grounded"], true, "{answer}");
    let citations = answer["citations"].as_array().unwrap();
    assert!(!citations.is_empty() && citations.len() <= 3, "{answer}");
    assert_eq!(citations[0]["number"], 1);
    assert!(
        citations[0]["source"]
            .as_str()
            .unwrap()
            .ends_with("handbook.md"),
        "{answer}"
    );
    assert!(
        citations[0]["text"].as_str().unwrap().contains("28 days"),
        "{answer}"
    );
    // The default model is small, but with the warranty section in front of it it answers
    // from the document (greedy decoding: the same answer every run).
    let warranty = json(&tunelab(
        h,
        &[
            "chat",
            "--kb",
            "brightloom",
            "--prompt",
            "How long is the frame warranty?",
            "--temperature",
            "0",
            "--max-tokens",
            "40",
            "--json",
        ],
    ));
    assert!(
        warranty["text"].as_str().unwrap().contains("7 years"),
        "{warranty}"
    );
    assert!(
        warranty["citations"][0]["source"]
            .as_str()
            .unwrap()
            .ends_with("warranty.html"),
        "{warranty}"
    );

    let off_topic = json(&tunelab(
        h,
        &[
            "chat",
            "--kb",
            "brightloom",
            "--prompt",
            "Who won the 1966 football world cup final?",
            "--json",
        ],
    ));
    assert_eq!(off_topic["grounded"], false, "{off_topic}");
    assert!(off_topic["citations"].as_array().unwrap().is_empty());
    assert!(
        off_topic["text"]
            .as_str()
            .unwrap()
            .contains("nothing about that"),
        "{off_topic}"
    );

    // Adding the same folder again changes nothing.
    let again = json(&tunelab(
        h,
        &["kb", "add", "brightloom", docs.to_str().unwrap(), "--json"],
    ));
    assert_eq!(again["unchanged"].as_array().unwrap().len(), 11);
    assert_eq!(again["chunks_added"], 0);

    // A broken file is named, the command fails, and the knowledge base is as it was.
    let broken = home.path().join("broken.pdf");
    std::fs::write(&broken, b"%PDF-1.7\nnot really").unwrap();
    let out = tunelab(h, &["kb", "add", "brightloom", broken.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("broken.pdf"), "{stderr}");
    let show = json(&tunelab(h, &["kb", "show", "brightloom", "--json"]));
    assert_eq!(show["info"]["documents"], 11);

    let returns = docs.join("returns.md");
    let out = tunelab(
        h,
        &[
            "kb",
            "remove",
            "brightloom",
            "--source",
            returns.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let show = json(&tunelab(h, &["kb", "show", "brightloom", "--json"]));
    assert_eq!(show["info"]["documents"], 10);

    // The wrong kind of model is refused by name.
    let out = tunelab(
        h,
        &[
            "kb",
            "create",
            "other",
            "--embedder",
            "smollm2-135m-instruct",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("chat model"));

    let out = tunelab(h, &["kb", "remove", "brightloom"]);
    assert!(out.status.success());
    assert_eq!(
        json(&tunelab(h, &["kb", "list", "--json"])),
        serde_json::json!([])
    );
}
