//! End-to-end tests against a real kube-apiserver and etcd (built from their Go modules by
//! tests/controlplane/build.sh), with carto-wi-webhook served over real TLS.
//!
//! One control plane is shared; each scenario runs its own webhook process, its own webhook
//! configurations and its own namespaces, so scenarios run in parallel. The `cluster_` scenarios
//! run the webhook in cluster mode, as a ServiceAccount bound to examples/rbac.yaml and judged by
//! the chart's admission policy, under names of their own (every cluster-mode reconciler works
//! cluster-wide). The `chart_` scenarios test charts/carto-wi-webhook with Helm 4 and Helm 3
//! (both from the same control-plane build). Everything is stopped when the run ends, pass or
//! fail; logs stay under target/e2e/ for diagnosis.

#[path = "e2e/chart.rs"]
mod chart;
#[path = "e2e/chart_observability.rs"]
mod chart_observability;
#[path = "e2e/chart_safety.rs"]
mod chart_safety;
#[path = "e2e/cluster.rs"]
mod cluster;
#[path = "e2e/cluster_extras.rs"]
mod cluster_extras;
#[path = "e2e/cluster_mode.rs"]
mod cluster_mode;
#[path = "e2e/cluster_plan.rs"]
mod cluster_plan;
#[path = "e2e/cluster_scenarios.rs"]
mod cluster_scenarios;
#[path = "e2e/cluster_scope.rs"]
mod cluster_scope;
#[path = "e2e/kube.rs"]
mod kube;
#[path = "e2e/least_privilege.rs"]
mod least_privilege;
#[path = "e2e/pki.rs"]
mod pki;
#[path = "e2e/process.rs"]
mod process;
#[path = "e2e/scenarios.rs"]
mod scenarios;
#[path = "e2e/self_managed.rs"]
mod self_managed;
#[path = "e2e/webhook.rs"]
mod webhook;

use std::sync::Arc;

use libtest_mimic::{Arguments, Trial};

type Scenario = fn(&cluster::ControlPlane);

