//! What an add cut off in the middle leaves, and what the next add makes of it: whole files
//! only, an older version's chunks deleted, the full-text index rebuilt, one name per file,
//! unreadable entries skipped.

use std::collections::BTreeMap;
use std::path::Path;

use tunelab_knowledge::{AddProgress, ChunkOptions, KnowledgeStore, SearchMode, SearchOptions};

use crate::{copy_dir, embedder, new_kb, sample};

/// A knowledge base's LanceDB table through a connection of its own (as another process
/// would have), with the runtime that drives it.
fn open_table(dir: &Path, table: &str) -> (tokio::runtime::Runtime, lancedb::Table) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let t = rt.block_on(async {
        let db = lancedb::connect(dir.join("knowledge").to_str().unwrap())
            .execute()
            .await
            .unwrap();
        db.open_table(table).execute().await.unwrap()
    });
    (rt, t)
}

/// Rows of one source, read straight from the LanceDB table.
fn raw_rows(dir: &Path, table: &str, source: &str) -> Vec<arrow_array::RecordBatch> {
    use futures::TryStreamExt;
    use lancedb::query::{ExecutableQuery, QueryBase};
    let (rt, t) = open_table(dir, table);
    rt.block_on(async {
        t.query()
            .only_if(format!("source = '{source}'"))
            .execute()
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap()
    })
}

fn append_raw_rows(dir: &Path, table: &str, rows: Vec<arrow_array::RecordBatch>) {
    let (rt, t) = open_table(dir, table);
    rt.block_on(async {
        for batch in rows {
            t.add(batch).execute().await.unwrap();
        }
    })
}

#[test]
fn chunks_an_interrupted_replace_left_behind_go_at_the_next_add() {
    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    let returns = docs.join("returns.md");
    std::fs::write(
        &returns,
        "# Returns\n\nBikes may be returned within 30 days of delivery.\n\n## Refunds\n\nRefunds reach the card in five working days.\n",
    )
    .unwrap();
    let store = new_kb(dir.path(), "kb");
    store
        .add("kb", embedder(), std::slice::from_ref(&docs), &mut |_| {})
        .unwrap();
    let source = returns.to_string_lossy().to_string();
    let old_rows = raw_rows(dir.path(), "kb", &source);
    let old_chunks: usize = old_rows.iter().map(|b| b.num_rows()).sum();
    assert!(old_chunks >= 1);

    // The file changes and is added again; then the old version's rows are put back, which is
    // the state a crash between writing the new chunks and deleting the old ones leaves.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::write(
        &returns,
        "# Returns\n\nBikes may be returned within 60 days of delivery.\n",
    )
    .unwrap();
    let changed = store
        .add("kb", embedder(), std::slice::from_ref(&docs), &mut |_| {})
        .unwrap();
    assert_eq!(changed.replaced, vec![source.clone()]);
    append_raw_rows(dir.path(), "kb", old_rows);
    // The store's handle sees another connection's write within a second.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(store.info("kb").unwrap().chunks, 1 + old_chunks);
    // Listed as its newest version only.
    let listed = store.sources("kb").unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].chunks, 1, "{listed:?}");

    // The next add finds the file unchanged and clears the leftovers.
    let again = store
        .add("kb", embedder(), std::slice::from_ref(&docs), &mut |_| {})
        .unwrap();
    assert_eq!(again.unchanged, vec![source.clone()]);
    assert_eq!(again.chunks_added, 0);
    assert_eq!(again.chunks_removed, old_chunks);
    assert_eq!(store.info("kb").unwrap().chunks, 1);
    let hits = store
        .search("kb", embedder(), "return window", &SearchOptions::default())
        .unwrap();
    assert!(
        hits.iter().all(|h| !h.text.contains("30 days")),
        "{hits:#?}"
    );
    assert!(hits.iter().any(|h| h.text.contains("60 days")), "{hits:#?}");
}

/// Chunks per file, by file name.
fn chunks_by_file(store: &KnowledgeStore, name: &str) -> BTreeMap<String, usize> {
    store
        .sources(name)
        .unwrap()
        .into_iter()
        .map(|s| {
            let file = Path::new(&s.source).file_name().unwrap();
            (file.to_string_lossy().into_owned(), s.chunks)
        })
        .collect()
}

/// Whether the table has an index on `search_text`, read by another connection.
fn has_text_index(dir: &Path, table: &str) -> bool {
    let (rt, t) = open_table(dir, table);
    rt.block_on(t.list_indices())
        .unwrap()
        .iter()
        .any(|i| i.columns.iter().any(|c| c == "search_text"))
}

fn store_in(dir: &Path) -> KnowledgeStore {
    let store = KnowledgeStore::open(&dir.join("knowledge"))
        .unwrap()
        .with_write_group(8);
    store
        .create(
            "kb",
            embedder().name(),
            embedder().dimension(),
            ChunkOptions::default(),
        )
        .unwrap();
    store
}

