//! Conversations to token ids and labels through the model's own chat template, with the loss
//! on the assistant's replies only.
//!
//! The rendered text is cut into pieces by rendering prefixes of the conversation: for the
//! assistant turn `i`, `messages[..i]` with the generation prompt ends where the reply starts,
//! and `messages[..=i]` without it ends after the reply and the template's end-of-turn marker.
//! That span, less any whitespace the template writes after the marker, is trained on: the
//! model learns the reply and to stop (`<|im_end|>` for ChatML). The line break ChatML writes
//! after `<|im_end|>` is not trained: generation stops at the marker, so the model never
//! produces it. Each piece is tokenized on its own, so a label boundary is always a token
//! boundary.

use serde::{Deserialize, Serialize};
use tunelab_engine::{LoadedModel, Message, TextTokenizer};

use super::issue::{DataError, Issue, IssueKind, Result};
use super::{Dataset, Example, ExampleContent};

/// The label of a token the loss ignores (PyTorch's `ignore_index` convention).
pub const IGNORE_INDEX: i64 = -100;

/// Which tokens of a conversation the loss covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrainOn {
    /// The assistant's replies and their end-of-turn markers.
    #[default]
    AssistantReplies,
    /// Every token, prompts included.
    AllTokens,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenderOptions {
    pub train_on: TrainOn,
    /// Conversations longer than this many tokens lose their end. Plain-text documents are
    /// kept whole: [`super::pack`] cuts them into blocks.
    pub max_len: usize,
}

/// A stretch of rendered text and whether the loss covers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextPiece {
    pub text: String,
    pub trainable: bool,
}

/// Token ids and their labels. `labels[t]` is `ids[t]` where the loss covers token `t` and
/// [`IGNORE_INDEX`] elsewhere: labels are aligned with ids, not shifted; the trainer predicts
/// `labels[t + 1]` from the logits at position `t`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizedExample {
    /// Line of the record in its file (for a packed block: of the document it starts in).
    pub line: usize,
    pub ids: Vec<u32>,
    pub labels: Vec<i64>,
    /// Length before truncation.
    pub full_len: usize,
    /// Whether `full_len` is an estimate: a conversation with a stretch of text far longer than
    /// the max length is tokenized only as far as training uses it, and the rest counted from
    /// its bytes.
    pub full_len_estimated: bool,
}

impl TokenizedExample {
    pub fn truncated(&self) -> bool {
        self.full_len > self.ids.len()
    }

    /// Tokens the loss covers.
    pub fn trainable_tokens(&self) -> usize {
        self.labels.iter().filter(|l| **l != IGNORE_INDEX).count()
    }
}

fn inconsistent(turn: usize, what: &str) -> DataError {
    DataError::Model(format!(
        "the chat template renders the conversation inconsistently at turn {turn}: {what}, so \
         the reply's tokens cannot be told from the prompt's"
    ))
}

fn push(pieces: &mut Vec<TextPiece>, text: &str, trainable: bool) {
    if !text.is_empty() {
        pieces.push(TextPiece {
            text: text.to_string(),
            trainable,
        });
    }
}

/// The rendered conversation cut into prompt and reply pieces; their concatenation is the
/// whole conversation as the template renders it.
pub fn chat_pieces(model: &LoadedModel, messages: &[Message]) -> Result<Vec<TextPiece>> {
    let (bos, eos) = (model.tokenizer.bos_token(), model.tokenizer.eos_token());
    let render = |upto: &[Message], prompt: bool| model.template.render(upto, prompt, bos, eos);
    let mut pieces = Vec::new();
    let mut covered = String::new();
    for (i, message) in messages.iter().enumerate() {
        if message.role != "assistant" {
            continue;
        }
        let prompt = render(&messages[..i], true)?;
        let with_reply = render(&messages[..=i], false)?;
        let context = prompt
            .strip_prefix(covered.as_str())
            .ok_or_else(|| inconsistent(i, "the earlier turns change once it is added"))?;
        let reply = with_reply
            .strip_prefix(prompt.as_str())
            .ok_or_else(|| inconsistent(i, "the reply does not follow the generation prompt"))?;
        let reply = reply.trim_end();
        push(&mut pieces, context, false);
        push(&mut pieces, reply, true);
        covered = prompt + reply;
    }
    let full = render(messages, false)?;
    let rest = full.strip_prefix(covered.as_str()).ok_or_else(|| {
        inconsistent(
            messages.len(),
            "the whole conversation differs from its turns",
        )
    })?;
    push(&mut pieces, rest, false);
    Ok(pieces)
}

