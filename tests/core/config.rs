//! Config rules from PRODUCT.md: every rule, all problems at once, suggestions, pass-through,
//! the hash and the IAM binding.

use std::collections::BTreeMap;

use carto_wi_webhook::config::{
    ConfigEntry, ConfigOrigin, ConfigProblem, ConfigSnapshot, ConfigWarning, Resolved, Rule,
    WorkloadIdentityConfig, config_from_object, fingerprint, keys, load_config_map, parse_env_file,
    rules, suggest,
};
use serde_json::json;

use crate::common::*;

fn with(key: &str, value: &str) -> BTreeMap<String, String> {
    let mut d = acme_data();
    d.insert(key.to_owned(), value.to_owned());
    d
}

fn problems(d: &BTreeMap<String, String>) -> Vec<ConfigProblem> {
    WorkloadIdentityConfig::from_data(d, &allowed()).expect_err("config must be invalid")
}

/// The problem of an invalid value (kept cut, as it is quoted).
fn invalid(key: &str, value: &str, rule: Rule) -> ConfigProblem {
    ConfigProblem::Invalid {
        key: key.to_owned(),
        value: carto_wi_webhook::limits::cut(value, carto_wi_webhook::limits::MAX_QUOTED_VALUE)
            .into_owned(),
        rule,
        example: keys::example(key),
    }
}

#[test]
fn acme_example_is_valid() {
    let c = acme();
    assert_eq!(c.workflows_temp, TEMP_V);
    assert_eq!(c.billing_project, BILLING_V);
    assert_eq!(c.service_account_email, EMAIL_V);
    assert_eq!(c.connection_owner_id, OWNER_V);
    assert_eq!(c.gke_cluster_project, None);
    assert!(c.extra.is_empty());
    let env: Vec<(&str, &str)> = c
        .env()
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(env, acme_env());
}

#[test]
fn project_ids() {
    let ok = [
        "acme-gke-prod",
        "abcdef",
        "a12345",
        "a23456789012345678901234567890", // 30 chars
        "my-project-1",
        "example.com:my-project",
        "corp.example.co.uk:acme-gke-prod",
    ];
    for v in ok {
        assert_eq!(rules::check(keys::BILLING_PROJECT, v), None, "{v}");
        assert_eq!(rules::check(keys::GKE_CLUSTER_PROJECT, v), None, "{v}");
        assert!(
            WorkloadIdentityConfig::from_data(&with(BILLING_PROJECT, v), &allowed()).is_ok(),
            "{v}"
        );
    }
    let bad = [
        "abcde",                           // 5 chars
        "a234567890123456789012345678901", // 31 chars
        "Acme-gke-prod",                   // upper case
        "1acme-gke-prod",                  // starts with a digit
        "-acme-gke-prod",
        "acme-gke-prod-", // ends with a hyphen
        "acme_gke_prod",
        "acme.gke.prod",
        "acme gke prod",
        "",
        ":acme-gke-prod",
        "example:acme-gke-prod",       // domain without a dot
        "example.com:",                // no project
        "Example.com:acme-gke-prod",   // domain upper case
        "example..com:acme-gke-prod",  // empty label
        "example.com:Acme-gke-prod",   // project part broken
        "example.com:a:acme-gke-prod", // two colons
        "acmé-gke-prod",
    ];
    for v in bad {
        assert_eq!(
            rules::check(keys::BILLING_PROJECT, v),
            Some(Rule::ProjectId),
            "{v:?}"
        );
        assert_eq!(
            problems(&with(BILLING_PROJECT, v)),
            vec![invalid(BILLING_PROJECT, v, Rule::ProjectId)],
            "{v:?}"
        );
    }
}

#[test]
fn gke_cluster_project_follows_the_project_rule() {
    assert_eq!(
        problems(&with(GKE_PROJECT, "GKE")),
        vec![invalid(GKE_PROJECT, "GKE", Rule::ProjectId)]
    );
    // Optional, but when present and empty it is an error, not "absent".
    assert_eq!(
        problems(&with(GKE_PROJECT, "")),
        vec![invalid(GKE_PROJECT, "", Rule::ProjectId)]
    );
    let c =
        WorkloadIdentityConfig::from_data(&with(GKE_PROJECT, "example.com:acme-gke"), &allowed())
            .unwrap();
    assert_eq!(
        c.gke_cluster_project.as_deref(),
        Some("example.com:acme-gke")
    );
}

