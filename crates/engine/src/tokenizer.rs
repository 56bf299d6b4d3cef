//! Tokenizers: loaded from `tokenizer.json`, or rebuilt from the vocabulary, merges and
//! pre-tokenizer name stored in GGUF metadata, so a lone GGUF file is enough to chat.

use std::path::Path;

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::prepend::Prepend;
use tokenizers::normalizers::replace::Replace;
use tokenizers::normalizers::utils::Sequence as NormalizerSequence;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{
    AddedToken, DecoderWrapper, NormalizerWrapper, SplitDelimiterBehavior, Tokenizer,
};

use crate::error::{EngineError, Result};
use crate::gguf::GgufFile;

/// GGUF token types (llama.cpp's `llama_token_type`).
const TOKEN_TYPE_NORMAL: u64 = 1;
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

    /// Rebuilds the tokenizer from `tokenizer.ggml.*` metadata: byte-level BPE (`gpt2`: Llama 3,
    /// SmolLM, Qwen2) or SentencePiece BPE with byte fallback (`llama`: Llama 2, Mistral).
    pub fn from_gguf(gguf: &GgufFile) -> Result<Self> {
        let path = gguf.path();
        let missing = |key: &str| EngineError::Missing {
            path: path.to_path_buf(),
            what: format!("metadata key {key}"),
        };
        let tokens = gguf
            .get_string_array("tokenizer.ggml.tokens")
            .ok_or_else(|| missing("tokenizer.ggml.tokens"))?;
        let types = gguf
            .get_numeric_array("tokenizer.ggml.token_type")
            .unwrap_or_default();
        let token_type = |i: usize| types.get(i).map(|v| *v as u64).unwrap_or(TOKEN_TYPE_NORMAL);
        let vocab: tokenizers::models::bpe::Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.to_string(), i as u32))
            .collect();
        let model = gguf.get_str("tokenizer.ggml.model").unwrap_or("");
        let (mut inner, add_bos_default) = match model {
            "gpt2" => {
                let merges = gguf.get_string_array("tokenizer.ggml.merges").ok_or_else(|| missing("tokenizer.ggml.merges"))?;
                (byte_level_bpe(gguf, vocab, &merges)?, false)
            }
            "llama" => {
                let scores = gguf.get_numeric_array("tokenizer.ggml.scores").ok_or_else(|| missing("tokenizer.ggml.scores"))?;
                let unk = gguf.get_u64("tokenizer.ggml.unknown_token_id").and_then(|i| tokens.get(i as usize)).map(|t| t.to_string());
                let pieces: Vec<(&str, f64)> = tokens
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| matches!(token_type(*i), TOKEN_TYPE_NORMAL | TOKEN_TYPE_USER_DEFINED))
                    .map(|(i, t)| (*t, scores.get(i).copied().unwrap_or(0.0)))
                    .collect();
                let add_space_prefix = gguf.get_bool("tokenizer.ggml.add_space_prefix").unwrap_or(true);
                (sentencepiece_bpe(path, vocab, &pieces, unk, add_space_prefix)?, true)
            }
            other => {
                return Err(EngineError::Tokenizer(format!(
                    "{}: tokenizer type `{other}` cannot be rebuilt from GGUF metadata (`gpt2` and `llama` can); \
                     add the model as a Hugging Face folder with its tokenizer.json instead",
                    path.display()
                )))
            }
        };
        let added: Vec<AddedToken> = tokens
            .iter()
            .enumerate()
            .filter_map(|(i, t)| match token_type(i) {
                TOKEN_TYPE_CONTROL => Some(AddedToken::from(t.to_string(), true)),
                TOKEN_TYPE_USER_DEFINED => {
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
                .unwrap_or(add_bos_default),
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

impl TextTokenizer {
    /// The `tokenizer.ggml.*` metadata that rebuilds this tokenizer from a GGUF file
    /// ([`from_gguf`](Self::from_gguf)) and that llama.cpp reads: byte-level BPE only, with
    /// the pre-tokenizer named by finding which of the GGUF names builds the same one. The
    /// vocabulary is padded to `config.vocab_size` (unused `[PAD{i}]` tokens, as llama.cpp's
    /// converter does).
    pub fn gguf_metadata(
        &self,
        config: &crate::config::ModelConfig,
    ) -> Result<Vec<(String, candle_core::quantized::gguf_file::Value)>> {
        use candle_core::quantized::gguf_file::Value;
        let unsupported = |why: &str| {
            EngineError::Tokenizer(format!(
                "this tokenizer cannot be written as GGUF metadata: {why}; export the model as a                  merged Hugging Face folder and convert it with llama.cpp's convert_hf_to_gguf.py"
            ))
        };
        let model = serde_json::to_value(self.inner.get_model())
            .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        if model.get("type").and_then(|t| t.as_str()) != Some("BPE")
            || model.get("byte_fallback").and_then(|b| b.as_bool()) == Some(true)
        {
            return Err(unsupported("only byte-level BPE tokenizers are written"));
        }
        let ignore_merges = model.get("ignore_merges").and_then(|b| b.as_bool()) == Some(true);
        let ours = self
            .inner
            .get_pre_tokenizer()
            .map(serde_json::to_value)
            .transpose()
            .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        let pre = ["smollm", "llama-bpe", "qwen2", "gpt-2"]
            .into_iter()
            .find(|name| {
                let built = pre_tokenizer(name)
                    .ok()
                    .map(|p| serde_json::to_value(p).ok());
                built.flatten() == ours && (*name == "llama-bpe") == ignore_merges
            })
            .ok_or_else(|| {
                unsupported("its pre-tokenizer is none of smollm, llama-bpe, qwen2 and gpt-2")
            })?;

        let size = config.vocab_size.max(self.inner.get_vocab_size(true));
        let mut tokens: Vec<Option<String>> = vec![None; size];
        let mut types = vec![TOKEN_TYPE_NORMAL; size];
        for (token, id) in self.inner.get_vocab(false) {
            if let Some(slot) = tokens.get_mut(id as usize) {
                *slot = Some(token);
            }
        }
        for (id, added) in self.inner.get_added_tokens_decoder() {
            let i = id as usize;
            if i < size {
                tokens[i] = Some(added.content.clone());
                types[i] = if added.special {
                    TOKEN_TYPE_CONTROL
                } else {
                    TOKEN_TYPE_USER_DEFINED
                };
            }
        }
        const TOKEN_TYPE_UNUSED: u64 = 5;
        let tokens: Vec<Value> = tokens
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                Value::String(t.unwrap_or_else(|| {
                    types[i] = TOKEN_TYPE_UNUSED;
                    format!("[PAD{i}]")
                }))
            })
            .collect();
        let merges: Vec<Value> = model
            .get("merges")
            .and_then(|m| m.as_array())
            .map(|items| {
                items
                    .iter()
                    .filter_map(|m| match m {
                        serde_json::Value::String(s) => Some(s.clone()),
                        serde_json::Value::Array(pair) => match pair.as_slice() {
                            [a, b] => Some(format!("{} {}", a.as_str()?, b.as_str()?)),
                            _ => None,
                        },
                        _ => None,
                    })
                    .map(Value::String)
                    .collect()
            })
            .unwrap_or_default();
        let mut out = vec![
            (
                "tokenizer.ggml.model".to_string(),
                Value::String("gpt2".into()),
            ),
            ("tokenizer.ggml.pre".to_string(), Value::String(pre.into())),
            ("tokenizer.ggml.tokens".to_string(), Value::Array(tokens)),
            (
                "tokenizer.ggml.token_type".to_string(),
                Value::Array(types.into_iter().map(|t| Value::I32(t as i32)).collect()),
            ),
            ("tokenizer.ggml.merges".to_string(), Value::Array(merges)),
        ];
        if let Some(bos) = config.bos_token_id {
            out.push(("tokenizer.ggml.bos_token_id".into(), Value::U32(bos)));
            let adds_bos = self
                .inner
                .encode("a", true)
                .map(|e| e.get_ids().first() == Some(&bos))
                .unwrap_or(false);
            out.push((
                "tokenizer.ggml.add_bos_token".into(),
                Value::Bool(adds_bos || self.add_bos),
            ));
        }
        if let Some(eos) = config.eos_token_ids.first() {
            out.push(("tokenizer.ggml.eos_token_id".into(), Value::U32(*eos)));
        }
        if let Some(eot) = config.eos_token_ids.get(1) {
            out.push(("tokenizer.ggml.eot_token_id".into(), Value::U32(*eot)));
        }
        Ok(out)
    }
}

/// Byte-level BPE with the merges stored in the file and the pre-tokenizer GGUF names.
fn byte_level_bpe(
    gguf: &GgufFile,
    vocab: tokenizers::models::bpe::Vocab,
    merges: &[&str],
) -> Result<Tokenizer> {
    let path = gguf.path();
    let mut pairs = Vec::with_capacity(merges.len());
    for (line, merge) in merges.iter().enumerate() {
        let (a, b) = merge.split_once(' ').ok_or_else(|| {
            tok_err(
                path,
                format!("merge {line} (`{merge}`) is not two tokens separated by a space"),
            )
        })?;
        pairs.push((a.to_string(), b.to_string()));
    }
    let pre = gguf.get_str("tokenizer.ggml.pre").unwrap_or("default");
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, pairs)
        .ignore_merges(matches!(pre, "llama-bpe" | "llama3"))
        .build()
        .map_err(|e| tok_err(path, e))?;
    let mut inner = Tokenizer::new(bpe);
    inner.with_pre_tokenizer(Some(pre_tokenizer(pre).map_err(|e| tok_err(path, e))?));
    inner.with_decoder(Some(ByteLevelDecoder::default()));
    Ok(inner)
}

