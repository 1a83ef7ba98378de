//! Decoding one codeword: syndromes, Berlekamp–Massey (initialised with the erasure locator, so errors
//! and erasures together), Chien search, Forney. Every correction is verified by recomputing the
//! syndromes of the corrected word (as the received word's syndromes plus the correction's, which is
//! the same value by linearity); a block that cannot be proven repaired is reported as uncorrectable
//! and left untouched.
//!
//! Conventions: a codeword `c` of length `len` (data then parity, `len <= 255`) is the polynomial
//! `sum c[p] x^(len-1-p)`; position `p` has locator `X = 2^(len-1-p)`. The code's roots are `2^0 ..
//! 2^(N-1)` (first consecutive root 0).

use super::gf;

/// The most parity bytes a block can have.
const MAX_N: usize = 254;

/// The decoder found no codeword within reach (more errors than the code corrects, or a mis-shaped
/// locator); the block is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Uncorrectable;

/// Syndromes `S_r = c(2^r)` for `r < n`; returns whether all are zero.
pub(super) fn syndromes(cw: &[u8], s: &mut [u8]) -> bool {
    let mut all_zero = true;
    for (r, out) in s.iter_mut().enumerate() {
        let a = gf::pow2(r);
        let mut acc = 0u8;
        for &c in cw {
            acc = gf::mul(acc, a) ^ c;
        }
        *out = acc;
        all_zero &= acc == 0;
    }
    all_zero
}

/// Evaluate an ascending-order polynomial at `x`.
fn eval_asc(p: &[u8], x: u8) -> u8 {
    p.iter().rev().fold(0u8, |acc, &c| gf::mul(acc, x) ^ c)
}

/// Correct `cw` (data then `n` parity bytes) in place. `erasures` are positions in `cw` known to be
/// wrong (duplicates allowed, each must be `< cw.len()`). Returns the number of bytes changed.
pub(super) fn decode_block(
    n: usize,
    cw: &mut [u8],
    erasures: &[usize],
) -> Result<usize, Uncorrectable> {
    let len = cw.len();
    if n == 0 || n > MAX_N || len <= n || len > 255 {
        return Err(Uncorrectable);
    }
    let mut s = [0u8; MAX_N];
    let s = s.get_mut(..n).ok_or(Uncorrectable)?;
    if syndromes(cw, s) {
        return Ok(0);
    }
    correct(n, cw, erasures, s)
}

/// Like [`decode_block`], with the syndromes computed from the difference between the stored parity
/// and the parity re-encoded from the received data (`parity_diff`, `n` bytes): the word `(data,
/// recomputed parity)` is a codeword, so the received word has the same syndromes as `(0, diff)`,
/// which costs `n²` instead of `n·len` multiplications.
pub(super) fn decode_block_with_parity_diff(
    n: usize,
    cw: &mut [u8],
    erasures: &[usize],
    parity_diff: &[u8],
) -> Result<usize, Uncorrectable> {
    let len = cw.len();
    if n == 0 || n > MAX_N || len <= n || len > 255 || parity_diff.len() != n {
        return Err(Uncorrectable);
    }
    let mut s = [0u8; MAX_N];
    let s = s.get_mut(..n).ok_or(Uncorrectable)?;
    if syndromes(parity_diff, s) {
        return Ok(0);
    }
    correct(n, cw, erasures, s)
}