#[test]
fn dataset_refs() {
    let long = format!("acme-analytics.{}", "d".repeat(1024));
    let too_long = format!("acme-analytics.{}", "d".repeat(1025));
    for v in [
        "acme-analytics.carto_workflows_temp",
        "acme-analytics.T",
        "acme-analytics.Temp_2024",
        "example.com:acme-analytics.carto_temp",
        long.as_str(),
    ] {
        assert_eq!(rules::check(WORKFLOWS_TEMP, v), None, "{v}");
    }
    for v in [
        "carto_workflows_temp",                // no project
        "acme-analytics",                      // no dataset
        "acme-analytics.",                     // empty dataset
        ".carto_workflows_temp",               // empty project
        "acme-analytics.carto-workflows-temp", // hyphen in the dataset
        "acme-analytics.carto workflows",
        "acme-analytics.carto.temp",           // dot in the dataset
        "ACME-analytics.carto_workflows_temp", // bad project
        "acme.carto_workflows_temp",           // project too short
        "acme-analytics:carto_workflows_temp",
        too_long.as_str(),
    ] {
        assert_eq!(
            problems(&with(WORKFLOWS_TEMP, v)),
            vec![invalid(WORKFLOWS_TEMP, v, Rule::DatasetRef)],
            "{v:?}"
        );
    }
}

#[test]
fn service_account_emails() {
    for v in [
        EMAIL_V,
        "abcdef@abcdef.iam.gserviceaccount.com",
        "a23456789012345678901234567890@acme-analytics.iam.gserviceaccount.com",
    ] {
        assert_eq!(rules::check(SA_EMAIL, v), None, "{v}");
    }
    for v in [
        "carto-wi@acme-analytics.iam.gserviceaccount", // no .com
        "carto-wi@acme-analytics.gserviceaccount.com",
        "carto-wi@acme-analytics.iam.gserviceaccount.com.evil",
        "cw@acme-analytics.iam.gserviceaccount.com", // account too short
        "a234567890123456789012345678901@acme-analytics.iam.gserviceaccount.com", // 31
        "Carto-WI@acme-analytics.iam.gserviceaccount.com",
        "carto_wi@acme-analytics.iam.gserviceaccount.com",
        "carto-wi-@acme-analytics.iam.gserviceaccount.com",
        "carto-wi@acme.iam.gserviceaccount.com", // project too short
        "carto-wi@@acme-analytics.iam.gserviceaccount.com",
        "carto-wi.acme-analytics.iam.gserviceaccount.com",
        "carto-wi@acme-analytics.iam.gserviceaccount.com@x",
        "123456789-compute@developer.gserviceaccount.com",
        "carto-wi@gmail.com",
        "",
    ] {
        assert_eq!(
            problems(&with(SA_EMAIL, v)),
            vec![invalid(SA_EMAIL, v, Rule::ServiceAccountEmail)],
            "{v:?}"
        );
    }
}

#[test]
fn owner_ids() {
    let max = "o".repeat(255);
    for v in [OWNER_V, "google-oauth2|1234", "x|y", max.as_str()] {
        let c = WorkloadIdentityConfig::from_data(&with(OWNER_ID, v), &allowed()).unwrap();
        assert_eq!(c.connection_owner_id, v);
        assert!(
            !c.warnings
                .iter()
                .any(|w| matches!(w, ConfigWarning::OwnerIdFormat { .. }))
                || v == max,
            "{v}"
        );
    }
    let too_long = "o".repeat(256);
    for v in ["", "auth0|abc def", "auth0|\u{a0}x", too_long.as_str()] {
        assert_eq!(
            problems(&with(OWNER_ID, v)),
            vec![invalid(OWNER_ID, v, Rule::OwnerId)],
            "{v:?}"
        );
    }
}

#[test]
fn owner_id_without_provider_is_only_a_warning() {
    for v in ["3idsj230990sj4wsddd10", "|abc", "auth0|", "a|b|c"] {
        let c = WorkloadIdentityConfig::from_data(&with(OWNER_ID, v), &allowed())
            .unwrap_or_else(|p| panic!("{v:?} must be accepted: {p:?}"));
        assert_eq!(
            c.warnings[0],
            ConfigWarning::OwnerIdFormat {
                key: keys::CONNECTION_OWNER_ID,
                value: v.to_owned()
            },
            "{v:?}"
        );
        assert_eq!(c.env_value(OWNER_ID), Some(v));
    }
}

