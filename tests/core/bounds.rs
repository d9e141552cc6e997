//! Bounded cost (issue 9, item 1), one hostile request per amplification class: each is built
//! just under the 3 MiB request limit, parsed from bytes as the server parses it, reviewed by
//! both webhooks and serialized as the wire answer. The answer stays within
//! `MAX_RESPONSE_BYTES` (most far smaller), the decision is right, quoted input is cut, and the
//! peak heap of parse + review + answer is measured with a per-thread counting allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use carto_wi_webhook::admission::limits::{
    MAX_CONTAINERS, MAX_ENV_ENTRIES, MAX_LISTED_VIOLATIONS, MAX_PATCH_BYTES, MAX_QUOTED_CONTAINER,
    MAX_QUOTED_NAME, MAX_QUOTED_VALUE, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES, MAX_UID_BYTES,
};
use carto_wi_webhook::admission::view::ReviewRequest;
use carto_wi_webhook::admission::wire::ReviewResponse;
use carto_wi_webhook::admission::{self, Decision, Violation, Webhook};
use carto_wi_webhook::config::extra::{MAX_DATA_BYTES, MAX_EXTRA_BYTES, MAX_EXTRA_KEYS};
use carto_wi_webhook::config::{
    ConfigProblem, ConfigSnapshot, ExtraEnvAllowlist, WorkloadIdentityConfig,
};
use carto_wi_webhook::settings::{Enforcement, Settings};
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::common::*;

/// Counts the heap of the current thread only (tests run in parallel threads), so one test's
/// peak is its own.
struct PerThread;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn grow(n: usize) {
    let _ = LIVE.try_with(|l| {
        let live = l.get() + n;
        l.set(live);
        let _ = PEAK.try_with(|p| p.set(p.get().max(live)));
    });
}

fn shrink(n: usize) {
    let _ = LIVE.try_with(|l| l.set(l.get().saturating_sub(n)));
}

// SAFETY: forwards every call to the system allocator unchanged; only counts sizes in
// const-initialized thread locals (no allocation, no destructor).
unsafe impl GlobalAlloc for PerThread {
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
        shrink(l.size());
        // SAFETY: `p` came from `System` with this layout.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if new >= l.size() {
            grow(new - l.size());
        } else {
            shrink(l.size() - new);
        }
        // SAFETY: as above.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: PerThread = PerThread;

/// The heap bound of one request (issue 9): 64 MiB.
const MAX_PEAK_BYTES: usize = 64 * 1024 * 1024;

/// Run `f` and return its result with the peak heap it used above what was live before.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let out = f();
    (out, PEAK.with(Cell::get) - base)
}

/// One webhook's answer to a request body.
struct Answer {
    decision: Decision,
    /// The serialized AdmissionReview answer.
    wire: Vec<u8>,
    /// Peak heap of parse + review + answer.
    peak: usize,
}

/// What a test reads of a decision besides its fields.
trait DenialText {
    fn denial_text(&self) -> String;
}

impl DenialText for Decision {
    fn denial_text(&self) -> String {
        self.denial
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default()
    }
}

/// The `request` of an AdmissionReview (CREATE in `carto`) carrying `object`, as bytes.
fn body(group: &str, kind: &str, name: &str, object: &Value) -> Vec<u8> {
    let gvk = json!({"group": group, "version": "v1", "kind": kind});
    let gvr =
        json!({"group": group, "version": "v1", "resource": format!("{}s", kind.to_lowercase())});
    let b = serde_json::to_vec(&json!({
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
        "name": name, "namespace": NS, "operation": "CREATE",
        "userInfo": {"username": "attacker"},
        "object": object, "oldObject": null, "dryRun": false,
    }))
    .expect("serializes");
    // The envelope around `request` adds under 100 bytes.
    assert!(
        b.len() + 100 <= MAX_REQUEST_BYTES,
        "request of {} bytes",
        b.len()
    );
    b
}