/// Errors-and-erasures correction of `cw` given its (non-zero) syndromes `s`.
// One linear pass through the textbook steps reads best as one function; the short names are the
// textbook's (n, s, l, b, t, e).
#[allow(clippy::too_many_lines, clippy::many_single_char_names)]
fn correct(n: usize, cw: &mut [u8], erasures: &[usize], s: &[u8]) -> Result<usize, Uncorrectable> {
    let len = cw.len();
    // Erasure locator Γ(x) = Π (1 + X_j x), ascending order.
    let mut erased = [false; 255];
    let mut gamma = Vec::with_capacity(n + 1);
    gamma.push(1u8);
    for &p in erasures {
        let seen = erased.get_mut(p).ok_or(Uncorrectable)?;
        if *seen {
            continue;
        }
        *seen = true;
        if gamma.len() > n {
            return Err(Uncorrectable); // more erasures than parity bytes
        }
        let x = gf::pow2(len - 1 - p);
        gamma.push(0);
        for j in (1..gamma.len()).rev() {
            let prev = gamma.get(j - 1).copied().unwrap_or(0);
            if let Some(c) = gamma.get_mut(j) {
                *c ^= gf::mul(prev, x);
            }
        }
    }
    let rho = gamma.len() - 1;

    // Berlekamp–Massey with erasures (Blahut): Λ = B = Γ, L = ρ, steps r = ρ+1 ..= n.
    let mut lam = gamma.clone();
    let mut b = gamma;
    let mut l = rho;
    for r in (rho + 1)..=n {
        let mut delta = 0u8;
        for (j, &lj) in lam.iter().enumerate() {
            if let Some(&sv) = (r - 1).checked_sub(j).and_then(|i| s.get(i)) {
                delta ^= gf::mul(lj, sv);
            }
        }
        b.insert(0, 0); // B = x·B
        if delta != 0 {
            let mut t = lam.clone();
            if t.len() < b.len() {
                t.resize(b.len(), 0);
            }
            for (tj, &bj) in t.iter_mut().zip(&b) {
                *tj ^= gf::mul(delta, bj);
            }
            if 2 * l < r + rho {
                l = r + rho - l;
                let d_inv = gf::inv(delta);
                b = lam.iter().map(|&c| gf::mul(c, d_inv)).collect();
            }
            lam = t;
        }
    }
    while lam.len() > 1 && lam.last() == Some(&0) {
        lam.pop();
    }
    let degree = lam.len() - 1;
    if degree != l || 2 * (l - rho) + rho > n {
        return Err(Uncorrectable);
    }

    // Chien search over the (possibly shortened) codeword's positions only.
    // Λ(2^-e) = XOR_i λ_i 2^(-e·i): keep each non-zero term's exponent and step it by -i per position.
    let mut roots: Vec<(usize, u8)> = Vec::with_capacity(degree);
    let mut terms: Vec<(usize, usize)> = lam
        .iter()
        .enumerate()
        .filter(|&(_, &c)| c != 0)
        .map(|(i, &c)| (i % 255, usize::from(gf::log(c))))
        .collect();
    for e in 0..len {
        let mut acc = 0u8;
        for (i, t) in &mut terms {
            acc ^= gf::pow2(*t);
            *t = (*t + 255 - *i) % 255;
        }
        if acc == 0 {
            roots.push((len - 1 - e, gf::pow2(e)));
            if roots.len() > degree {
                return Err(Uncorrectable);
            }
        }
    }
    if roots.len() != degree {
        return Err(Uncorrectable);
    }

    // Forney: Ω = S·Λ mod x^n; e = X·Ω(X⁻¹) / Λ'(X⁻¹) (first consecutive root 0).
    let mut omega = vec![0u8; n];
    for (i, &li) in lam.iter().enumerate() {
        for (j, &sj) in s.iter().enumerate() {
            if let Some(o) = omega.get_mut(i + j) {
                *o ^= gf::mul(li, sj);
            }
        }
    }
    // Formal derivative: odd-power terms, ascending.
    let deriv: Vec<u8> = lam
        .iter()
        .enumerate()
        .skip(1)
        .map(|(i, &c)| if i % 2 == 1 { c } else { 0 })
        .collect();
    let mut fixed = [0u8; 255];
    let fixed = fixed.get_mut(..len).ok_or(Uncorrectable)?;
    fixed.copy_from_slice(cw);
    let mut changed = 0usize;
    let mut check = [0u8; MAX_N];
    let check = check.get_mut(..n).ok_or(Uncorrectable)?;
    check.copy_from_slice(s);
    for &(p, x) in &roots {
        let x_inv = gf::inv(x);
        let den = eval_asc(&deriv, x_inv);
        if den == 0 {
            return Err(Uncorrectable);
        }
        let mag = gf::mul(x, gf::div(eval_asc(&omega, x_inv), den));
        if mag != 0 {
            changed += 1;
            if let Some(c) = fixed.get_mut(p) {
                *c ^= mag;
            }
            // syndromes are linear: S(received + correction) = S(received) + mag·X^r
            let mut term = mag;
            for c in check.iter_mut() {
                *c ^= term;
                term = gf::mul(term, x);
            }
        }
    }
    // Guard against mis-correction: the result must be a codeword.
    if check.iter().any(|&c| c != 0) {
        return Err(Uncorrectable);
    }
    cw.copy_from_slice(fixed);
    Ok(changed)
}