#[test]
fn whitespace_is_never_trimmed() {
    let cases = [
        (WORKFLOWS_TEMP, format!(" {TEMP_V}")),
        (BILLING_PROJECT, format!("{BILLING_V} ")),
        (SA_EMAIL, format!("{EMAIL_V}\n")),
        (OWNER_ID, format!("\t{OWNER_V}")),
        (GKE_PROJECT, " acme-gke-prod ".to_owned()),
    ];
    for (k, v) in &cases {
        assert_eq!(
            problems(&with(k, v)),
            vec![invalid(k, v, Rule::NoSurroundingWhitespace)],
            "{k}={v:?}"
        );
    }
    // Whitespace that trimming would not fix names the real rule.
    assert_eq!(
        problems(&with(BILLING_PROJECT, " acme gke ")),
        vec![invalid(BILLING_PROJECT, " acme gke ", Rule::ProjectId)]
    );
    assert_eq!(
        problems(&with(BILLING_PROJECT, "  ")),
        vec![invalid(BILLING_PROJECT, "  ", Rule::ProjectId)]
    );
    // Pass-through values are kept exactly as written, spaces included.
    let c = WorkloadIdentityConfig::from_data(
        &with("WORKSPACE_SYNC_DATA_ENABLED", " true "),
        &allowed(),
    )
    .unwrap();
    assert_eq!(c.env_value("WORKSPACE_SYNC_DATA_ENABLED"), Some(" true "));
}

#[test]
fn every_problem_is_reported_at_once() {
    let d = data(&[
        (BILLING_PROJECT, " acme-gke-prod"),
        (SA_EMAIL, "carto-wi@acme-analytics.iam.gserviceaccount"),
        ("GKE_CLUSTER_PROJET", "acme-gke-prod"),
        ("WORKSPACE_WORKLOAD_IDENTITY_TEMP", "x"),
        ("workspace_sync_data_enabled", "true"),
        ("LOG_LEVEL", "debug"),
    ]);
    assert_eq!(
        problems(&d),
        vec![
            ConfigProblem::UnknownKey {
                key: "GKE_CLUSTER_PROJET".into(),
                suggestion: Some(GKE_PROJECT.into())
            },
            ConfigProblem::UnknownKey {
                key: "LOG_LEVEL".into(),
                suggestion: None
            },
            invalid(
                BILLING_PROJECT,
                " acme-gke-prod",
                Rule::NoSurroundingWhitespace
            ),
            invalid(
                SA_EMAIL,
                "carto-wi@acme-analytics.iam.gserviceaccount",
                Rule::ServiceAccountEmail
            ),
            ConfigProblem::UnknownKey {
                key: "WORKSPACE_WORKLOAD_IDENTITY_TEMP".into(),
                suggestion: Some(WORKFLOWS_TEMP.into())
            },
            ConfigProblem::UnknownKey {
                key: "workspace_sync_data_enabled".into(),
                suggestion: Some("WORKSPACE_SYNC_DATA_ENABLED".into())
            },
            ConfigProblem::Missing {
                key: keys::WORKFLOWS_TEMP,
                example: keys::example(keys::WORKFLOWS_TEMP)
            },
            ConfigProblem::Missing {
                key: keys::CONNECTION_OWNER_ID,
                example: keys::example(keys::CONNECTION_OWNER_ID)
            },
        ]
    );
}