/// Parse `body`, review it with `webhook` and serialize the answer, measuring the peak heap.
fn answer(webhook: Webhook, body: &[u8], snap: &ConfigSnapshot, settings: &Settings) -> Answer {
    let ((decision, wire), peak) = peak_of(|| {
        let req = ReviewRequest::from_slice(body).expect("a valid request");
        let d = admission::review(webhook, &req, snap, settings);
        let wire = serde_json::to_vec(&ReviewResponse::from_decision(req.uid.to_string(), &d))
            .expect("serializes");
        (d, wire)
    });
    assert!(
        wire.len() <= MAX_RESPONSE_BYTES,
        "{} answer of {} bytes",
        webhook.as_str(),
        wire.len()
    );
    assert!(
        peak <= MAX_PEAK_BYTES,
        "{} peak heap {peak} bytes",
        webhook.as_str()
    );
    eprintln!(
        "{}: {} byte request, {} byte answer, peak heap {peak} bytes",
        webhook.as_str(),
        body.len(),
        wire.len()
    );
    assert!(decision.warnings.len() <= 10);
    assert!(decision.warnings.iter().all(|w| w.chars().count() <= 256));
    // Grouped and capped: at most 20 listed, plus "… and N more".
    assert!(decision.violations.len() <= MAX_LISTED_VIOLATIONS + 1);
    Answer {
        decision,
        wire,
        peak,
    }
}

/// Both webhooks' answers under the default settings and the acme config.
fn both(body: &[u8]) -> (Answer, Answer) {
    let (snap, s) = (snapshot(), settings());
    (
        answer(Webhook::Mutate, body, &snap, &s),
        answer(Webhook::Validate, body, &snap, &s),
    )
}

/// A deployment with `containers`, as the API server would send it.
fn dep(containers: Vec<Value>) -> Value {
    deployment("carto-workspace-api", SA, containers)
}

fn dep_body(containers: Vec<Value>) -> Vec<u8> {
    body(
        "apps",
        "Deployment",
        "carto-workspace-api",
        &dep(containers),
    )
}

/// `n` chars of `c`, then `…`: what a name of at least `n + 1` chars is cut to.
fn cut_of(c: char, n: usize) -> String {
    let mut s: String = std::iter::repeat_n(c, n - 1).collect();
    s.push('…');
    s
}

#[test]
fn a_long_container_name_is_cut_in_every_message() {
    let name = "n".repeat(2_900_000);
    // A stale value and three missing variables: a warning and violations naming the container.
    let b = dep_body(vec![json!({
        "name": name,
        "env": [env_var(WORKFLOWS_TEMP, "old-project.old_dataset")],
    })]);
    let (m, v) = both(&b);
    let quoted = format!("\"{}\"", cut_of('n', MAX_QUOTED_CONTAINER));
    assert!(m.decision.allowed() && m.decision.patch.is_some());
    assert!(
        m.decision.warnings[0].contains(&quoted),
        "{:?}",
        m.decision.warnings
    );
    assert!(m.wire.len() < 4_096, "{}", m.wire.len());

    assert!(!v.decision.allowed());
    let text = v.decision.denial_text();
    assert_eq!(text.matches(&quoted).count(), 2, "{text}");
    assert!(text.len() < 2_048, "{text}");
    assert!(v.wire.len() < 4_096, "{}", v.wire.len());

    // The same under `warn` and `audit`: warnings and the audit annotation are cut too.
    for enforcement in [Enforcement::Warn, Enforcement::Audit] {
        let s = Settings {
            enforcement,
            ..settings()
        };
        let a = answer(Webhook::Validate, &b, &snapshot(), &s);
        assert!(a.decision.allowed());
        let all = format!(
            "{:?}{:?}",
            a.decision.warnings, a.decision.audit_annotations
        );
        assert!(all.len() < 2_048, "{all}");
        assert!(a.wire.len() < 4_096);
    }
}

