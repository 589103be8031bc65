//! In-process costs on the hot path of one problem (Criterion, short runs):
//! decoding a problem.open, building (and serialising) a reply event, and finding the
//! remediation in a parsed remediation.yaml.
//!
//! `cargo bench -p bench --bench inprocess` (the measurement times are set in code; see BENCHMARKS.md).

use criterion::{Criterion, criterion_group, criterion_main};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;
use unleash_remediation_service::keptn::outgoing::{Link, Outcome};
use unleash_remediation_service::keptn::{EventFactory, decode_bytes};
use unleash_remediation_service::resources::RemediationFile;

fn read(rel: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn benches(c: &mut Criterion) {
    let problem = read("tests/vectors/tutorial/problemopen.json");
    c.bench_function("decode problem.open (tutorial vector)", |b| {
        b.iter(|| decode_bytes(black_box(&problem)).expect("decodes"))
    });

    // What a duplicate OPEN costs before the claim cache is asked (keptn::quick).
    c.bench_function("identity of problem.open (tutorial vector)", |b| {
        b.iter(|| {
            unleash_remediation_service::keptn::quick::open_identity(black_box(&problem))
                .expect("an OPEN")
        })
    });
    let incoming = decode_bytes(&problem).expect("decodes");
    let scope = incoming.scope().expect("the vector has a scope").clone();
    let factory = EventFactory::new("unleash-remediation-service");
    let labels = BTreeMap::new();
    c.bench_function("build remediation.finished", |b| {
        b.iter(|| {
            let link = Link::reply_to(black_box(&incoming.meta));
            factory.remediation_finished(&link, &scope, &labels, Outcome::Pass, "toggled")
        })
    });
    c.bench_function("build + serialise remediation.finished", |b| {
        b.iter(|| {
            let link = Link::reply_to(black_box(&incoming.meta));
            let ev = factory.remediation_finished(&link, &scope, &labels, Outcome::Pass, "toggled");
            serde_json::to_vec(&ev).expect("serialises")
        })
    });

    let yaml = String::from_utf8(read("tests/vectors/keptn-0.8/remediation.yaml")).unwrap();
    c.bench_function("parse remediation.yaml (keptn-0.8 vector)", |b| {
        b.iter(|| RemediationFile::parse(black_box(&yaml), "remediation.yaml").expect("parses"))
    });
    let file = RemediationFile::parse(&yaml, "remediation.yaml").expect("parses");
    c.bench_function("find remediation by title", |b| {
        b.iter(|| file.find(black_box(Some("Response time degradation")), None))
    });
    c.bench_function("parse + find", |b| {
        b.iter(|| {
            let f = RemediationFile::parse(black_box(&yaml), "remediation.yaml").expect("parses");
            f.find(Some("Response time degradation"), None).is_some()
        })
    });
}

criterion_group! {
    name = inprocess;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);
    targets = benches
}
criterion_main!(inprocess);
