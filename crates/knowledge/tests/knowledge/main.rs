//! Knowledge bases end to end on the sample company in datasets/kb-brightloom: every format is
//! read, retrieval finds the right document, re-adding is idempotent, changed files replace their
//! chunks, and bad files are refused without touching what is already there.

mod cancel;
mod crash;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use tunelab_knowledge::{
    ChunkOptions, EmbeddedChunk, Embedder, KnowledgeError, KnowledgeStore, Location, SearchMode,
    SearchOptions,
};

fn models_dir() -> PathBuf {
    if let Ok(home) = std::env::var("TUNELAB_HOME") {
        return PathBuf::from(home).join("models");
    }
    let data = std::env::var("XDG_DATA_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").expect("HOME is set")).join(".local/share")
        });
    data.join("tunelab/models")
}

fn embedder() -> &'static Embedder {
    static EMBEDDER: OnceLock<Embedder> = OnceLock::new();
    EMBEDDER.get_or_init(|| {
        let folder = models_dir().join("all-minilm-l6-v2");
        assert!(
            folder.join("model.safetensors").is_file(),
            "{} is missing: run scripts/setup.sh (or scripts/fetch-models.py) first",
            folder.display()
        );
        Embedder::load("all-minilm-l6-v2", &folder, &tunelab_engine::Device::Cpu)
            .expect("embedder loads")
    })
}

/// The sample company's folder, by its canonical path (the one knowledge bases store).
fn sample() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../datasets/kb-brightloom")
        .canonicalize()
        .unwrap()
}