#[test]
fn empty_data_names_all_four_required_keys() {
    let p = problems(&BTreeMap::new());
    let missing: Vec<&str> = p
        .iter()
        .map(|p| match p {
            ConfigProblem::Missing { key, .. } => *key,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(missing, keys::REQUIRED.to_vec());
}

#[test]
fn messages_name_the_key_the_rule_and_an_example() {
    for p in problems(&data(&[(BILLING_PROJECT, "Bad")])) {
        let text = p.to_string();
        match &p {
            ConfigProblem::Invalid { .. } => {
                assert!(text.starts_with(BILLING_PROJECT), "{text}");
                assert!(text.contains("\"Bad\""), "{text}");
                assert!(text.contains("GCP project id"), "{text}");
                assert!(text.contains("e.g. \"my-billing-project\""), "{text}");
            }
            ConfigProblem::Missing { key, .. } => {
                assert!(text.starts_with(key), "{text}");
                assert!(text.contains("required key is missing"), "{text}");
                assert!(text.contains("e.g."), "{text}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let unknown = ConfigProblem::UnknownKey {
        key: "WORKSPACE_WORKLOAD_IDENTITY_BILLING_PROJCT".into(),
        suggestion: Some(BILLING_PROJECT.into()),
    };
    assert_eq!(
        unknown.to_string(),
        format!(
            "WORKSPACE_WORKLOAD_IDENTITY_BILLING_PROJCT: unknown key; did you mean {BILLING_PROJECT}?"
        )
    );
    let no_idea = ConfigProblem::UnknownKey {
        key: "FOO".into(),
        suggestion: None,
    }
    .to_string();
    assert!(no_idea.contains("allowed keys are"), "{no_idea}");
    assert!(no_idea.contains(GKE_PROJECT), "{no_idea}");
}

#[test]
fn did_you_mean() {
    let cases: [(&str, Option<&str>); 14] = [
        // Reserved prefix, too far for an edit-distance match: the key sharing a word.
        ("WORKSPACE_WORKLOAD_IDENTITY_EMAIL", Some(SA_EMAIL)),
        ("WORKSPACE_WORKLOAD_IDENTITY_OWNER", Some(OWNER_ID)),
        ("workspace_workload_identity_billing", Some(BILLING_PROJECT)),
        // ...and none when no word, or more than one key, matches.
        ("WORKSPACE_WORKLOAD_IDENTITY_DATASET", None),
        ("WORKSPACE_WORKLOAD_IDENTITY_PROJECT_ID", None),
        (
            "WORKSPACE_WORKLOAD_IDENTITY_BILLING_PROJCT",
            Some(BILLING_PROJECT),
        ),
        (
            "WORKSPACE_WORKLOAD_IDENTITY_SERVICE_ACCOUNT",
            Some(SA_EMAIL),
        ),
        (
            "WORKSPACE_WORKLOAD_IDENTITY_CONNECTION_OWNER",
            Some(OWNER_ID),
        ),
        (
            "workspace-workload-identity-workflows-temp",
            Some(WORKFLOWS_TEMP),
        ),
        ("GKE_CLUSTER_PROJET", Some(GKE_PROJECT)),
        ("gke_cluster_project", Some(GKE_PROJECT)),
        (
            "workspace_sync_data_enabled",
            Some("WORKSPACE_SYNC_DATA_ENABLED"),
        ),
        ("FOO", None),
        ("SOMETHING_ELSE_ENTIRELY", None),
    ];
    for (key, want) in cases {
        assert_eq!(suggest(key).as_deref(), want, "{key}");
    }
}

#[test]
fn extra_workspace_keys_pass_through_sorted() {
    let mut d = acme_data();
    d.insert("WORKSPACE_SYNC_DATA_ENABLED".into(), "true".into());
    d.insert("WORKSPACE_A_FIRST".into(), "1".into());
    d.insert(GKE_PROJECT.into(), "acme-gke".into());
    let c = WorkloadIdentityConfig::from_data(&d, &allowed()).unwrap();
    assert_eq!(
        c.extra,
        vec![
            ("WORKSPACE_A_FIRST".to_owned(), "1".to_owned()),
            ("WORKSPACE_SYNC_DATA_ENABLED".to_owned(), "true".to_owned())
        ]
    );
    let names: Vec<&str> = c.env().iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        vec![
            WORKFLOWS_TEMP,
            BILLING_PROJECT,
            SA_EMAIL,
            OWNER_ID,
            "WORKSPACE_A_FIRST",
            "WORKSPACE_SYNC_DATA_ENABLED"
        ]
    );
    // GKE_CLUSTER_PROJECT is configuration, not an env var.
    assert_eq!(c.env_value(GKE_PROJECT), None);
    assert_eq!(c.env_value("WORKSPACE_SYNC_DATA_ENABLED"), Some("true"));
}

#[test]
fn unknown_keys_are_errors() {
    for key in [
        "WORKSPACE_WORKLOAD_IDENTITY_EXTRA",
        "LOG_LEVEL",
        "foo",
        "GOOGLE_APPLICATION_CREDENTIALS",
    ] {
        let p = problems(&with(key, "x"));
        assert_eq!(p.len(), 1, "{key}: {p:?}");
        assert!(
            matches!(&p[0], ConfigProblem::UnknownKey { key: k, .. } if k == key),
            "{key}: {p:?}"
        );
    }
}

#[test]
fn config_hash_is_12_hex_stable_and_sensitive() {
    let base = acme();
    assert_eq!(base.hash.len(), 12);
    assert!(
        base.hash
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    // Stable: same data, same hash, however it was built.
    let mut reversed = BTreeMap::new();
    for (k, v) in acme_data().into_iter().rev() {
        reversed.insert(k, v);
    }
    assert_eq!(
        WorkloadIdentityConfig::from_data(&reversed, &allowed())
            .unwrap()
            .hash,
        base.hash
    );
    assert_eq!(fingerprint(&acme_data()), base.hash);
    // Pinned (computed independently: SHA-256 over the sorted pairs, each length-prefixed with a
    // big-endian u64), so an accidental change of the digest, which would roll every pod, is
    // noticed.
    assert_eq!(base.hash, "997b5acf45f9");
    // Sensitive to any change of any key or value, including the optional and extra keys.
    let variants = [
        with(OWNER_ID, "auth0|3idsj230990sj4wsddd11"),
        with(BILLING_PROJECT, "acme-gke-prod2"),
        with(GKE_PROJECT, BILLING_V),
        with("WORKSPACE_SYNC_DATA_ENABLED", "true"),
        with("WORKSPACE_SYNC_DATA_ENABLED", "false"),
    ];
    let mut seen = vec![base.hash.clone()];
    for v in &variants {
        let h = WorkloadIdentityConfig::from_data(v, &allowed())
            .unwrap()
            .hash;
        assert!(!seen.contains(&h), "{h} repeats");
        seen.push(h);
    }
    // Unambiguous: moving characters between key and value changes the hash.
    assert_ne!(
        fingerprint(&data(&[("AB", "C")])),
        fingerprint(&data(&[("A", "BC")]))
    );
    assert_ne!(
        fingerprint(&data(&[("A", "1"), ("B", "2")])),
        fingerprint(&data(&[("A", "1B2")]))
    );
}

#[test]
fn iam_binding_with_cluster_project() {
    let mut d = acme_data();
    d.insert(GKE_PROJECT.into(), "acme-gke-host".into());
    let c = WorkloadIdentityConfig::from_data(&d, &allowed()).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(c.cluster_project(), "acme-gke-host");
    assert_eq!(
        c.iam_binding("carto", SA),
        "gcloud iam service-accounts add-iam-policy-binding carto-wi@acme-analytics.iam.gserviceaccount.com \
         --role roles/iam.workloadIdentityUser \
         --member \"serviceAccount:acme-gke-host.svc.id.goog[carto/carto-common-backend]\""
    );
}

#[test]
fn iam_binding_without_cluster_project_assumes_billing_and_warns() {
    let c = acme();
    assert_eq!(
        c.warnings,
        vec![ConfigWarning::ClusterProjectAssumed(BILLING_V.into())]
    );
    assert!(
        c.warnings[0]
            .to_string()
            .contains("GKE_CLUSTER_PROJECT not set")
    );
    assert_eq!(c.cluster_project(), BILLING_V);
    assert_eq!(
        c.iam_binding("other-ns", "my-sa"),
        "gcloud iam service-accounts add-iam-policy-binding carto-wi@acme-analytics.iam.gserviceaccount.com \
         --role roles/iam.workloadIdentityUser \
         --member \"serviceAccount:acme-gke-prod.svc.id.goog[other-ns/my-sa]\""
    );
}

#[test]
fn config_map_objects() {
    let cm = |data: serde_json::Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "carto-workload-identity"}, "data": data});
    let ok = config_from_object(
        &cm(json!({
            WORKFLOWS_TEMP: TEMP_V, BILLING_PROJECT: BILLING_V, SA_EMAIL: EMAIL_V, OWNER_ID: OWNER_V
        })),
        &allowed(),
    )
    .unwrap();
    assert_eq!(ok, acme());
    // Non-string values are named, and rule problems of the other values still reported.
    let e = config_from_object(
        &cm(json!({
            WORKFLOWS_TEMP: TEMP_V, BILLING_PROJECT: 123456, SA_EMAIL: "bad", OWNER_ID: OWNER_V,
            "WORKSPACE_SYNC_DATA_ENABLED": true
        })),
        &allowed(),
    )
    .unwrap_err();
    assert_eq!(
        e,
        vec![
            ConfigProblem::NotAString {
                key: BILLING_PROJECT.into()
            },
            ConfigProblem::NotAString {
                key: "WORKSPACE_SYNC_DATA_ENABLED".into()
            },
            invalid(SA_EMAIL, "bad", Rule::ServiceAccountEmail),
        ]
    );
    assert_eq!(
        config_from_object(&json!({"kind": "Secret", "data": {}}), &allowed()).unwrap_err(),
        vec![ConfigProblem::Malformed(
            "expected kind ConfigMap, found Secret".into()
        )]
    );
    assert!(matches!(
        config_from_object(&cm(json!(["a"])), &allowed()).unwrap_err()[0],
        ConfigProblem::Malformed(_)
    ));
    // No data at all: the four keys are missing.
    assert_eq!(
        config_from_object(&cm(json!(null)), &allowed())
            .unwrap_err()
            .len(),
        4
    );
}

#[test]
fn env_file_parsing() {
    let d = parse_env_file(&fixture("config.env")).unwrap();
    assert_eq!(d[OWNER_ID], OWNER_V);
    assert_eq!(d[SA_EMAIL], EMAIL_V);
    assert_eq!(d[BILLING_PROJECT], BILLING_V);
    assert_eq!(d["WORKSPACE_SYNC_DATA_ENABLED"], "true");
    let c = WorkloadIdentityConfig::from_data(&d, &allowed()).unwrap();
    assert_eq!(c.extra.len(), 1);
    // CRLF files work, and a value's inner spaces are kept; surrounding ones are an error later.
    let crlf = format!("{WORKFLOWS_TEMP}={TEMP_V}\r\n{BILLING_PROJECT}={BILLING_V} \r\n");
    let d = parse_env_file(&crlf).unwrap();
    assert_eq!(d[WORKFLOWS_TEMP], TEMP_V);
    assert_eq!(d[BILLING_PROJECT], format!("{BILLING_V} "));
    let e = parse_env_file("JUST_A_WORD\nA=1\nA=2\n").unwrap_err();
    assert_eq!(e.len(), 2);
}

#[test]
fn resolution_namespace_replaces_default_whole() {
    let mut snap = ConfigSnapshot::default();
    assert_eq!(snap.resolve("carto"), Resolved::None);
    snap.set_default(Some(ConfigEntry::from_result(Ok(acme()))));
    let ns_cfg = config_of(&[
        (WORKFLOWS_TEMP, "other-project.temp"),
        (BILLING_PROJECT, "other-project"),
        (SA_EMAIL, "other-sa@other-project.iam.gserviceaccount.com"),
        (OWNER_ID, "auth0|other"),
    ]);
    snap.set_namespace("team", ConfigEntry::from_result(Ok(ns_cfg.clone())));
    snap.set_namespace(
        "broken",
        ConfigEntry::from_result(WorkloadIdentityConfig::from_data(
            &BTreeMap::new(),
            &allowed(),
        )),
    );
    match snap.resolve("carto") {
        Resolved::Config(c, ConfigOrigin::Default) => assert_eq!(*c, acme()),
        other => panic!("{other:?}"),
    }
    match snap.resolve("team") {
        Resolved::Config(c, ConfigOrigin::Namespace) => assert_eq!(*c, ns_cfg),
        other => panic!("{other:?}"),
    }
    // A broken namespace ConfigMap does not fall back to the default.
    assert!(
        matches!(snap.resolve("broken"), Resolved::Broken(p, ConfigOrigin::Namespace) if p.len() == 4)
    );
    snap.remove_namespace("broken");
    assert!(matches!(
        snap.resolve("broken"),
        Resolved::Config(_, ConfigOrigin::Default)
    ));
}

#[test]
fn pass_through_keys_must_be_env_var_names() {
    let long = format!("WORKSPACE_{}", "a b".repeat(100_000));
    let cases: [(&str, Option<&str>, &str); 9] = [
        ("WORKSPACE_A B", None, "\"WORKSPACE_A B\""),
        ("WORKSPACE_\n", None, "\"WORKSPACE_\\n\""),
        ("WORKSPACE_", None, "\"WORKSPACE_\""),
        (
            "WORKSPACE_sync_data",
            Some("WORKSPACE_SYNC_DATA"),
            "\"WORKSPACE_sync_data\"",
        ),
        ("WORKSPACE_A-B", Some("WORKSPACE_A_B"), "\"WORKSPACE_A-B\""),
        ("WORKSPACE_A=B", None, "\"WORKSPACE_A=B\""),
        ("WORKSPACE_É", None, "\"WORKSPACE_É\""),
        ("WORKSPACE_\u{202e}A", None, "\"WORKSPACE_\\u{202e}A\""),
        (&long, None, "\"WORKSPACE_a ba ba"),
    ];
    for (key, suggestion, quoted) in cases {
        let mut p = problems(&with(key, "1"));
        // The 300 KB key is past the data cap too.
        p.retain(|p| !matches!(p, ConfigProblem::DataTooLarge { .. }));
        assert_eq!(
            p,
            vec![ConfigProblem::InvalidPassThroughKey {
                key: key.to_owned(),
                suggestion: suggestion.map(str::to_owned)
            }],
            "{key:?}"
        );
        let text = p[0].to_string();
        assert!(text.starts_with(quoted), "{text}");
        assert!(text.contains("not a valid pass-through key"), "{text}");
        assert!(text.contains("A-Z, 0-9 and '_'"), "{text}");
        assert!(text.contains("e.g. WORKSPACE_SYNC_DATA_ENABLED"), "{text}");
        assert!(!text.contains(['\n', '\u{202e}']), "{text:?}");
        assert!(text.len() < 300, "{} chars", text.len());
        if let Some(s) = suggestion {
            assert!(text.contains(&format!("did you mean {s}?")), "{text}");
        }
    }
    // Lower-case keys are not pass-through keys: unknown, with a suggestion when upper-casing
    // makes one.
    assert!(matches!(
        &problems(&with("workspace_a b", "1"))[..],
        [ConfigProblem::UnknownKey {
            suggestion: None,
            ..
        }]
    ));
    assert!(matches!(
        &problems(&with("workspace_sync", "1"))[..],
        [ConfigProblem::UnknownKey { suggestion: Some(s), .. }] if s == "WORKSPACE_SYNC"
    ));
    for ok in ["WORKSPACE_A", "WORKSPACE_9", "WORKSPACE_A_1__B"] {
        let c = WorkloadIdentityConfig::from_data(&with(ok, "x"), &allowed()).unwrap();
        assert_eq!(c.env_value(ok), Some("x"));
    }
}

/// Characters no value may hold, by class: C0 and C1 controls, DEL, and Unicode format (Cf)
/// characters such as zero-width and bidi ones.
const FORBIDDEN: [char; 16] = [
    '\0', '\u{7}', '\t', '\n', '\u{1b}', '\u{7f}', '\u{85}', '\u{9b}', '\u{ad}', '\u{200b}',
    '\u{200e}', '\u{202e}', '\u{2060}', '\u{2066}', '\u{feff}', '\u{2028}',
];

#[test]
fn values_are_free_of_control_and_invisible_characters() {
    let pass_through = "WORKSPACE_SYNC_DATA_ENABLED";
    let entries = [
        (WORKFLOWS_TEMP, TEMP_V),
        (BILLING_PROJECT, BILLING_V),
        (SA_EMAIL, EMAIL_V),
        (OWNER_ID, OWNER_V),
        (GKE_PROJECT, "acme-gke-prod"),
        (pass_through, "true"),
    ];
    for (key, valid) in entries {
        for c in FORBIDDEN {
            // Inside the value, at character 3.
            let value: String = valid[..2]
                .chars()
                .chain([c])
                .chain(valid[2..].chars())
                .collect();
            let p = problems(&with(key, &value));
            assert!(
                matches!(
                    &p[..],
                    [ConfigProblem::ForbiddenCharacter { key: k, character, position: 3, .. }]
                        if k == key && *character == c
                ),
                "{key} {c:?}: {p:?}"
            );
            let text = p[0].to_string();
            assert!(text.starts_with(key), "{text}");
            assert!(
                text.contains(&format!("U+{:04X} at character 3", u32::from(c))),
                "{text}"
            );
            assert!(text.contains("e.g. "), "{text}");
            assert!(!text.contains(c), "{text:?}");
        }
    }
    // The owner id, however it is written.
    for v in [
        "auth0|\u{200b}abc",
        "\u{feff}auth0|abc",
        "auth0|abc\u{202e}",
        "auth0|abc\tdef",
    ] {
        assert!(
            matches!(
                &problems(&with(OWNER_ID, v))[..],
                [ConfigProblem::ForbiddenCharacter { .. }]
            ),
            "{v:?}"
        );
    }
    // Surrounding whitespace is still named as such (trimming fixes it).
    assert_eq!(
        problems(&with(SA_EMAIL, &format!("{EMAIL_V}\n"))),
        vec![invalid(
            SA_EMAIL,
            &format!("{EMAIL_V}\n"),
            Rule::NoSurroundingWhitespace
        )]
    );
    // Visible non-ASCII and spaces in pass-through values are fine.
    for v in ["été", " true ", "a\u{a0}b", "日本"] {
        let c = WorkloadIdentityConfig::from_data(&with(pass_through, v), &allowed()).unwrap();
        assert_eq!(c.env_value(pass_through), Some(v));
    }
}

#[test]
fn did_you_mean_skips_absurd_keys_and_is_bounded() {
    // A typo of a known key, but over 64 characters: no suggestion.
    let long = format!("{GKE_PROJECT}_{}", "X".repeat(60));
    assert_eq!(suggest(&long), None);
    let huge = "G".repeat(2_000_000);
    assert!(matches!(
        &problems(&with(&huge, "x"))[..],
        [
            ConfigProblem::DataTooLarge { .. },
            ConfigProblem::UnknownKey {
                suggestion: None,
                ..
            }
        ]
    ));
    // Many unknown keys: suggestions for the first 20 only.
    let mut d = acme_data();
    for i in 0..1000 {
        d.insert(format!("GKE_CLUSTER_PROJEC{i:04}"), "x".into());
    }
    let mut p = problems(&d);
    // 23 KB of keys: past the data cap too.
    assert!(matches!(p.remove(0), ConfigProblem::DataTooLarge { .. }));
    assert_eq!(p.len(), 1000);
    let suggested = p
        .iter()
        .filter(|p| {
            matches!(
                p,
                ConfigProblem::UnknownKey {
                    suggestion: Some(_),
                    ..
                }
            )
        })
        .count();
    assert_eq!(suggested, 20);
}

const CM_A: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: carto-workload-identity\ndata:\n  GKE_CLUSTER_PROJECT: acme-gke-prod\n";

#[test]
fn two_config_maps_of_that_name_in_one_file_are_an_error() {
    let name = "carto-workload-identity";
    let other = CM_A.replace(name, "something-else");
    let two = format!("{CM_A}---\n{other}---\n{CM_A}");
    let e = load_config_map(&two, name, &allowed()).unwrap_err();
    assert!(
        e.contains("2 ConfigMaps named \"carto-workload-identity\""),
        "{e}"
    );
    assert!(
        e.contains("the document at line 1 and the document at line 15"),
        "{e}"
    );
    // Inside a kubectl List.
    let item: String = CM_A.lines().map(|l| format!("  {l}\n")).collect();
    let list = format!(
        "apiVersion: v1\nkind: List\nitems:\n-{}-{}",
        &item[1..],
        &item[1..]
    );
    let e = load_config_map(&list, name, &allowed()).unwrap_err();
    assert!(
        e.contains("item 1 of the List at line 1 and item 2 of the List at line 1"),
        "{e}"
    );
    // A List and a document.
    let e = load_config_map(&format!("{list}---\n{CM_A}"), name, &allowed()).unwrap_err();
    assert!(e.contains("3 ConfigMaps named"), "{e}");
    // One of that name among others is still picked; one alone is taken whatever its name.
    let picked = load_config_map(&format!("{other}---\n{CM_A}"), name, &allowed()).unwrap();
    assert_eq!(picked.name.as_deref(), Some(name));
    assert_eq!(
        load_config_map(&other, name, &allowed())
            .unwrap()
            .name
            .as_deref(),
        Some("something-else")
    );
}

#[test]
fn yaml_limit_errors_say_which_limit_and_which_line() {
    let deep = format!("{CM_A}  X: {}1{}\n", "[".repeat(100), "]".repeat(100));
    let e = load_config_map(
        &format!("a: 1\n---\n{deep}"),
        "carto-workload-identity",
        &allowed(),
    )
    .unwrap_err();
    assert!(e.contains("nested deeper than 64 levels"), "{e}");
    assert!(e.contains("at line 9,"), "{e}");
    assert!(!e.contains("budget"), "{e}");
    let nodes = format!("{CM_A}  X: [{}]\n", "1,".repeat(300_000));
    let e = load_config_map(&nodes, "carto-workload-identity", &allowed()).unwrap_err();
    assert!(e.contains("more than 250,000 YAML nodes"), "{e}");
    assert!(e.contains("at line 7,"), "{e}");
    assert!(e.len() < 300, "{e}");
}