/// Ids and labels of a conversation, each piece tokenized on its own.
pub fn tokenize_chat(
    model: &LoadedModel,
    messages: &[Message],
    train_on: TrainOn,
) -> Result<(Vec<u32>, Vec<i64>)> {
    let (ids, labels, _, _) = tokenize_chat_upto(model, messages, train_on, usize::MAX)?;
    Ok((ids, labels))
}

/// The id that ends a document: the tokenizer's EOS, else the model's first stop token.
pub fn eos_id(model: &LoadedModel) -> Result<u32> {
    model
        .tokenizer
        .eos_token()
        .and_then(|t| model.tokenizer.token_to_id(t))
        .or_else(|| model.eos_ids.first().copied())
        .ok_or_else(|| {
            DataError::Model("the model names no end-of-text token to end documents with".into())
        })
}

/// Ids of a plain-text document: BOS where the model expects one, the text, then EOS. Every
/// token is trained on. A document longer than [`TEXT_PIECE_BYTES`] is tokenized a piece at
/// a time (see [`text_pieces`]), so memory follows the ids, not the tokenizer's working set
/// for the whole text.
pub fn tokenize_text(model: &LoadedModel, text: &str) -> Result<Vec<u32>> {
    let mut ids = if text.len() <= TEXT_PIECE_BYTES {
        model.tokenizer.encode(text, true)?
    } else {
        let mut ids = Vec::new();
        for (index, piece) in text_pieces(text, cut_for(&model.tokenizer)?).enumerate() {
            ids.extend(model.tokenizer.encode(piece, index == 0)?);
        }
        ids
    };
    ids.push(eos_id(model)?);
    Ok(ids)
}

/// Plain text is tokenized in pieces of about this many bytes.
pub const TEXT_PIECE_BYTES: usize = 64 << 10;

/// How far past a piece's target length a cut is looked for.
const CUT_SEARCH_BYTES: usize = 16 << 10;

/// How long text is cut into pieces so that they tokenize as the whole does. Cuts fall on a
/// space that stands alone between two characters that are not whitespace: no pre-tokenizer
/// of the byte-level families (GPT-2, Llama 3, Qwen2, SmolLM) joins such a space to the word
/// before it, and prose has one every few bytes. A line break is no such point: Llama 3's
/// pre-tokenizer joins it to the punctuation before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextCut {
    /// The space starts the next piece, where byte-level tokenizers join it to the word.
    KeepSpace,
    /// The space is left out: SentencePiece-style tokenizers prefix every text with a word
    /// boundary, which stands in for it.
    DropSpace,
}

impl TextCut {
    /// Bytes of the cut character the next piece leaves out.
    fn skipped(self) -> usize {
        match self {
            TextCut::KeepSpace => 0,
            TextCut::DropSpace => 1,
        }
    }
}

/// Text cut at each of its lone spaces to find which [`TextCut`] a tokenizer follows exactly.
const CUT_PROBE: &str = "Tunelab keeps 42 runs.\nEach one (a folder) says what it cost; \
                         see docs/workspace.md for\tmore. Done!";

/// The first [`TextCut`] under which [`CUT_PROBE`], cut at any one of its lone spaces,
/// tokenizes to the whole text's tokens. When neither does, the space is kept: a token or two
/// may then differ at each cut, once per [`TEXT_PIECE_BYTES`].
pub fn cut_for(tokenizer: &TextTokenizer) -> Result<TextCut> {
    let whole = tokenizer.encode(CUT_PROBE, true)?;
    for cut in [TextCut::KeepSpace, TextCut::DropSpace] {
        let mut exact = true;
        let mut from = 0;
        while let Some(at) = next_cut(CUT_PROBE, from, CUT_PROBE.len()) {
            let mut ids = tokenizer.encode(&CUT_PROBE[..at], true)?;
            ids.extend(tokenizer.encode(&CUT_PROBE[at + cut.skipped()..], false)?);
            if ids != whole {
                exact = false;
                break;
            }
            from = at + 1;
        }
        if exact {
            return Ok(cut);
        }
    }
    Ok(TextCut::KeepSpace)
}

/// The first lone space at or after byte `from` (a character boundary) of `text`, looking no
/// further than `limit` bytes on.
fn next_cut(text: &str, from: usize, limit: usize) -> Option<usize> {
    let mut previous = text[..from].chars().next_back();
    let mut chars = text[from..].char_indices().peekable();
    while let Some((offset, c)) = chars.next() {
        if offset > limit {
            return None;
        }
        let alone = previous.is_some_and(|p| !p.is_whitespace())
            && chars.peek().is_some_and(|(_, n)| !n.is_whitespace());
        if alone && c == ' ' {
            return Some(from + offset);
        }
        previous = Some(c);
    }
    None
}

