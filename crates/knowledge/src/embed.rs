//! The embedder a knowledge base is built with: a sentence encoder and the name it is recorded
//! under, so a later search can check it embeds queries the same way.

use std::path::Path;

use tunelab_engine::bert::SentenceEncoder;
use tunelab_engine::Device;

use crate::error::Result;

pub struct Embedder {
    name: String,
    encoder: SentenceEncoder,
}

impl Embedder {
    /// Loads the encoder in `folder` under `name` (the model registry's name for it), onto
    /// `device`.
    pub fn load(name: &str, folder: &Path, device: &Device) -> Result<Self> {
        let encoder = SentenceEncoder::load(folder, device)?;
        Ok(Self {
            name: name.to_string(),
            encoder,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where it embeds: "cpu" or "cuda:N".
    pub fn device_label(&self) -> String {
        tunelab_engine::device_label(self.encoder.device())
    }

    pub fn dimension(&self) -> usize {
        self.encoder.dimension()
    }

    pub fn max_tokens(&self) -> usize {
        self.encoder.max_tokens()
    }

    /// Unit-length vectors, one per text.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        Ok(self.encoder.embed(texts)?)
    }

    /// One query's vector, with 8-bit linear layers (see `SentenceEncoder::embed_query`): a
    /// short text is bound by reading the weights, a quarter of the bytes in 8 bits.
    pub fn embed_query(&self, query: &str) -> Result<Vec<f32>> {
        Ok(self.encoder.embed_query(query)?)
    }

    /// Tokens in `text` without the encoder's special tokens (what chunking measures).
    pub fn count_tokens(&self, text: &str) -> usize {
        self.encoder
            .tokenizer()
            .encode(text, false)
            .map(|e| e.len())
            .unwrap_or_else(|_| text.split_whitespace().count() * 2)
    }
}
