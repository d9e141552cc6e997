//! Cost of the per-review log line on the request's thread (criterion): the router's `admission`
//! span and its `review` event (src/server/router.rs), with the production filter.
//!
//! - `log/format/*`: the line formatted and written to `io::sink` on the calling thread:
//!   `fmt_json` = tracing-subscriber's JSON format as `logging::init` configured it before
//!   (`flatten_event`, no span), `json_layer` = [`JsonLayer`], `registry_only` = the registry and
//!   the filter with no output (what the span costs by itself).
//! - `log/handoff/*`: the same, the line handed to a writer thread that writes it to `io::sink`:
//!   `fmt_json+non_blocking` = before (tracing-appender, 4,096 lines, lossless),
//!   `json_layer+background` = now ([`BackgroundWriter`]).
//!
//! `--repeat CASE N` runs one case N times and exits, for instruction counts under
//! `valgrind --tool=callgrind` (every thread counted; the difference between two N gives the cost
//! of one review line). Cases: the names above without their group.

use std::hint::black_box;

use carto_wi_webhook::logging::{BackgroundWriter, JsonLayer, MAX_FIELD_CHARS, clip};
use criterion::{Criterion, criterion_group};
use tracing::Dispatch;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;

/// The filter `init` builds from the default `--log-level info`.
const FILTER: &str = "info,rustls=error,h2=error";

/// What keeps a subscriber's writer thread running; dropping it drains the thread.
type Guard = Box<dyn std::any::Any>;

/// The subscriber of `case`, and its writer's guard.
fn subscriber(case: &str) -> (Dispatch, Guard) {
    let fmt_json = || {
        tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_env_filter(EnvFilter::new(FILTER))
    };
    let registry = || tracing_subscriber::registry();
    match case {
        "fmt_json" => (
            fmt_json().with_writer(std::io::sink).finish().into(),
            Box::new(()),
        ),
        "json_layer" => (
            registry()
                .with(JsonLayer::new(std::io::sink))
                .with(EnvFilter::new(FILTER))
                .into(),
            Box::new(()),
        ),
        "registry_only" => (registry().with(EnvFilter::new(FILTER)).into(), Box::new(())),
        "fmt_json+non_blocking" => {
            let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
                .buffered_lines_limit(4096)
                .lossy(false)
                .finish(std::io::sink());
            (
                fmt_json().with_writer(writer).finish().into(),
                Box::new(guard),
            )
        }
        "json_layer+background" => {
            let (writer, guard) =
                BackgroundWriter::spawn(std::io::sink(), "bench-log").expect("thread");
            (
                registry()
                    .with(JsonLayer::new(writer))
                    .with(EnvFilter::new(FILTER))
                    .into(),
                Box::new(guard),
            )
        }
        other => panic!("unknown case {other}"),
    }
}

/// One review as the router logs it: the span around the decision, the line at its end.
fn review(uid: &str, duration_us: u64) {
    let span = tracing::info_span!(
        "admission",
        webhook = "mutate",
        uid = %clip(uid, MAX_FIELD_CHARS),
        kind = %clip("Deployment", MAX_FIELD_CHARS),
        namespace = %clip("carto", MAX_FIELD_CHARS),
        name = %clip("carto-workspace-api", MAX_FIELD_CHARS),
    );
    span.in_scope(|| {
        tracing::event!(
            target: "carto_wi_webhook::review",
            tracing::Level::INFO,
            webhook = "mutate",
            uid = %clip(uid, MAX_FIELD_CHARS),
            kind = %clip("Deployment", MAX_FIELD_CHARS),
            namespace = %clip("carto", MAX_FIELD_CHARS),
            name = %clip("carto-workspace-api", MAX_FIELD_CHARS),
            operation = "CREATE",
            dry_run = false,
            decision = "patched",
            allowed = true,
            patch_ops = 5usize,
            warnings = 0usize,
            violations = None::<String>,
            denial = None::<String>,
            duration_us,
            "review"
        )
    });
}

const UID: &str = "6f1c2a52-0d3e-4c8e-9d7e-5b1c9c1d0a01";

fn bench_group(c: &mut Criterion, group: &str, cases: &[&str]) {
    let mut g = c.benchmark_group(group);
    for &case in cases {
        let (dispatch, guard) = subscriber(case);
        tracing::dispatcher::with_default(&dispatch, || {
            g.bench_function(case, |b| b.iter(|| review(black_box(UID), black_box(42))));
        });
        drop(guard);
    }
    g.finish();
}

fn benches(c: &mut Criterion) {
    bench_group(
        c,
        "log/format",
        &["fmt_json", "json_layer", "registry_only"],
    );
    bench_group(
        c,
        "log/handoff",
        &["fmt_json+non_blocking", "json_layer+background"],
    );
}

/// `--repeat CASE N`: `review` N times through `CASE`'s subscriber; its writer thread is
/// drained (the guard dropped) before exit.
fn repeat(case: &str, n: usize) {
    let (dispatch, guard) = subscriber(case);
    tracing::dispatcher::with_default(&dispatch, || {
        for _ in 0..n {
            review(black_box(UID), black_box(42));
        }
    });
    drop(guard);
}

criterion_group!(group, benches);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--repeat") {
        let n = args.get(i + 2).and_then(|n| n.parse().ok()).unwrap_or(1);
        return repeat(&args[i + 1], n);
    }
    group();
    Criterion::default().configure_from_args().final_summary();
}
