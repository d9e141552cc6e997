//! In-process cost of one admission review (criterion).
//!
//! - `carto/*`: the CARTO `carto-workspace-api` Deployment, the `carto-common-backend`
//!   ServiceAccount and the configuration ConfigMap. `full` = parse the AdmissionReview JSON body,
//!   decide, write the response JSON (everything the server does but HTTP and TLS); `decision` =
//!   the pure core on an already parsed request.
//! - `size/*`: synthetic Deployments of 1, 8, 32, 128 containers × 50 env vars (cost vs. object
//!   size; throughput is reported in bytes of request body).
//! - `namespaces/*`: the workspace-api review with 1, 1,000 and 10,000 namespace ConfigMaps in the
//!   snapshot (cost must not grow with the cache).
//! - `decode/*`: the envelope and views read the server's way (the body checked as UTF-8 once,
//!   then `serde_json::from_str`) and with `serde_json::from_slice`, parse only and full, on the
//!   workspace-api CREATE reviews and a `helm upgrade` UPDATE (object and oldObject as served,
//!   with managedFields and status).
//! - `hostile/*`: requests just under the API server's 3 MiB that used to amplify (issue 9): the
//!   whole server-side cost of each (parse, decide, respond) must stay well under 100 ms.

mod common;

use std::hint::black_box;
use std::time::Duration;

use carto_wi_webhook::admission::wire::response_body;
use carto_wi_webhook::admission::{self, Webhook};
use carto_wi_webhook::config::ConfigSnapshot;
use carto_wi_webhook::settings::Settings;
use common::Parser;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::Value;

fn bench_pair(
    c: &mut Criterion,
    group: &str,
    obj: &Value,
    snap: &ConfigSnapshot,
    settings: &Settings,
    webhooks: &[Webhook],
) {
    let mut g = c.benchmark_group(group);
    for &w in webhooks {
        // The validating webhook sees the object after mutation, as in the API server.
        let input = match w {
            Webhook::Mutate => obj.clone(),
            Webhook::Validate => common::mutated(obj, snap, settings),
        };
        let body = common::review_body(&input, "CREATE");
        let req = common::parse_request(&body);
        g.bench_function(format!("{}/full", w.as_str()), |b| {
            b.iter(|| common::handle(w, black_box(&body), snap, settings))
        });
        g.bench_function(format!("{}/decision", w.as_str()), |b| {
            b.iter(|| admission::review(w, black_box(&req), snap, settings))
        });
        // The stages of `full`.
        g.bench_function(format!("{}/parse", w.as_str()), |b| {
            b.iter(|| common::parse_request(black_box(&body)))
        });
        let decision = admission::review(w, &req, snap, settings);
        g.bench_function(format!("{}/respond", w.as_str()), |b| {
            b.iter(|| response_body(&req.uid, black_box(&decision)))
        });
    }
    g.finish();
}

fn carto(c: &mut Criterion) {
    let settings = Settings::default();
    let snap = ConfigSnapshot::with_default(common::config_entry());
    let both = [Webhook::Mutate, Webhook::Validate];
    bench_pair(
        c,
        "carto/workspace-api",
        &common::workspace_api(),
        &snap,
        &settings,
        &both,
    );
    bench_pair(
        c,
        "carto/service-account",
        &common::common_backend_sa(),
        &snap,
        &settings,
        &both,
    );
    bench_pair(
        c,
        "carto/configmap",
        &common::configmap_valid(),
        &snap,
        &settings,
        &[Webhook::Validate],
    );
}

fn parsers(c: &mut Criterion) {
    let body = common::review_body(&common::workspace_api(), "CREATE");
    let mut g = c.benchmark_group("parse/workspace-api");
    g.bench_function("view", |b| {
        b.iter(|| common::parse_request(black_box(&body)))
    });
    g.bench_function("derived_envelope", |b| {
        b.iter(|| common::parse_request_derived(black_box(&body)))
    });
    g.bench_function("kube_admission_review", |b| {
        b.iter(|| common::parse_request_kube_review(black_box(&body)))
    });
    g.bench_function("serde_json_value", |b| {
        b.iter(|| serde_json::from_slice::<Value>(black_box(&body)).expect("json"))
    });
    g.finish();
}

fn decode(c: &mut Criterion) {
    let settings = Settings::default();
    let snap = ConfigSnapshot::with_default(common::config_entry());
    let obj = common::workspace_api();
    let cases = [
        (
            "mutate",
            Webhook::Mutate,
            common::review_body(&obj, "CREATE"),
        ),
        (
            "validate",
            Webhook::Validate,
            common::review_body(&common::mutated(&obj, &snap, &settings), "CREATE"),
        ),
        (
            "update",
            Webhook::Mutate,
            common::workspace_api_update_body(&snap, &settings),
        ),
    ];
    let mut g = c.benchmark_group("decode");
    for (name, w, body) in &cases {
        g.throughput(Throughput::Bytes(body.len() as u64));
        for p in Parser::ALL {
            g.bench_function(format!("{name}/parse/{}", p.name()), |b| {
                b.iter(|| common::with_request(p, black_box(body), |r| r.uid.len()))
            });
            g.bench_function(format!("{name}/full/{}", p.name()), |b| {
                b.iter(|| common::handle_with(p, *w, black_box(body), &snap, &settings))
            });
        }
    }
    g.finish();
}

