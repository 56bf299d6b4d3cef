//! Tokenizers: loaded from `tokenizer.json`, or rebuilt from the vocabulary, merges and
//! pre-tokenizer name stored in GGUF metadata, so a lone GGUF file is enough to chat.

use std::path::Path;

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use crate::error::{EngineError, Result};
use crate::gguf::GgufFile;

/// GGUF token types (llama.cpp's `llama_token_type`).
const TOKEN_TYPE_CONTROL: u64 = 3;
const TOKEN_TYPE_USER_DEFINED: u64 = 4;

/// Pre-tokenizer regexes for the byte-level BPE families GGUF names in `tokenizer.ggml.pre`.
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

pub struct TextTokenizer {
    inner: Tokenizer,
    bos_token: Option<String>,
    eos_token: Option<String>,
    /// Prepend BOS ourselves (tokenizers rebuilt from GGUF have no post-processor).
    add_bos: bool,
}

fn tok_err(path: &Path, e: impl std::fmt::Display) -> EngineError {
    EngineError::Tokenizer(format!("{}: {e}", path.display()))
}

/// `bos_token` in tokenizer_config.json is either a string or `{"content": ...}`.
fn special_token_text(value: Option<&serde_json::Value>) -> Option<String> {
    match value? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(map) => map
            .get("content")
            .and_then(|c| c.as_str())
            .map(String::from),
        _ => None,
    }
}

impl TextTokenizer {
    /// Reads `tokenizer.json`, with BOS/EOS names from `tokenizer_config.json` when it exists.
    pub fn from_hf_files(
        tokenizer_json: &Path,
        tokenizer_config: Option<&serde_json::Value>,
    ) -> Result<Self> {
        if !tokenizer_json.exists() {
            return Err(EngineError::Missing {
                path: tokenizer_json.to_path_buf(),
                what: "the tokenizer (tokenizer.json)".into(),
            });
        }
        let inner = Tokenizer::from_file(tokenizer_json).map_err(|e| tok_err(tokenizer_json, e))?;
        Ok(TextTokenizer {
            inner,
            bos_token: special_token_text(tokenizer_config.and_then(|c| c.get("bos_token"))),
            eos_token: special_token_text(tokenizer_config.and_then(|c| c.get("eos_token"))),
            add_bos: false,
        })
    }

