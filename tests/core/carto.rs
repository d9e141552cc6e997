//! The real CARTO plain install: mutating it gives what the manual procedure produces.

use carto_wi_webhook::admission::{self, Webhook};
use carto_wi_webhook::config::{ConfigEntry, config_from_object};
use carto_wi_webhook::offline::{self, OutputFormat};
use carto_wi_webhook::settings::Settings;
use carto_wi_webhook::yaml;
use serde_json::{Value, json};

use crate::common::*;

/// The 10 Deployments of a plain install that run as carto-common-backend.
const TARGETS: [&str; 10] = [
    "carto-cdn-invalidator-sub",
    "carto-import-api",
    "carto-import-worker",
    "carto-lds-api",
    "carto-maps-api",
    "carto-router",
    "carto-sql-worker",
    "carto-valkey",
    "carto-workspace-api",
    "carto-workspace-subscriber",
];
/// The 4 that run under their own ServiceAccounts.
const OTHERS: [&str; 4] = [
    "carto-accounts-www",
    "carto-http-cache",
    "carto-notifier",
    "carto-workspace-www",
];

fn valid_config() -> ConfigEntry {
    let objs = fixture_objects("configmap-valid.yaml");
    ConfigEntry::from_result(config_from_object(&objs[0], &allowed()))
}