#[test]
fn duplicated_env_entries_are_grouped_across_containers() {
    // 5 containers of 8,000 copies of one variable with a distinct invalid value each: 40,000
    // violations (and, before, one per entry with the container name in each).
    let containers: Vec<Value> = (0..5)
        .map(|c| {
            let env: Vec<Value> = (0..8_000)
                .map(|i| env_var(BILLING_PROJECT, &format!("X{i}")))
                .collect();
            container(&format!("c{c}"), Some(Value::Array(env)))
        })
        .collect();
    let b = dep_body(containers);
    assert!(b.len() > 2 * 1024 * 1024, "{}", b.len());
    let (m, v) = both(&b);

    assert!(!v.decision.allowed());
    // 5 incomplete containers, 40,000 invalid entries.
    assert_eq!(v.decision.violation_count(), 40_005);
    assert_eq!(
        v.decision.violations.len(),
        2,
        "{:?}",
        v.decision.violations
    );
    let text = v.decision.denial_text();
    assert!(text.contains("(40005 problems)"), "{text}");
    assert!(
        text.contains(&format!(
            "- [40000 times, in 5 containers] container \"c0\": {BILLING_PROJECT}=\"X0\" is not"
        )),
        "{text}"
    );
    assert!(text.len() < 2_048, "{text}");
    assert!(v.wire.len() < 4_096, "{}", v.wire.len());

    // 40,000 replace operations are over the patch budget: allowed unpatched (validation
    // refuses it), never a partial patch.
    assert!(m.decision.allowed() && m.decision.patch.is_none());
    assert_eq!(m.decision.warnings.len(), 1, "{:?}", m.decision.warnings);
    assert!(m.decision.warnings[0].contains("the patch would be over"));
    assert!(m.wire.len() < 1_024, "{}", m.wire.len());
}

