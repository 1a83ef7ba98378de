//! In-process throughput measurement behind `tensorvault bench ecc`: encode, reconstruct (1 and `m`
//! lost data shards) and verify-style hashing of `threads` independent stripes of `k + m` shards, one
//! stripe per thread. Figures are data bytes per second (k × shard size per stripe); each is the median
//! of three timed rounds.

use std::time::{Duration, Instant};

use rayon::prelude::*;

use super::sidecar::ChunkDigest;
use super::{AlignedBuf, ErasureCodec, ErasureError, Kernel};

/// One measured configuration.
#[derive(Debug, Clone, Copy)]
pub struct BenchResult {
    /// Encode throughput, bytes per second.
    pub encode: f64,
    /// Reconstruct throughput with one data shard lost.
    pub reconstruct_one: f64,
    /// Reconstruct throughput with `m` data shards lost.
    pub reconstruct_all: f64,
    /// SHA-256 over the data shards (what `verify` spends per byte with `sha256` chunk digests).
    pub verify: f64,
    /// BLAKE3 over the data shards (what `verify` spends per byte with `blake3`, the default).
    pub verify_blake3: f64,
}

/// Measure `k + m` with shards of `shard` bytes on `threads` threads, each round lasting at least
/// `min_round`, with the fastest kernel or `kernel` (which the caller has checked is supported).
pub fn measure(
    k: usize,
    m: usize,
    shard: usize,
    threads: usize,
    min_round: Duration,
    kernel: Option<Kernel>,
) -> Result<BenchResult, ErasureError> {
    let codec = ErasureCodec::with_kernel(k, m, kernel.unwrap_or_else(Kernel::detect))?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .map_err(|_| ErasureError::InvalidShardCounts {
            k,
            m,
            max: super::MAX_SHARDS,
        })?;
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut stripes: Vec<Vec<AlignedBuf>> = (0..threads.max(1))
        .map(|_| {
            (0..k + m)
                .map(|i| {
                    let mut b = AlignedBuf::zeroed(shard);
                    if i < k {
                        for x in b.as_mut_slice() {
                            state ^= state << 13;
                            state ^= state >> 7;
                            state ^= state << 17;
                            *x = state.to_le_bytes()[3];
                        }
                    }
                    b
                })
                .collect()
        })
        .collect();
    #[allow(clippy::cast_precision_loss)] // byte counts far below 2^52
    let bytes = (k * shard * threads.max(1)) as f64;
    // One thread runs on the calling thread, as a C harness would (no pool hand-off per call);
    // several run one stripe each on the pool.
    let single = threads <= 1;
    let each = |stripes: &mut Vec<Vec<AlignedBuf>>,
                f: &(dyn Fn(&mut Vec<AlignedBuf>) -> Result<(), ErasureError> + Sync)|
     -> Result<(), ErasureError> {
        if single {
            stripes.iter_mut().try_for_each(f)
        } else {
            pool.install(|| stripes.par_iter_mut().try_for_each(f))
        }
    };
    let encode = rate(bytes, min_round, || {
        each(&mut stripes, &|s| {
            let (data, parity) = s.split_at_mut(k);
            let d: Vec<&[u8]> = data.iter().map(AlignedBuf::as_slice).collect();
            let mut p: Vec<&mut [u8]> = parity.iter_mut().map(AlignedBuf::as_mut_slice).collect();
            codec.encode(&d, &mut p)
        })
    })?;
    let mut rec = |lost: usize| {
        let present: Vec<bool> = (0..k + m).map(|i| i >= lost.min(k)).collect();
        rate(bytes, min_round, || {
            each(&mut stripes, &|s| {
                let mut w: Vec<&mut [u8]> = s.iter_mut().map(AlignedBuf::as_mut_slice).collect();
                codec.reconstruct(&mut w, &present)
            })
        })
    };
    let reconstruct_one = rec(1)?;
    let reconstruct_all = rec(m)?;
    let mut hash = |digest: ChunkDigest| {
        rate(bytes, min_round, || {
            each(&mut stripes, &|s| {
                for shard in s.iter().take(k) {
                    std::hint::black_box(digest.hash(shard.as_slice()));
                }
                Ok(())
            })
        })
    };
    let verify = hash(ChunkDigest::Sha256)?;
    let verify_blake3 = hash(ChunkDigest::Blake3)?;
    Ok(BenchResult {
        encode,
        reconstruct_one,
        reconstruct_all,
        verify,
        verify_blake3,
    })
}

/// Median over three rounds of `bytes / seconds per call`, each round repeating `f` for `min_round`.
fn rate(
    bytes: f64,
    min_round: Duration,
    mut f: impl FnMut() -> Result<(), ErasureError>,
) -> Result<f64, ErasureError> {
    f()?; // warm up
    let mut rates = Vec::with_capacity(3);
    for _ in 0..3 {
        let start = Instant::now();
        let mut calls = 0u32;
        while calls == 0 || start.elapsed() < min_round {
            f()?;
            calls += 1;
        }
        rates.push(bytes * f64::from(calls) / start.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    Ok(rates.get(1).copied().unwrap_or(0.0))
}

#[cfg(test)]
mod tests {
    #[test]
    fn measures_positive_rates() {
        let r = super::measure(4, 2, 4096, 1, std::time::Duration::from_millis(1), None).unwrap();
        assert!(
            r.encode > 0.0
                && r.reconstruct_one > 0.0
                && r.reconstruct_all > 0.0
                && r.verify > 0.0
                && r.verify_blake3 > 0.0
        );
    }
}
