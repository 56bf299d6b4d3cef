//! Grounded prompts: search hits become numbered sources inside the system message, as many as
//! fit the model's context budget, best first. The citations returned say which number is which
//! file and place, so an answer's "[2]" can be shown as a link to the source.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::store::Hit;

/// Hits less similar to the question than this are not treated as evidence. Measured on the
/// sample knowledge base (datasets/kb-brightloom) with all-MiniLM-L6-v2: the best chunk of
/// every question it answers scores 0.31–0.83, unrelated questions score 0.07–0.22.
pub const DEFAULT_MIN_SIMILARITY: f32 = 0.25;

/// One numbered source in a grounded prompt.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct Citation {
    /// The number the answer cites, from 1.
    pub number: usize,
    pub source: String,
    pub title: String,
    /// "page 3", "Returns › Damaged items, line 12", "record 7".
    pub location: String,
    pub score: f32,
    pub similarity: f32,
    /// The chunk's text, as the model saw it.
    pub text: String,
}

/// The system message and the sources it cites.
#[derive(Debug, Clone)]
pub struct GroundedPrompt {
    pub system: String,
    pub citations: Vec<Citation>,
}

/// Builds the system message for `hits`. `budget` is the number of tokens the sources may take
/// (the context length minus the question, the instructions and the answer's room); `count`
/// measures text in the chat model's tokens. Hits below `min_similarity` are left out. Returns
/// `None` when no hit is relevant: the caller then says the knowledge base does not cover the
/// question instead of letting the model invent an answer.
pub fn grounded_prompt(
    kb: &str,
    hits: &[Hit],
    budget: usize,
    min_similarity: f32,
    count: &dyn Fn(&str) -> usize,
) -> Option<GroundedPrompt> {
    let mut citations = Vec::new();
    let mut sources = String::new();
    let mut used = 0;
    for hit in hits.iter().filter(|h| h.similarity >= min_similarity) {
        let number = citations.len() + 1;
        let heading = if hit.label.is_empty() {
            format!("[{number}] {}", hit.title)
        } else {
            format!("[{number}] {} ({})", hit.title, hit.label)
        };
        let block = format!("{heading}\n{}\n\n", hit.text.trim());
        let tokens = count(&block);
        if used + tokens > budget {
            if citations.is_empty() {
                continue;
            }
            break;
        }
        used += tokens;
        sources.push_str(&block);
        citations.push(Citation {
            number,
            source: hit.source.clone(),
            title: hit.title.clone(),
            location: hit.label.clone(),
            score: hit.score,
            similarity: hit.similarity,
            text: hit.text.clone(),
        });
    }
    if citations.is_empty() {
        return None;
    }
    let system = format!(
        "Answer the user's question using only the sources below from the knowledge base \
         \"{kb}\". Cite the sources you use by number in square brackets, like [1]. If the \
         sources do not contain the answer, say that the knowledge base does not cover it.\n\n\
         Sources:\n\n{}",
        sources.trim_end()
    );
    Some(GroundedPrompt { system, citations })
}

/// What the answer says when nothing relevant was found.
pub fn not_covered(kb: &str) -> String {
    format!(
        "I found nothing about that in the knowledge base \"{kb}\", so I can't answer it from \
         your documents."
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::Location;

    fn hit(n: usize, similarity: f32, words: usize) -> Hit {
        Hit {
            source: format!("/docs/{n}.md"),
            title: format!("Doc {n}"),
            location: Location::default(),
            label: format!("line {n}"),
            text: vec!["word"; words].join(" "),
            score: 1.0 / n as f32,
            similarity,
            chunk_id: n.to_string(),
        }
    }

    fn words(text: &str) -> usize {
        text.split_whitespace().count()
    }

    #[test]
    fn sources_are_numbered_best_first_within_the_budget() {
        let hits = vec![hit(1, 0.8, 40), hit(2, 0.7, 40), hit(3, 0.6, 40)];
        let prompt = grounded_prompt("acme", &hits, 100, 0.3, &words).unwrap();
        assert_eq!(
            prompt.citations.len(),
            2,
            "the third does not fit 100 tokens"
        );
        assert!(prompt.system.contains("[1] Doc 1 (line 1)"));
        assert!(prompt.system.contains("[2] Doc 2 (line 2)"));
        assert!(!prompt.system.contains("Doc 3"));
        assert!(prompt.system.contains("\"acme\""));
    }

    #[test]
    fn irrelevant_hits_give_no_prompt() {
        let hits = vec![hit(1, 0.1, 10), hit(2, 0.05, 10)];
        assert!(grounded_prompt("acme", &hits, 1000, 0.3, &words).is_none());
        let mixed = vec![hit(1, 0.1, 10), hit(2, 0.5, 10)];
        let prompt = grounded_prompt("acme", &mixed, 1000, 0.3, &words).unwrap();
        assert_eq!(prompt.citations[0].source, "/docs/2.md");
        assert_eq!(prompt.citations[0].number, 1);
    }
}
