//! Golden decision files: what the core decides on /mutate and /validate for every fixture
//! object (tests/fixtures, examples/*.json) under every Settings × config snapshot below, and
//! how a few ConfigMaps read, committed under tests/core/golden/. A rule change is a reviewed diff of these files:
//! regenerate them with the command in [`UPDATE`] (only ever run by hand, never by CI).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use carto_wi_webhook::admission::view::ReviewRequest;
use carto_wi_webhook::admission::{self, Decision, Webhook};
use carto_wi_webhook::config::{
    ConfigEntry, ConfigProblem, ConfigSnapshot, WorkloadIdentityConfig,
};
use carto_wi_webhook::settings::{Enforcement, Settings};
use serde_json::{Value, json};

use crate::common::*;

/// The one command that rewrites the golden files from the core's current decisions.
pub const UPDATE: &str = "GOLDEN_UPDATE=1 cargo test --locked --test core golden";

/// Every Settings the decisions depend on, in several combinations, each with a short name.
pub fn all_settings() -> Vec<(&'static str, Settings)> {
    let base = Settings::default();
    vec![
        ("default", base.clone()),
        (
            "init",
            Settings {
                include_init_containers: true,
                ..base.clone()
            },
        ),
        (
            "warn+init",
            Settings {
                enforcement: Enforcement::Warn,
                include_init_containers: true,
                ..base.clone()
            },
        ),
        (
            "audit",
            Settings {
                enforcement: Enforcement::Audit,
                ..base.clone()
            },
        ),
        (
            "deployments",
            Settings {
                deployments: vec!["carto-workspace-api".into(), "d0".into()],
                ..base.clone()
            },
        ),
        (
            "require",
            Settings {
                require_config: true,
                ..base.clone()
            },
        ),
        (
            "require+warn",
            Settings {
                require_config: true,
                enforcement: Enforcement::Warn,
                ..base
            },
        ),
    ]
}

/// The acme default, no config, a broken default, and the acme default with `carto` opted out.
pub fn all_snapshots() -> Vec<(&'static str, ConfigSnapshot)> {
    let broken =
        ConfigEntry::from_result(WorkloadIdentityConfig::from_data(&data(&[]), &allowed()));
    let mut opted = snapshot();
    opted.set_opted_out(NS, true);
    vec![
        ("acme", snapshot()),
        ("none", ConfigSnapshot::default()),
        ("broken", ConfigSnapshot::with_default(broken)),
        ("opted-out", opted),
    ]
}

/// The AdmissionReview `request` the API server would send for `obj` (UPDATE: with `old`).
pub fn body(operation: &str, obj: &Value, old: Option<&Value>, name: &str) -> Vec<u8> {
    let api_version = obj["apiVersion"].as_str().unwrap_or("v1");
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let kind = obj["kind"].as_str().unwrap_or("Unknown");
    let resource = format!("{}s", kind.to_lowercase());
    serde_json::to_vec(&json!({
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": group, "version": version, "resource": resource},
        "requestKind": {"group": group, "version": version, "kind": kind},
        "requestResource": {"group": group, "version": version, "resource": resource},
        "name": name,
        "namespace": NS,
        "operation": operation,
        "userInfo": {"username": "system:serviceaccount:kube-system:helm", "uid": "u", "groups": ["system:authenticated"], "extra": {"a": ["b"]}},
        "object": obj,
        "oldObject": old,
        "dryRun": false,
        "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": "helm"},
    }))
    .expect("serializes")
}

/// What the API server adds to every object: `managedFields`, `status`, uid, resourceVersion.
pub fn as_served(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("uid".into(), json!("0b0b0b0b-1111-2222-3333-444444444444"));
        m.insert("resourceVersion".into(), json!("12345"));
        m.insert(
            "managedFields".into(),
            json!([{"manager": "helm", "operation": "Update", "apiVersion": "apps/v1",
                    "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {".": {}}},
                    "f:spec": {"f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"a\"}": {".": {}}}}}}}}]),
        );
    }
    o.as_object_mut().expect("an object").insert(
        "status".into(),
        json!({"observedGeneration": 3, "conditions": [{"type": "Available"}]}),
    );
    o
}

/// The fixture streams whose objects have golden decisions.
pub const FIXTURES: [&str; 5] = [
    "carto-plain.yaml",
    "carto-manual-wi.yaml",
    "edge-deployments.yaml",
    "configmap-valid.yaml",
    "configmap-invalid.yaml",
];

/// One fixture object: its golden file name, what it is, the object itself (fixture streams
/// only) and the request bodies the core is asked about.
pub struct Case {
    pub file: String,
    pub title: String,
    pub object: Option<Value>,
    pub requests: Vec<(&'static str, Vec<u8>)>,
}

/// Every fixture object, in a stable order.
pub fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    for file in FIXTURES {
        let stem = file.trim_end_matches(".yaml");
        for (i, obj) in fixture_objects(file).into_iter().enumerate() {
            if !obj.is_object() {
                continue;
            }
            let kind = obj["kind"].as_str().unwrap_or("");
            let name = obj["metadata"]["name"].as_str().unwrap_or("").to_owned();
            out.push(Case {
                file: slug(&format!("{stem}-{i:02}-{kind}-{name}")),
                title: format!("{file} #{i}: {kind} {name}"),
                requests: object_requests(&obj, &name),
                object: Some(obj),
            });
        }
    }
    out.extend(example_cases());
    out
}

