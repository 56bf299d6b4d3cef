//! Shared printing helpers.

use serde::Serialize;
use tunelab_api::{ApiError, ErrorCode, Result};

pub fn print_json<T: Serialize>(value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    println!("{text}");
    Ok(())
}

pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

pub fn count(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.1}B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.0}M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.0}K", n as f64 / 1e3),
        n => n.to_string(),
    }
}

/// What a configuration adds to its base model, in one line.
pub fn footprint(f: &tunelab_api::eval::Footprint) -> String {
    format!(
        "data: {} rows, {} tokens; {} trainable parameters; adds {} on disk",
        f.data_rows,
        count(f.data_tokens),
        count(f.trainable_parameters),
        bytes(f.artifact_bytes)
    )
}
