//! Events per second the cluster watch applies to its state and publishes to admission, with
//! N namespace ConfigMaps held (`cargo bench --bench watch_state`). Each event is what the
//! watch's publisher does under its lock: edit the state, count ConfigMaps by validity, publish
//! the snapshot admission reads (the work queue and metrics aside). ConfigMaps are parsed before
//! the clock starts: parsing costs the same whatever the state holds.

use std::hint::black_box;
use std::time::{Duration, Instant};

use carto_wi_webhook::cluster::state::{WatchState, seen_config_map};
use carto_wi_webhook::config::{ConfigStore, ExtraEnvAllowlist, SeenConfigMap};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ObjectMeta;

const OWN: &str = "wi-system";
const ROUNDS: usize = 3;
const ROUND: Duration = Duration::from_secs(1);

fn config_map(ns: &str, rv: usize, owner: &str) -> SeenConfigMap {
    let data = [
        (
            "WORKSPACE_WORKLOAD_IDENTITY_WORKFLOWS_TEMP",
            "my-project.workflows_temp",
        ),
        ("WORKSPACE_WORKLOAD_IDENTITY_BILLING_PROJECT", "my-project"),
        (
            "WORKSPACE_WORKLOAD_IDENTITY_SERVICE_ACCOUNT_EMAIL",
            "carto-bq@my-project.iam.gserviceaccount.com",
        ),
        ("WORKSPACE_WORKLOAD_IDENTITY_CONNECTION_OWNER_ID", owner),
    ];
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("carto-workload-identity".into()),
            namespace: Some(ns.into()),
            uid: Some(format!("uid-{ns}")),
            resource_version: Some(rv.to_string()),
            ..ObjectMeta::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
        ),
        ..ConfigMap::default()
    };
    seen_config_map(&cm, &ExtraEnvAllowlist::none())
}

fn namespace(name: &str, opted_out: bool) -> ObjectMeta {
    let label = [(
        "workload-identity.carto.com/inject".to_owned(),
        opted_out.to_string(),
    )];
    ObjectMeta {
        name: Some(name.into()),
        labels: Some(label.into()),
        ..ObjectMeta::default()
    }
}

/// The state after the first full list: a default and `n` namespace ConfigMaps.
fn listed(n: usize) -> WatchState {
    let mut state = WatchState::new(OWN);
    let mut all: std::collections::BTreeMap<_, _> = (0..n)
        .map(|i| {
            (
                format!("ns-{i}"),
                config_map(&format!("ns-{i}"), 1, &format!("auth0|{i}")),
            )
        })
        .collect();
    all.insert(OWN.into(), config_map(OWN, 1, "auth0|default"));
    state.replace_config_maps(all);
    state
}

/// What the publisher does for one event once the state is edited.
fn publish(state: &WatchState, store: &ConfigStore) {
    black_box(state.snapshot().config_map_counts());
    store.publish(state.snapshot().clone());
}

/// Events per second over `ROUND`, the median of `ROUNDS`.
fn rate(mut event: impl FnMut(usize)) -> f64 {
    let mut rates: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            let mut n = 0;
            while start.elapsed() < ROUND || n < 20 {
                event(n);
                n += 1;
            }
            n as f64 / start.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[ROUNDS / 2]
}

fn main() {
    println!("| namespace ConfigMaps | event | events/s |");
    println!("| ---: | --- | ---: |");
    for n in [1_000, 10_000] {
        let store = ConfigStore::default();
        let mut state = listed(n);
        // Two versions of each of 64 ConfigMaps, alternated so every event is a change.
        let edits: Vec<[SeenConfigMap; 2]> = (0..64)
            .map(|i| {
                let ns = format!("ns-{}", i * n / 64);
                [1, 2].map(|v| config_map(&ns, v + 1, &format!("auth0|edit-{v}")))
            })
            .collect();
        let names: Vec<String> = (0..64).map(|i| format!("ns-{}", i * n / 64)).collect();
        let cm_rate = rate(|e| {
            let seen = edits[e % 64][(e / 64) % 2].clone();
            black_box(state.apply_config_map(&names[e % 64], seen));
            publish(&state, &store);
        });
        println!("| {n} | ConfigMap modified | {cm_rate:.0} |");
        let ns_rate = rate(|e| {
            black_box(state.apply_namespace(&namespace(&names[e % 64], (e / 64) % 2 == 0)));
            publish(&state, &store);
        });
        println!("| {n} | Namespace relabelled | {ns_rate:.0} |");
    }
}