fn new_kb(dir: &Path, name: &str) -> KnowledgeStore {
    let store = KnowledgeStore::open(&dir.join("knowledge")).unwrap();
    let e = embedder();
    store
        .create(name, e.name(), e.dimension(), ChunkOptions::default())
        .unwrap();
    store
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[derive(serde::Deserialize)]
struct Question {
    question: String,
    sources: Vec<String>,
}

fn questions() -> Vec<Question> {
    std::fs::read_to_string(sample().join("questions.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The share of questions with an expected document among the top 3 hits.
fn top3_rate(
    store: &KnowledgeStore,
    name: &str,
    docs: &Path,
    mode: SearchMode,
) -> (f64, Vec<String>) {
    let options = SearchOptions {
        mode,
        k: 3,
        source: None,
    };
    let mut misses = Vec::new();
    let all = questions();
    for q in &all {
        let hits = store
            .search(name, embedder(), &q.question, &options)
            .unwrap();
        let expected: Vec<String> = q
            .sources
            .iter()
            .map(|s| docs.join(s).to_string_lossy().to_string())
            .collect();
        if !hits.iter().any(|h| expected.contains(&h.source)) {
            misses.push(format!(
                "{} -> {:?}",
                q.question,
                hits.iter()
                    .map(|h| h.source.rsplit('/').next().unwrap().to_string())
                    .collect::<Vec<_>>()
            ));
        }
    }
    (1.0 - misses.len() as f64 / all.len() as f64, misses)
}

#[test]
fn the_sample_company_is_read_and_hybrid_search_finds_the_right_document() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_kb(dir.path(), "brightloom");
    let docs = sample().join("docs");
    let mut stages = Vec::new();
    let report = store
        .add(
            "brightloom",
            embedder(),
            std::slice::from_ref(&docs),
            &mut |p| stages.push(format!("{p:?}")),
        )
        .unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.added.len(), 11, "{:?}", report.added);
    assert!(stages.iter().any(|s| s.starts_with("Embedding")));

    // Every format gave chunks, with a title and a location.
    let sources = store.sources("brightloom").unwrap();
    let format_of = |file: &str| {
        sources
            .iter()
            .find(|s| s.source.ends_with(file))
            .unwrap_or_else(|| panic!("{file} is missing"))
    };
    for (file, format, title) in [
        ("handbook.md", "markdown", "Brightloom Employee Handbook"),
        ("shipping.txt", "text", "shipping"),
        (
            "warranty.html",
            "html",
            "Warranty and care | Brightloom Cycles",
        ),
        (
            "security-policy.pdf",
            "pdf",
            "Brightloom Information Security Policy",
        ),
        ("travel-policy.docx", "docx", "Travel and Expenses Policy"),
        ("products.csv", "csv", "products"),
        ("faq.json", "json", "faq"),
        ("support-tickets.jsonl", "jsonl", "support-tickets"),
        (
            "engineering/battery-testing.md",
            "markdown",
            "Battery test procedure",
        ),
    ] {
        let s = format_of(file);
        assert_eq!(s.format, format, "{file}");
        assert_eq!(s.title, title, "{file}");
        assert!(s.chunks >= 1 && s.hash.len() == 64, "{file}: {s:?}");
    }
    assert_eq!(format_of("products.csv").chunks, 6, "one chunk per row");

    // Locations point back into the sources.
    let hits = store
        .search(
            "brightloom",
            embedder(),
            "How quickly must I report a lost laptop?",
            &SearchOptions::default(),
        )
        .unwrap();
    let top = &hits[0];
    assert!(top.source.ends_with("security-policy.pdf"), "{hits:#?}");
    assert_eq!(
        top.location.page,
        Some(2),
        "the incident rules are on page 2"
    );
    assert!(top.text.contains("within one hour"));

    let hits = store
        .search(
            "brightloom",
            embedder(),
            "Are brake pads covered by the warranty?",
            &SearchOptions::default(),
        )
        .unwrap();
    let warranty = hits
        .iter()
        .find(|h| h.source.ends_with("warranty.html"))
        .unwrap();
    assert_eq!(
        warranty.location.section.as_deref(),
        Some("Warranty › What is not covered"),
        "{hits:#?}"
    );
    assert!(!warranty.text.contains("Home"), "navigation is not content");

    let (hybrid, misses) = top3_rate(&store, "brightloom", &docs, SearchMode::Hybrid);
    let (vector, _) = top3_rate(&store, "brightloom", &docs, SearchMode::Vector);
    let (text, _) = top3_rate(&store, "brightloom", &docs, SearchMode::Text);
    eprintln!("top-3 document hit rate: hybrid {hybrid:.3}, vector {vector:.3}, text {text:.3}");
    assert!(
        hybrid >= 0.9,
        "hybrid top-3 rate {hybrid}: misses {misses:#?}"
    );

    // Filter by source: a folder keeps only its files.
    let engineering = docs.join("engineering").to_string_lossy().to_string();
    let hits = store
        .search(
            "brightloom",
            embedder(),
            "battery",
            &SearchOptions {
                mode: SearchMode::Hybrid,
                k: 10,
                source: Some(engineering.clone()),
            },
        )
        .unwrap();
    assert!(!hits.is_empty());
    assert!(
        hits.iter().all(|h| h.source.starts_with(&engineering)),
        "{hits:#?}"
    );

    // The settings survive reopening: they live in the table's schema metadata.
    drop(store);
    let store = KnowledgeStore::open(&dir.path().join("knowledge")).unwrap();
    let info = store.info("brightloom").unwrap();
    assert_eq!(info.embedder, "all-minilm-l6-v2");
    assert_eq!(info.dimension, 384);
    assert_eq!(info.chunking, ChunkOptions::default());
    assert_eq!(info.documents, 11);
    assert!(!info.vector_index, "small tables are scanned exactly");
}

#[test]
fn adding_again_is_idempotent_and_a_changed_file_replaces_its_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path().join("docs");
    copy_dir(&sample().join("docs"), &docs);
    let store = new_kb(dir.path(), "kb");
    store
        .add("kb", embedder(), std::slice::from_ref(&docs), &mut |_| {})
        .unwrap();
    let first = store.info("kb").unwrap();

    let again = store
        .add("kb", embedder(), std::slice::from_ref(&docs), &mut |_| {})
        .unwrap();
    assert_eq!(again.unchanged.len(), 11);
    assert!(again.added.is_empty() && again.replaced.is_empty());
    assert_eq!(again.chunks_added, 0);
    assert_eq!(store.info("kb").unwrap().chunks, first.chunks);

    // A changed file: its old chunks go, its new ones come, the rest stay.
    let returns = docs.join("returns.md");
    std::fs::write(
        &returns,
        "# Returns\n\nCustomers may return a bike within 60 days of delivery.\n",
    )
    .unwrap();
    let changed = store
        .add("kb", embedder(), std::slice::from_ref(&docs), &mut |_| {})
        .unwrap();
    assert_eq!(
        changed.replaced,
        vec![returns.to_string_lossy().to_string()]
    );
    assert_eq!(changed.unchanged.len(), 10);
    let sources = store.sources("kb").unwrap();
    let r = sources
        .iter()
        .find(|s| s.source.ends_with("returns.md"))
        .unwrap();
    assert_eq!(r.chunks, 1);
    let after = store.info("kb").unwrap();
    assert_eq!(after.chunks, first.chunks - changed.chunks_removed + 1);
    let hits = store
        .search(
            "kb",
            embedder(),
            "return window in days",
            &SearchOptions::default(),
        )
        .unwrap();
    assert!(hits.iter().any(|h| h.text.contains("60 days")));
    assert!(
        !hits.iter().any(|h| h.text.contains("within 30 days")),
        "{hits:#?}"
    );

    // Removing a file deletes exactly its chunks.
    let removed = store
        .remove_source("kb", &returns.to_string_lossy())
        .unwrap();
    assert_eq!(removed, 1);
    assert_eq!(store.info("kb").unwrap().documents, 10);
    let err = store
        .remove_source("kb", "/nowhere.md")
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("/nowhere.md") && err.contains("kb"), "{err}");
}

