//! Cluster-mode scenarios: the webhook runs outside the API server as a ServiceAccount bound to
//! examples/rbac.yaml, watches its ConfigMaps, reconciles existing objects and manages its own
//! certificates. Each asserts what the real API server stored, or what the webhook answered.

use serde_json::{Value, json};

use super::cluster::ControlPlane;
use super::cluster_mode::*;
use super::kube::{apply, text};
use super::process::free_port;

const INJECTED: &str = "WorkloadIdentityInjected";
const BINDING_REQUIRED: &str = "WorkloadIdentityBindingRequired";
const INVALID_CONFIG: &str = "InvalidConfig";
const LEADER: &str = "carto_wi_cluster_leader";
const PATCHED: &str = "carto_wi_cluster_reconcile_actions_total";
const WATCH_UP: &str = "carto_wi_cluster_watch_up";
const CONFIGMAPS: &[(&str, &str)] = &[("watch", "configmaps")];

/// Apply `values` as the ConfigMap of `ns` (the cluster default when `ns` is the webhook's).
fn set_config(cp: &ControlPlane, names: &Names, ns: &str, values: &WiValues) {
    let out = apply(cp, ns, &values.config_map(names), &[]);
    assert!(out.status.success(), "ConfigMap in {ns}: {}", text(&out));
}

/// `kubectl auth can-i` as the webhook: true for "yes".
fn webhook_can(install: &Install, args: &[&str]) -> bool {
    let mut all = vec!["auth", "can-i"];
    all.extend_from_slice(args);
    let out = install.kubectl_as_webhook(&all);
    String::from_utf8_lossy(&out.stdout).trim() == "yes"
}

/// Deployments the reconciler of `hook` patched so far.
fn patched_deployments(hook: &ClusterWebhook) -> f64 {
    hook.metric(PATCHED, &[("kind", "Deployment"), ("action", "patched")])
        .unwrap_or(0.0)
}