#[test]
fn an_add_cut_off_between_writes_leaves_whole_files_and_the_next_add_completes_it() {
    let clean_dir = tempfile::tempdir().unwrap();
    let clean = store_in(clean_dir.path());
    let report = clean
        .add("kb", embedder(), &[sample().join("docs")], &mut |_| {})
        .unwrap();
    assert_eq!(report.added.len(), 11);
    let expected = chunks_by_file(&clean, "kb");

    // The process dies once the first group of files is written: a panic in the progress
    // callback at the second group's embedding stops the add where it is, with no undo (what
    // SIGKILL leaves, without killing the test).
    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path().join("docs");
    copy_dir(&sample().join("docs"), &docs);
    let store = store_in(dir.path());
    let mut groups = 0;
    let cut = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        store.add("kb", embedder(), std::slice::from_ref(&docs), &mut |p| {
            if let AddProgress::Embedding { .. } = p {
                groups += 1;
                if groups == 2 {
                    panic!("killed");
                }
            }
        })
    }));
    assert!(cut.is_err(), "the add was cut off");
    let partial = chunks_by_file(&store, "kb");
    assert!(
        !partial.is_empty() && partial.len() < expected.len(),
        "some files landed, not all: {partial:?}"
    );
    for (file, chunks) in &partial {
        assert_eq!(
            Some(chunks),
            expected.get(file),
            "{file} is in with every chunk or not at all"
        );
    }
    assert!(
        !has_text_index(dir.path(), "kb"),
        "cut off before the indexes were built"
    );

    // Adding the files that landed again finds nothing new, and still builds the index.
    let landed: Vec<std::path::PathBuf> = store
        .sources("kb")
        .unwrap()
        .into_iter()
        .map(|s| s.source.into())
        .collect();
    let again = store.add("kb", embedder(), &landed, &mut |_| {}).unwrap();
    assert_eq!(again.unchanged.len(), partial.len());
    assert_eq!(again.chunks_added, 0);
    assert!(has_text_index(dir.path(), "kb"), "the next add repaired it");
    let text = SearchOptions {
        mode: SearchMode::Text,
        ..Default::default()
    };
    let title = store.sources("kb").unwrap()[0].title.clone();
    let hits = store.search("kb", embedder(), &title, &text).unwrap();
    assert!(!hits.is_empty(), "text search finds `{title}`");

    // The whole folder: the rest is new, and the result is chunk for chunk a clean ingest.
    let rest = store
        .add("kb", embedder(), std::slice::from_ref(&docs), &mut |_| {})
        .unwrap();
    assert_eq!(rest.unchanged.len(), partial.len());
    assert_eq!(rest.added.len(), expected.len() - partial.len());
    assert_eq!(chunks_by_file(&store, "kb"), expected);
    let last = store
        .add("kb", embedder(), std::slice::from_ref(&docs), &mut |_| {})
        .unwrap();
    assert_eq!(last.chunks_added, 0, "a second add adds nothing");
}

#[test]
fn one_file_by_two_paths_is_one_document_and_a_dangling_link_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path().join("docs");
    std::fs::create_dir_all(docs.join("sub")).unwrap();
    std::fs::copy(sample().join("docs/returns.md"), docs.join("returns.md")).unwrap();
    std::fs::copy(
        sample().join("docs/shipping.txt"),
        docs.join("sub/shipping.txt"),
    )
    .unwrap();
    std::os::unix::fs::symlink(docs.join("gone.md"), docs.join("dangling.md")).unwrap();
    std::os::unix::fs::symlink(docs.join("returns.md"), docs.join("sub/link.md")).unwrap();
    let store = store_in(dir.path());

    let report = store
        .add(
            "kb",
            embedder(),
            &[docs.clone(), docs.join("sub/../returns.md")],
            &mut |_| {},
        )
        .unwrap();
    assert_eq!(report.added.len(), 2, "{:?}", report.added);
    assert_eq!(report.failed.len(), 1, "{:?}", report.failed);
    assert!(
        report.failed[0].path.ends_with("dangling.md"),
        "{:?}",
        report.failed
    );
    let sources = store.sources("kb").unwrap();
    assert_eq!(sources.len(), 2, "{sources:?}");
    assert!(sources.iter().all(|s| !s.source.contains("..")));

    // The same file by another spelling is unchanged, not a second copy.
    let again = store
        .add(
            "kb",
            embedder(),
            &[docs.join("sub/../sub/link.md")],
            &mut |_| {},
        )
        .unwrap();
    assert_eq!(again.unchanged.len(), 1, "{again:?}");
    assert_eq!(again.chunks_added, 0);
}
