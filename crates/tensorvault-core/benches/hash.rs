//! Criterion benches for the hash module: SHA-256 throughput (SHA-NI through `sha2`), HMAC, and the
//! chunk tree over an in-memory buffer on 1 and 2 threads. Baseline for SHA-256 itself: `openssl speed
//! -evp sha256` on the same machine (see docs/benchmarks.md).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tensorvault_core::hash::{hmac_sha256, sha256, ChunkSize, ChunkTree};

fn bench_sha256(c: &mut Criterion) {
    let mut g = c.benchmark_group("sha256");
    for size in [64usize << 10, 16 << 20] {
        let data = vec![0xa5u8; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("oneshot", size), &data, |b, d| {
            b.iter(|| sha256(black_box(d)));
        });
        g.bench_with_input(BenchmarkId::new("hmac", size), &data, |b, d| {
            b.iter(|| hmac_sha256(b"key", black_box(d)));
        });
    }
    g.finish();
}

fn bench_tree(c: &mut Criterion) {
    let size = 64usize << 20;
    let data = vec![0x5au8; size];
    let mut g = c.benchmark_group("chunk_tree_64MiB");
    g.throughput(Throughput::Bytes(size as u64));
    g.sample_size(10);
    for threads in [1usize, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        g.bench_function(BenchmarkId::new("threads", threads), |b| {
            b.iter(|| {
                pool.install(|| ChunkTree::of_bytes(black_box(&data), ChunkSize::DEFAULT).root())
            });
        });
    }
    g.finish();
}

criterion_group!(benches, bench_sha256, bench_tree);
criterion_main!(benches);