/// CREATE, UPDATE and CREATE without a name (generateName), as written and as served.
fn object_requests(obj: &Value, name: &str) -> Vec<(&'static str, Vec<u8>)> {
    let served = as_served(obj);
    vec![
        ("create", body("CREATE", obj, None, name)),
        ("update", body("UPDATE", obj, Some(obj), name)),
        ("create-unnamed", body("CREATE", obj, None, "")),
        ("served-create", body("CREATE", &served, None, name)),
        ("served-update", body("UPDATE", &served, Some(obj), name)),
        ("served-create-unnamed", body("CREATE", &served, None, "")),
    ]
}

/// The AdmissionReviews under examples/, each as it is written.
fn example_cases() -> Vec<Case> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("examples/")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&p).expect("example reads");
            let review: Value = serde_json::from_str(&text).expect("example is JSON");
            let request = serde_json::to_vec(&review["request"]).expect("serializes");
            Case {
                file: slug(&format!("example-{}", name.trim_end_matches(".json"))),
                title: format!("examples/{name}"),
                object: None,
                requests: vec![("request", request)],
            }
        })
        .collect()
}

fn slug(s: &str) -> String {
    let s: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!("{s}.json")
}

/// A decision as the golden files show it: what the API server is answered, violations
/// rendered as their messages; empty members left out.
pub fn render(d: &Decision) -> Value {
    let mut out = serde_json::Map::new();
    out.insert("kind".into(), json!(d.kind.map(|k| format!("{k:?}"))));
    out.insert("allowed".into(), json!(d.denial.is_none()));
    if let Some(denial) = &d.denial {
        out.insert("denial".into(), json!(denial.to_string()));
    }
    if let Some(p) = &d.patch {
        out.insert(
            "patch".into(),
            serde_json::to_value(p).expect("patch is JSON"),
        );
    }
    if !d.warnings.is_empty() {
        out.insert("warnings".into(), json!(d.warnings));
    }
    if !d.violations.is_empty() {
        let v: Vec<String> = d.violations.iter().map(ToString::to_string).collect();
        out.insert("violations".into(), json!(v));
    }
    if !d.audit_annotations.is_empty() {
        out.insert("auditAnnotations".into(), json!(d.audit_annotations));
    }
    Value::Object(out)
}

/// The golden document of one case: each distinct decision once, with the situations
/// ("webhook snapshot settings [request]") that get it, in a fixed order. A request variant is
/// named only when the variants do not all agree.
fn golden(case: &Case) -> Value {
    let mut groups: Vec<(Value, Vec<String>)> = Vec::new();
    let mut add = |when: String, d: Value| match groups.iter_mut().find(|(v, _)| *v == d) {
        Some((_, w)) => w.push(when),
        None => groups.push((d, vec![when])),
    };
    for w in [Webhook::Mutate, Webhook::Validate] {
        for (sn, snap) in all_snapshots() {
            for (stn, s) in all_settings() {
                let ds: Vec<Value> = case
                    .requests
                    .iter()
                    .map(|(_, b)| render(&decide(w, b, &snap, &s)))
                    .collect();
                let at = format!("{} {sn} {stn}", w.as_str());
                if ds.iter().all(|d| *d == ds[0]) {
                    add(at, ds[0].clone());
                } else {
                    for ((r, _), d) in case.requests.iter().zip(ds) {
                        add(format!("{at} {r}"), d);
                    }
                }
            }
        }
    }
    let decisions: Vec<Value> = groups
        .into_iter()
        .map(|(d, when)| json!({"when": when, "decision": d}))
        .collect();
    json!({"object": case.title, "decisions": decisions})
}

/// The core on the typed view of a request body (what the server and `review` run).
fn decide(w: Webhook, body: &[u8], snap: &ConfigSnapshot, s: &Settings) -> Decision {
    let view = ReviewRequest::from_slice(body).expect("view parse");
    admission::review(w, &view, snap, s)
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/core/golden")
}

