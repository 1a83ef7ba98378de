//! The systematic `k + m` erasure codec: encode `m` parity shards from `k` data shards; rebuild any
//! `≤ m` lost shards from any `k` survivors. Decode matrices are cached per loss pattern.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rayon::prelude::*;

use super::kernels::{self, Kernel};
use super::matrix::Matrix;
use super::ErasureError;

/// Largest total shard count (`k + m`): the field has 256 elements.
pub const MAX_SHARDS: usize = 256;

/// Decode plans kept before the cache is flushed.
const CACHE_LIMIT: usize = 4096;

/// A decode plan: which survivors to read and the coefficients producing each lost shard.
#[derive(Debug)]
struct Plan {
    survivors: Vec<usize>,
    lost: Vec<usize>,
    coefs: Vec<u8>,
}

/// A `k + m` Cauchy Reed-Solomon erasure codec over GF(2^8).
#[derive(Debug)]
pub struct ErasureCodec {
    k: usize,
    m: usize,
    parity: Matrix,
    kernel: Kernel,
    cache: Mutex<HashMap<Vec<bool>, Arc<Plan>>>,
}

impl ErasureCodec {
    /// A codec with `k` data and `m` parity shards (`k ≥ 1`, `m ≥ 1`, `k + m ≤ 256`), using the
    /// fastest kernel of this CPU.
    pub fn new(k: usize, m: usize) -> Result<Self, ErasureError> {
        Self::with_kernel(k, m, Kernel::detect())
    }

