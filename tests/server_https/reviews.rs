//! AdmissionReviews over HTTPS for every target kind and operation: status, uid echo, the decoded
//! patch and warnings.

use serde_json::{Value, json};

use super::support::*;

fn env_of(deployment: &Value, container: usize) -> Vec<(String, String)> {
    deployment["spec"]["template"]["spec"]["containers"][container]["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| {
            Some((
                e["name"].as_str()?.to_owned(),
                e["value"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutate_deployment_create_injects_and_is_idempotent() {
    let files = Files::new();
    let srv = Running::standalone(&files, &[]).await;
    // The example file, exactly as the README's curl sends it.
    let example: Value = serde_json::from_str(DEPLOYMENT_REVIEW).unwrap();
    let (status, body) = srv.post("/mutate", &example).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(body["kind"], "AdmissionReview");
    assert_eq!(body["response"]["uid"], example["request"]["uid"]);
    assert_eq!(body["response"]["allowed"], true);
    let patch = patch_of(&body).expect("a patch");
    let patched = apply(&deployment(), &patch);
    let env = env_of(&patched, 0);
    for (k, v) in [
        (
            "WORKSPACE_WORKLOAD_IDENTITY_WORKFLOWS_TEMP",
            "acme-analytics.carto_workflows_temp",
        ),
        (
            "WORKSPACE_WORKLOAD_IDENTITY_BILLING_PROJECT",
            "acme-gke-prod",
        ),
        ("WORKSPACE_WORKLOAD_IDENTITY_SERVICE_ACCOUNT_EMAIL", EMAIL),
        (
            "WORKSPACE_WORKLOAD_IDENTITY_CONNECTION_OWNER_ID",
            "auth0|3idsj230990sj4wsddd10",
        ),
    ] {
        assert!(
            env.contains(&(k.to_owned(), v.to_owned())),
            "{k}={v} missing in {env:?}"
        );
    }
    // The chart's own variables are kept.
    assert!(
        patched["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "WORKSPACE_POSTGRES_PASSWORD")
    );
    let hash = &patched["spec"]["template"]["metadata"]["annotations"]["workload-identity.carto.com/config-hash"];
    assert_eq!(hash.as_str().map(str::len), Some(12), "{hash}");
    // Init containers are not injected by default.
    assert!(
        !patched["spec"]["template"]["spec"]["initContainers"][0]["env"]
            .to_string()
            .contains("WORKSPACE_WORKLOAD_IDENTITY")
    );

    // UPDATE of the injected object: nothing more to do.
    let (status, body) = srv
        .post(
            "/mutate",
            &review("u-2", "UPDATE", Some(patched.clone()), Some(deployment())),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["response"]["uid"], "u-2");
    assert_eq!(body["response"]["allowed"], true);
    assert!(patch_of(&body).is_none(), "second pass patches: {body}");

    // DELETE: allowed untouched.
    let (status, body) = srv
        .post("/mutate", &review("u-3", "DELETE", None, Some(patched)))
        .await;
    assert_eq!((status, &body["response"]["allowed"]), (200, &json!(true)));
    assert_eq!(body["response"]["uid"], "u-3");
    assert!(patch_of(&body).is_none());
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutate_service_account_every_operation() {
    let files = Files::new();
    let srv = Running::standalone(&files, &[]).await;

    // CREATE without the annotation: added.
    let sa = service_account(json!({}));
    let (status, body) = srv
        .post("/mutate", &review("sa-1", "CREATE", Some(sa.clone()), None))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["response"]["uid"], "sa-1");
    let patched = apply(&sa, &patch_of(&body).expect("a patch"));
    assert_eq!(
        patched["metadata"]["annotations"]["iam.gke.io/gcp-service-account"],
        EMAIL
    );
    assert!(warnings(&body).is_empty(), "{body}");

    // UPDATE with another account: replaced, with a warning.
    let other = service_account(
        json!({"iam.gke.io/gcp-service-account": "someone@other-project.iam.gserviceaccount.com"}),
    );
    let (status, body) = srv
        .post(
            "/mutate",
            &review("sa-2", "UPDATE", Some(other.clone()), Some(sa.clone())),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["response"]["uid"], "sa-2");
    let patched = apply(&other, &patch_of(&body).expect("a patch"));
    assert_eq!(
        patched["metadata"]["annotations"]["iam.gke.io/gcp-service-account"],
        EMAIL
    );
    let w = warnings(&body);
    assert!(
        w.iter().any(|w| w.contains("someone@other-project")),
        "a warning names the replaced value: {w:?}"
    );

    // DELETE: untouched.
    let (status, body) = srv
        .post("/mutate", &review("sa-3", "DELETE", None, Some(sa)))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["response"]["allowed"], true);
    assert!(patch_of(&body).is_none());

    // Another ServiceAccount: untouched.
    let mut stranger = service_account(json!({}));
    stranger["metadata"]["name"] = json!("default");
    let (_, body) = srv
        .post("/mutate", &review("sa-4", "CREATE", Some(stranger), None))
        .await;
    assert!(patch_of(&body).is_none());
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_map_is_never_mutated_and_validated_on_create_and_update() {
    let files = Files::new();
    let srv = Running::standalone(&files, &[]).await;
    let good = config_map(config_data());
    let mut bad_data = config_data();
    bad_data["WORKSPACE_WORKLOAD_IDENTITY_BILLING_PROJECT"] = json!("Not A Project");
    let bad = config_map(bad_data);

    for (i, op) in ["CREATE", "UPDATE", "DELETE"].iter().enumerate() {
        let (obj, old) = match *op {
            "DELETE" => (None, Some(bad.clone())),
            "UPDATE" => (Some(bad.clone()), Some(good.clone())),
            _ => (Some(bad.clone()), None),
        };
        let uid = format!("cm-m-{i}");
        let (status, body) = srv
            .post("/mutate", &review(&uid, op, obj.clone(), old.clone()))
            .await;
        assert_eq!(status, 200);
        assert_eq!(body["response"]["uid"], uid.as_str());
        assert_eq!(body["response"]["allowed"], true);
        assert!(patch_of(&body).is_none(), "{op}: {body}");

        let uid = format!("cm-v-{i}");
        let (status, body) = srv.post("/validate", &review(&uid, op, obj, old)).await;
        assert_eq!(status, 200);
        assert_eq!(body["response"]["uid"], uid.as_str());
        if *op == "DELETE" {
            assert_eq!(body["response"]["allowed"], true, "{body}");
        } else {
            assert_eq!(body["response"]["allowed"], false, "{op}: {body}");
            assert_eq!(body["response"]["status"]["code"], 403);
            let msg = body["response"]["status"]["message"].as_str().unwrap();
            assert!(
                msg.contains("WORKSPACE_WORKLOAD_IDENTITY_BILLING_PROJECT"),
                "{msg}"
            );
        }
    }
    let (_, body) = srv
        .post("/validate", &review("cm-ok", "CREATE", Some(good), None))
        .await;
    assert_eq!(body["response"]["allowed"], true, "{body}");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_deployment_and_service_account() {
    let files = Files::new();
    let srv = Running::standalone(&files, &[]).await;

    // The Deployment as mutation leaves it: allowed.
    let (_, m) = srv
        .post(
            "/mutate",
            &review("d-0", "CREATE", Some(deployment()), None),
        )
        .await;
    let injected = apply(&deployment(), &patch_of(&m).unwrap());
    let (status, body) = srv
        .post(
            "/validate",
            &review("d-1", "CREATE", Some(injected.clone()), None),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["response"]["uid"], "d-1");
    assert_eq!(body["response"]["allowed"], true, "{body}");

    // Drift on UPDATE: denied, naming the variable.
    let mut drifted = injected.clone();
    for e in drifted["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array_mut()
        .unwrap()
    {
        if e["name"] == "WORKSPACE_WORKLOAD_IDENTITY_BILLING_PROJECT" {
            e["value"] = json!("another-project");
        }
    }
    let (status, body) = srv
        .post(
            "/validate",
            &review("d-2", "UPDATE", Some(drifted), Some(injected.clone())),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["response"]["allowed"], false, "{body}");
    assert_eq!(body["response"]["status"]["code"], 403);
    assert!(
        body["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .contains("WORKSPACE_WORKLOAD_IDENTITY_BILLING_PROJECT")
    );

    // DELETE: allowed.
    let (_, body) = srv
        .post("/validate", &review("d-3", "DELETE", None, Some(injected)))
        .await;
    assert_eq!(body["response"]["allowed"], true);

    // ServiceAccount without the annotation: denied; with it: allowed; DELETE: allowed.
    let (_, body) = srv
        .post(
            "/validate",
            &review("s-1", "CREATE", Some(service_account(json!({}))), None),
        )
        .await;
    assert_eq!(body["response"]["allowed"], false, "{body}");
    assert!(
        body["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .contains("iam.gke.io/gcp-service-account")
    );
    let annotated = service_account(json!({"iam.gke.io/gcp-service-account": EMAIL}));
    let (_, body) = srv
        .post(
            "/validate",
            &review(
                "s-2",
                "UPDATE",
                Some(annotated.clone()),
                Some(annotated.clone()),
            ),
        )
        .await;
    assert_eq!(body["response"]["allowed"], true, "{body}");
    let (_, body) = srv
        .post("/validate", &review("s-3", "DELETE", None, Some(annotated)))
        .await;
    assert_eq!(body["response"]["allowed"], true);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_enforcement_allows_with_audit_annotations() {
    let files = Files::new();
    let srv = Running::standalone(&files, &["--enforcement", "audit"]).await;
    let (status, body) = srv
        .post(
            "/validate",
            &review("a-1", "CREATE", Some(service_account(json!({}))), None),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["response"]["allowed"], true, "{body}");
    assert!(
        body["response"]["auditAnnotations"]
            .as_object()
            .is_some_and(|a| !a.is_empty()),
        "{body}"
    );
    let m = srv.metrics().await;
    assert_eq!(
        sample(
            &m,
            "carto_wi_admission_violations_total{webhook=\"validate\",kind=\"ServiceAccount\",enforcement=\"audit\"}"
        ),
        1
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_and_http2_are_both_served() {
    let files = Files::new();
    let srv = Running::standalone(&files, &[]).await;
    let example: Value = serde_json::from_str(DEPLOYMENT_REVIEW).unwrap();
    for (client, version) in [
        (
            client_builder(&srv.ca_pem).build().unwrap(),
            reqwest::Version::HTTP_2,
        ),
        (
            client_builder(&srv.ca_pem).http1_only().build().unwrap(),
            reqwest::Version::HTTP_11,
        ),
    ] {
        // Several requests on one keep-alive connection.
        for _ in 0..3 {
            let r = client
                .post(srv.url("/mutate"))
                .header("content-type", "application/json")
                .body(DEPLOYMENT_REVIEW)
                .send()
                .await
                .unwrap();
            assert_eq!(r.version(), version);
            assert_eq!(r.status(), 200);
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["response"]["uid"], example["request"]["uid"]);
            assert!(patch_of(&body).is_some());
        }
    }
    srv.stop().await;
}