/// `text` in pieces of about [`TEXT_PIECE_BYTES`], each ending before a lone space; a stretch
/// without one (a long run without spaces) is cut at a character boundary.
pub fn text_pieces(text: &str, cut: TextCut) -> impl Iterator<Item = &str> {
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= text.len() {
            return None;
        }
        if text.len() - start <= TEXT_PIECE_BYTES {
            let piece = &text[start..];
            start = text.len();
            return Some(piece);
        }
        let mut target = start + TEXT_PIECE_BYTES;
        while !text.is_char_boundary(target) {
            target += 1;
        }
        let (end, next) = match next_cut(text, target, CUT_SEARCH_BYTES) {
            Some(at) => (at, at + cut.skipped()),
            None => (target, target),
        };
        let piece = &text[start..end];
        start = next;
        Some(piece)
    })
}

/// Text longer than this, in one piece of a conversation, is tokenized only as far as the max
/// length needs (a 50 MB line took 35 s and 3.9 GB to tokenize whole).
const LONG_PIECE_BYTES: usize = 256 << 10;

/// Bytes read per token still needed from a long piece: far more than any tokenizer's tokens
/// take, so the tokens kept are those of the whole text.
const BYTES_PER_TOKEN_READ: usize = 16;

/// Tokens read past the last one kept, so that the cut's last word never reaches a kept token.
const CUT_MARGIN_TOKENS: usize = 64;

/// The ids of `text`, at least its first `room` of them, and the number of tokens of the
/// whole text, estimated from the bytes when the text was long enough to be read in part.
fn tokenize_upto(model: &LoadedModel, text: &str, room: usize) -> Result<(Vec<u32>, usize, bool)> {
    let want = room.saturating_mul(BYTES_PER_TOKEN_READ).max(4096);
    if text.len() <= LONG_PIECE_BYTES || want >= text.len() {
        let ids = model.tokenizer.encode(text, false)?;
        let n = ids.len();
        return Ok((ids, n, false));
    }
    let mut cut = want;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let ids = model.tokenizer.encode(&text[..cut], false)?;
    // The last word before the cut may tokenize differently from the whole text's: the part
    // read must reach well past what is kept.
    if ids.len() <= room + CUT_MARGIN_TOKENS {
        // Tokens longer than expected: the part read does not reach far enough.
        let ids = model.tokenizer.encode(text, false)?;
        let n = ids.len();
        return Ok((ids, n, false));
    }
    let estimate = (ids.len() as f64 * text.len() as f64 / cut as f64).ceil() as usize;
    Ok((ids, estimate, true))
}

/// [`tokenize_chat`] cut to `max_len` tokens, reading long pieces only as far as needed;
/// returns the ids, labels, the full length and whether it is an estimate.
fn tokenize_chat_upto(
    model: &LoadedModel,
    messages: &[Message],
    train_on: TrainOn,
    max_len: usize,
) -> Result<(Vec<u32>, Vec<i64>, usize, bool)> {
    let (mut ids, mut labels) = (Vec::new(), Vec::new());
    let (mut full_len, mut estimated) = (0usize, false);
    for piece in chat_pieces(model, messages)? {
        let room = max_len.saturating_sub(ids.len());
        let (mut piece_ids, piece_len, piece_estimated) = tokenize_upto(model, &piece.text, room)?;
        full_len += piece_len;
        estimated |= piece_estimated;
        piece_ids.truncate(room);
        let trained = piece.trainable || train_on == TrainOn::AllTokens;
        labels.extend(
            piece_ids
                .iter()
                .map(|&id| if trained { id as i64 } else { IGNORE_INDEX }),
        );
        ids.extend(piece_ids);
    }
    Ok((ids, labels, full_len, estimated))
}

/// One example tokenized; conversations are cut to `options.max_len` tokens.
pub fn tokenize_example(
    model: &LoadedModel,
    example: &Example,
    options: &RenderOptions,
) -> Result<TokenizedExample> {
    let (ids, labels, full_len, full_len_estimated) = match &example.content {
        ExampleContent::Chat(messages) => {
            tokenize_chat_upto(model, messages, options.train_on, options.max_len)?
        }
        ExampleContent::Text(text) => {
            let ids = tokenize_text(model, text)?;
            let labels = ids.iter().map(|&id| id as i64).collect();
            let n = ids.len();
            (ids, labels, n, false)
        }
    };
    Ok(TokenizedExample {
        line: example.line,
        ids,
        labels,
        full_len,
        full_len_estimated,
    })
}

