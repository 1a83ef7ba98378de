//! JS values → Rust, once: the one conversion of a JS number to an integer. Values are only
//! converted here; whether a value is *valid* (a chunk size that is a power of two, a level name) is
//! the core's rule, checked there.

use crate::errors::invalid_argument;

/// The largest integer a JS number holds exactly (`Number.MAX_SAFE_INTEGER`).
const MAX_SAFE: f64 = 9_007_199_254_740_991.0;

/// A JS number that must be a non-negative safe integer, as `u64`.
pub fn to_u64(argument: &'static str, v: f64) -> napi::Result<u64> {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // checked just before
    if v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v <= MAX_SAFE {
        Ok(v as u64)
    } else {
        Err(invalid_argument(
            argument,
            format!("{argument} must be a non-negative safe integer, got {v}"),
        ))
    }
}

/// A JS number that must be a non-negative integer fitting `T` (`u16`, `u32`, `usize`, …).
pub fn to_int<T: TryFrom<u64>>(argument: &'static str, v: f64) -> napi::Result<T> {
    let n = to_u64(argument, v)?;
    T::try_from(n).map_err(|_| {
        invalid_argument(
            argument,
            format!("{argument} is {n}, more than this argument can hold"),
        )
    })
}

/// A JS number that must be an integer (negative allowed), for values whose range is the core's rule
/// (a gzip level, a member size): the core then reports the range with its own error.
pub fn to_i64(argument: &'static str, v: f64) -> napi::Result<i64> {
    #[allow(clippy::cast_possible_truncation)] // checked: integral and within ±2^53
    if v.is_finite() && v.fract() == 0.0 && v.abs() <= MAX_SAFE {
        Ok(v as i64)
    } else {
        Err(invalid_argument(
            argument,
            format!("{argument} must be an integer, got {v}"),
        ))
    }
}

/// A `threads` option: absent means "let the core choose"; zero is refused.
pub fn threads(threads: Option<u32>) -> napi::Result<Option<usize>> {
    match threads {
        None => Ok(None),
        Some(0) => Err(invalid_argument("threads", "threads must be at least 1")),
        Some(t) => Ok(Some(usize::try_from(t).unwrap_or(usize::MAX))),
    }
}

/// A byte range given as `[offset, length]` (two non-negative safe integers).
pub fn range(argument: &'static str, v: &[f64]) -> napi::Result<(u64, u64)> {
    match *v {
        [offset, len] => Ok((to_u64(argument, offset)?, to_u64(argument, len)?)),
        _ => Err(invalid_argument(
            argument,
            format!("{argument}: a range must be [offset, length]"),
        )),
    }
}

/// The guard of a handle's resource behind a mutex (`None` once closed), poisoning ignored: the
/// handles whose `close()` can come while a task holds a reference (safetensors, fold, outboard, the
/// weights' descriptor) keep their file so.
pub fn locked<T>(m: &std::sync::Mutex<Option<T>>) -> std::sync::MutexGuard<'_, Option<T>> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