#[test]
fn a_corrupt_pdf_and_a_zip_bomb_are_refused_and_nothing_else_changes() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_kb(dir.path(), "kb");
    let docs = sample().join("docs");
    store
        .add("kb", embedder(), &[docs.join("returns.md")], &mut |_| {})
        .unwrap();
    let before = store.sources("kb").unwrap();

    let bad = dir.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    // A PDF cut off in the middle of its first object.
    let pdf = std::fs::read(docs.join("security-policy.pdf")).unwrap();
    std::fs::write(bad.join("cut.pdf"), &pdf[..300]).unwrap();
    // 20 MiB of zeros, deflated to about 20 KiB, as word/document.xml.
    {
        use std::io::Write;
        let file = std::fs::File::create(bad.join("bomb.docx")).unwrap();
        let mut zip = zip::ZipWriter::new(file);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .large_file(true);
        zip.start_file("word/document.xml", opts).unwrap();
        let block = vec![0u8; 1 << 20];
        for _ in 0..20 {
            zip.write_all(&block).unwrap();
        }
        zip.finish().unwrap();
    }
    let report = store
        .add("kb", embedder(), std::slice::from_ref(&bad), &mut |_| {})
        .unwrap();
    assert!(report.added.is_empty() && report.chunks_added == 0);
    assert_eq!(report.failed.len(), 2, "{:?}", report.failed);
    let bomb = report
        .failed
        .iter()
        .find(|f| f.path.ends_with("bomb.docx"))
        .unwrap();
    assert!(
        bomb.error.contains("bomb.docx") && bomb.error.contains("zip bomb"),
        "{}",
        bomb.error
    );
    let cut = report
        .failed
        .iter()
        .find(|f| f.path.ends_with("cut.pdf"))
        .unwrap();
    assert!(
        cut.error.contains("cut.pdf") && cut.error.contains("pdf"),
        "{}",
        cut.error
    );
    assert_eq!(store.sources("kb").unwrap(), before);

    // A file given by name with an extension we cannot read says so.
    std::fs::write(bad.join("image.png"), b"\x89PNG").unwrap();
    let report = store
        .add("kb", embedder(), &[bad.join("image.png")], &mut |_| {})
        .unwrap();
    assert!(
        report.failed[0].error.contains(".png"),
        "{:?}",
        report.failed
    );
    assert_eq!(store.sources("kb").unwrap(), before);
}