#[test]
fn duplicated_entries_within_the_budget_are_all_fixed() {
    // 6,000 stale copies in one container: every copy is set (as the contract says), the patch
    // applies, a second pass is a no-op, and the answer fits.
    let env: Vec<Value> = (0..6_000)
        .map(|i| env_var(BILLING_PROJECT, &format!("stale-project-{i}")))
        .collect();
    let obj = dep(vec![container("app", Some(Value::Array(env)))]);
    let b = body("apps", "Deployment", "carto-workspace-api", &obj);
    let (m, _) = both(&b);
    let patch = m.decision.patch.as_ref().expect("a patch");
    assert!(patch.0.len() > 6_000);
    assert!(m.wire.len() < MAX_RESPONSE_BYTES);
    assert_eq!(m.decision.warnings.len(), 10);
    let (out, _) = mutate_default(&obj);
    let entries = out["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("a list")
        .iter()
        .filter(|e| e["name"] == BILLING_PROJECT);
    assert!(entries.into_iter().all(|e| e["value"] == BILLING_V));
}

#[test]
fn an_env_list_past_the_cap_is_refused_and_not_patched() {
    let env: Vec<Value> = (0..100_000).map(|_| json!({"name": "A"})).collect();
    let b = dep_body(vec![container("app", Some(Value::Array(env)))]);
    let (m, v) = both(&b);
    assert!(m.decision.allowed() && m.decision.patch.is_none());
    assert!(
        m.decision.warnings[0].starts_with(&format!(
            "container \"app\" has 100000 env entries, more than the {MAX_ENV_ENTRIES}"
        )),
        "{:?}",
        m.decision.warnings
    );
    assert!(!v.decision.allowed());
    assert!(matches!(
        &v.decision.violations[..],
        [Violation::TooManyEnvEntries { count: 100_000, .. }]
    ));
    assert!(v.wire.len() < 1_024 && m.wire.len() < 1_024);
}

#[test]
fn thousands_of_containers_get_a_denial_and_no_patch() {
    let containers: Vec<Value> = (0..5_000)
        .map(|i| json!({"name": format!("c{i}")}))
        .collect();
    let b = dep_body(containers);
    let (m, v) = both(&b);
    assert!(m.decision.allowed() && m.decision.patch.is_none());
    assert_eq!(
        m.decision.warnings,
        vec![format!(
            "the pod template has 5000 containers and init containers, more than the {MAX_CONTAINERS} the webhook handles: Workload Identity not injected"
        )]
    );
    assert!(!v.decision.allowed());
    assert_eq!(
        v.decision.violations,
        vec![Violation::TooManyContainers { count: 5_000 }]
    );
    assert!(v.wire.len() < 1_024 && m.wire.len() < 1_024);

    // Init containers count too, whatever --include-init-containers says.
    let mut obj = dep((0..600).map(|i| json!({"name": format!("c{i}")})).collect());
    obj["spec"]["template"]["spec"]["initContainers"] =
        (0..600).map(|i| json!({"name": format!("i{i}")})).collect();
    let v = answer(
        Webhook::Validate,
        &body("apps", "Deployment", "d", &obj),
        &snapshot(),
        &settings(),
    );
    assert!(matches!(
        &v.decision.violations[..],
        [Violation::TooManyContainers { count: 1_200 }]
    ));
}

#[test]
fn the_most_containers_handled_get_one_bounded_patch() {
    // At the cap, with long names and no env: one `add` per container; the same problem in
    // every container is one grouped violation.
    let containers: Vec<Value> = (0..MAX_CONTAINERS)
        .map(|i| json!({"name": format!("c{i}-{}", "x".repeat(2_000))}))
        .collect();
    let obj = dep(containers);
    let b = body("apps", "Deployment", "carto-workspace-api", &obj);
    let (m, v) = both(&b);
    let patch = m.decision.patch.as_ref().expect("a patch");
    assert_eq!(patch.0.len(), MAX_CONTAINERS + 1);
    assert!(m.wire.len() < MAX_RESPONSE_BYTES);

    assert_eq!(v.decision.violation_count(), MAX_CONTAINERS);
    let text = v.decision.denial_text();
    assert!(
        text.contains("- [1000 times, in 1000 containers] container \"c0-xxx"),
        "{text}"
    );
    assert!(v.wire.len() < 2_048, "{}", v.wire.len());
    let (out, _) = mutate_default(&obj);
    let again = admission::review(Webhook::Validate, &req(&out), &snapshot(), &settings());
    assert!(again.allowed(), "{:?}", again.violations);
}

#[test]
fn the_patch_budget_holds_with_a_large_config() {
    // The largest config the caps let through (one 8 KB pass-through value), and 1,000
    // containers without env: 8 MB of patch; no patch, a warning, and validation refuses it.
    let big = "v".repeat(MAX_EXTRA_BYTES - "WORKSPACE_BIG".len());
    let mut pairs: Vec<(&str, &str)> = acme_env().into_iter().collect();
    pairs.push(("WORKSPACE_BIG", &big));
    let snap = snapshot_of(config_of(&pairs));
    let containers: Vec<Value> = (0..MAX_CONTAINERS)
        .map(|i| json!({"name": format!("c{i}")}))
        .collect();
    let b = dep_body(containers);
    let m = answer(Webhook::Mutate, &b, &snap, &settings());
    assert!(m.decision.allowed() && m.decision.patch.is_none());
    assert!(
        m.decision.warnings[0].contains(&format!("over {MAX_PATCH_BYTES} bytes")),
        "{:?}",
        m.decision.warnings
    );
    let v = answer(Webhook::Validate, &b, &snap, &settings());
    assert!(!v.decision.allowed());
    assert!(m.wire.len() < 1_024 && v.wire.len() < 2_048);

    // Two hundred containers fit: 1.7 MB of patch, still within the answer bound.
    let b = dep_body((0..200).map(|i| json!({"name": format!("c{i}")})).collect());
    let m = answer(Webhook::Mutate, &b, &snap, &settings());
    assert!(m.decision.patch.is_some());
    assert!(m.wire.len() > 2 * 1_000_000 && m.wire.len() <= MAX_RESPONSE_BYTES);
}

#[test]
fn a_config_past_the_caps_is_refused_whole() {
    // 30 pass-through values of 30 KB (0.9 MB) once grew every target by 0.9 MB a container.
    let values: Vec<(String, String)> = (0..30)
        .map(|i| (format!("WORKSPACE_BIG{i}"), "v".repeat(30_000)))
        .collect();
    let allowed = ExtraEnvAllowlist::new(values.iter().map(|(k, _)| k.clone()));
    let mut d = acme_data();
    d.extend(values);
    let problems = WorkloadIdentityConfig::from_data(&d, &allowed).unwrap_err();
    assert!(
        matches!(
            &problems[..],
            [
                ConfigProblem::DataTooLarge {
                    limit: MAX_DATA_BYTES,
                    ..
                },
                ConfigProblem::ExtrasTooLarge {
                    limit: MAX_EXTRA_BYTES,
                    ..
                },
            ]
        ),
        "{problems:?}"
    );
    // What is kept of a rejected config is small whatever it held.
    assert!(format!("{problems:?}").len() < 1_000);
    // More than 32 keys is refused even when each is small.
    let many: Vec<(String, String)> = (0..=MAX_EXTRA_KEYS)
        .map(|i| (format!("WORKSPACE_K{i}"), "1".into()))
        .collect();
    let allowed = ExtraEnvAllowlist::new(many.iter().map(|(k, _)| k.clone()));
    let mut d = acme_data();
    d.extend(many);
    let problems = WorkloadIdentityConfig::from_data(&d, &allowed).unwrap_err();
    assert_eq!(
        problems,
        vec![ConfigProblem::TooManyExtras {
            count: MAX_EXTRA_KEYS + 1,
            limit: MAX_EXTRA_KEYS
        }]
    );
}

#[test]
fn thousands_of_unknown_config_keys_are_one_grouped_problem() {
    let data: serde_json::Map<String, Value> = (0..20_000)
        .map(|i| (format!("zq{i:07}"), json!("v")))
        .chain(
            acme_env()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), json!(v))),
        )
        .collect();
    let obj = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "carto-workload-identity", "namespace": NS},
        "data": data,
    });
    let b = body("", "ConfigMap", "carto-workload-identity", &obj);
    let v = answer(Webhook::Validate, &b, &snapshot(), &settings());
    assert!(!v.decision.allowed());
    // 20,000 unknown keys, and the data past its size cap.
    assert_eq!(v.decision.violation_count(), 20_001);
    let text = v.decision.denial_text();
    assert!(text.contains("data holds"), "{text}");
    assert!(
        text.contains("- [20000 times] zq0000000: unknown key; allowed keys are"),
        "{text}"
    );
    // The list of allowed keys once, not once per key.
    assert_eq!(text.matches("allowed keys are").count(), 1, "{text}");
    assert!(v.wire.len() < 2_048, "{}", v.wire.len());
    assert!(v.peak > 0);
}

