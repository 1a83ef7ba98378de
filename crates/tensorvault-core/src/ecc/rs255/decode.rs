//! Decoding one codeword: syndromes, Berlekamp–Massey (initialised with the erasure locator, so errors
//! and erasures together), Chien search, Forney. Every correction is verified by recomputing the
//! syndromes; a block that cannot be proven repaired is reported as uncorrectable and left untouched.
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
// One linear pass through the textbook steps reads best as one function; the short names are the
// textbook's (n, s, l, b, t, e).
#[allow(clippy::too_many_lines, clippy::many_single_char_names)]
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
    let mut roots: Vec<(usize, u8)> = Vec::with_capacity(degree);
    for p in 0..len {
        let e = len - 1 - p;
        let x_inv = gf::pow2(255 - e % 255);
        if eval_asc(&lam, x_inv) == 0 {
            roots.push((p, gf::pow2(e)));
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
        }
    }
    // Guard against mis-correction: the result must be a codeword.
    if !syndromes(fixed, s) {
        return Err(Uncorrectable);
    }
    cw.copy_from_slice(fixed);
    Ok(changed)
}
