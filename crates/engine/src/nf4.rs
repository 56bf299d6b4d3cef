//! 4-bit NormalFloat (NF4) weights for QLoRA over a 16- or 32-bit base.
//!
//! Each block of 64 consecutive weights keeps one f32 scale, its largest magnitude, and every
//! weight becomes the 4-bit index of the nearest of 16 levels placed at quantiles of a normal
//! distribution (denser near zero, where trained weights cluster), scaled by the block's scale.
//! That is 4.5 bits per weight instead of 16 or 32. The matrix is decoded to f32 one layer at
//! a time, for the one product that needs it, and dropped right after.

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use crate::error::{EngineError, Result};

/// Weights per block (one scale each).
pub const BLOCK: usize = 64;

/// The 16 NF4 levels, in ascending order: quantiles of N(0, 1) scaled to [-1, 1], with an
/// exact zero (Dettmers et al., QLoRA, 2023).
pub const LEVELS: [f32; 16] = [
    -1.0,
    -0.696_192_8,
    -0.525_073_05,
    -0.394_917_5,
    -0.284_441_38,
    -0.184_773_43,
    -0.091_050_036,
    0.0,
    0.079_580_3,
    0.160_930_2,
    0.246_112_3,
    0.337_915_24,
    0.440_709_83,
    0.562_617,
    0.722_956_84,
    1.0,
];

/// A matrix `(rows, cols)` in NF4 blocks.
#[derive(Debug, Clone)]
pub struct Nf4Tensor {
    rows: usize,
    cols: usize,
    /// Two 4-bit level indices per byte, low nibble first, row-major.
    codes: Vec<u8>,
    /// One scale per block of [`BLOCK`] weights, row-major.
    scales: Vec<f32>,
}

/// The index of the level nearest to `v` (in units of the block's scale).
fn nearest(v: f32) -> u8 {
    // Midpoints between neighbouring levels split the line into 16 intervals.
    let mut index = 0u8;
    for i in 0..15 {
        if v > (LEVELS[i] + LEVELS[i + 1]) / 2.0 {
            index = i as u8 + 1;
        }
    }
    index
}

impl Nf4Tensor {
    /// Quantizes a 2-D tensor whose row length is a multiple of [`BLOCK`].
    pub fn quantize(w: &Tensor) -> Result<Self> {
        let (rows, cols) = w.dims2()?;
        if cols % BLOCK != 0 {
            return Err(EngineError::InvalidRequest(format!(
                "NF4 needs rows of a multiple of {BLOCK} weights; this matrix has {cols}"
            )));
        }
        let values = w
            .to_dtype(candle_core::DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let blocks: Vec<(f32, [u8; BLOCK / 2])> = values
            .par_chunks(BLOCK)
            .map(|block| {
                let scale = block.iter().fold(0f32, |m, v| m.max(v.abs()));
                let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
                let mut packed = [0u8; BLOCK / 2];
                for (byte, pair) in packed.iter_mut().zip(block.chunks(2)) {
                    *byte = nearest(pair[0] * inv) | (nearest(pair[1] * inv) << 4);
                }
                (scale, packed)
            })
            .collect();
        let mut codes = Vec::with_capacity(values.len() / 2);
        let mut scales = Vec::with_capacity(blocks.len());
        for (scale, packed) in blocks {
            scales.push(scale);
            codes.extend_from_slice(&packed);
        }
        Ok(Nf4Tensor {
            rows,
            cols,
            codes,
            scales,
        })
    }

    pub fn dims2(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// Bytes held: half a byte per weight and four per block.
    pub fn storage_bytes(&self) -> usize {
        self.codes.len() + self.scales.len() * 4
    }

    /// The matrix decoded to f32 on `device`.
    pub fn dequantize(&self, device: &Device) -> Result<Tensor> {
        self.dequantize_rows(0, self.rows, device)
    }

    /// Rows `start..start + len` decoded to f32 `(len, cols)` on `device`.
    pub fn dequantize_rows(&self, start: usize, len: usize, device: &Device) -> Result<Tensor> {
        if start + len > self.rows {
            return Err(EngineError::InvalidRequest(format!(
                "rows {start}..{} of a matrix with {} rows",
                start + len,
                self.rows
            )));
        }
        let blocks_per_row = self.cols / BLOCK;
        let blocks = start * blocks_per_row..(start + len) * blocks_per_row;
        let codes = &self.codes[blocks.start * BLOCK / 2..blocks.end * BLOCK / 2];
        let scales = &self.scales[blocks];
        let mut out = vec![0f32; len * self.cols];
        out.par_chunks_mut(BLOCK)
            .zip(codes.par_chunks(BLOCK / 2))
            .zip(scales.par_iter())
            .for_each(|((out, codes), &scale)| {
                for (pair, byte) in out.chunks_mut(2).zip(codes) {
                    pair[0] = LEVELS[(byte & 0x0f) as usize] * scale;
                    pair[1] = LEVELS[(byte >> 4) as usize] * scale;
                }
            });
        Ok(Tensor::from_vec(out, (len, self.cols), device)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_round_trip_exactly_and_others_go_to_the_nearest_level() {
        // A block holding every level times 0.5 (its largest magnitude is 0.5) decodes exactly.
        let mut row: Vec<f32> = LEVELS.iter().map(|l| l * 0.5).collect();
        row.extend(std::iter::repeat_n(0.0, BLOCK - 16));
        let w = Tensor::from_vec(row.clone(), (1, BLOCK), &Device::Cpu).unwrap();
        let q = Nf4Tensor::quantize(&w).unwrap();
        let back = q.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap();
        assert_eq!(back.to_vec1::<f32>().unwrap(), row);
        assert_eq!(q.storage_bytes(), BLOCK / 2 + 4);
        for (v, want) in [(0.03, 7), (0.05, 8), (-0.95, 0), (0.99, 15), (-0.6, 2)] {
            assert_eq!(nearest(v), want, "{v}");
        }
    }

    #[test]
    fn normal_weights_keep_their_shape_within_nf4_precision() {
        let w = Tensor::randn(0f32, 0.02, (96, 4 * BLOCK), &Device::Cpu).unwrap();
        let q = Nf4Tensor::quantize(&w).unwrap();
        assert_eq!(q.dims2(), (96, 4 * BLOCK));
        let back = q.dequantize(&Device::Cpu).unwrap();
        let err = (&back - &w).unwrap().sqr().unwrap().mean_all().unwrap();
        let power = w.sqr().unwrap().mean_all().unwrap();
        let relative = (err.to_scalar::<f32>().unwrap() / power.to_scalar::<f32>().unwrap()).sqrt();
        // NF4 on normal data: about 10% relative RMS error (4 bits, one scale per 64).
        assert!(relative < 0.12, "relative RMS error {relative}");
        let rows = q.dequantize_rows(10, 7, &Device::Cpu).unwrap();
        let diff = crate::layers::max_abs_diff(&rows, &back.narrow(0, 10, 7).unwrap()).unwrap();
        assert_eq!(diff, 0.0, "a row range decodes as in the whole matrix");
        assert!(q.dequantize_rows(90, 7, &Device::Cpu).is_err());
        let bad = Tensor::zeros((2, 50), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(Nf4Tensor::quantize(&bad).is_err());
    }
}