#[test]
fn long_keys_values_and_names_are_cut() {
    // A ConfigMap with one huge unknown key and one huge invalid value.
    let key = format!("K{}", "k".repeat(100_000));
    let obj = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "carto-workload-identity", "namespace": NS},
        "data": {key.clone(): "v", BILLING_PROJECT: "B".repeat(1_000_000)},
    });
    let b = body("", "ConfigMap", "carto-workload-identity", &obj);
    let v = answer(Webhook::Validate, &b, &snapshot(), &settings());
    let text = v.decision.denial_text();
    assert!(
        text.contains(&format!(
            "\n- K{}: unknown key",
            cut_of('k', MAX_QUOTED_NAME - 1)
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("\"{}\"", cut_of('B', MAX_QUOTED_VALUE))),
        "{text}"
    );
    assert!(v.wire.len() < 4_096, "{}", v.wire.len());

    // A ServiceAccount with a huge annotation, and a huge object name.
    let name = "s".repeat(1_000_000);
    let sa = service_account(SA, Some(json!({GCP_SA: "e".repeat(1_000_000)})));
    let b = body("", "ServiceAccount", SA, &sa);
    let (m, v) = both(&b);
    assert!(m.decision.warnings[0].contains(&cut_of('e', MAX_QUOTED_VALUE)));
    assert!(!v.decision.allowed() && v.wire.len() < 1_024);
    // The request's name is the one used (and cut).
    let b = body(
        "apps",
        "Deployment",
        &name,
        &dep(vec![container("a", None)]),
    );
    let v = answer(Webhook::Validate, &b, &snapshot(), &settings());
    assert!(!v.decision.allowed());
    assert!(
        v.decision.denial_text().starts_with(&format!(
            "Deployment {NS}/{} breaks",
            cut_of('s', MAX_QUOTED_NAME)
        )),
        "{}",
        &v.decision.denial_text()[..300]
    );
    assert!(v.wire.len() < 1_024);
}

