//! Matrix products straight on CPU slices through gemm (the kernels candle's own matmul uses),
//! for ops that write their results into buffers they own: no tensor per intermediate result,
//! transposes as strides, and accumulation into an existing result.

use gemm::Parallelism;

/// A row-major matrix view for [`matmul`]: `rows × cols` at `ptr`, element `(i, j)` at
/// `ptr + i·rs + j·cs` (so a transposed view swaps the strides).
#[derive(Clone, Copy)]
pub(crate) struct View<T> {
    ptr: *const T,
    len: usize,
    rs: usize,
    cs: usize,
}

impl<T> View<T> {
    /// Whether a `rows × cols` matrix at these strides stays inside the slice.
    fn holds(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || (rows - 1) * self.rs + (cols - 1) * self.cs < self.len
    }
}

/// `data` as a row-major matrix whose rows are `width` long.
pub(crate) fn rows<T>(data: &[T], width: usize) -> View<T> {
    View {
        ptr: data.as_ptr(),
        len: data.len(),
        rs: width,
        cs: 1,
    }
}

/// The transpose of [`rows`]`(data, width)`.
pub(crate) fn transposed<T>(data: &[T], width: usize) -> View<T> {
    View {
        ptr: data.as_ptr(),
        len: data.len(),
        rs: 1,
        cs: width,
    }
}

/// `dst (m × n, row-major) = scale · a (m × k) · b (k × n)`, or `+=` with `accumulate`, on the
/// calling thread (callers run it inside their own parallel tasks).
pub(crate) fn matmul<T: Copy + 'static + From<f32>>(
    dst: &mut [T],
    (m, n, k): (usize, usize, usize),
    a: View<T>,
    b: View<T>,
    scale: T,
    accumulate: bool,
) {
    assert!(dst.len() >= m * n, "matmul destination too small");
    assert!(a.holds(m, k) && b.holds(k, n), "matmul operand too small");
    // SAFETY: `dst` holds m·n elements written at row stride `n`, and `a` and `b` hold m·k and
    // k·n elements at their strides (all checked above); gemm reads `dst` only with
    // `accumulate`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.ptr,
            a.cs as isize,
            a.rs as isize,
            b.ptr,
            b.cs as isize,
            b.rs as isize,
            T::from(1.0),
            scale,
            false,
            false,
            false,
            Parallelism::None,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_with_transposes_and_accumulation_equal_the_definition() {
        // a (2 × 3) · b (3 × 2), then the same product again through a transposed view.
        let a = [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0];
        let b = [1.0f64, -1.0, 0.5, 2.0, 0.0, 3.0];
        let mut c = [0.0f64; 4];
        matmul(&mut c, (2, 2, 3), rows(&a, 3), rows(&b, 2), 1.0, false);
        assert_eq!(c, [2.0, 12.0, 6.5, 24.0]);
        // c += 2 · a·b, with b read as the transpose of its stored transpose.
        let bt = [1.0f64, 0.5, 0.0, -1.0, 2.0, 3.0];
        matmul(
            &mut c,
            (2, 2, 3),
            rows(&a, 3),
            transposed(&bt, 3),
            2.0,
            true,
        );
        assert_eq!(c, [6.0, 36.0, 19.5, 72.0]);
    }

    #[test]
    #[should_panic(expected = "operand too small")]
    fn an_operand_shorter_than_its_shape_is_refused() {
        let mut c = [0.0f32; 4];
        matmul(
            &mut c,
            (2, 2, 3),
            rows(&[1.0f32; 5], 3),
            rows(&[1.0f32; 6], 2),
            1.0,
            false,
        );
    }
}