/// SentencePiece's BPE as a `tokenizers` model: merges ranked by the score of the piece they
/// make (the conversion transformers applies to Llama 2 tokenizers), unknown characters spelled
/// as `<0xNN>` byte tokens, spaces written as `▁`.
fn sentencepiece_bpe(
    path: &Path,
    vocab: tokenizers::models::bpe::Vocab,
    pieces: &[(&str, f64)],
    unk: Option<String>,
    add_space_prefix: bool,
) -> Result<Tokenizer> {
    let known: std::collections::HashSet<&str> = pieces.iter().map(|(p, _)| *p).collect();
    let mut ranked: Vec<(f64, u32, u32, String, String)> = Vec::new();
    for (piece, score) in pieces {
        let cuts = piece.char_indices().skip(1).map(|(i, _)| i);
        for cut in cuts {
            let (left, right) = piece.split_at(cut);
            if known.contains(left) && known.contains(right) {
                ranked.push((
                    *score,
                    vocab[left],
                    vocab[right],
                    left.to_string(),
                    right.to_string(),
                ));
            }
        }
    }
    // Higher score merges first; ties keep the order of the parts' ids.
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let merges = ranked.into_iter().map(|(_, _, _, l, r)| (l, r)).collect();
    let mut builder = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .byte_fallback(true)
        .fuse_unk(true);
    if let Some(unk) = unk {
        builder = builder.unk_token(unk);
    }
    let bpe = builder.build().map_err(|e| tok_err(path, e))?;
    let mut inner = Tokenizer::new(bpe);
    let replace = Replace::new(" ", "▁").map_err(|e| tok_err(path, e))?;
    let normalizer: NormalizerWrapper = if add_space_prefix {
        NormalizerSequence::new(vec![Prepend::new("▁".into()).into(), replace.into()]).into()
    } else {
        replace.into()
    };
    inner
        .with_normalizer(Some(normalizer))
        .map_err(|e| tok_err(path, e))?;
    let mut decoders: Vec<DecoderWrapper> = vec![
        Replace::new("▁", " ").map_err(|e| tok_err(path, e))?.into(),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ];
    if add_space_prefix {
        decoders.push(Strip::new(' ', 1, 0).into());
    }
    inner.with_decoder(Some(DecoderSequence::new(decoders)));
    Ok(inner)
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