    /// Rebuilds a byte-level BPE tokenizer from `tokenizer.ggml.*` metadata.
    pub fn from_gguf(gguf: &GgufFile) -> Result<Self> {
        let path = gguf.path();
        let model = gguf.get_str("tokenizer.ggml.model").unwrap_or("");
        if model != "gpt2" {
            return Err(EngineError::Tokenizer(format!(
                "{}: tokenizer type `{model}` cannot be rebuilt from GGUF metadata (byte-level BPE `gpt2` can); \
                 add the model as a Hugging Face folder with its tokenizer.json instead",
                path.display()
            )));
        }
        let tokens = gguf
            .get_string_array("tokenizer.ggml.tokens")
            .ok_or_else(|| EngineError::Missing {
                path: path.to_path_buf(),
                what: "metadata key tokenizer.ggml.tokens".into(),
            })?;
        let merges = gguf
            .get_string_array("tokenizer.ggml.merges")
            .ok_or_else(|| EngineError::Missing {
                path: path.to_path_buf(),
                what: "metadata key tokenizer.ggml.merges".into(),
            })?;
        let types = gguf
            .get_numeric_array("tokenizer.ggml.token_type")
            .unwrap_or_default();

        let vocab: tokenizers::models::bpe::Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.to_string(), i as u32))
            .collect();
        let mut merge_pairs = Vec::with_capacity(merges.len());
        for (line, merge) in merges.iter().enumerate() {
            let (a, b) = merge.split_once(' ').ok_or_else(|| {
                tok_err(
                    path,
                    format!("merge {line} (`{merge}`) is not two tokens separated by a space"),
                )
            })?;
            merge_pairs.push((a.to_string(), b.to_string()));
        }
        let pre = gguf.get_str("tokenizer.ggml.pre").unwrap_or("default");
        let ignore_merges = matches!(pre, "llama-bpe" | "llama3");
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merge_pairs)
            .ignore_merges(ignore_merges)
            .build()
            .map_err(|e| tok_err(path, e))?;
        let mut inner = Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(pre_tokenizer(pre).map_err(|e| tok_err(path, e))?));
        inner.with_decoder(Some(ByteLevelDecoder::default()));

        let added: Vec<AddedToken> = tokens
            .iter()
            .enumerate()
            .filter_map(|(i, t)| match types.get(i).map(|v| *v as u64) {
                Some(TOKEN_TYPE_CONTROL) => Some(AddedToken::from(t.to_string(), true)),
                Some(TOKEN_TYPE_USER_DEFINED) => {
                    Some(AddedToken::from(t.to_string(), false).normalized(false))
                }
                _ => None,
            })
            .collect();
        inner
            .add_special_tokens(added)
            .map_err(|e| tok_err(path, e))?;

        let name = |key: &str| {
            gguf.get_u64(key)
                .and_then(|id| tokens.get(id as usize))
                .map(|t| t.to_string())
        };
        Ok(TextTokenizer {
            inner,
            bos_token: name("tokenizer.ggml.bos_token_id"),
            eos_token: name("tokenizer.ggml.eos_token_id"),
            add_bos: gguf
                .get_bool("tokenizer.ggml.add_bos_token")
                .unwrap_or(false),
        })
    }

    /// Token ids of `text`. With `add_special`, BOS is prepended where the model expects it;
    /// special-token text such as `<|im_start|>` always maps to its single id.
    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode(text, add_special)
            .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        let mut ids = encoding.get_ids().to_vec();
        if add_special && self.add_bos {
            if let Some(bos) = self
                .bos_token
                .as_deref()
                .and_then(|b| self.inner.token_to_id(b))
            {
                if ids.first() != Some(&bos) {
                    ids.insert(0, bos);
                }
            }
        }
        Ok(ids)
    }

    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special)
            .map_err(|e| EngineError::Tokenizer(e.to_string()))
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn bos_token(&self) -> Option<&str> {
        self.bos_token.as_deref()
    }

    pub fn eos_token(&self) -> Option<&str> {
        self.eos_token.as_deref()
    }

    /// The underlying `tokenizers` tokenizer, e.g. for incremental decoding.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }

    /// Writes a `tokenizer.json` that Hugging Face tokenizers loads.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.inner.save(path, false).map_err(|e| tok_err(path, e))
    }
}

/// The pre-tokenizer a GGUF `tokenizer.ggml.pre` name stands for.
fn pre_tokenizer(pre: &str) -> tokenizers::Result<PreTokenizerWrapper> {
    let byte_level_no_regex = || {
        ByteLevel::default()
            .add_prefix_space(false)
            .use_regex(false)
    };
    let split = |regex: &str| {
        Split::new(
            SplitPattern::Regex(regex.to_string()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
    };
    Ok(match pre {
        // SmolLM splits every digit, then applies GPT-2's byte-level regex.
        "smollm" | "starcoder" | "refact" => Sequence::new(vec![
            Digits::new(true).into(),
            ByteLevel::default()
                .add_prefix_space(false)
                .use_regex(true)
                .into(),
        ])
        .into(),
        "llama-bpe" | "llama3" | "falcon3" | "smaug-bpe" => Sequence::new(vec![
            split(LLAMA3_REGEX)?.into(),
            byte_level_no_regex().into(),
        ])
        .into(),
        "qwen2" | "deepseek-r1-qwen" => Sequence::new(vec![
            split(QWEN2_REGEX)?.into(),
            byte_level_no_regex().into(),
        ])
        .into(),
        _ => ByteLevel::default()
            .add_prefix_space(false)
            .use_regex(true)
            .into(),
    })
}
