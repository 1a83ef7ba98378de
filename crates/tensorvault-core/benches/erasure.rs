//! Criterion benches for the erasure codec (every kernel this CPU has: AVX-512+GFNI, AVX2, SSSE3,
//! portable): encode and reconstruct (1 and 4 lost data shards) of a
//! 10 + 4 stripe of 1 MiB shards on one thread, per kernel, against `reed-solomon-simd` (FFT-based Rust
//! crate) in the same run. ISA-L and `@ronomon/reed-solomon` figures are recorded as anchors in
//! `docs/benchmarks-ecc.md`. Throughput is counted in data bytes (k × shard size).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    clippy::cast_possible_truncation
)]

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tensorvault_core::ecc::erasure::{AlignedBuf, ErasureCodec, Kernel};

const K: usize = 10;
const M: usize = 4;
const SHARD: usize = 1 << 20;

/// Cache-line-aligned shards, as ISA-L's harness uses (`posix_memalign(64)`).
fn shards(n: usize) -> Vec<AlignedBuf> {
    let mut x = 0x1234_5678_9abc_def1u64;
    (0..n)
        .map(|_| {
            let mut b = AlignedBuf::zeroed(SHARD);
            for v in b.as_mut_slice() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *v = (x >> 24) as u8;
            }
            b
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let data = shards(K);
    let plain: Vec<Vec<u8>> = data.iter().map(|b| b.as_slice().to_vec()).collect();
    let mut g = c.benchmark_group("erasure_10+4x1MiB");
    g.throughput(Throughput::Bytes((K * SHARD) as u64));
    g.sample_size(20);
    for kernel in Kernel::available() {
        let codec = ErasureCodec::with_kernel(K, M, kernel).unwrap();
        let d: Vec<&[u8]> = data.iter().map(AlignedBuf::as_slice).collect();
        let mut parity = shards(M);
        // Real parity before any bench runs: a filtered run (no encode bench) must still reconstruct
        // the right bytes.
        {
            let mut p: Vec<&mut [u8]> = parity.iter_mut().map(AlignedBuf::as_mut_slice).collect();
            codec.encode(&d, &mut p).unwrap();
        }
        g.bench_function(BenchmarkId::new("encode", kernel.name()), |b| {
            b.iter(|| {
                let mut p: Vec<&mut [u8]> =
                    parity.iter_mut().map(AlignedBuf::as_mut_slice).collect();
                codec.encode(black_box(&d), &mut p).unwrap();
            });
        });
        let mut all: Vec<AlignedBuf> = data.clone();
        all.extend(parity.clone());
        let want: Vec<Vec<u8>> = all.iter().map(|b| b.as_slice().to_vec()).collect();
        for lost in [1usize, 4] {
            let present: Vec<bool> = (0..K + M).map(|i| i >= lost).collect();
            let mut work = all.clone();
            g.bench_function(
                BenchmarkId::new(format!("reconstruct{lost}"), kernel.name()),
                |b| {
                    b.iter(|| {
                        let mut w: Vec<&mut [u8]> =
                            work.iter_mut().map(AlignedBuf::as_mut_slice).collect();
                        codec.reconstruct(&mut w, black_box(&present)).unwrap();
                    });
                },
            );
            let got: Vec<Vec<u8>> = work.iter().map(|b| b.as_slice().to_vec()).collect();
            assert_eq!(got, want);
        }
    }
    // Baseline: reed-solomon-simd (FFT over GF(2^16)).
    g.bench_function(BenchmarkId::new("encode", "reed-solomon-simd"), |b| {
        b.iter(|| reed_solomon_simd::encode(K, M, black_box(&plain)).unwrap());
    });
    let recovery = reed_solomon_simd::encode(K, M, &plain).unwrap();
    for lost in [1usize, 4] {
        g.bench_function(
            BenchmarkId::new(format!("reconstruct{lost}"), "reed-solomon-simd"),
            |b| {
                b.iter(|| {
                    let originals = plain.iter().enumerate().skip(lost);
                    let rec = recovery.iter().enumerate().take(lost);
                    reed_solomon_simd::decode(K, M, originals, rec).unwrap()
                });
            },
        );
    }
    // Baseline: memcpy of the same data bytes.
    let mut dst = vec![0u8; SHARD];
    g.bench_function(BenchmarkId::new("memcpy", "std"), |b| {
        b.iter(|| {
            for s in &plain {
                dst.copy_from_slice(black_box(s));
            }
        });
    });
    // Ceiling for any single-loss rebuild: XOR of the k data shards into one output (what a code with an
    // all-ones parity row would do), same bytes read and written as reconstruct1.
    let mut acc = vec![0u64; SHARD / 8];
    g.bench_function(BenchmarkId::new("xor-k-into-1", "std"), |b| {
        b.iter(|| {
            acc.fill(0);
            for s in &plain {
                for (a, c) in acc.iter_mut().zip(black_box(s).chunks_exact(8)) {
                    *a ^= u64::from_le_bytes(c.try_into().unwrap());
                }
            }
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
