//! Header parse + validation of a 300-tensor header (what `openSafetensors` does before mapping), and
//! the writer's layout computation. Baseline: `serde_json::from_slice::<serde_json::Value>` of the same
//! header (parsing without any validation).
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
}

criterion_group!(benches, bench);
criterion_main!(benches);