const SCENARIOS: &[(&str, Scenario)] = &[
    (
        "plain_install_and_reapply",
        scenarios::plain_install_and_reapply,
    ),
    (
        "dry_run_shows_mutation_and_stores_nothing",
        scenarios::dry_run_shows_mutation_and_stores_nothing,
    ),
    (
        "invalid_configmap_refused_with_every_problem",
        scenarios::invalid_configmap_refused_with_every_problem,
    ),
    (
        "partial_env_completed_refused_or_warned",
        scenarios::partial_env_completed_refused_or_warned,
    ),
    (
        "opt_out_namespace_and_skipped_container",
        scenarios::opt_out_namespace_and_skipped_container,
    ),
    (
        "webhook_down_failure_policy",
        scenarios::webhook_down_failure_policy,
    ),
    (
        "certificate_rotation_under_load",
        scenarios::certificate_rotation_under_load,
    ),
    (
        "updates_keep_injected_values",
        scenarios::updates_keep_injected_values,
    ),
    (
        "self_managed_certificates",
        self_managed::self_managed_certificates,
    ),
    (
        "cluster_extra_allowed_injected_then_taken_back",
        cluster_extras::cluster_extra_allowed_injected_then_taken_back,
    ),
    (
        "cluster_rbac_grants_exactly_the_named_objects",
        cluster_scenarios::cluster_rbac_grants_exactly_the_named_objects,
    ),
    (
        "cluster_ready_only_when_synced",
        cluster_scenarios::cluster_ready_only_when_synced,
    ),
    (
        "cluster_config_appears_existing_targets_patched",
        cluster_scenarios::cluster_config_appears_existing_targets_patched,
    ),
    (
        "cluster_default_change_converges_everywhere",
        cluster_scenarios::cluster_default_change_converges_everywhere,
    ),
    (
        "cluster_invalid_configmap_reported_not_applied",
        cluster_scenarios::cluster_invalid_configmap_reported_not_applied,
    ),
    (
        "cluster_two_replicas_one_leader_hands_over",
        cluster_scenarios::cluster_two_replicas_one_leader_hands_over,
    ),
    (
        "cluster_apiserver_restart_keeps_serving",
        cluster_scenarios::cluster_apiserver_restart_keeps_serving,
    ),
    (
        "cluster_certificate_rotation_keeps_api_server_calls_working",
        cluster_scenarios::cluster_certificate_rotation_keeps_api_server_calls_working,
    ),
    (
        "cluster_writes_through_restarts_never_store_uninjected",
        cluster_scenarios::cluster_writes_through_restarts_never_store_uninjected,
    ),
    (
        "cluster_plan_preview_is_what_the_reconciler_does",
        cluster_plan::cluster_plan_preview_is_what_the_reconciler_does,
    ),
    (
        "cluster_excluded_namespaces_left_alone",
        cluster_scope::cluster_excluded_namespaces_left_alone,
    ),
    (
        "cluster_refused_patch_recorded_not_retried",
        cluster_scope::cluster_refused_patch_recorded_not_retried,
    ),
    (
        "chart_lint_and_schema_reject_bad_values",
        chart::chart_lint_and_schema_reject_bad_values,
    ),
    (
        "chart_renders_accepted_by_api_server",
        chart::chart_renders_accepted_by_api_server,
    ),
    (
        "chart_rbac_is_examples_rbac",
        chart::chart_rbac_is_examples_rbac,
    ),
    (
        "chart_readme_values_table_matches_schema",
        chart::chart_readme_values_table_matches_schema,
    ),
    ("chart_security_scan", chart::chart_security_scan),
    (
        "chart_objects_inject_plain_carto_install",
        chart::chart_objects_inject_plain_carto_install,
    ),
    (
        "chart_default_config_validated_own_objects_never_sent",
        chart_safety::chart_default_config_validated_own_objects_never_sent,
    ),
    (
        "chart_helm_cycle_and_deletion_with_webhook_down",
        chart_safety::chart_helm_cycle_and_deletion_with_webhook_down,
    ),
    (
        "chart_policy_bounds_the_webhook_token",
        least_privilege::chart_policy_bounds_the_webhook_token,
    ),
    (
        "chart_viewer_role_is_read_only",
        chart_observability::chart_viewer_role_is_read_only,
    ),
    (
        "chart_dashboard_configmap_holds_the_dashboard",
        chart_observability::chart_dashboard_configmap_holds_the_dashboard,
    ),
    (
        "chart_prometheus_rules_pass_promtool",
        chart_observability::chart_prometheus_rules_pass_promtool,
    ),
    (
        "cluster_metrics_dashboard_and_alerts_use_exposed_names",
        chart_observability::cluster_metrics_dashboard_and_alerts_use_exposed_names,
    ),
];

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Arguments::from_args();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let run_dir = target
        .join("e2e")
        .join(format!("run-{}", std::process::id()));
    let wanted: Vec<&(&str, Scenario)> = SCENARIOS
        .iter()
        .filter(|(name, _)| {
            args.filter.as_deref().is_none_or(|f| {
                if args.exact {
                    *name == f
                } else {
                    name.contains(f)
                }
            })
        })
        .collect();
    // Start the control plane only when a scenario will run (`--list` and filters stay cheap).
    let cp = (!args.list && !wanted.is_empty()).then(|| {
        eprintln!(
            "e2e: starting etcd and kube-apiserver; logs in {}",
            run_dir.display()
        );
        Arc::new(cluster::ControlPlane::start(&run_dir))
    });
    let trials = SCENARIOS
        .iter()
        .map(|(name, f)| {
            let cp = cp.clone();
            let f = *f;
            Trial::test(*name, move || {
                let cp = cp.ok_or("control plane not started")?;
                f(&cp);
                Ok(())
            })
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    if let Some(cp) = cp {
        cp.stop();
    }
    conclusion.exit();
}
