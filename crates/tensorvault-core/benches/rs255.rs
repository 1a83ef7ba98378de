//! Criterion benches for `ecc::rs255`: sidecar encode and decode (clean, i.e. the syndrome check, and
//! with errors in every 8th block) for rs(16), rs(32), rs(64) on 1 and 2 threads, plus the portable
//! kernel and the reference LFSR as in-process baselines. Size: `TV_RS_BENCH_MIB` (default 64 MiB;
//! the recorded figures use 256).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation,
    clippy::indexing_slicing,
    missing_docs
)]

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tensorvault_core::ecc::rs255::RsCodec;
use tensorvault_core::Control;

fn size() -> usize {
    std::env::var("TV_RS_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64usize)
        << 20
}

fn data(len: usize) -> Vec<u8> {
    let mut s = 0x1234_5678_9abc_def0u64;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s as u8
        })
        .collect()
}

fn bench_rs(c: &mut Criterion) {
    let len = size();
    let input = data(len);
    for n in [16usize, 32, 64] {
        let codec = RsCodec::new(n).unwrap();
        let parity = codec.encode(&input, &Control::new()).unwrap();
        let mut damaged = input.clone();
        let k = codec.block_data_len();
        for b in (0..codec.block_count(len as u64) as usize).step_by(8) {
            for j in 0..n / 2 {
                if let Some(x) = damaged.get_mut(b * k + j * 3) {
                    *x ^= 0xa5;
                }
            }
        }
        let mut g = c.benchmark_group(format!("rs{n}"));
        g.throughput(Throughput::Bytes(len as u64));
        g.sample_size(10);
        for threads in [1usize, 2] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            g.bench_function(BenchmarkId::new("encode", threads), |b| {
                b.iter(|| {
                    pool.install(|| codec.encode(black_box(&input), &Control::new()))
                        .unwrap()
                });
            });
            let mut scratch = input.clone();
            g.bench_function(BenchmarkId::new("decode_clean", threads), |b| {
                b.iter(|| {
                    pool.install(|| {
                        codec.decode(black_box(&mut scratch), &parity, &[], &Control::new())
                    })
                    .unwrap()
                });
            });
            g.bench_function(
                BenchmarkId::new("decode_errors_every_8th_block", threads),
                |b| {
                    b.iter_batched_ref(
                        || damaged.clone(),
                        |d| {
                            pool.install(|| codec.decode(d, &parity, &[], &Control::new()))
                                .unwrap()
                        },
                        criterion::BatchSize::LargeInput,
                    );
                },
            );
        }
        g.bench_function("encode_portable_1", |b| {
            b.iter(|| codec.encode_portable(black_box(&input)));
        });
        let small = &input[..len.min(4 << 20)];
        g.throughput(Throughput::Bytes(small.len() as u64));
        g.bench_function("encode_reference_lfsr_4MiB", |b| {
            b.iter(|| {
                for blk in small.chunks(k) {
                    black_box(codec.encode_block_reference(blk));
                }
            });
        });
        g.finish();
    }
}

criterion_group!(benches, bench_rs);
criterion_main!(benches);
