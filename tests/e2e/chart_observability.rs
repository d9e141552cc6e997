//! Who may look and what they see: the chart's read-only viewer ClusterRole (judged by the real
//! authorizer), its Grafana dashboard ConfigMap and its PrometheusRule (`promtool check rules`
//! and `promtool test rules` with tests/promtool/alerts_test.yaml), and every metric name the
//! dashboard, the rules and their tests use exposed by a webhook running in cluster mode.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};

use super::chart::{find, list, objects, template};
use super::cluster::ControlPlane;
use super::cluster_mode::{ClusterWebhook, must};
use super::kube::text;

const DASHBOARD: &str =
    include_str!("../../charts/carto-wi-webhook/dashboards/carto-wi-webhook.json");
const RULES_TEMPLATE: &str =
    include_str!("../../charts/carto-wi-webhook/templates/prometheusrule.yaml");
const ALERTS_TEST: &str = include_str!("../promtool/alerts_test.yaml");

const READ_VERBS: [&str; 3] = ["get", "list", "watch"];
const AGGREGATE: &str = "rbac.authorization.k8s.io/aggregate-to-view";

/// What `plan` and `status` read: (API group, resource).
const VIEWED: [(&str, &str); 9] = [
    ("", "configmaps"),
    ("", "namespaces"),
    ("", "serviceaccounts"),
    ("", "events"),
    ("apps", "deployments"),
    ("events.k8s.io", "events"),
    (
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
    ),
    (
        "admissionregistration.k8s.io",
        "validatingwebhookconfigurations",
    ),
    ("coordination.k8s.io", "leases"),
];

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The ClusterRole named `name` of a rendering, if any.
fn cluster_role<'a>(objs: &'a [Value], name: &str) -> Option<&'a Value> {
    objs.iter()
        .find(|v| v["kind"] == "ClusterRole" && v["metadata"]["name"] == name)
}

/// Every rule grants read verbs only, names no wildcard and no Secret, and each viewed resource
/// is granted get, list and watch.
fn assert_read_only(role: &Value) {
    let rules = role["rules"].as_array().expect("rules");
    for r in rules {
        for v in strings(&r["verbs"]) {
            assert!(READ_VERBS.contains(&v), "write verb {v:?} in {r}");
        }
        for field in ["apiGroups", "resources", "verbs"] {
            assert!(!strings(&r[field]).contains(&"*"), "wildcard in {r}");
        }
        assert!(!strings(&r["resources"]).contains(&"secrets"), "{r}");
    }
    for (group, resource) in VIEWED {
        let granted = rules.iter().any(|r| {
            strings(&r["apiGroups"]).contains(&group)
                && strings(&r["resources"]).contains(&resource)
                && strings(&r["verbs"]).len() == READ_VERBS.len()
        });
        assert!(granted, "{group}/{resource} not readable: {role}");
    }
}

/// `kubectl auth can-i VERB RESOURCE` as `user`, answered by the real authorizer.
fn can(cp: &ControlPlane, user: &str, args: &[&str]) -> bool {
    let mut all = vec!["auth", "can-i", "--as", user];
    all.extend_from_slice(args);
    cp.kubectl(&all, None).status.success()
}

