//! Packing for pretraining-style data: tokenized documents, each already ending with EOS
//! ([`super::render::tokenize_text`]), are laid end to end and cut into blocks of exactly
//! `seq_len` tokens, so no compute goes to padding. Attention is not masked at document
//! boundaries; the EOS between documents tells the model where one ends.

use super::issue::{DataError, Result};
use super::render::TokenizedExample;

/// Blocks of exactly `seq_len` tokens with their labels, in order. The tokens after the last
/// full block are dropped (fewer than `seq_len`). A block's `line` is that of the document it
/// starts in. Each document is dropped once packed, so the tokens are held once, not twice.
pub fn pack(examples: Vec<TokenizedExample>, seq_len: usize) -> Result<Vec<TokenizedExample>> {
    if seq_len == 0 {
        return Err(DataError::InvalidOption(
            "the block length for packing must be at least 1".into(),
        ));
    }
    let mut blocks = Vec::new();
    let mut block = TokenizedExample {
        line: 0,
        ids: Vec::with_capacity(seq_len),
        labels: Vec::with_capacity(seq_len),
        full_len: seq_len,
        full_len_estimated: false,
    };
    for example in examples {
        for (id, label) in example.ids.into_iter().zip(example.labels) {
            if block.ids.is_empty() {
                block.line = example.line;
            }
            block.ids.push(id);
            block.labels.push(label);
            if block.ids.len() == seq_len {
                let next = TokenizedExample {
                    line: 0,
                    ids: Vec::with_capacity(seq_len),
                    labels: Vec::with_capacity(seq_len),
                    full_len: seq_len,
                    full_len_estimated: false,
                };
                blocks.push(std::mem::replace(&mut block, next));
            }
        }
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(line: usize, ids: &[u32]) -> TokenizedExample {
        let labels = ids.iter().map(|&i| i as i64).collect();
        TokenizedExample {
            line,
            ids: ids.to_vec(),
            labels,
            full_len: ids.len(),
            full_len_estimated: false,
        }
    }

    #[test]
    fn blocks_run_across_documents_and_drop_the_short_tail() {
        let docs = [
            doc(1, &[1, 2, 3, 0]),
            doc(5, &[4, 5, 0]),
            doc(9, &[6, 7, 8, 9, 0]),
        ];
        let blocks = pack(docs.to_vec(), 5).unwrap();
        let ids: Vec<&[u32]> = blocks.iter().map(|b| b.ids.as_slice()).collect();
        assert_eq!(
            ids,
            vec![&[1, 2, 3, 0, 4][..], &[5, 0, 6, 7, 8][..]],
            "12 tokens make 2 blocks of 5; 2 are dropped"
        );
        assert_eq!(
            blocks.iter().map(|b| b.line).collect::<Vec<_>>(),
            vec![1, 5]
        );
        assert!(blocks.iter().all(|b| b.labels.len() == 5 && !b.truncated()));
        assert!(pack(docs.to_vec(), 0).is_err());
    }
}
