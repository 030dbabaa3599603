//! Micro-benchmarks of the codec, so regressions in the core show without a
//! network: header decode and encode, and payload pass-through per chunk size.

use std::hint::black_box;

use backup_core::codec::{Decoded, RequestDecoder, ResponseDecoder};
use backup_core::{Op, Request, Response, Status};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

fn backup_header() -> Vec<u8> {
    let mut buf = vec![0u8; 300];
    let req =
        Request { user_id: 42, version: 2, op: Op::Backup, name: "quarterly-report.pdf", size: 1 << 20 };
    let n = req.emit(&mut buf).unwrap();
    buf.truncate(n);
    buf
}

fn headers(c: &mut Criterion) {
    let mut group = c.benchmark_group("header");
    let request = backup_header();
    group.bench_function("decode request", |b| {
        b.iter(|| {
            let mut dec = RequestDecoder::new();
            let (used, event) = dec.feed(black_box(&request)).unwrap();
            assert_eq!(event, Decoded::Header);
            black_box((used, dec.header().unwrap().size))
        })
    });
    group.bench_function("decode request one byte at a time", |b| {
        b.iter(|| {
            let mut dec = RequestDecoder::new();
            for byte in black_box(&request).chunks(1) {
                let _ = dec.feed(byte).unwrap();
            }
            black_box(dec.header().unwrap().size)
        })
    });
    let mut buf = [0u8; 300];
    group.bench_function("encode request", |b| {
        let req =
            Request { user_id: 42, version: 2, op: Op::Backup, name: "quarterly-report.pdf", size: 1 << 20 };
        b.iter(|| black_box(black_box(&req).emit(&mut buf).unwrap()))
    });
    let resp =
        Response { version: 2, status: Status::Restored, name: b"quarterly-report.pdf", size: 1 << 20 };
    let n = resp.emit(&mut buf).unwrap();
    let response = buf[..n].to_vec();
    group.bench_function("decode response", |b| {
        b.iter(|| {
            let mut dec = ResponseDecoder::new();
            let (used, _) = dec.feed(black_box(&response)).unwrap();
            black_box((used, dec.header().unwrap().size))
        })
    });
    group.bench_function("encode response", |b| {
        b.iter(|| black_box(black_box(&resp).emit(&mut buf).unwrap()))
    });
    group.finish();
}

fn payload(c: &mut Criterion) {
    const PAYLOAD: usize = 4 << 20;
    let mut group = c.benchmark_group("payload pass-through");
    group.throughput(Throughput::Bytes(PAYLOAD as u64));
    let mut stream = vec![0u8; 300];
    let req = Request { user_id: 1, version: 2, op: Op::Backup, name: "f", size: PAYLOAD as u32 };
    let n = req.emit(&mut stream).unwrap();
    stream.truncate(n);
    stream.resize(n + PAYLOAD, 0xab);
    for chunk in [512usize, 4096, 65536, 262_144] {
        group.bench_with_input(BenchmarkId::from_parameter(chunk), &chunk, |b, &chunk| {
            b.iter(|| {
                let mut dec = RequestDecoder::new();
                let mut seen = 0usize;
                for piece in stream.chunks(chunk) {
                    let mut rest = piece;
                    while !rest.is_empty() {
                        let (used, event) = dec.feed(rest).unwrap();
                        if let Decoded::Payload(p) = event {
                            seen += p.len();
                        }
                        rest = &rest[used..];
                    }
                }
                assert!(dec.is_complete());
                black_box(seen)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, headers, payload);
criterion_main!(benches);