/// examples/rbac.yaml, judged by the real authorizer with the webhook's own token: the list and
/// watch requests cluster mode makes (by name where it names objects) are allowed, and the
/// neighbouring ones are not. Runs without a webhook process.
pub fn cluster_rbac_grants_exactly_the_named_objects(cp: &ControlPlane) {
    let install = Install::prepare(cp, "crbac");
    install.bind(cp);
    let names = &install.names;
    let (system, config) = (names.system(), names.config());
    let by_config = format!("metadata.name={config}");
    let by_backend = format!("metadata.name={}", names.backend());
    let allowed: Vec<Vec<&str>> = vec![
        vec!["get", "configmaps", "-A", "--field-selector", &by_config],
        vec![
            "get",
            "configmaps",
            "-A",
            "--field-selector",
            &by_config,
            "--watch-only",
            "--request-timeout=1s",
        ],
        vec!["get", "namespaces"],
        vec![
            "get",
            "serviceaccounts",
            "-A",
            "--field-selector",
            &by_backend,
        ],
        vec!["get", "deployments", "-n", "default"],
        vec!["get", "events", "-n", "default"],
    ];
    for args in &allowed {
        wait_until(&format!("the webhook's token may {args:?}"), || {
            let out = install.kubectl_as_webhook(args);
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            // A watch ends with a timeout, not with a refusal.
            if err.contains("forbidden") || err.contains("Unauthorized") {
                Err(err)
            } else {
                Ok(())
            }
        });
    }
    for args in [
        vec!["get", "configmaps", "-A"],
        vec!["get", "configmaps", "-n", "default"],
        vec!["get", "serviceaccounts", "-A"],
        vec!["get", "secrets", "-n", &system],
        vec!["get", "mutatingwebhookconfigurations"],
    ] {
        let out = install.kubectl_as_webhook(&args);
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("forbidden"),
            "{args:?} must be forbidden: {}",
            text(&out)
        );
    }
    let own = |what: &str, name: &str| format!("{what}/{name}");
    let (tls, lease, hooks) = (
        own("secrets", &names.tls()),
        own("leases.coordination.k8s.io", &names.webhook()),
        names.webhook(),
    );
    let mutating = own("mutatingwebhookconfigurations", &hooks);
    let validating = own("validatingwebhookconfigurations", &hooks);
    for args in [
        vec!["get", tls.as_str(), "-n", &system],
        vec!["update", tls.as_str(), "-n", &system],
        vec!["create", "secrets", "-n", &system],
        vec!["patch", lease.as_str(), "-n", &system],
        vec!["create", "leases.coordination.k8s.io", "-n", &system],
        vec!["patch", mutating.as_str()],
        vec!["patch", validating.as_str()],
        vec!["create", "events.events.k8s.io", "-n", "default"],
        vec!["patch", "deployments", "-n", "default"],
    ] {
        assert!(webhook_can(&install, &args), "the webhook may {args:?}");
    }
    assert_rbac_is_narrow(&install);
    // The reconciler's cross-namespace list, by name, finds the fixture's ServiceAccount.
    let app = names.ns("app");
    unselected_namespace(cp, &app);
    install_fixtures(cp, names, &app);
    assert_eq!(
        target_deployments(cp, names, &app).len(),
        TARGET_DEPLOYMENTS.len()
    );
    let listed = must(
        install.kubectl_as_webhook(&[
            "get",
            "serviceaccounts",
            "-A",
            "--field-selector",
            &by_backend,
            "-o",
            "name",
        ]),
        "list the target ServiceAccounts as the webhook",
    );
    assert_eq!(listed.trim(), format!("serviceaccount/{}", names.backend()));
    let tls_secret = format!("secrets/{}", names.tls());
    for args in [
        vec!["create", "secrets", "-n", "default"],
        vec!["patch", "leases.coordination.k8s.io/other", "-n", &system],
        vec!["patch", "mutatingwebhookconfigurations/other"],
        vec!["delete", "events.events.k8s.io", "-n", "default"],
        vec!["delete", "deployments", "-n", "default"],
        vec!["update", "deployments", "-n", "default"],
        vec!["patch", "serviceaccounts/default", "-n", "default"],
        vec!["patch", tls_secret.as_str(), "-n", &system],
        vec!["delete", tls_secret.as_str(), "-n", &system],
        vec!["get", "secrets", "-n", "default"],
    ] {
        assert!(
            !webhook_can(&install, &args),
            "the webhook may not {args:?}"
        );
    }
}

/// (a) Readiness waits for the watches: with only the namespace Role bound (certificate Secret,
/// Lease) the webhook runs but cannot list ConfigMaps or Namespaces, so /readyz is not 200;
/// once the ClusterRole is bound it becomes ready, and it reconciles.
pub fn cluster_ready_only_when_synced(cp: &ControlPlane) {
    let install = Install::prepare(cp, "crdy");
    let names = &install.names;
    install.bind_kinds(cp, &["Role", "RoleBinding"]);
    let hook = ClusterWebhook::launch(&install, "crdy-0", install.port, &[]);
    // Evidence that it is up and trying: the ConfigMap watch was refused at least once.
    hook.assert_running();
    wait_until("the ConfigMap watch to be refused", || {
        let errors = hook
            .metric("carto_wi_cluster_watch_errors_total", CONFIGMAPS)
            .unwrap_or(0.0);
        if errors >= 1.0 {
            Ok(())
        } else {
            Err(hook.metrics())
        }
    });
    let (status, body) = hook.readyz().expect("the admin listener answers");
    assert_ne!(
        status, 200,
        "ready although the watches never listed: {body}"
    );
    assert!(
        body.starts_with("not ready") && body.contains("waiting for"),
        "/readyz says what is pending: {body}"
    );
    assert_eq!(hook.metric(WATCH_UP, CONFIGMAPS), Some(0.0));

    install.bind_kinds(cp, &["ClusterRole", "ClusterRoleBinding"]);
    hook.wait_ready();
    install.wait_api_server_calls_webhook(cp);
    // Granted late, the permissions are used: existing targets converge to a new default.
    let app = names.ns("app");
    unselected_namespace(cp, &app);
    install_fixtures(cp, names, &app);
    set_config(cp, names, &names.system(), &ACME);
    wait_converged(cp, names, &app, &ACME);
}

