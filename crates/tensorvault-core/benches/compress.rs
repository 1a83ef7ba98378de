//! Criterion benches for the compress module: one 1 MiB gzip member with libdeflate at levels 1, 6 and
//! 9 against flate2 (its default `miniz_oxide` backend) at the same levels, and 16 MiB as parallel
//! members on 1 and 2 threads. The data is event-log-like JSON lines. The end-to-end baseline (node-tar
//! with zlib level 6) is in benches/eventlog.bench.mjs.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::Write as _;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tensorvault_core::compress::{gzip_member, gzip_members, GzipLevel, GzipOptions, MemberSize};
use tensorvault_core::Control;

fn sample(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 400);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut i = 0u64;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let line = format!(
            "{{\"v\":2,\"seq\":{i},\"id\":\"{x:016x}-{:08x}\",\"timestamp\":\"2026-11-22T06:10:{:02}.{:03}Z\",\"actor\":\"user-{}\",\"evento\":\"E{}\",\"entidade\":\"SituacaoDecisoria\",\"entidade_id\":\"{:016x}\",\"payload_hash\":\"{x:016x}{x:016x}{x:016x}{x:016x}\",\"previous_hash\":\"{:016x}{x:016x}{x:016x}{x:016x}\"}}\n",
            x >> 32,
            i % 60,
            i % 1000,
            x % 97,
            i % 3,
            x.rotate_left(7),
            x.rotate_left(3),
        );
        out.extend_from_slice(line.as_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

fn bench_member(c: &mut Criterion) {
    let data = sample(1 << 20);
    let mut g = c.benchmark_group("gzip_1MiB_member");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(20);
    for level in [1u32, 6, 9] {
        let l = GzipLevel::new(i64::from(level)).unwrap();
        g.bench_function(BenchmarkId::new("libdeflate", level), |b| {
            b.iter(|| gzip_member(black_box(&data), l).unwrap());
        });
        g.bench_function(BenchmarkId::new("flate2_miniz", level), |b| {
            b.iter(|| {
                let mut z =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
                z.write_all(black_box(&data)).unwrap();
                z.finish().unwrap()
            });
        });
    }
    g.finish();
}

fn bench_members(c: &mut Criterion) {
    let data = sample(16 << 20);
    let mut g = c.benchmark_group("gzip_16MiB_members_level6");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(10);
    for threads in [1usize, 2] {
        let o = GzipOptions {
            level: GzipLevel::DEFAULT,
            member_size: MemberSize::DEFAULT,
            threads: Some(threads),
        };
        g.bench_function(BenchmarkId::new("threads", threads), |b| {
            b.iter(|| gzip_members(black_box(&data), &o, &Control::new()).unwrap());
        });
    }
    g.finish();
}

criterion_group!(benches, bench_member, bench_members);
criterion_main!(benches);