/// The ConfigMaps whose reading (configuration or problems, same messages, same order) is
/// pinned: repeated keys, non-string values, `binaryData`, another kind, and the fixture.
pub fn config_texts() -> Vec<String> {
    let data = format!(
        r#"{{"{WORKFLOWS_TEMP}":"{TEMP_V}","{BILLING_PROJECT}":5,"{SA_EMAIL}":"bad value","{WORKFLOWS_TEMP}":"x","TYPO_KEY":null}}"#
    );
    vec![
        format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"c"}},"data":{data}}}"#),
        format!(r#"{{"kind":"ConfigMap","data":{data},"binaryData":{{"b":"eA==","a":"","b":""}}}}"#),
        format!(r#"{{"kind":"Secret","data":{data}}}"#),
        r#"{"kind":"ConfigMap","data":["x"],"binaryData":null}"#.to_owned(),
        r#"{"kind":"ConfigMap","data":null}"#.to_owned(),
        r#"{"kind":5,"data":{}}"#.to_owned(),
        r#"{"data":{"WORKSPACE_WORKLOAD_IDENTITY_SERVICE_ACCOUNT_EMAIL":"carto-wi@acme-analytics.iam.gserviceaccount.com"}}"#.to_owned(),
        fixture("configmap-valid.yaml"),
    ]
}

/// A config text as a JSON value (the JSON ones as JSON, the fixture as YAML).
pub fn config_value(text: &str) -> Value {
    serde_json::from_str(text)
        .unwrap_or_else(|_| carto_wi_webhook::yaml::parse(text).expect("config text parses"))
}

type Reading = Result<WorkloadIdentityConfig, Vec<ConfigProblem>>;

/// A ConfigMap reading as the golden file shows it.
fn render_config(r: &Reading) -> Value {
    match r {
        Ok(c) => json!({"config": format!("{c:#?}").lines().collect::<Vec<_>>()}),
        Err(problems) => {
            let p: Vec<String> = problems.iter().map(ToString::to_string).collect();
            json!({"problems": p})
        }
    }
}

/// The golden document of the ConfigMap readings (`config_from_object`).
fn config_golden() -> Value {
    let readings: Vec<Value> = config_texts()
        .iter()
        .map(|t| {
            let r = carto_wi_webhook::config::config_from_object(&config_value(t), &allowed());
            json!({"configMap": t, "reading": render_config(&r)})
        })
        .collect();
    json!({"readings": readings})
}

/// Every golden file: its name and the text the core gives now.
fn golden_files() -> Vec<(String, String)> {
    let pretty = |v: &Value| serde_json::to_string_pretty(v).expect("serializes") + "\n";
    let cases = cases();
    assert!(cases.len() > 30, "only {} fixture objects", cases.len());
    let mut files: Vec<(String, String)> = cases
        .iter()
        .map(|c| (c.file.clone(), pretty(&golden(c))))
        .collect();
    files.push(("configmap-readings.json".into(), pretty(&config_golden())));
    files
}

/// The core's decisions on every fixture object, and its ConfigMap readings, are the committed
/// golden files.
#[test]
fn decisions_are_the_golden_files() {
    let update = std::env::var("GOLDEN_UPDATE").is_ok_and(|v| v == "1");
    let dir = golden_dir();
    let mut failures = Vec::new();
    let mut expected = BTreeSet::new();
    for (file, text) in golden_files() {
        let path = dir.join(&file);
        assert!(
            expected.insert(file.clone()),
            "two golden files named {file}"
        );
        let committed = std::fs::read_to_string(&path);
        if committed.as_ref().is_ok_and(|c| *c == text) {
            continue;
        }
        if update {
            std::fs::create_dir_all(&dir).expect("golden dir");
            std::fs::write(&path, &text).expect("golden file writes");
        } else {
            match committed {
                Ok(c) => failures.push(format!("{file}:\n{}", line_diff(&c, &text))),
                Err(e) => failures.push(format!("{file}: {e}")),
            }
        }
    }
    for stale in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let name = stale.file_name().to_string_lossy().into_owned();
        if name.ends_with(".json") && !expected.contains(&name) {
            if update {
                std::fs::remove_file(stale.path()).expect("stale golden file removed");
            } else {
                failures.push(format!("{name}: no fixture object has this golden file"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "the core's decisions differ from tests/core/golden/ (- committed, + now).\n\
         If the change is intended, regenerate and review the diff: {UPDATE}\n\n{}",
        failures.join("\n\n")
    );
}

/// A line diff (`-` committed, `+` now) with two lines of context, at most 120 lines.
fn line_diff(old: &str, new: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    // Longest common subsequence table, from the end.
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut ops: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            ops.push((' ', a[i]));
            (i, j) = (i + 1, j + 1);
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', a[i]));
            i += 1;
        } else {
            ops.push(('+', b[j]));
            j += 1;
        }
    }
    let near = |k: usize| {
        ops[k.saturating_sub(2)..(k + 3).min(ops.len())]
            .iter()
            .any(|(c, _)| *c != ' ')
    };
    let mut shown: Vec<String> = Vec::new();
    let mut last = None;
    for k in (0..ops.len()).filter(|&k| near(k)) {
        if last.is_some_and(|l| l + 1 != k) {
            shown.push("...".into());
        }
        shown.push(format!("{}{}", ops[k].0, ops[k].1));
        last = Some(k);
    }
    let more = shown.len().saturating_sub(120);
    let mut out = shown.into_iter().take(120).collect::<Vec<_>>().join("\n");
    if more > 0 {
        out.push_str(&format!("\n... {more} more lines"));
    }
    out
}