/// The WORKSPACE_WORKLOAD_IDENTITY_* entries (name, value) of a container.
fn wi_vars(c: &Value) -> Vec<(String, String)> {
    c["env"]
        .as_array()
        .map(|env| {
            env.iter()
                .filter(|e| {
                    e["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with("WORKSPACE_WORKLOAD_IDENTITY_"))
                })
                .map(|e| {
                    (
                        e["name"].as_str().unwrap().to_owned(),
                        e["value"].as_str().expect("literal value").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn containers<'a>(dep: &'a Value, field: &str) -> Vec<&'a Value> {
    dep["spec"]["template"]["spec"][field]
        .as_array()
        .map(|l| l.iter().collect())
        .unwrap_or_default()
}

#[test]
fn the_fixture_is_a_faithful_plain_install() {
    let objs = fixture_objects("carto-plain.yaml");
    let deps: Vec<&Value> = objs.iter().filter(|o| o["kind"] == "Deployment").collect();
    assert_eq!(deps.len(), 14);
    let on_backend = deps
        .iter()
        .filter(|d| d["spec"]["template"]["spec"]["serviceAccountName"] == SA)
        .count();
    assert_eq!(on_backend, 10);
    assert_eq!(
        find(&objs, "ServiceAccount", SA)["metadata"]["annotations"],
        json!({})
    );
    let router = find(&objs, "Deployment", "carto-router");
    assert_eq!(containers(router, "containers").len(), 2);
    assert_eq!(
        router["spec"]["template"]["spec"]["initContainers"],
        Value::Null
    );
    assert!(
        containers(router, "containers")
            .iter()
            .all(|c| c["env"].is_null())
    );
    let api = find(&objs, "Deployment", "carto-workspace-api");
    assert_eq!(
        containers(api, "initContainers")[0]["name"],
        "workspace-migrations"
    );
    // No WI variable anywhere yet.
    for d in &deps {
        for f in ["containers", "initContainers"] {
            for c in containers(d, f) {
                assert!(wi_vars(c).is_empty());
            }
        }
    }
}

#[test]
fn mutating_the_plain_install_matches_the_manual_procedure() {
    let config = valid_config();
    let snap = carto_wi_webhook::config::ConfigSnapshot::with_default(config);
    let objs = fixture_objects("carto-plain.yaml");
    let manual = fixture_objects("carto-manual-wi.yaml");
    let mut patched = Vec::new();
    for o in &objs {
        let (out, d) = mutate_with(o, &snap, &settings());
        if d.patch.is_some() {
            patched.push((
                o["kind"].as_str().unwrap().to_owned(),
                o["metadata"]["name"].as_str().unwrap().to_owned(),
            ));
        }
        // What the validating webhook then sees is allowed.
        let v = admission::review(Webhook::Validate, &req(&out), &snap, &settings());
        assert!(v.allowed(), "{:?}", v.denial.map(|d| d.to_string()));
        assert!(v.violations.is_empty());
        if o["kind"] == "Deployment" {
            let name = o["metadata"]["name"].as_str().unwrap();
            if let Some(m) = manual
                .iter()
                .find(|m| m["kind"] == "Deployment" && m["metadata"]["name"] == name)
            {
                // Same four variables, name and value, in the main containers as the manual result.
                for (ours, theirs) in containers(&out, "containers")
                    .iter()
                    .zip(containers(m, "containers"))
                {
                    let want = wi_vars(theirs);
                    assert_eq!(want.len(), 4, "{name}");
                    assert_eq!(wi_vars(ours), want, "{name}");
                }
                // The rest of the env list is exactly the manual one too.
                for (ours, theirs) in containers(&out, "containers")
                    .iter()
                    .zip(containers(m, "containers"))
                {
                    assert_eq!(ours["env"], theirs["env"], "{name}");
                }
            }
        }
        if o["kind"] == "ServiceAccount" && o["metadata"]["name"] == SA {
            let m = find(&manual, "ServiceAccount", SA);
            assert_eq!(
                out["metadata"]["annotations"][GCP_SA],
                m["metadata"]["annotations"][GCP_SA]
            );
        }
    }
    let mut want: Vec<(String, String)> = TARGETS
        .iter()
        .map(|n| ("Deployment".to_owned(), (*n).to_owned()))
        .collect();
    want.insert(0, ("ServiceAccount".to_owned(), SA.to_owned()));
    assert_eq!(patched, want);
}

#[test]
fn with_init_containers_the_migration_matches_the_manual_procedure_too() {
    // The manual procedure's extraEnvVars reach the workspace-migrations init container as well.
    let snap = carto_wi_webhook::config::ConfigSnapshot::with_default(valid_config());
    let s = Settings {
        include_init_containers: true,
        ..settings()
    };
    let plain = fixture_objects("carto-plain.yaml");
    let manual = fixture_objects("carto-manual-wi.yaml");
    let api = find(&plain, "Deployment", "carto-workspace-api");
    let (out, _) = mutate_with(api, &snap, &s);
    let m = find(&manual, "Deployment", "carto-workspace-api");
    assert_eq!(
        containers(&out, "initContainers")[0]["env"],
        containers(m, "initContainers")[0]["env"]
    );
}

#[test]
fn every_target_container_gets_the_variables() {
    let snap = carto_wi_webhook::config::ConfigSnapshot::with_default(valid_config());
    let objs = fixture_objects("carto-plain.yaml");
    let want: Vec<(String, String)> = acme_env()
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    for name in TARGETS {
        let (out, d) = mutate_with(find(&objs, "Deployment", name), &snap, &settings());
        assert!(d.warnings.is_empty(), "{name}: {:?}", d.warnings);
        for c in containers(&out, "containers") {
            assert_eq!(wi_vars(c), want, "{name}/{}", c["name"]);
        }
        for c in containers(&out, "initContainers") {
            assert!(
                wi_vars(c).is_empty(),
                "{name}: init containers are off by default"
            );
        }
        assert_eq!(
            out["spec"]["template"]["metadata"]["annotations"][HASH],
            json!(fingerprint_of_valid())
        );
    }
}

fn fingerprint_of_valid() -> String {
    match valid_config() {
        ConfigEntry::Valid(c) => c.hash.clone(),
        ConfigEntry::Invalid(p) => panic!("{p:?}"),
    }
}

fn review_plain(format: OutputFormat) -> offline::ReviewReport {
    offline::review_stream(
        &fixture("carto-plain.yaml"),
        valid_config(),
        &settings(),
        "default",
        format,
    )
}

/// (kind, name) → document text, for a review output stream.
fn documents(stream: &str) -> Vec<(String, String, String)> {
    yaml::split_documents(stream)
        .into_iter()
        .filter(|d| !d.is_empty())
        .map(|d| {
            let v = yaml::parse(d.text).unwrap();
            (
                v["kind"].as_str().unwrap().to_owned(),
                v["metadata"]["name"].as_str().unwrap().to_owned(),
                d.text.to_owned(),
            )
        })
        .collect()
}

#[test]
fn review_patches_the_targets_and_echoes_the_rest_byte_for_byte() {
    let input = fixture("carto-plain.yaml");
    let r = review_plain(OutputFormat::Yaml);
    assert_eq!(r.patched, 11, "{}", r.stderr);
    assert_eq!(r.denied, 0, "{}", r.stderr);
    assert_eq!(r.errors, 0, "{}", r.stderr);
    let before = documents(&input);
    let after = documents(&r.stdout);
    assert_eq!(before.len(), after.len());
    for ((k1, n1, t1), (k2, n2, t2)) in before.iter().zip(&after) {
        assert_eq!((k1, n1), (k2, n2), "order is kept");
        let target = (k1 == "Deployment" && TARGETS.contains(&n1.as_str()))
            || (k1 == "ServiceAccount" && n1 == SA);
        if target {
            assert_ne!(t1, t2, "{k1} {n1} must be patched");
        } else {
            assert_eq!(t1, t2, "{k1} {n1} must be byte-identical");
        }
    }
    for name in OTHERS {
        assert!(
            before
                .iter()
                .any(|(k, n, _)| k == "Deployment" && n == name)
        );
    }
    // The header comment survives.
    assert!(
        r.stdout.starts_with("# CARTO self-hosted"),
        "{}",
        &r.stdout[..80]
    );
}

#[test]
fn review_output_is_a_fixed_point() {
    let first = review_plain(OutputFormat::Yaml);
    let second = offline::review_stream(
        &first.stdout,
        valid_config(),
        &settings(),
        "default",
        OutputFormat::Yaml,
    );
    assert_eq!(second.patched, 0, "{}", second.stderr);
    assert_eq!(second.denied, 0, "{}", second.stderr);
    assert_eq!(second.stdout, first.stdout);
}

#[test]
fn review_patch_output_is_one_json_line_per_patched_object() {
    let r = review_plain(OutputFormat::Patch);
    let lines: Vec<Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 11);
    assert_eq!(lines[0]["kind"], "ServiceAccount");
    assert_eq!(lines[0]["name"], SA);
    assert_eq!(lines[0]["namespace"], "carto");
    // Each patch applies to the object it names.
    let objs = fixture_objects("carto-plain.yaml");
    for l in &lines {
        let obj = find(
            &objs,
            l["kind"].as_str().unwrap(),
            l["name"].as_str().unwrap(),
        );
        let p: json_patch::Patch = serde_json::from_value(l["patch"].clone()).unwrap();
        apply(obj, &p);
    }
}

#[test]
fn review_renders_exactly_the_mutated_objects() {
    // Every document of the output parses back to the input object with its patch applied:
    // nothing lost or retyped by rendering (quoted numbers, long folded strings, block scalars).
    let snap = carto_wi_webhook::config::ConfigSnapshot::with_default(valid_config());
    let r = review_plain(OutputFormat::Yaml);
    let inputs = fixture_objects("carto-plain.yaml");
    let outputs: Vec<Value> = yaml::split_documents(&r.stdout)
        .into_iter()
        .filter(|d| !d.is_empty())
        .map(|d| yaml::parse(d.text).unwrap())
        .collect();
    assert_eq!(inputs.len(), outputs.len());
    for (i, o) in inputs.iter().zip(&outputs) {
        let (want, _) = mutate_with(i, &snap, &settings());
        assert_eq!(*o, want, "{}", i["metadata"]["name"]);
    }
}
