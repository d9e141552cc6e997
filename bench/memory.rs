//! Heap cost of the config cache and of one review, measured with a counting allocator
//! (`cargo bench --bench memory`). Prints a small table and, when `BENCH_OUT` is set, writes
//! `$BENCH_OUT/memory.json` for `bench/run.sh`.
//!
//! "RSS with 10,000 ConfigMaps" is measured here, in-process: the standalone server only holds a
//! default config, so the snapshot is built the way the cluster-mode cache builds it (one parsed
//! `WorkloadIdentityConfig` per namespace, `set_namespace`) and its live heap bytes are counted.
//! The server's RSS with that cache is its idle RSS plus this figure (plus allocator slack).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

use carto_wi_webhook::admission::Webhook;
use carto_wi_webhook::config::ConfigSnapshot;
use carto_wi_webhook::settings::Settings;
use common::Parser;
use serde_json::json;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static COUNT: AtomicUsize = AtomicUsize::new(0);
/// Off for `--repeat` (timing and instruction counts without the counters' atomics).
static COUNTING: AtomicBool = AtomicBool::new(true);

fn grow(n: usize) {
    if !COUNTING.load(Relaxed) {
        return;
    }
    let live = LIVE.fetch_add(n, Relaxed) + n;
    PEAK.fetch_max(live, Relaxed);
    COUNT.fetch_add(1, Relaxed);
}

// SAFETY: forwards every call to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        grow(l.size());
        // SAFETY: same layout, same contract as ours.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        grow(l.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if COUNTING.load(Relaxed) {
            LIVE.fetch_sub(l.size(), Relaxed);
        }
        // SAFETY: `p` came from `System` with this layout.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if new >= l.size() {
            grow(new - l.size());
        } else if COUNTING.load(Relaxed) {
            LIVE.fetch_sub(l.size() - new, Relaxed);
            COUNT.fetch_add(1, Relaxed);
        }
        // SAFETY: `p` came from `System` with layout `l`.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Live heap bytes and RSS growth of the snapshot with `n` namespace ConfigMaps.
fn snapshot_cost(n: usize) -> (usize, usize, ConfigSnapshot) {
    let (heap0, rss0) = (LIVE.load(Relaxed), rss_bytes());
    let snap = common::snapshot_with_namespaces(n);
    let (heap1, rss1) = (LIVE.load(Relaxed), rss_bytes());
    (heap1 - heap0, rss1.saturating_sub(rss0), snap)
}

/// Peak extra heap and number of allocations of one full review (parse, decide, respond).
fn review_cost(w: Webhook, body: &[u8], snap: &ConfigSnapshot, s: &Settings) -> (usize, usize) {
    let _ = common::handle(w, body, snap, s); // warm any lazy statics
    let base = LIVE.load(Relaxed);
    PEAK.store(base, Relaxed);
    let c0 = COUNT.load(Relaxed);
    let out = common::handle(w, body, snap, s);
    let peak = PEAK.load(Relaxed) - base;
    let allocs = COUNT.load(Relaxed) - c0;
    drop(out);
    (peak, allocs)
}

