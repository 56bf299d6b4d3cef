//! The exponential and the logistic function for the CPU kernels' inner loops.
//!
//! libm's `expf` is a call per element that no loop around it can vectorize: in a training step
//! the softmaxes of attention and of the output layer's cross-entropy and the SiLU of every MLP
//! called it a few hundred million times, 9% of a soft-prompt step's samples. Here the f32
//! versions are branch-free arithmetic, so a loop over them runs eight or sixteen lanes at a
//! time; f64 (the finite-difference tests' precision) goes to libm.

/// e^y for y ≤ 0, within 2e-7 relative; y is held at -87 or above, where e^y is 1.6e-38.
/// y = n ln2 + r with |r| ≤ ln2/2: e^r from its Taylor series to the 7th power, 2^n put
/// straight into the exponent bits. No branch and no call, so loops over it vectorize.
pub(crate) fn exp_nonpositive(y: f32) -> f32 {
    // Adding 1.5·2^23 rounds to an integer and leaves it in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let y = y.max(-87.0);
    let shifted = y * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = (y - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    // n sits in the low bits of `shifted`; 127 + n in the exponent field is 2^n.
    let two_n = f32::from_bits(
        (shifted
            .to_bits()
            .wrapping_sub(ROUND.to_bits())
            .wrapping_add(127))
            << 23,
    );
    p * two_n
}

/// e^y for y ≤ 0 and the logistic function 1 / (1 + e^−x), for the element types the CPU
/// kernels take.
pub(crate) trait Exp: Copy {
    /// e^self for self ≤ 0 (a softmax's scores less their maximum).
    fn exp_nonpositive(self) -> Self;
    /// 1 / (1 + e^−self), for any self.
    fn sigmoid(self) -> Self;
}

impl Exp for f32 {
    fn exp_nonpositive(self) -> f32 {
        exp_nonpositive(self)
    }

    fn sigmoid(self) -> f32 {
        // e^−|x| never overflows; for x < 0 the logistic is e^x / (1 + e^x).
        let e = exp_nonpositive(-self.abs());
        let r = 1.0 / (1.0 + e);
        if self >= 0.0 {
            r
        } else {
            e * r
        }
    }
}

impl Exp for f64 {
    fn exp_nonpositive(self) -> f64 {
        self.exp()
    }

    fn sigmoid(self) -> f64 {
        1.0 / (1.0 + (-self).exp())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exponential_is_within_2e_7_of_libm_down_to_minus_87() {
        let mut worst = 0f32;
        for i in 0..=200_000 {
            let y = -87.0 * i as f32 / 200_000.0;
            let (got, want) = (exp_nonpositive(y), y.exp());
            worst = worst.max((got - want).abs() / want);
        }
        assert!(worst < 2e-7, "worst relative error {worst:e}");
        assert!(exp_nonpositive(-1000.0) < 1e-37);
        assert_eq!(exp_nonpositive(0.0), 1.0);
    }

    #[test]
    fn the_logistic_function_is_within_3e_7_of_libm_on_both_sides() {
        let mut worst = 0f32;
        // Down to −87, where e^x leaves f32's normal range (below it, 1.6e-38).
        for i in -200_000..=200_000 {
            let x = 87.0 * i as f32 / 200_000.0;
            let want = (1.0 / (1.0 + (-(x as f64)).exp())) as f32;
            let got = Exp::sigmoid(x);
            worst = worst.max((got - want).abs() / want.max(f32::MIN_POSITIVE));
        }
        assert!(worst < 3e-7, "worst relative error {worst:e}");
        assert_eq!(Exp::sigmoid(0f32), 0.5);
        assert_eq!(Exp::sigmoid(200f32), 1.0);
        assert!(Exp::sigmoid(-200f32) < 1e-37);
    }
}
