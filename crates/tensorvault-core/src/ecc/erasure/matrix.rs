//! Matrices over GF(2^8): the systematic Cauchy generator and Gauss-Jordan inversion.

use super::gf;

/// A dense row-major matrix over GF(2^8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matrix {
    rows: usize,
    cols: usize,
    data: Vec<u8>,
}

impl Matrix {
    /// The all-zero `rows × cols` matrix.
    #[must_use]
    pub fn zero(rows: usize, cols: usize) -> Self {
        Self {
            rows,
            cols,
            data: vec![0; rows * cols],
        }
    }

    /// The `n × n` identity.
    #[must_use]
    pub fn identity(n: usize) -> Self {
        let mut m = Self::zero(n, n);
        for i in 0..n {
            m.set(i, i, 1);
        }
        m
    }

    /// The `m × k` Cauchy block `1 / (x_i + y_j)` with `x_i = k + i`, `y_j = j`: every square
    /// submatrix is invertible, so `[I; C]` is MDS (any `k` of the `k + m` rows are independent).
    /// Needs `k + m ≤ 256`.
    #[must_use]
    pub fn cauchy(m: usize, k: usize) -> Self {
        let mut out = Self::zero(m, k);
        for i in 0..m {
            for j in 0..k {
                let x = u8::try_from(k + i).unwrap_or(0);
                let y = u8::try_from(j).unwrap_or(0);
                out.set(i, j, gf::inv(x ^ y).unwrap_or(0));
            }
        }
        out
    }

    /// Row count.
    #[must_use]
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Column count.
    #[must_use]
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Entry `(r, c)` (0 outside the matrix).
    #[must_use]
    pub fn get(&self, r: usize, c: usize) -> u8 {
        if c >= self.cols {
            return 0;
        }
        self.data.get(r * self.cols + c).copied().unwrap_or(0)
    }

    /// Set entry `(r, c)` (ignored outside the matrix).
    pub fn set(&mut self, r: usize, c: usize, v: u8) {
        if c < self.cols {
            if let Some(x) = self.data.get_mut(r * self.cols + c) {
                *x = v;
            }
        }
    }

    /// Row `r` as a slice (empty outside the matrix).
    #[must_use]
    pub fn row(&self, r: usize) -> &[u8] {
        self.data
            .get(r * self.cols..(r + 1) * self.cols)
            .unwrap_or_default()
    }

    /// The entries, row-major.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.data
    }

    /// `self × other`, or `None` if the shapes do not agree.
    #[must_use]
    pub fn mul(&self, other: &Self) -> Option<Self> {
        if self.cols != other.rows {
            return None;
        }
        let mut out = Self::zero(self.rows, other.cols);
        for r in 0..self.rows {
            for c in 0..other.cols {
                let mut acc = 0u8;
                for i in 0..self.cols {
                    acc ^= gf::mul(self.get(r, i), other.get(i, c));
                }
                out.set(r, c, acc);
            }
        }
        Some(out)
    }

    /// The inverse by Gauss-Jordan elimination, or `None` if the matrix is singular or not square.
    #[must_use]
    pub fn invert(&self) -> Option<Self> {
        let n = self.rows;
        if n != self.cols {
            return None;
        }
        let mut a = self.clone();
        let mut inv = Self::identity(n);
        for col in 0..n {
            let pivot = (col..n).find(|&r| a.get(r, col) != 0)?;
            if pivot != col {
                a.swap_rows(pivot, col);
                inv.swap_rows(pivot, col);
            }
            let p = gf::inv(a.get(col, col))?;
            a.scale_row(col, p);
            inv.scale_row(col, p);
            for r in 0..n {
                let f = a.get(r, col);
                if r != col && f != 0 {
                    a.add_scaled_row(r, col, f);
                    inv.add_scaled_row(r, col, f);
                }
            }
        }
        Some(inv)
    }

    fn swap_rows(&mut self, a: usize, b: usize) {
        for c in 0..self.cols {
            let (x, y) = (self.get(a, c), self.get(b, c));
            self.set(a, c, y);
            self.set(b, c, x);
        }
    }

    fn scale_row(&mut self, r: usize, f: u8) {
        for c in 0..self.cols {
            let v = gf::mul(self.get(r, c), f);
            self.set(r, c, v);
        }
    }

    /// `row[dst] += f · row[src]`.
    fn add_scaled_row(&mut self, dst: usize, src: usize, f: u8) {
        for c in 0..self.cols {
            let v = self.get(dst, c) ^ gf::mul(self.get(src, c), f);
            self.set(dst, c, v);
        }
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation, clippy::needless_range_loop)]
mod tests {
    use super::*;

    #[test]
    fn inverse_times_matrix_is_identity() {
        let c = Matrix::cauchy(6, 6);
        let inv = c.invert().unwrap();
        assert_eq!(c.mul(&inv).unwrap(), Matrix::identity(6));
        assert_eq!(inv.mul(&c).unwrap(), Matrix::identity(6));
    }

    #[test]
    fn singular_matrix_has_no_inverse() {
        let mut m = Matrix::zero(2, 2);
        m.set(0, 0, 3);
        m.set(0, 1, 5);
        m.set(1, 0, 3);
        m.set(1, 1, 5);
        assert!(m.invert().is_none());
    }

    #[test]
    fn every_square_cauchy_submatrix_of_small_codes_is_invertible() {
        // Exhaustive for 4+3: every choice of k rows of [I; C] is independent (MDS).
        let (k, m) = (4usize, 3usize);
        let c = Matrix::cauchy(m, k);
        for mask in 0u32..(1 << (k + m)) {
            if mask.count_ones() as usize != k {
                continue;
            }
            let mut sub = Matrix::zero(k, k);
            for (r, row) in (0..k + m).filter(|r| mask & (1 << r) != 0).enumerate() {
                for col in 0..k {
                    let v = if row < k {
                        u8::from(row == col)
                    } else {
                        c.get(row - k, col)
                    };
                    sub.set(r, col, v);
                }
            }
            assert!(sub.invert().is_some(), "rows {mask:b}");
        }
    }
}