/// A dataset's examples tokenized, with the issues tokenizing found.
#[derive(Debug, Clone)]
pub struct TokenizedSet {
    pub examples: Vec<TokenizedExample>,
    /// For each of `examples`, its index in the dataset's examples.
    pub sources: Vec<usize>,
    /// Kept examples whose end was cut off at the maximum length.
    pub truncated: usize,
    /// Over-long examples (kept) and examples that could not be rendered or have nothing
    /// left to train on (left out), in file order.
    pub issues: Vec<Issue>,
}

/// Tokenizes every example of `dataset` for training.
pub fn tokenize_dataset(
    model: &LoadedModel,
    dataset: &Dataset,
    options: &RenderOptions,
) -> TokenizedSet {
    let mut set = TokenizedSet {
        examples: Vec::new(),
        sources: Vec::new(),
        truncated: 0,
        issues: Vec::new(),
    };
    let file = dataset.file.as_path();
    for (index, example) in dataset.examples.iter().enumerate() {
        let tokenized = match tokenize_example(model, example, options) {
            Ok(tokenized) => tokenized,
            Err(err) => {
                set.issues.push(Issue::new(
                    file,
                    example.line,
                    None,
                    IssueKind::Template,
                    err.to_string(),
                ));
                continue;
            }
        };
        if tokenized.truncated() {
            let (len, max) = (tokenized.full_len, options.max_len);
            let about = if tokenized.full_len_estimated {
                "about "
            } else {
                ""
            };
            if tokenized.trainable_tokens() == 0 {
                let message = format!(
                    "{about}{len} tokens, and the prompt alone fills the max length of {max}: no \
                     reply token is left to train on (shorten the prompt or raise the max length)"
                );
                set.issues.push(Issue::new(
                    file,
                    example.line,
                    None,
                    IssueKind::NothingToTrain,
                    message,
                ));
                continue;
            }
            let message = format!(
                "{about}{len} tokens, over the max length of {max}: the last {about}{} are cut \
                 off in training",
                len - max
            );
            let mut issue = Issue::new(file, example.line, None, IssueKind::TooLong, message);
            issue.excluded = false;
            set.issues.push(issue);
            set.truncated += 1;
        }
        set.examples.push(tokenized);
        set.sources.push(index);
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pieces and the text between them, joined again.
    fn rejoined(text: &str, cut: TextCut) -> (Vec<&str>, String) {
        let pieces: Vec<&str> = text_pieces(text, cut).collect();
        let mut joined = String::new();
        for (i, piece) in pieces.iter().enumerate() {
            if i > 0 && cut == TextCut::DropSpace && !joined.ends_with(' ') {
                let at = joined.len();
                // A dropped space, unless the cut fell back to a character boundary.
                if text.as_bytes()[at] == b' ' {
                    joined.push(' ');
                }
            }
            joined.push_str(piece);
        }
        (pieces, joined)
    }

    #[test]
    fn long_text_is_cut_at_lone_spaces_and_nothing_is_lost() {
        let words = "Alpha beta,  gamma\n\ndelta (42) \u{00e9}t\u{00e9}\tend. ";
        let text = words.repeat(20_000);
        for cut in [TextCut::KeepSpace, TextCut::DropSpace] {
            let (pieces, joined) = rejoined(&text, cut);
            assert_eq!(joined, text, "{cut:?}");
            assert!(pieces.len() > 1);
            let mut at = 0;
            for piece in &pieces[..pieces.len() - 1] {
                assert!(piece.len() >= TEXT_PIECE_BYTES);
                assert!(
                    piece.len() <= TEXT_PIECE_BYTES + 64,
                    "{cut:?}: {}",
                    piece.len()
                );
                at += piece.len();
                let (before, after) = (&text[..at], &text[at..]);
                assert!(
                    after.starts_with(' '),
                    "{cut:?}: cut before {:?}",
                    &after[..8]
                );
                assert!(!before.ends_with(char::is_whitespace));
                assert!(!after[1..].starts_with(char::is_whitespace));
                at += cut.skipped();
            }
        }
    }

    #[test]
    fn text_without_spaces_is_cut_at_a_character_boundary() {
        let text = "\u{4e2d}\u{6587}".repeat(40_000);
        let (pieces, joined) = rejoined(&text, TextCut::KeepSpace);
        assert_eq!(joined, text);
        assert_eq!(pieces.len(), text.len().div_ceil(TEXT_PIECE_BYTES + 2));
        let short = "only a few words";
        assert_eq!(
            text_pieces(short, TextCut::DropSpace).collect::<Vec<_>>(),
            [short]
        );
        assert_eq!(text_pieces("", TextCut::DropSpace).count(), 0);
    }
}