fn size(c: &mut Criterion) {
    let settings = Settings::default();
    let snap = ConfigSnapshot::with_default(common::config_entry());
    let mut g = c.benchmark_group("size");
    for n in [1usize, 8, 32, 128] {
        let obj = common::synthetic_deployment(n, 50);
        let body = common::review_body(&obj, "CREATE");
        let req = common::parse_request(&body);
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_with_input(BenchmarkId::new("mutate/full", n), &body, |b, body| {
            b.iter(|| common::handle(Webhook::Mutate, black_box(body), &snap, &settings))
        });
        g.bench_with_input(BenchmarkId::new("mutate/decision", n), &req, |b, req| {
            b.iter(|| admission::review(Webhook::Mutate, black_box(req), &snap, &settings))
        });
        let vbody = common::review_body(&common::mutated(&obj, &snap, &settings), "CREATE");
        g.throughput(Throughput::Bytes(vbody.len() as u64));
        g.bench_with_input(BenchmarkId::new("validate/full", n), &vbody, |b, body| {
            b.iter(|| common::handle(Webhook::Validate, black_box(body), &snap, &settings))
        });
    }
    g.finish();
}

fn namespaces(c: &mut Criterion) {
    let settings = Settings::default();
    let mut g = c.benchmark_group("namespaces");
    for n in [1usize, 1_000, 10_000] {
        let snap = common::snapshot_with_namespaces(n);
        // A namespace that has its own ConfigMap (the last one inserted).
        let obj = common::in_namespace(&common::workspace_api(), &format!("ns-{}", n - 1));
        let body = common::review_body(&obj, "CREATE");
        let req = common::parse_request(&body);
        g.bench_with_input(BenchmarkId::new("mutate/decision", n), &req, |b, req| {
            b.iter(|| admission::review(Webhook::Mutate, black_box(req), &snap, &settings))
        });
        let vobj = common::mutated(&obj, &snap, &settings);
        let vbody = common::review_body(&vobj, "CREATE");
        let vreq = common::parse_request(&vbody);
        g.bench_with_input(BenchmarkId::new("validate/decision", n), &vreq, |b, req| {
            b.iter(|| admission::review(Webhook::Validate, black_box(req), &snap, &settings))
        });
    }
    g.finish();
}

/// A Deployment running as the target ServiceAccount with these containers.
fn target_with(containers: Vec<Value>) -> Value {
    let mut d = common::synthetic_deployment(1, 0);
    d["spec"]["template"]["spec"]["containers"] = Value::Array(containers);
    d
}

fn container(name: &str, env: Vec<Value>) -> Value {
    serde_json::json!({"name": name, "image": "registry.example/app:1", "env": env})
}

fn hostile(c: &mut Criterion) {
    let settings = Settings::default();
    let snap = ConfigSnapshot::with_default(common::config_entry());
    let var = |n: &str, v: &str| serde_json::json!({"name": n, "value": v});
    let temp = "WORKSPACE_WORKLOAD_IDENTITY_WORKFLOWS_TEMP";
    let cases: Vec<(&str, Value)> = vec![
        (
            "long_container_name",
            target_with(vec![container(
                &"c".repeat(2_900_000),
                vec![var(temp, "x.y")],
            )]),
        ),
        (
            "5000_containers",
            target_with(
                (0..5_000)
                    .map(|i| container(&format!("c{i}"), vec![var(temp, "x.y")]))
                    .collect(),
            ),
        ),
        (
            "100000_env_entries",
            target_with(vec![container(
                "api",
                (0..100_000).map(|i| var(&format!("V{i}"), "v")).collect(),
            )]),
        ),
        (
            "40000_duplicated_entries",
            target_with(
                (0..5)
                    .map(|i| {
                        container(
                            &format!("c{i}"),
                            (0..8_000).map(|_| var(temp, "other.value")).collect(),
                        )
                    })
                    .collect(),
            ),
        ),
        ("20000_unknown_keys", {
            let mut cm = common::configmap_valid();
            for i in 0..20_000 {
                cm["data"][format!("UNKNOWN_KEY_{i}")] = Value::String("v".into());
            }
            cm
        }),
        ("1mb_unknown_key", {
            let mut cm = common::configmap_valid();
            cm["data"]["K".repeat(1_000_000)] = Value::String("v".into());
            cm
        }),
    ];
    let mut g = c.benchmark_group("hostile");
    g.sample_size(10);
    for (name, obj) in &cases {
        let body = common::review_body(obj, "CREATE");
        assert!(
            body.len() <= 3 * 1024 * 1024,
            "{name}: {} bytes",
            body.len()
        );
        g.throughput(Throughput::Bytes(body.len() as u64));
        for w in [Webhook::Mutate, Webhook::Validate] {
            g.bench_with_input(
                BenchmarkId::new(format!("{}/full", w.as_str()), name),
                &body,
                |b, body| b.iter(|| common::handle(w, black_box(body), &snap, &settings)),
            );
        }
    }
    g.finish();
}

fn config() -> Criterion {
    // Short but stable on 2 cores; override on the command line (e.g. --measurement-time 10).
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = carto, parsers, decode, size, namespaces, hostile
}
criterion_main!(benches);