    /// As [`ErasureCodec::new`] with a chosen kernel (an unsupported one falls back to portable).
    pub fn with_kernel(k: usize, m: usize, kernel: Kernel) -> Result<Self, ErasureError> {
        if k == 0 || m == 0 || k + m > MAX_SHARDS {
            return Err(ErasureError::InvalidShardCounts {
                k,
                m,
                max: MAX_SHARDS,
            });
        }
        let kernel = if kernel.is_supported() {
            kernel
        } else {
            Kernel::Portable
        };
        Ok(Self {
            k,
            m,
            parity: Matrix::cauchy(m, k),
            kernel,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Data shards per stripe.
    #[must_use]
    pub fn data_shards(&self) -> usize {
        self.k
    }

    /// Parity shards per stripe.
    #[must_use]
    pub fn parity_shards(&self) -> usize {
        self.m
    }

    /// The kernel in use.
    #[must_use]
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// The `m × k` parity block of the generator matrix, row-major.
    #[must_use]
    pub fn parity_matrix(&self) -> &[u8] {
        self.parity.as_bytes()
    }

    /// Compute the `m` parity shards of `data` (`k` shards, all of one length) into `parity`.
    pub fn encode(&self, data: &[&[u8]], parity: &mut [&mut [u8]]) -> Result<(), ErasureError> {
        self.check_counts(data.len(), parity.len())?;
        kernels::dot_prod(self.kernel, self.parity.as_bytes(), data, parity)
            .map_err(|_| ErasureError::ShardLengthMismatch)
    }

    /// As [`ErasureCodec::encode`], splitting the columns across the current rayon pool (for one
    /// large stripe; across many stripes parallelise by stripe instead).
    pub fn encode_parallel(
        &self,
        data: &[&[u8]],
        parity: &mut [&mut [u8]],
    ) -> Result<(), ErasureError> {
        self.check_counts(data.len(), parity.len())?;
        self.parallel_dot(self.parity.as_bytes(), data, parity)
    }

    fn check_counts(&self, data: usize, parity: usize) -> Result<(), ErasureError> {
        if data != self.k || parity != self.m {
            return Err(ErasureError::ShardCountMismatch {
                expected: self.k + self.m,
                actual: data + parity,
            });
        }
        Ok(())
    }

    fn parallel_dot(
        &self,
        coefs: &[u8],
        inputs: &[&[u8]],
        outputs: &mut [&mut [u8]],
    ) -> Result<(), ErasureError> {
        let len = outputs
            .first()
            .map(|o| o.len())
            .or_else(|| inputs.first().map(|i| i.len()))
            .unwrap_or(0);
        if inputs.iter().any(|s| s.len() != len) || outputs.iter().any(|s| s.len() != len) {
            return Err(ErasureError::ShardLengthMismatch);
        }
        let piece = kernels::TILE * 4;
        // Split every output into column pieces; piece p of every output goes to one task.
        let mut per_piece: Vec<Vec<&mut [u8]>> = Vec::new();
        for out in outputs.iter_mut() {
            for (p, part) in out.chunks_mut(piece).enumerate() {
                if per_piece.len() <= p {
                    per_piece.push(Vec::new());
                }
                if let Some(v) = per_piece.get_mut(p) {
                    v.push(part);
                }
            }
        }
        let kernel = self.kernel;
        per_piece
            .into_par_iter()
            .enumerate()
            .try_for_each(|(p, mut outs)| {
                let start = p * piece;
                let end = (start + piece).min(len);
                let ins: Vec<&[u8]> = inputs
                    .iter()
                    .map(|s| s.get(start..end).unwrap_or_default())
                    .collect();
                kernels::dot_prod(kernel, coefs, &ins, &mut outs)
                    .map_err(|_| ErasureError::ShardLengthMismatch)
            })
    }

    /// Rebuild the shards marked absent in `present` (`k + m` shards in order: data then parity, all of
    /// one length) from the first `k` present ones. At most `m` may be absent.
    pub fn reconstruct(
        &self,
        shards: &mut [&mut [u8]],
        present: &[bool],
    ) -> Result<(), ErasureError> {
        let plan = self.plan(shards.len(), present)?;
        let (inputs, mut outputs) = split(shards, &plan);
        kernels::dot_prod(self.kernel, &plan.coefs, &inputs, &mut outputs)
            .map_err(|_| ErasureError::ShardLengthMismatch)
    }

    /// As [`ErasureCodec::reconstruct`], splitting columns across the current rayon pool.
    pub fn reconstruct_parallel(
        &self,
        shards: &mut [&mut [u8]],
        present: &[bool],
    ) -> Result<(), ErasureError> {
        let plan = self.plan(shards.len(), present)?;
        let (inputs, mut outputs) = split(shards, &plan);
        self.parallel_dot(&plan.coefs, &inputs, &mut outputs)
    }

    /// Rebuild only the lost shards: `shards` holds the `k + m` shards in order (data then parity),
    /// `None` for a lost one; `lost` receives the rebuilt shards in ascending index order, one buffer of
    /// the shards' length per `None`. The present shards are only read (no copy). Columns are split
    /// across the current rayon pool when `parallel` is set.
    pub fn reconstruct_lost(
        &self,
        shards: &[Option<&[u8]>],
        lost: &mut [&mut [u8]],
        parallel: bool,
    ) -> Result<(), ErasureError> {
        let present: Vec<bool> = shards.iter().map(Option::is_some).collect();
        let plan = self.plan(shards.len(), &present)?;
        if lost.len() != plan.lost.len() {
            return Err(ErasureError::ShardCountMismatch {
                expected: plan.lost.len(),
                actual: lost.len(),
            });
        }
        let inputs: Vec<&[u8]> = plan
            .survivors
            .iter()
            .map(|&i| shards.get(i).copied().flatten().unwrap_or_default())
            .collect();
        if parallel {
            self.parallel_dot(&plan.coefs, &inputs, lost)
        } else {
            kernels::dot_prod(self.kernel, &plan.coefs, &inputs, lost)
                .map_err(|_| ErasureError::ShardLengthMismatch)
        }
    }

    /// The cached (or freshly computed) decode plan for a loss pattern.
    fn plan(&self, count: usize, present: &[bool]) -> Result<Arc<Plan>, ErasureError> {
        let n = self.k + self.m;
        if count != n || present.len() != n {
            return Err(ErasureError::ShardCountMismatch {
                expected: n,
                actual: count.min(present.len()),
            });
        }
        let lost = present.iter().filter(|p| !**p).count();
        if lost > self.m {
            return Err(ErasureError::TooManyErasures {
                lost,
                budget: self.m,
            });
        }
        if let Some(p) = self.plans().get(present) {
            return Ok(Arc::clone(p));
        }
        let plan = Arc::new(self.build_plan(present)?);
        let mut cache = self.plans();
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(present.to_vec(), Arc::clone(&plan));
        Ok(plan)
    }

    /// Row `r` of the generator `[I; C]`.
    fn generator_row(&self, r: usize) -> Vec<u8> {
        if r < self.k {
            (0..self.k).map(|c| u8::from(c == r)).collect()
        } else {
            self.parity.row(r - self.k).to_vec()
        }
    }

    fn build_plan(&self, present: &[bool]) -> Result<Plan, ErasureError> {
        let survivors: Vec<usize> = (0..present.len())
            .filter(|&i| present.get(i).copied().unwrap_or(false))
            .take(self.k)
            .collect();
        let lost: Vec<usize> = (0..present.len())
            .filter(|&i| !present.get(i).copied().unwrap_or(true))
            .collect();
        let mut a = Matrix::zero(self.k, self.k);
        for (r, &s) in survivors.iter().enumerate() {
            for (c, v) in self.generator_row(s).into_iter().enumerate() {
                a.set(r, c, v);
            }
        }
        // INVARIANT: any k rows of an MDS generator are independent; a failure here is a bug.
        let inv = a.invert().ok_or(ErasureError::SingularMatrix)?;
        let mut lost_rows = Matrix::zero(lost.len(), self.k);
        for (r, &l) in lost.iter().enumerate() {
            for (c, v) in self.generator_row(l).into_iter().enumerate() {
                lost_rows.set(r, c, v);
            }
        }
        let coefs = lost_rows.mul(&inv).ok_or(ErasureError::SingularMatrix)?;
        Ok(Plan {
            survivors,
            lost,
            coefs: coefs.as_bytes().to_vec(),
        })
    }

    /// The plan cache, a poisoned lock recovered: each entry is inserted whole (a plan built before the
    /// lock is taken), so a panic elsewhere leaves it consistent; ignoring the lock, as before, turned
    /// the cache off for good (every decode rebuilt its plan) and made `cached_plans` say 0.
    fn plans(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<bool>, Arc<Plan>>> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Decode plans currently cached (for tests and diagnostics).
    #[must_use]
    pub fn cached_plans(&self) -> usize {
        self.plans().len()
    }
}

/// Split `shards` into the plan's survivors (read) and lost shards (written).
fn split<'a>(shards: &'a mut [&mut [u8]], plan: &Plan) -> (Vec<&'a [u8]>, Vec<&'a mut [u8]>) {
    let mut inputs: Vec<(usize, &[u8])> = Vec::with_capacity(plan.survivors.len());
    let mut outputs: Vec<&mut [u8]> = Vec::with_capacity(plan.lost.len());
    for (i, s) in shards.iter_mut().enumerate() {
        if plan.lost.contains(&i) {
            outputs.push(&mut **s);
        } else if let Some(pos) = plan.survivors.iter().position(|&x| x == i) {
            inputs.push((pos, &**s));
        }
    }
    inputs.sort_by_key(|(p, _)| *p);
    (inputs.into_iter().map(|(_, s)| s).collect(), outputs)
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation, clippy::needless_range_loop)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A panic while the plan cache's lock was held (poisoning it) no longer turns the cache off: the
    /// plans cached before stay, new ones are cached, and `cached_plans` counts them.
    #[test]
    #[allow(clippy::panic, clippy::unwrap_used)]
    fn a_poisoned_plan_cache_keeps_caching() {
        let codec = ErasureCodec::new(4, 2).unwrap();
        codec
            .plan(6, &[false, true, true, true, true, true])
            .unwrap();
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _held = codec.cache.lock();
            panic!("injected panic while holding the plan cache");
        }));
        assert!(codec.cache.is_poisoned());
        assert_eq!(codec.cached_plans(), 1);
        codec
            .plan(6, &[true, false, true, true, true, true])
            .unwrap();
        assert_eq!(codec.cached_plans(), 2);
    }

    #[test]
    fn reconstruct_lost_rebuilds_only_the_missing_shards() {
        let codec = ErasureCodec::new(6, 3).unwrap();
        let len = 70_001;
        let data = random_shards(6, len, 99);
        let mut parity = vec![vec![0u8; len]; 3];
        {
            let d: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
            let mut p: Vec<&mut [u8]> = parity.iter_mut().map(Vec::as_mut_slice).collect();
            codec.encode(&d, &mut p).unwrap();
        }
        let all: Vec<Vec<u8>> = data.iter().chain(&parity).cloned().collect();
        for (lost_set, parallel) in [
            (&[0usize][..], false),
            (&[1, 4, 7][..], true),
            (&[8][..], false),
        ] {
            let shards: Vec<Option<&[u8]>> = all
                .iter()
                .enumerate()
                .map(|(i, s)| (!lost_set.contains(&i)).then_some(s.as_slice()))
                .collect();
            let mut out = vec![vec![0x5au8; len]; lost_set.len()];
            let mut o: Vec<&mut [u8]> = out.iter_mut().map(Vec::as_mut_slice).collect();
            codec.reconstruct_lost(&shards, &mut o, parallel).unwrap();
            for (rebuilt, &i) in out.iter().zip(lost_set) {
                assert_eq!(rebuilt, &all[i], "shard {i}");
            }
        }
        let shards: Vec<Option<&[u8]>> = all.iter().map(|s| Some(s.as_slice())).collect();
        let mut none: Vec<&mut [u8]> = Vec::new();
        codec.reconstruct_lost(&shards, &mut none, false).unwrap();
        let mut extra = vec![0u8; len];
        assert!(codec
            .reconstruct_lost(&shards, &mut [extra.as_mut_slice()], false)
            .is_err());
    }

    fn random_shards(k: usize, len: usize, seed: u64) -> Vec<Vec<u8>> {
        let mut x = seed | 1;
        (0..k)
            .map(|_| {
                (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        (x >> 32) as u8
                    })
                    .collect()
            })
            .collect()
    }

    fn encode_all(codec: &ErasureCodec, data: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let len = data[0].len();
        let mut parity = vec![vec![0u8; len]; codec.parity_shards()];
        let d: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        let mut p: Vec<&mut [u8]> = parity.iter_mut().map(Vec::as_mut_slice).collect();
        codec.encode(&d, &mut p).unwrap();
        let mut all = data.to_vec();
        all.extend(parity);
        all
    }

    #[test]
    fn parity_of_zero_data_is_zero_and_encoding_is_systematic() {
        let codec = ErasureCodec::new(10, 4).unwrap();
        let all = encode_all(&codec, &vec![vec![0u8; 100]; 10]);
        assert!(all.iter().all(|s| s.iter().all(|&b| b == 0)));
    }

    #[test]
    fn rebuilds_every_loss_pattern_of_a_small_code() {
        let (k, m) = (5usize, 3usize);
        let codec = ErasureCodec::new(k, m).unwrap();
        let data = random_shards(k, 333, 7);
        let all = encode_all(&codec, &data);
        for mask in 0u32..(1 << (k + m)) {
            if mask.count_ones() as usize > m {
                continue;
            }
            let present: Vec<bool> = (0..k + m).map(|i| mask & (1 << i) == 0).collect();
            let mut work: Vec<Vec<u8>> = all
                .iter()
                .zip(&present)
                .map(|(s, &p)| if p { s.clone() } else { vec![0xa5; s.len()] })
                .collect();
            let mut w: Vec<&mut [u8]> = work.iter_mut().map(Vec::as_mut_slice).collect();
            codec.reconstruct(&mut w, &present).unwrap();
            assert_eq!(work, all, "mask {mask:b}");
        }
        assert!(codec.cached_plans() > 0);
    }

    #[test]
    fn too_many_losses_is_an_error() {
        let codec = ErasureCodec::new(4, 2).unwrap();
        let mut work = vec![vec![0u8; 8]; 6];
        let mut w: Vec<&mut [u8]> = work.iter_mut().map(Vec::as_mut_slice).collect();
        let r = codec.reconstruct(&mut w, &[false, false, false, true, true, true]);
        assert!(matches!(
            r,
            Err(ErasureError::TooManyErasures { lost: 3, budget: 2 })
        ));
    }

    #[test]
    fn bad_parameters_are_refused() {
        assert!(ErasureCodec::new(0, 2).is_err());
        assert!(ErasureCodec::new(2, 0).is_err());
        assert!(ErasureCodec::new(200, 57).is_err());
        assert!(ErasureCodec::new(200, 56).is_ok());
    }

    #[test]
    fn the_largest_code_rebuilds_its_worst_losses() {
        let (k, m) = (200usize, 56usize);
        let codec = ErasureCodec::new(k, m).unwrap();
        let data = random_shards(k, 64, 3);
        let all = encode_all(&codec, &data);
        // Lose the first 56 data shards.
        let present: Vec<bool> = (0..k + m).map(|i| i >= m).collect();
        let mut work: Vec<Vec<u8>> = all
            .iter()
            .zip(&present)
            .map(|(s, &p)| if p { s.clone() } else { vec![0; 64] })
            .collect();
        let mut w: Vec<&mut [u8]> = work.iter_mut().map(Vec::as_mut_slice).collect();
        codec.reconstruct(&mut w, &present).unwrap();
        assert_eq!(work, all);
    }

    #[test]
    fn kernels_produce_identical_parity_and_parallel_matches_serial() {
        let data = random_shards(10, 300_001, 11);
        let want = encode_all(
            &ErasureCodec::with_kernel(10, 4, Kernel::Portable).unwrap(),
            &data,
        );
        for kernel in Kernel::available() {
            let codec = ErasureCodec::with_kernel(10, 4, kernel).unwrap();
            assert_eq!(encode_all(&codec, &data), want, "{}", kernel.name());
            let mut parity = vec![vec![0u8; 300_001]; 4];
            let d: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
            let mut p: Vec<&mut [u8]> = parity.iter_mut().map(Vec::as_mut_slice).collect();
            codec.encode_parallel(&d, &mut p).unwrap();
            assert_eq!(parity[..], want[10..]);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn any_loss_within_budget_is_rebuilt(
            k in 1usize..20,
            m in 1usize..8,
            len in 1usize..300,
            seed in any::<u64>(),
            lose_seed in any::<u64>(),
        ) {
            let codec = ErasureCodec::new(k, m).unwrap();
            let data = random_shards(k, len, seed);
            let all = encode_all(&codec, &data);
            let n = k + m;
            let mut present = vec![true; n];
            let mut x = lose_seed | 1;
            let losses = (lose_seed as usize) % (m + 1);
            let mut lost = 0;
            while lost < losses {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                let i = (x as usize) % n;
                if present[i] { present[i] = false; lost += 1; }
            }
            let mut work: Vec<Vec<u8>> = all.iter().zip(&present).map(|(s, &p)| if p { s.clone() } else { vec![0x5a; len] }).collect();
            let mut w: Vec<&mut [u8]> = work.iter_mut().map(Vec::as_mut_slice).collect();
            codec.reconstruct_parallel(&mut w, &present).unwrap();
            prop_assert_eq!(work, all);
        }
    }
}