/// (b) A config appears: the ServiceAccount and Deployments that existed before it are patched
/// by the reconciler, with Events (and the IAM binding command on the ServiceAccount); objects
/// created afterwards are mutated on admission, through the API server, with the certificate
/// the webhook made itself. The webhook's token reads no Secret beyond its own.
pub fn cluster_config_appears_existing_targets_patched(cp: &ControlPlane) {
    let (install, hook) = ClusterWebhook::up(cp, "capp");
    let names = &install.names;
    assert_rbac_is_narrow(&install);

    let app = names.ns("app");
    selected_namespace(cp, names, &app, &[]);
    install_fixtures(cp, names, &app);
    assert_untouched(cp, names, &app);

    set_config(cp, names, &names.system(), &ACME);
    wait_converged(cp, names, &app, &ACME);
    for d in TARGET_DEPLOYMENTS {
        let e = wait_event(cp, &app, INJECTED, "Deployment", d);
        assert_eq!(e["type"], "Normal", "{e}");
    }
    let backend = names.backend();
    wait_event(cp, &app, INJECTED, "ServiceAccount", &backend);
    let binding = wait_event(cp, &app, BINDING_REQUIRED, "ServiceAccount", &backend);
    let command = ACME.gcloud(&app, &backend);
    assert!(
        binding["message"]
            .as_str()
            .is_some_and(|m| m.contains(&command)),
        "the Event carries `{command}`: {binding}"
    );
    assert!(
        events_on(cp, &app, INJECTED, "Deployment", BYSTANDER).is_empty(),
        "{BYSTANDER} runs as another ServiceAccount"
    );
    assert_bystander_untouched(cp, &app);
    assert!(patched_deployments(&hook) >= 3.0, "{}", hook.metrics());

    // Created after the config: mutated on admission by the API server's call.
    let late = super::kube::deployment("late-api", &backend, &[("api", Value::Null)], json!({}));
    let out = apply(cp, &app, &late, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let stored = super::kube::get(cp, &app, "deployment", "late-api");
    let env = super::kube::env_of(&stored, "containers", 0);
    for (k, v) in ACME.env() {
        assert!(
            env.iter()
                .any(|(n, val)| n == k && val.as_deref() == Some(v)),
            "{k} set on admission: {env:?}"
        );
    }
}

/// The token reads its own certificate Secret and no other Secret.
fn assert_rbac_is_narrow(install: &Install) {
    let names = &install.names;
    let own = format!("secrets/{}", names.tls());
    assert!(
        webhook_can(install, &["get", &own, "-n", &names.system()]),
        "the webhook's kubeconfig works and reads its own Secret"
    );
    for args in [
        vec!["get", "secrets", "-n", "default"],
        vec!["list", "secrets", "--all-namespaces"],
        vec!["get", "secrets/other", "-n", &names.system()],
        vec!["list", "configmaps", "-n", "default"],
    ] {
        assert!(!webhook_can(install, &args), "the webhook may not {args:?}");
    }
}

fn assert_bystander_untouched(cp: &ControlPlane, ns: &str) {
    let d = super::kube::get(cp, ns, "deployment", BYSTANDER);
    assert!(
        d["spec"]["template"]["metadata"]["annotations"]
            .get(HASH_KEY)
            .is_none(),
        "{BYSTANDER} got a config-hash"
    );
}

/// (c) The cluster default changes: every target in every namespace without its own ConfigMap
/// converges to the new config-hash; a namespace's own ConfigMap wins over the default and its
/// objects are not written again; an opted-out namespace is left alone, and one that opts back
/// in is reconciled.
pub fn cluster_default_change_converges_everywhere(cp: &ControlPlane) {
    let (install, _hook) = ClusterWebhook::up(cp, "cdef");
    let names = &install.names;
    let [a, b, own, out, late] = ["a", "b", "own", "out", "late"].map(|s| names.ns(s));
    for ns in [&a, &b, &own] {
        selected_namespace(cp, names, ns, &[]);
    }
    for ns in [&out, &late] {
        selected_namespace(cp, names, ns, &[OPT_OUT]);
    }
    for ns in [&a, &b, &own, &out, &late] {
        install_fixtures(cp, names, ns);
    }
    set_config(cp, names, &own, &TEAM);
    set_config(cp, names, &names.system(), &ACME);
    let first = wait_converged(cp, names, &a, &ACME);
    assert_eq!(wait_converged(cp, names, &b, &ACME), first);
    let team = wait_converged(cp, names, &own, &TEAM);
    assert_ne!(
        team, first,
        "the namespace's own ConfigMap, not the default"
    );
    let own_versions = versions(cp, names, &own);

    set_config(cp, names, &names.system(), &ACME_V2);
    let second = wait_converged(cp, names, &a, &ACME_V2);
    assert_ne!(second, first, "a new config-hash");
    assert_eq!(wait_converged(cp, names, &b, &ACME_V2), second);

    // Opting back in queues the namespace after everything the change queued (the opted-out
    // one included), so once it converged the others have had their turn.
    let label = format!("{}-", OPT_OUT.0);
    let relabel = cp.kubectl(&["label", "namespace", &late, &label], None);
    assert!(relabel.status.success(), "{}", text(&relabel));
    assert_eq!(wait_converged(cp, names, &late, &ACME_V2), second);

    assert_eq!(
        versions(cp, names, &own),
        own_versions,
        "{own} was not written again"
    );
    assert_eq!(converged(cp, names, &own, &TEAM), Ok(team));
    assert_untouched(cp, names, &out);
    for ns in [&a, &b, &own, &out, &late] {
        assert_bystander_untouched(cp, ns);
    }
}

/// (d) An invalid ConfigMap stored where the validating webhook does not look: reported with a
/// Warning Event and the metric, and nothing of its namespace is patched (it replaces the valid
/// default, so nothing is half-applied), while a namespace using the default converges.
pub fn cluster_invalid_configmap_reported_not_applied(cp: &ControlPlane) {
    let (install, hook) = ClusterWebhook::up(cp, "cbad");
    let names = &install.names;
    let (broken, good) = (names.ns("broken"), names.ns("good"));
    unselected_namespace(cp, &broken);
    // Targets first: the ConfigMap's arrival is what queues this namespace (the default's
    // fan-out skips namespaces with their own ConfigMap).
    install_fixtures(cp, names, &broken);
    let before = versions(cp, names, &broken);
    let mut invalid: Value = serde_json::from_str(&ACME.config_map(names)).unwrap();
    invalid["data"]["WORKSPACE_WORKLOAD_IDENTITY_BILLING_PROJECT"] = " acme-gke-prod".into();
    let data = invalid["data"].as_object_mut().unwrap();
    data.remove("WORKSPACE_WORKLOAD_IDENTITY_CONNECTION_OWNER_ID");
    let out = apply(cp, &broken, &invalid.to_string(), &[]);
    assert!(
        out.status.success(),
        "stored behind the webhook's back: {}",
        text(&out)
    );
    selected_namespace(cp, names, &good, &[]);
    install_fixtures(cp, names, &good);

    set_config(cp, names, &names.system(), &ACME);
    wait_converged(cp, names, &good, &ACME);
    let warning = wait_event(cp, &broken, INVALID_CONFIG, "ConfigMap", &names.config());
    assert_eq!(warning["type"], "Warning", "{warning}");
    let message = warning["message"].as_str().unwrap_or("");
    for key in [
        "WORKSPACE_WORKLOAD_IDENTITY_BILLING_PROJECT",
        "WORKSPACE_WORKLOAD_IDENTITY_CONNECTION_OWNER_ID",
    ] {
        assert!(message.contains(key), "the Event names {key}: {message}");
    }
    let gauge = |state| hook.metric("carto_wi_cluster_configmaps", &[("state", state)]);
    wait_until("ConfigMaps by state", || {
        match (gauge("invalid"), gauge("valid")) {
            (Some(i), Some(v)) if i == 1.0 && v == 1.0 => Ok(()),
            other => Err(format!("(invalid, valid) = {other:?}")),
        }
    });
    // The namespace's reconcile finished once its targets are counted as broken_config.
    wait_until("the broken namespace reconciled", || {
        let broken_of = |kind| {
            hook.metric(
                "carto_wi_cluster_targets",
                &[("kind", kind), ("state", "broken_config")],
            )
        };
        match (broken_of("Deployment"), broken_of("ServiceAccount")) {
            (Some(d), Some(s)) if d == TARGET_DEPLOYMENTS.len() as f64 && s == 1.0 => Ok(()),
            other => Err(format!(
                "(Deployment, ServiceAccount) broken_config = {other:?}"
            )),
        }
    });
    assert_untouched(cp, names, &broken);
    assert_eq!(
        versions(cp, names, &broken),
        before,
        "nothing in {broken} was written"
    );
}

/// (e) Two replicas: exactly one leads; stopping it hands the Lease over, and the other
/// reconciles a config change made afterwards.
pub fn cluster_two_replicas_one_leader_hands_over(cp: &ControlPlane) {
    let install = Install::prepare(cp, "clead");
    let names = &install.names;
    install.bind(cp);
    let replicas = [
        ClusterWebhook::launch(&install, "clead-0", install.port, &[]),
        ClusterWebhook::launch(&install, "clead-1", free_port(), &[]),
    ];
    for r in &replicas {
        r.wait_ready();
    }
    install.wait_api_server_calls_webhook(cp);
    // The webhook configurations call one replica's port only: keep the API server from calling
    // the one that will be stopped (the default ConfigMap is not validated here, the targets'
    // namespace is not selected). Admission is not what this scenario is about.
    let unlabel = format!("{}-", "e2e.carto.com/webhook");
    let out = cp.kubectl(&["label", "namespace", &names.system(), &unlabel], None);
    assert!(out.status.success(), "{}", text(&out));
    let app = names.ns("app");
    unselected_namespace(cp, &app);
    install_fixtures(cp, names, &app);
    set_config(cp, names, &names.system(), &ACME);
    wait_converged(cp, names, &app, &ACME);

    let leader = wait_until("exactly one leader", || {
        let flags: Vec<Option<f64>> = replicas.iter().map(|r| r.metric(LEADER, &[])).collect();
        match flags.as_slice() {
            [Some(x), Some(y)] if *x + *y == 1.0 && (*x == 0.0 || *y == 0.0) => {
                Ok(usize::from(*y == 1.0))
            }
            other => Err(format!("{LEADER} of the two replicas: {other:?}")),
        }
    });
    let (gone, survivor) = (&replicas[leader], &replicas[1 - leader]);
    let patched_before = patched_deployments(survivor);
    assert_eq!(gone.stop(), Some(0), "SIGTERM: {} exits 0", gone.identity);
    survivor.wait_metric(LEADER, &[], 1.0);

    set_config(cp, names, &names.system(), &ACME_V2);
    wait_converged(cp, names, &app, &ACME_V2);
    assert!(
        patched_deployments(survivor) >= patched_before + TARGET_DEPLOYMENTS.len() as f64,
        "{} reconciled the change: {}",
        survivor.identity,
        survivor.metrics()
    );
    survivor.wait_ready();
}

/// (f) The API server restarts: while it is down the webhook answers admission reviews from its
/// last state and stays ready; once it is back the watch resumes and a config change is
/// reconciled. Runs on its own control plane (the restart would disturb every other scenario).
pub fn cluster_apiserver_restart_keeps_serving(cp: &ControlPlane) {
    let own = ControlPlane::start(&cp.dir.join("restart-controlplane"));
    let (install, hook) = ClusterWebhook::up(&own, "crst");
    let names = &install.names;
    let app = names.ns("app");
    selected_namespace(&own, names, &app, &[]);
    install_fixtures(&own, names, &app);
    set_config(&own, names, &names.system(), &ACME);
    wait_converged(&own, names, &app, &ACME);
    let [Some(ca), _] = install.ca_bundles(&own) else {
        panic!("no caBundle in the mutating configuration");
    };
    let fixture: Value = serde_json::from_str(&fixtures(names)).unwrap();
    let router = fixture["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == "carto-router")
        .cloned()
        .unwrap();
    let review = deployment_review(&app, &router);

    own.restart_apiserver(|| {
        // The webhook noticed the API server is gone.
        hook.wait_metric(WATCH_UP, CONFIGMAPS, 0.0);
        let (status, body) = hook.readyz().expect("the admin listener answers");
        assert_eq!(
            status, 200,
            "a stale config is better than a failed admission: {body}"
        );
        let answer = hook.post_mutate(&ca, &review).expect("a review answered");
        assert_eq!(answer["response"]["allowed"], true, "{answer}");
        let patch = Value::Array(response_patch(&answer)).to_string();
        for (k, v) in ACME.env() {
            assert!(
                patch.contains(k) && patch.contains(v),
                "{k} in the patch: {patch}"
            );
        }
    });

    set_config(&own, names, &names.system(), &ACME_V2);
    wait_converged(&own, names, &app, &ACME_V2);
    // The resumed watch shows in the metric again.
    hook.wait_metric(WATCH_UP, CONFIGMAPS, 1.0);
    assert_eq!(hook.readyz().map(|(s, _)| s), Some(200));
    drop(hook);
    own.stop();
}

/// (g) Self-managed certificates rotate while the API server calls the webhook: with short
/// validities the serving certificate is reissued every few seconds and the CA is replaced (both
/// CAs trusted during the switch); every call the API server makes meanwhile succeeds
/// (failurePolicy is Fail, so a call refused by TLS would fail the request).
pub fn cluster_certificate_rotation_keeps_api_server_calls_working(cp: &ControlPlane) {
    let install = Install::prepare(cp, "crot");
    install.bind(cp);
    let short = [
        "--ca-validity=45s",
        "--ca-renew-before=30s",
        "--cert-validity=16s",
        "--cert-renew-before=10s",
    ];
    let hook = ClusterWebhook::launch(&install, "crot-0", install.port, &short);
    hook.wait_ready();
    let first_ca = install.wait_api_server_calls_webhook(cp);
    let names = &install.names;
    set_config(cp, names, &names.system(), &ACME);
    let app = names.ns("app");
    selected_namespace(cp, names, &app, &[]);
    let probe = super::kube::deployment(
        "probe",
        &names.backend(),
        &[("api", Value::Null)],
        json!({}),
    );

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let (mut calls, mut failures, mut after_rotation) = (0, Vec::new(), 0);
    while after_rotation < 10 {
        assert!(
            std::time::Instant::now() < deadline,
            "no CA rotation within 120 s ({calls} calls); bundles: {:?}\n{}",
            install.ca_bundles(cp),
            hook.metrics()
        );
        hook.assert_running();
        let out = apply(cp, &app, &probe, &["--dry-run=server", "-o", "json"]);
        calls += 1;
        let shown: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let injected = shown["spec"]["template"]["metadata"]["annotations"]
            .get(HASH_KEY)
            .is_some();
        if !out.status.success() || !injected {
            failures.push(text(&out));
        }
        let rotated = install
            .ca_bundles(cp)
            .iter()
            .all(|b| b.as_deref().is_some_and(|pem| pem != first_ca));
        if rotated {
            after_rotation += 1;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    assert!(
        failures.is_empty(),
        "{} of {calls} API server calls failed during rotation: {failures:?}",
        failures.len()
    );
    let [bundle, _] = install.ca_bundles(cp);
    let bundle = bundle.unwrap();
    assert!(
        bundle.matches("BEGIN CERTIFICATE").count() >= 2 || !bundle.contains(&first_ca),
        "the new CA was trusted next to the old one during the switch: {bundle}"
    );
    assert!(
        metric_value(
            &hook.metrics(),
            "carto_wi_tls_cert_not_after_seconds",
            &[("cert", "serving")]
        )
        .is_some_and(|t| t > 0.0),
        "{}",
        hook.metrics()
    );
}

/// (h) Writes keep coming while the webhook, then the API server, restart. With the chart's
/// failure policies (mutating `Ignore`, validating `Fail`) and `--enforcement deny`, a target
/// Deployment is never stored without the four variables: a write the webhook could not mutate is
/// refused by validation (or by the webhook being unreachable), never stored half-configured.
pub fn cluster_writes_through_restarts_never_store_uninjected(cp: &ControlPlane) {
    let own = ControlPlane::start(&cp.dir.join("writes-controlplane"));
    let install = Install::prepare(&own, "cwrt");
    install.bind(&own);
    let names = &install.names;
    must(
        own.kubectl(
            &[
                "patch",
                "mutatingwebhookconfiguration",
                &names.webhook(),
                "--type=json",
                "-p",
                r#"[{"op":"replace","path":"/webhooks/0/failurePolicy","value":"Ignore"}]"#,
            ],
            None,
        ),
        "mutating failurePolicy Ignore",
    );
    let identity = "cwrt-0";
    let mut hook = ClusterWebhook::launch(&install, identity, install.port, &[]);
    hook.wait_ready();
    install.wait_api_server_calls_webhook(&own);
    set_config(&own, names, &names.system(), &ACME);
    let app = names.ns("app");
    selected_namespace(&own, names, &app, &[]);

    let stop = std::sync::atomic::AtomicBool::new(false);
    let outcomes = std::sync::Mutex::new(Vec::<(usize, bool)>::new());
    let write = |i: usize| {
        let d = super::kube::deployment(
            &format!("w-{i}"),
            &names.backend(),
            &[("api", Value::Null)],
            json!({}),
        );
        apply(&own, &app, &d, &[]).status.success()
    };
    let count_ok = |outcomes: &std::sync::Mutex<Vec<(usize, bool)>>| {
        outcomes
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, ok)| *ok)
            .count()
    };
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let ok = write(i);
                outcomes.lock().unwrap().push((i, ok));
                i += 1;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        });
        let wait_more_ok = |n: usize| {
            let target = count_ok(&outcomes) + n;
            wait_until(&format!("{n} more stored writes"), || {
                if count_ok(&outcomes) >= target {
                    Ok(())
                } else {
                    Err(format!("{:?}", outcomes.lock().unwrap().last()))
                }
            });
        };
        wait_more_ok(3);
        // The webhook goes away and comes back.
        assert_eq!(hook.stop(), Some(0), "a replica exits 0 on SIGTERM");
        let refused_before = outcomes.lock().unwrap().len();
        std::thread::sleep(std::time::Duration::from_secs(3));
        let while_down: Vec<bool> = outcomes.lock().unwrap()[refused_before..]
            .iter()
            .map(|(_, ok)| *ok)
            .collect();
        assert!(
            while_down.iter().any(|ok| !ok),
            "writes were refused while the webhook was down: {while_down:?}"
        );
        hook = ClusterWebhook::launch(&install, identity, install.port, &[]);
        hook.wait_ready();
        wait_more_ok(3);
        // Then the API server goes away and comes back.
        own.restart_apiserver(|| std::thread::sleep(std::time::Duration::from_secs(2)));
        wait_more_ok(3);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });

    let stored = deployments(&own, &app);
    let attempted = outcomes.lock().unwrap().len();
    assert!(
        stored.len() >= 9,
        "{} of {attempted} writes stored",
        stored.len()
    );
    for d in &stored {
        super::kube::assert_injected(d, "containers", 0);
    }
    drop(hook);
    own.stop();
}
