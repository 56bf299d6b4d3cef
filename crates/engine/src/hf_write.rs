//! Writing a model as a Hugging Face folder: config.json, generation_config.json with the
//! end-of-sequence ids, tokenizer.json, tokenizer_config.json with the chat template, and
//! model.safetensors written one tensor at a time.

use std::io::Write;
use std::path::Path;

use candle_core::DType;

use crate::error::{EngineError, Result};
use crate::loader::LoadedModel;

/// The safetensors name of a dtype Hugging Face folders use.
fn safetensors_dtype(dtype: DType) -> Result<&'static str> {
    Ok(match dtype {
        DType::F32 => "F32",
        DType::F16 => "F16",
        DType::BF16 => "BF16",
        other => {
            return Err(EngineError::InvalidRequest(format!(
                "weights are written in f32, f16 or bf16, not {other:?}"
            )))
        }
    })
}

/// transformers' `torch_dtype` for `dtype`.
fn torch_dtype(dtype: DType) -> &'static str {
    match dtype {
        DType::F16 => "float16",
        DType::BF16 => "bfloat16",
        _ => "float32",
    }
}

fn write_json(dir: &Path, name: &str, value: &serde_json::Value) -> Result<()> {
    let path = dir.join(name);
    let text = serde_json::to_string_pretty(value).expect("json serializes") + "\n";
    std::fs::write(&path, text).map_err(|e| EngineError::io(&path, e))
}

/// Everything of the folder but the weights: config.json (`torch_dtype` set to `dtype`),
/// generation_config.json, tokenizer.json and tokenizer_config.json with the chat template, so
/// the folder chats exactly like `model`.
pub fn write_hf_metadata(dir: &Path, model: &LoadedModel, dtype: DType) -> Result<()> {
    let config = &model.transformer.config;
    let mut config_json = config.to_hf_json();
    config_json["torch_dtype"] = torch_dtype(dtype).into();
    write_json(dir, "config.json", &config_json)?;
    write_json(
        dir,
        "generation_config.json",
        &serde_json::json!({
            "bos_token_id": config.bos_token_id,
            "eos_token_id": config.eos_token_ids,
        }),
    )?;
    model.tokenizer.save(&dir.join("tokenizer.json"))?;
    let token = |id: Option<u32>| id.and_then(|id| model.tokenizer.id_to_token(id));
    write_json(
        dir,
        "tokenizer_config.json",
        &serde_json::json!({
            "chat_template": model.template.source(),
            "bos_token": model.tokenizer.bos_token(),
            "eos_token": token(config.eos_token_ids.first().copied()),
            "model_max_length": config.max_position_embeddings,
            "tokenizer_class": "PreTrainedTokenizerFast",
        }),
    )
}

/// Writes `model` (an attached LoRA adapter folded in) into `dir` as a Hugging Face folder
/// with its weights in `dtype`. Calls `progress(done, total)` after each tensor; it returns false to stop.
pub fn write_hf_folder(
    dir: &Path,
    model: &LoadedModel,
    dtype: DType,
    progress: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<()> {
    write_hf_metadata(dir, model, dtype)?;
    let mut tensors = Vec::new();
    for name in model.transformer.weight_names() {
        let dims = model.transformer.weight_dims(&name)?;
        tensors.push((name, dims));
    }
    write_safetensors(
        &dir.join("model.safetensors"),
        &tensors,
        dtype,
        &mut |name| model.transformer.dense_weight(name),
        progress,
    )
}

/// Writes a safetensors file tensor by tensor: `tensors` names each one with its shape, and
/// `value` makes it when its turn comes.
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, Vec<usize>)],
    dtype: DType,
    value: &mut dyn FnMut(&str) -> Result<candle_core::Tensor>,
    progress: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<()> {
    let width = dtype.size_in_bytes();
    let name = safetensors_dtype(dtype)?;
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
    let mut offset = 0usize;
    for (tensor, dims) in tensors {
        let bytes = dims.iter().product::<usize>() * width;
        header.insert(
            tensor.clone(),
            serde_json::json!({"dtype": name, "shape": dims, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    let mut text = serde_json::to_string(&header).expect("json serializes");
    // The data starts 8-byte aligned, as the format recommends.
    while !(text.len() + 8).is_multiple_of(8) {
        text.push(' ');
    }
    let file = std::fs::File::create(path).map_err(|e| EngineError::io(path, e))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let io = |e| EngineError::io(path, e);
    out.write_all(&(text.len() as u64).to_le_bytes())
        .map_err(io)?;
    out.write_all(text.as_bytes()).map_err(io)?;
    for (done, (tensor, dims)) in tensors.iter().enumerate() {
        let t = value(tensor)?;
        if t.dims() != dims.as_slice() {
            return Err(EngineError::format(
                path,
                "safetensors",
                format!(
                    "tensor {tensor} came out as {:?}, planned {dims:?}",
                    t.dims()
                ),
            ));
        }
        let t = t.to_dtype(dtype)?.flatten_all()?;
        let bytes: Vec<u8> = match dtype {
            DType::F32 => t
                .to_vec1::<f32>()?
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
            DType::F16 => t
                .to_vec1::<half::f16>()?
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
            _ => t
                .to_vec1::<half::bf16>()?
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        };
        out.write_all(&bytes).map_err(io)?;
        if !progress(done + 1, tensors.len()) {
            return Err(EngineError::Cancelled);
        }
    }
    let file = out
        .into_inner()
        .map_err(|e| EngineError::io(path, e.into_error()))?;
    file.sync_all().map_err(io)
}