#[test]
fn a_huge_skip_list_makes_ten_warnings() {
    // 400,000 names that match no container: one pass, ten warnings.
    let mut obj = dep(vec![container("app", None)]);
    let list: Vec<String> = (0..400_000).map(|i| format!("{i:x}")).collect();
    obj["spec"]["template"]["metadata"]["annotations"][SKIP] = json!(list.join(","));
    let b = body("apps", "Deployment", "carto-workspace-api", &obj);
    let (snap, s) = (snapshot(), object_opt_out());
    let (m, v) = (
        answer(Webhook::Mutate, &b, &snap, &s),
        answer(Webhook::Validate, &b, &snap, &s),
    );
    assert!(m.decision.patch.is_some());
    assert_eq!(m.decision.warnings.len(), 10);
    assert!(
        m.decision.warnings[9].contains("and 399991 more warnings"),
        "{:?}",
        m.decision.warnings
    );
    assert!(m.wire.len() < 8_192 && v.wire.len() < 1_024);
}

#[test]
fn a_uid_past_the_cap_is_refused() {
    let mut r: Value = serde_json::from_slice(&dep_body(vec![container("a", None)])).unwrap();
    r["uid"] = json!("u".repeat(MAX_UID_BYTES + 1));
    let b = serde_json::to_vec(&r).unwrap();
    let e = ReviewRequest::from_slice(&b).expect_err("refused");
    assert!(e.to_string().contains("uid is 129 bytes long"), "{e}");
    r["uid"] = json!("u".repeat(MAX_UID_BYTES));
    let b = serde_json::to_vec(&r).unwrap();
    assert!(ReviewRequest::from_slice(&b).is_ok());
    // A 400 answer is cut too, whatever the parse error quotes.
    let bad = ReviewResponse::invalid(String::new(), "x".repeat(3_000_000));
    assert!(serde_json::to_vec(&bad).unwrap().len() < 8_192);
}

/// A name or value as an attacker would write it: long, with quotes, escapes and wide chars.
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{0,80}",
        "[a-zé\"\\\\\n😀-]{0,600}",
        (1usize..60_000).prop_map(|n| "ü".repeat(n)),
    ]
}

/// The longest a violation's text can be: each quoted part is cut, escapes at most double it.
const MAX_VIOLATION_CHARS: usize = 1_536;

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn long_names_never_make_long_messages(
        container_name in hostile(),
        value in hostile(),
        name in hostile(),
        namespace in hostile(),
        copies in 1usize..8,
    ) {
        let env: Vec<Value> = (0..copies)
            .map(|i| env_var(if i % 2 == 0 { WORKFLOWS_TEMP } else { BILLING_PROJECT }, &value))
            .collect();
        let mut obj = deployment(&name, SA, vec![
            container(&container_name, Some(Value::Array(env))),
            container(&value, None),
        ]);
        obj["metadata"]["namespace"] = json!(namespace);
        obj["spec"]["template"]["metadata"]["annotations"][SKIP] = json!(value);
        let b = body("apps", "Deployment", &name, &obj);
        let mut r: Value = serde_json::from_slice(&b).unwrap();
        r["namespace"] = json!(namespace);
        let b = serde_json::to_vec(&r).unwrap();
        for enforcement in [Enforcement::Deny, Enforcement::Warn, Enforcement::Audit] {
            for snap in [snapshot(), ConfigSnapshot::default()] {
                let s = Settings { enforcement, require_config: true, ..settings() };
                for w in [Webhook::Mutate, Webhook::Validate] {
                    let a = answer(w, &b, &snap, &s);
                    for v in &a.decision.violations {
                        let n = v.to_string().chars().count();
                        prop_assert!(n <= MAX_VIOLATION_CHARS, "{n}: {v}");
                    }
                    let text = a.decision.denial_text();
                    prop_assert!(
                        text.chars().count()
                            <= 2 * MAX_QUOTED_NAME + 100
                                + (MAX_LISTED_VIOLATIONS + 1) * (MAX_VIOLATION_CHARS + 3)
                    );
                    let audit = a.decision.audit_annotations.get("violations");
                    prop_assert!(audit.is_none_or(|t| t.chars().count()
                        <= (MAX_LISTED_VIOLATIONS + 1) * (MAX_VIOLATION_CHARS + 2)));
                    prop_assert!(a.wire.len() < 256 * 1024);
                }
            }
        }
    }
}