#[test]
fn another_embedder_is_refused_with_both_names() {
    let dir = tempfile::tempdir().unwrap();
    let store = KnowledgeStore::open(&dir.path().join("knowledge")).unwrap();
    store
        .create("kb", "bge-small-en", 384, ChunkOptions::default())
        .unwrap();
    let err = store
        .search("kb", embedder(), "anything", &SearchOptions::default())
        .err()
        .unwrap();
    assert!(matches!(err, KnowledgeError::EmbedderMismatch { .. }));
    let text = err.to_string();
    assert!(
        text.contains("bge-small-en") && text.contains("all-minilm-l6-v2"),
        "{text}"
    );

    assert!(matches!(
        store.create("kb", "x", 3, ChunkOptions::default()),
        Err(KnowledgeError::Exists(_))
    ));
    assert!(matches!(
        store.create("no spaces", "x", 3, ChunkOptions::default()),
        Err(KnowledgeError::InvalidName { .. })
    ));
    assert!(matches!(
        store.info("missing"),
        Err(KnowledgeError::NotFound(_))
    ));
    store.remove("kb").unwrap();
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn a_large_table_gets_an_ann_index_that_still_finds_exact_matches() {
    let dir = tempfile::tempdir().unwrap();
    let store = KnowledgeStore::open(&dir.path().join("knowledge"))
        .unwrap()
        .with_ann_threshold(1_000);
    store
        .create("big", "synthetic", 32, ChunkOptions::default())
        .unwrap();
    // Deterministic pseudo-random unit vectors.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let chunks: Vec<EmbeddedChunk> = (0..1_200)
        .map(|i| {
            let v: Vec<f32> = (0..32).map(|_| next()).collect();
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            EmbeddedChunk {
                source: format!("/synthetic/{}.txt", i / 10),
                title: format!("doc {}", i / 10),
                location: Location {
                    record: Some(i as u32),
                    ..Default::default()
                },
                text: format!("chunk number {i} about topic{}", i % 37),
                vector: v.iter().map(|x| x / n).collect(),
            }
        })
        .collect();
    let probe = chunks[777].vector.clone();
    store.add_embedded("big", chunks).unwrap();
    let info = store.info("big").unwrap();
    assert!(info.vector_index, "{info:?}");
    assert_eq!(info.chunks, 1_200);
    let hits = store
        .search_embedded(
            "big",
            "",
            &probe,
            &SearchOptions {
                mode: SearchMode::Vector,
                k: 3,
                source: None,
            },
        )
        .unwrap();
    assert_eq!(hits[0].location.record, Some(777), "{hits:#?}");
    assert!(hits[0].similarity > 0.999);
}

#[test]
fn the_relevance_floor_separates_answerable_questions_from_unrelated_ones() {
    use tunelab_knowledge::prompt::DEFAULT_MIN_SIMILARITY;
    let dir = tempfile::tempdir().unwrap();
    let store = new_kb(dir.path(), "kb");
    store
        .add("kb", embedder(), &[sample().join("docs")], &mut |_| {})
        .unwrap();
    let best = |q: &str| {
        store
            .search("kb", embedder(), q, &SearchOptions::default())
            .unwrap()
            .iter()
            .map(|h| h.similarity)
            .fold(f32::MIN, f32::max)
    };
    for q in questions() {
        let s = best(&q.question);
        assert!(s >= DEFAULT_MIN_SIMILARITY, "{:?} scored {s}", q.question);
    }
    let off_topic = std::fs::read_to_string(sample().join("off-topic.jsonl")).unwrap();
    for line in off_topic.lines() {
        let q: serde_json::Value = serde_json::from_str(line).unwrap();
        let q = q["question"].as_str().unwrap();
        let s = best(q);
        assert!(s < DEFAULT_MIN_SIMILARITY, "{q:?} scored {s}");
    }
}