/// The viewer ClusterRole: rendered by default as `<fullname>-viewer` with read verbs only,
/// labelled for aggregation to `view` only on request, absent when disabled; bound to a
/// ServiceAccount, the real authorizer lets it read what `plan` and `status` read and write
/// nothing.
pub fn chart_viewer_role_is_read_only(cp: &ControlPlane) {
    let ns = "chart-viewer";
    let name = "cview-carto-wi-webhook-viewer";
    let rendered = |args: &[&str]| objects(&template(cp, "cview", ns, args).unwrap());
    let default = rendered(&[]);
    let role = cluster_role(&default, name).expect("the viewer ClusterRole is rendered");
    assert_read_only(role);
    assert!(role["metadata"]["labels"][AGGREGATE].is_null(), "{role}");
    let aggregated = rendered(&["--set", "viewer.aggregateToView=true"]);
    let agg = cluster_role(&aggregated, name).unwrap();
    assert_eq!(agg["metadata"]["labels"][AGGREGATE], "true");
    assert_eq!(agg["rules"], role["rules"]);
    let off = rendered(&["--set", "viewer.enabled=false"]);
    assert!(cluster_role(&off, name).is_none(), "viewer.enabled=false");

    must(cp.kubectl(&["create", "namespace", ns], None), "namespace");
    let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": "viewer", "namespace": ns}]});
    let out = cp.kubectl(
        &["apply", "-f", "-"],
        Some(&list(vec![agg.clone(), binding])),
    );
    assert!(out.status.success(), "apply: {}", text(&out));
    let user = format!("system:serviceaccount:{ns}:viewer");
    for yes in [
        &["list", "deployments.apps", "-A"][..],
        &["watch", "namespaces"],
        &["get", "configmaps/carto-workload-identity", "-n", "carto"],
        &["list", "serviceaccounts/carto-common-backend", "-A"],
        &["list", "events.events.k8s.io", "-A"],
        &["list", "mutatingwebhookconfigurations"],
        &["get", "leases.coordination.k8s.io", "-n", ns],
    ] {
        assert!(can(cp, &user, yes), "the viewer may {yes:?}");
    }
    for no in [
        &["patch", "deployments.apps", "-A"][..],
        &["create", "configmaps", "-n", ns],
        &["get", "configmaps/other", "-n", ns],
        &["get", "secrets", "-n", ns],
        &["update", "leases.coordination.k8s.io", "-n", ns],
        &["patch", "mutatingwebhookconfigurations"],
        &["create", "events.events.k8s.io", "-n", ns],
    ] {
        assert!(!can(cp, &user, no), "the viewer may not {no:?}");
    }
}

/// The dashboard ConfigMap: off by default; when enabled, labelled for Grafana's sidecar and
/// holding the chart's dashboard file, every panel with a query.
pub fn chart_dashboard_configmap_holds_the_dashboard(cp: &ControlPlane) {
    let cm_name = "cdash-carto-wi-webhook-dashboard";
    let is_dashboard = |v: &&Value| v["kind"] == "ConfigMap" && v["metadata"]["name"] == cm_name;
    let off = objects(&template(cp, "cdash", "mon", &[]).unwrap());
    assert!(!off.iter().any(|v| is_dashboard(&v)), "off by default");
    let args = [
        "--set",
        "metrics.dashboard.enabled=true",
        "--set",
        "metrics.dashboard.labels.team=platform",
    ];
    let on = objects(&template(cp, "cdash", "mon", &args).unwrap());
    let cm = on
        .iter()
        .find(is_dashboard)
        .expect("the dashboard ConfigMap");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(cm["metadata"]["labels"]["team"], "platform");
    let shipped = cm["data"]["carto-wi-webhook.json"].as_str().unwrap();
    let dashboard: Value = serde_json::from_str(shipped).expect("the dashboard is JSON");
    assert_eq!(dashboard, serde_json::from_str::<Value>(DASHBOARD).unwrap());
    let panels = dashboard["panels"].as_array().unwrap();
    let queried: Vec<&Value> = panels.iter().filter(|p| p["type"] != "row").collect();
    assert!(queried.len() >= 10, "{} panels", queried.len());
    for p in queried {
        let exprs: Vec<&str> = p["targets"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t["expr"].as_str())
            .collect();
        assert!(
            !exprs.is_empty() && exprs.iter().all(|e| e.contains("carto_wi_")),
            "{p}"
        );
    }
}

/// promtool: $PROMTOOL, else the one on PATH (tests/setup.sh installs it). Missing is a failure.
fn promtool() -> PathBuf {
    let path =
        std::env::var_os("PROMTOOL").map_or_else(|| PathBuf::from("promtool"), PathBuf::from);
    let found = Command::new(&path).arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "{} not found: run tests/setup.sh (Debian's prometheus package ships promtool)",
        path.display()
    );
    path
}