/// `--repeat CASE N`: run one case N times and exit, for instruction counts under
/// `valgrind --tool=callgrind` (the difference between two N gives the cost of one).
/// CASE is `parse`, `parse_derived`, `parse_value`, `mutate_full`, `validate_full`, `update_parse`
/// or `update_full` (the `helm upgrade` UPDATE review, mutated); `parse`, `*_full` and
/// `update_parse` take a `:serde_json_slice` suffix for the parse before the whole-body UTF-8 check.
fn repeat(case: &str, n: usize) {
    COUNTING.store(false, Relaxed);
    let settings = Settings::default();
    let snap = ConfigSnapshot::with_default(common::config_entry());
    let obj = common::workspace_api();
    let body = common::review_body(&obj, "CREATE");
    let vbody = common::review_body(&common::mutated(&obj, &snap, &settings), "CREATE");
    let ubody = common::workspace_api_update_body(&snap, &settings);
    let (case, parser) = match case.split_once(':') {
        Some((c, p)) => (
            c,
            Parser::ALL
                .into_iter()
                .find(|x| x.name() == p)
                .unwrap_or_else(|| panic!("unknown parser {p}")),
        ),
        None => (case, Parser::SerdeJson),
    };
    let parse = |b: &[u8]| common::with_request(parser, b, |r| r.uid.len());
    let full = |w, b: &[u8]| drop(common::handle_with(parser, w, b, &snap, &settings));
    // `size_N`: mutate full of a Deployment of N containers × 50 env (linearity, in instructions).
    let size_body = case
        .strip_prefix("size_")
        .and_then(|n| n.parse().ok())
        .map(|n| common::review_body(&common::synthetic_deployment(n, 50), "CREATE"));
    for _ in 0..n {
        if let Some(b) = &size_body {
            full(Webhook::Mutate, b);
            continue;
        }
        match case {
            "parse" => drop(std::hint::black_box(parse(&body))),
            "update_parse" => drop(std::hint::black_box(parse(&ubody))),
            "parse_derived" => drop(std::hint::black_box(common::parse_request_derived(&body))),
            "parse_value" => drop(std::hint::black_box(
                serde_json::from_slice::<serde_json::Value>(&body).expect("json"),
            )),
            "mutate_full" => full(Webhook::Mutate, &body),
            "validate_full" => full(Webhook::Validate, &vbody),
            "update_full" => full(Webhook::Mutate, &ubody),
            other => panic!("unknown case {other}"),
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--repeat") {
        let n = args.get(i + 2).and_then(|n| n.parse().ok()).unwrap_or(1);
        return repeat(&args[i + 1], n);
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` runs with no such flag: do nothing.
    if !args.iter().any(|a| a == "--bench") {
        return;
    }
    let settings = Settings::default();
    let mut snapshots = Vec::new();
    println!("| config cache | live heap | heap per ConfigMap | RSS growth |");
    println!("| --- | ---: | ---: | ---: |");
    for n in [0usize, 1, 1_000, 10_000] {
        let (heap, rss, snap) = snapshot_cost(n);
        let per = heap.checked_div(n).unwrap_or(heap);
        println!(
            "| default + {n} namespaces | {heap} B | {per} B | {} KiB |",
            rss / 1024
        );
        snapshots.push(json!({"namespaces": n, "heap_bytes": heap, "heap_per_configmap": per, "rss_growth_bytes": rss}));
        drop(snap);
    }
    let snap = ConfigSnapshot::with_default(common::config_entry());
    let obj = common::workspace_api();
    let mut reviews = Vec::new();
    println!("\n| one review (full path) | body | peak heap | allocations |");
    println!("| --- | ---: | ---: | ---: |");
    for (w, label, body) in [
        (
            Webhook::Mutate,
            "mutate workspace-api",
            common::review_body(&obj, "CREATE"),
        ),
        (
            Webhook::Validate,
            "validate workspace-api (patched)",
            common::review_body(&common::mutated(&obj, &snap, &settings), "CREATE"),
        ),
    ] {
        let (peak, allocs) = review_cost(w, &body, &snap, &settings);
        println!("| {label} | {} B | {peak} B | {allocs} |", body.len());
        reviews.push(json!({"review": label, "body_bytes": body.len(), "peak_heap_bytes": peak, "allocations": allocs}));
    }
    if let Ok(dir) = std::env::var("BENCH_OUT") {
        let out = json!({"snapshots": snapshots, "reviews": reviews});
        let path = std::path::Path::new(&dir).join("memory.json");
        std::fs::create_dir_all(&dir).expect("BENCH_OUT is writable");
        std::fs::write(&path, serde_json::to_vec_pretty(&out).expect("json")).expect("write");
    }
}
