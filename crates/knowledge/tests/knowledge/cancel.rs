//! A stopped add leaves the knowledge base as it was, even after it wrote chunks: no file is
//! left with part of its chunks (which the next add would take as unchanged).

use std::sync::atomic::{AtomicBool, Ordering};

use tunelab_knowledge::{AddProgress, KnowledgeError};

use crate::{copy_dir, embedder, new_kb, sample};

#[test]
fn an_add_stopped_after_it_wrote_is_undone_and_the_next_add_does_it_all() {
    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path().join("docs");
    copy_dir(&sample().join("docs"), &docs);
    let store = new_kb(dir.path(), "kb");
    // One file first: what the stopped adds must leave as it is.
    store
        .add("kb", embedder(), &[docs.join("returns.md")], &mut |_| {})
        .unwrap();
    let before = store.info("kb").unwrap().chunks;
    assert!(before > 0);

    // Stopped once the last chunks are embedded: they are written, then the add is undone.
    let cancel = AtomicBool::new(false);
    let mut embedded = false;
    let err = store
        .add_cancellable(
            "kb",
            embedder(),
            std::slice::from_ref(&docs),
            &cancel,
            &mut |p| {
                if let AddProgress::Embedding { done, total } = p {
                    if done == total {
                        embedded = true;
                        cancel.store(true, Ordering::Relaxed);
                    }
                }
            },
        )
        .unwrap_err();
    assert!(embedded, "the add got as far as writing");
    assert!(
        matches!(err, KnowledgeError::Cancelled(ref name) if name == "kb"),
        "{err}"
    );
    assert_eq!(store.info("kb").unwrap().chunks, before);
    let sources = store.sources("kb").unwrap();
    assert_eq!(sources.len(), 1, "{sources:?}");

    // Stopped before it starts reading: nothing changes either.
    let err = store
        .add_cancellable(
            "kb",
            embedder(),
            std::slice::from_ref(&docs),
            &AtomicBool::new(true),
            &mut |_| {},
        )
        .unwrap_err();
    assert!(matches!(err, KnowledgeError::Cancelled(_)), "{err}");
    assert_eq!(store.info("kb").unwrap().chunks, before);

    // The next add takes every other file as new: none was left half there.
    let report = store
        .add("kb", embedder(), std::slice::from_ref(&docs), &mut |_| {})
        .unwrap();
    assert_eq!(report.unchanged.len(), 1, "{:?}", report.unchanged);
    assert_eq!(report.added.len(), 10, "{:?}", report.added);
    let after = store.info("kb").unwrap().chunks;
    assert_eq!(after, before + report.chunks_added);
}
