//! Header parse + validation of a 300-tensor header (what `openSafetensors` does before mapping), and
//! the writer's layout computation; then the same parse of a 100,000-tensor header (issue 13, item 14:
//! headers with very many tensors). Baseline: `serde_json::from_slice::<serde_json::Value>` of the same
//! header (parsing without any validation).
use std::fmt::Write as _;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use tensorvault_core::safetensors::{layout, Dtype, Header, TensorSpec};

fn specs() -> Vec<TensorSpec> {
    (0..300)
        .map(|i| TensorSpec {
            name: format!("model.layers.{i}.self_attn.q_proj.weight"),
            dtype: if i % 3 == 2 { Dtype::BF16 } else { Dtype::F32 },
            shape: vec![4096, 1024],
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let l = layout(specs(), None).unwrap_or_else(|_| unreachable!());
    let file_len = l.file_len();
    let header = l.header.clone();
    let json = header.get(8..).unwrap_or_default().to_vec();
    let mut g = c.benchmark_group("safetensors header (300 tensors)");
    g.bench_function("serde_json::Value parse (no validation, baseline)", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&json)).is_ok());
    });
    g.bench_function("Header::parse (parse + validate)", |b| {
        b.iter(|| Header::parse(black_box(&header), file_len).is_ok());
    });
    g.bench_function("layout (writer header)", |b| {
        b.iter(|| layout(black_box(specs()), None).is_ok());
    });
    g.finish();

    // 100,000 one-byte tensors named like the million-tensor file (a tenth of it, so that a
    // criterion sample stays short).
    let n = 100_000usize;
    let mut text = String::from("{\"__metadata__\":{\"format\":\"pt\"}");
    for i in 0..n {
        let _ = write!(
            text,
            ",\"layer.{i}.weight\":{{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[{i},{}]}}",
            i + 1
        );
    }
    text.push('}');
    while text.len() % 8 != 0 {
        text.push(' ');
    }
    let mut big = (text.len() as u64).to_le_bytes().to_vec();
    big.extend_from_slice(text.as_bytes());
    let big_len = big.len() as u64 + n as u64;
    let mut g = c.benchmark_group("safetensors header (100,000 tensors)");
    g.sample_size(10);
    g.bench_function("serde_json::Value parse (no validation, baseline)", |b| {
        b.iter(|| serde_json::from_str::<serde_json::Value>(black_box(&text)).is_ok());
    });
    g.bench_function("Header::parse (parse + validate)", |b| {
        b.iter(|| Header::parse(black_box(&big), big_len).is_ok());
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