/// The alert names of a rule group list.
fn alert_names(groups: &Value) -> BTreeSet<String> {
    groups["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .filter_map(|r| r["alert"].as_str().map(str::to_owned))
        .collect()
}

/// The alerts a promtool test case expects firing (non-empty `exp_alerts`) and quiet.
fn tested_alerts(case: &Value, firing: bool) -> BTreeSet<String> {
    case["alert_rule_test"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| {
            t["exp_alerts"]
                .as_array()
                .is_some_and(|a| a.is_empty() != firing)
        })
        .filter_map(|t| t["alertname"].as_str().map(str::to_owned))
        .collect()
}

/// The PrometheusRule: off by default; rendered with the default values it passes `promtool
/// check rules`, and `promtool test rules` fires every alert in the first case and none in the
/// second; each alert of the group is tested both ways. Its thresholds follow the values.
pub fn chart_prometheus_rules_pass_promtool(cp: &ControlPlane) {
    let is_rule = |v: &&Value| v["kind"] == "PrometheusRule";
    let off = objects(&template(cp, "crule", "mon", &[]).unwrap());
    assert!(!off.iter().any(|v| is_rule(&v)), "off by default");
    let on = objects(
        &template(
            cp,
            "crule",
            "mon",
            &["--set", "metrics.prometheusRule.enabled=true"],
        )
        .unwrap(),
    );
    let rule = find(&on, "PrometheusRule");
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    let spec = &rule["spec"];

    let tests = carto_wi_webhook::yaml::parse(ALERTS_TEST).unwrap();
    let alerts = alert_names(spec);
    assert_eq!(alerts.len(), 6, "{alerts:?}");
    let cases = tests["tests"].as_array().unwrap();
    assert_eq!(
        tested_alerts(&cases[0], true),
        alerts,
        "every alert fires in case 1"
    );
    assert_eq!(
        tested_alerts(&cases[1], false),
        alerts,
        "no alert fires in case 2"
    );

    let dir = cp.dir.join("promtool");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("rules.yaml"), spec.to_string()).unwrap();
    std::fs::write(dir.join("alerts_test.yaml"), ALERTS_TEST).unwrap();
    let promtool = promtool();
    for args in [
        ["check", "rules", "rules.yaml"],
        ["test", "rules", "alerts_test.yaml"],
    ] {
        let out = Command::new(&promtool)
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "promtool {args:?}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("SUCCESS"),
            "{}",
            text(&out)
        );
    }

    let tuned = [
        "--set",
        "metrics.prometheusRule.enabled=true",
        "--set",
        "webhook.timeoutSeconds=12",
        "--set",
        "metrics.prometheusRule.certExpiryDays=21",
    ];
    let tuned = objects(&template(cp, "crule", "mon", &tuned).unwrap());
    let rules = find(&tuned, "PrometheusRule")["spec"]["groups"][0]["rules"].clone();
    let expr = |alert: &str| -> String {
        let r = rules
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["alert"] == alert)
            .unwrap();
        r["expr"]
            .as_str()
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert!(
        expr("CartoWiAdmissionSlow").ends_with("> 12"),
        "{}",
        expr("CartoWiAdmissionSlow")
    );
    assert!(expr("CartoWiCertificateExpiresSoon").ends_with("< 21 * 86400"));
}

/// Metric families of a scrape: name on the `# TYPE` line -> type.
fn families(scrape: &str) -> BTreeMap<&str, &str> {
    scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .collect()
}

/// Whether a sample name (as PromQL names it) belongs to a family of the scrape, of a type that
/// has that sample: a gauge by its name, a counter's `_total`, a histogram's bucket/sum/count.
fn exposed(families: &BTreeMap<&str, &str>, sample: &str) -> bool {
    if families.get(sample).is_some_and(|t| *t == "gauge") {
        return true;
    }
    if let Some(base) = sample.strip_suffix("_total") {
        return families.get(base) == Some(&"counter");
    }
    ["_bucket", "_sum", "_count"].iter().any(|s| {
        sample
            .strip_suffix(s)
            .is_some_and(|base| families.get(base) == Some(&"histogram"))
    })
}

/// Every `carto_wi_...` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("carto_wi_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// Every metric the dashboard, the alert rules and their promtool tests name is exposed, with
/// a matching type, by `/metrics` of a webhook running in cluster mode.
pub fn cluster_metrics_dashboard_and_alerts_use_exposed_names(cp: &ControlPlane) {
    let (_install, hook) = ClusterWebhook::up(cp, "cmet");
    let scrape = hook.metrics();
    let families = families(&scrape);
    assert!(families.len() > 20, "{scrape}");
    for (source, text) in [
        ("dashboard", DASHBOARD),
        ("prometheusrule.yaml", RULES_TEMPLATE),
        ("alerts_test.yaml", ALERTS_TEST),
    ] {
        let names = metric_names(text);
        assert!(names.len() >= 5, "{source}: {names:?}");
        let missing: Vec<&String> = names.iter().filter(|n| !exposed(&families, n)).collect();
        assert!(
            missing.is_empty(),
            "{source} uses {missing:?}, not in /metrics:\n{scrape}"
        );
    }
    hook.stop();
}
