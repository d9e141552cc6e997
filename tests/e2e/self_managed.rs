//! `--certs self` against the real API server: the component runs in-process, as replicas
//! authenticated as a ServiceAccount bound only to the RBAC its module documents.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use carto_wi_webhook::cluster::certs::{SelfManaged, SelfManagedArgs};
use carto_wi_webhook::pki::CertificateAuthority;
use carto_wi_webhook::pki::{CertResolver, PairSource, certified_key, provider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use super::cluster::ControlPlane;
use super::kube::{get, text};
use super::process::wait_for;

const NS: &str = "e2e-self-managed";
const CONFIG: &str = "e2e-self-managed";
const SECRET: &str = "e2e-self-managed-tls";

/// A configuration of `kind` with two webhooks, called for nothing (no namespace has the
/// label).
fn configuration(kind: &str) -> String {
    let hook = |name: &str| {
        serde_json::json!({
            "name": name,
            "clientConfig": {"url": "https://127.0.0.1:1/never"},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["configmaps"]}],
            "namespaceSelector": {"matchLabels": {"e2e.carto.com/never": "true"}},
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
        })
    };
    serde_json::json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": kind,
        "metadata": {"name": CONFIG},
        "webhooks": [hook("one.e2e.carto.com"), hook("two.e2e.carto.com")],
    })
    .to_string()
}

/// The RBAC of the module documentation, nothing more, for ServiceAccount `e2e-certs` of `ns`
/// (with `create` on Secrets or not).
fn rbac(ns: &str, create: bool) -> String {
    let mut secret_rules = vec![serde_json::json!(
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [SECRET],
         "verbs": ["get", "list", "watch", "update"]})];
    if create {
        secret_rules.push(
            serde_json::json!({"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]}),
        );
    }
    let subjects =
        serde_json::json!([{"kind": "ServiceAccount", "name": "e2e-certs", "namespace": ns}]);
    let items = serde_json::json!([
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "e2e-certs", "namespace": ns}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": "e2e-certs", "namespace": ns}, "rules": secret_rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "e2e-certs", "namespace": ns},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "e2e-certs"},
         "subjects": subjects},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": ns},
         "rules": [{"apiGroups": ["admissionregistration.k8s.io"],
                    "resources": ["mutatingwebhookconfigurations", "validatingwebhookconfigurations"],
                    "resourceNames": [CONFIG], "verbs": ["get", "patch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": ns},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": ns},
         "subjects": subjects},
    ]);
    serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string()
}

/// A client authenticated as ServiceAccount `e2e-certs` (a token from `kubectl create token`).
async fn service_account_client(cp: &ControlPlane, ns: &str) -> ::kube::Client {
    let out = cp.kubectl(
        &["create", "token", "e2e-certs", "-n", ns, "--duration=1h"],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    let token = String::from_utf8(out.stdout).unwrap();
    let admin = ::kube::config::Kubeconfig::read_from(&cp.kubeconfig).unwrap();
    let cluster = admin.clusters[0].cluster.clone().unwrap();
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: sa\n  user:\n    token: {}\ncontexts:\n- name: sa\n  context: {{cluster: e2e, user: sa}}\ncurrent-context: sa\n",
        cluster.server.unwrap(),
        cluster.certificate_authority.unwrap(),
        token.trim()
    );
    let path = cp.dir.join(format!("{ns}.kubeconfig"));
    std::fs::write(&path, kubeconfig).unwrap();
    let kubeconfig = ::kube::config::Kubeconfig::read_from(&path).unwrap();
    let config = ::kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    ::kube::Client::try_from(config).unwrap()
}

fn args(ca_validity_h: u64, ca_renew_before_h: u64) -> SelfManagedArgs {
    SelfManagedArgs {
        service: "e2e-webhook".into(),
        cert_secret: SECRET.into(),
        webhook_configs: vec![CONFIG.into()],
        cert_extra_names: vec!["localhost".into(), "127.0.0.1".into()],
        ca_validity: Duration::from_secs(ca_validity_h * 3600),
        ca_renew_before: Duration::from_secs(ca_renew_before_h * 3600),
        cert_validity: Duration::from_secs(8760 * 3600),
        cert_renew_before: Duration::from_secs(2160 * 3600),
    }
}

/// A resolver serving a throwaway pair until the Secret's is stored.
fn placeholder() -> Arc<CertResolver> {
    let ca = CertificateAuthority::new("placeholder", 1).unwrap();
    let leaf = ca.issue_server(&["placeholder".into()], 1).unwrap();
    let src = PairSource {
        cert: "placeholder".into(),
        key: "placeholder".into(),
    };
    let ck = certified_key(
        leaf.cert_pem.as_bytes(),
        leaf.key_pem.as_bytes(),
        &src,
        &provider(),
    )
    .unwrap();
    Arc::new(CertResolver::new(ck))
}

fn pems(bytes: &[u8]) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<_, _>>()
        .unwrap()
}

fn secret_field(cp: &ControlPlane, key: &str) -> Vec<u8> {
    secret_field_in(cp, NS, key)
}

fn secret_field_in(cp: &ControlPlane, ns: &str, key: &str) -> Vec<u8> {
    let s = get(cp, ns, "secret", SECRET);
    let b64 = s["data"][key].as_str().unwrap_or_default();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

const BOTH: &[&str] = &[
    "mutatingwebhookconfiguration",
    "validatingwebhookconfiguration",
];

/// The certificates of every webhook's caBundle, in the configurations of these kinds.
fn webhook_bundles(cp: &ControlPlane, kinds: &[&str]) -> Vec<Vec<CertificateDer<'static>>> {
    let mut all = Vec::new();
    for kind in kinds {
        let c = get(cp, "", kind, CONFIG);
        for w in c["webhooks"].as_array().unwrap() {
            let b64 = w["clientConfig"]["caBundle"].as_str().unwrap_or_default();
            let pem = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap();
            all.push(pems(&pem));
        }
    }
    all
}

fn same_set(a: &[CertificateDer<'_>], b: &[CertificateDer<'_>]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.contains(x))
}

/// Serve `resolver` over TLS and connect trusting only `bundle`, for `localhost`.
async fn handshake(
    resolver: Arc<CertResolver>,
    bundle: &[CertificateDer<'static>],
) -> Result<(), String> {
    let server = carto_wi_webhook::server::tls::server_config(provider(), resolver, None)
        .map_err(|e| e.to_string())?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serve = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        acceptor.accept(tcp).await.map(drop)
    });
    let mut roots = rustls::RootCertStore::empty();
    for c in bundle {
        roots.add(c.clone()).map_err(|e| e.to_string())?;
    }
    let client = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let result = connector.connect(name, tcp).await.map(drop);
    let served = serve.await.unwrap();
    result.map_err(|e| format!("client: {e}"))?;
    served.map_err(|e| format!("server: {e}"))
}

fn served(resolver: &CertResolver) -> CertificateDer<'static> {
    resolver.current().cert[0].clone()
}

pub fn self_managed_certificates(cp: &ControlPlane) {
    // The component's log lines, kept with the run's other logs.
    let log = std::fs::File::create(cp.dir.join("self-managed.log")).unwrap();
    let _ = tracing_subscriber::fmt()
        .with_writer(std::sync::Mutex::new(log))
        .with_ansi(false)
        .with_env_filter("carto_wi_webhook=debug")
        .try_init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let out = cp.kubectl(&["create", "namespace", NS], None);
    assert!(out.status.success(), "{}", text(&out));
    // The validating configuration comes later (as a chart may create it after the pod).
    let apply = |kind| {
        let out = cp.kubectl(&["apply", "-f", "-"], Some(&configuration(kind)));
        assert!(out.status.success(), "{}", text(&out));
    };
    apply("MutatingWebhookConfiguration");

    let out = cp.kubectl(&["apply", "-f", "-"], Some(&rbac(NS, true)));
    assert!(out.status.success(), "{}", text(&out));
    let client = rt.block_on(service_account_client(cp, NS));

    // Two replicas start at once: one Secret, both serve its certificate, trusted by every
    // webhook. (A replica that lost the race after writing its CA into the webhooks leaves that
    // CA in the bundle until it expires: at most one more.)
    let (r1, r2) = (placeholder(), placeholder());
    let usual = args(43800, 8760);
    let (a, b) = rt.block_on(async {
        tokio::join!(
            SelfManaged::start(client.clone(), NS, &usual, r1.clone()),
            SelfManaged::start(client.clone(), NS, &usual, r2.clone()),
        )
    });
    let (a, b) = (a.expect("replica 1"), b.expect("replica 2"));
    let ca1 = pems(&secret_field(cp, "ca.crt"));
    assert!(matches!(ca1.len(), 1 | 2), "{} CAs", ca1.len());
    let leaf1 = pems(&secret_field(cp, "tls.crt"));
    assert_eq!(served(&r1), leaf1[0]);
    assert_eq!(served(&r2), leaf1[0]);
    for bundle in webhook_bundles(cp, &["mutatingwebhookconfiguration"]) {
        assert!(
            same_set(&bundle, &ca1),
            "every webhook trusts the Secret's CA"
        );
    }
    apply("ValidatingWebhookConfiguration");
    wait_for(
        "the configuration created later trusts the CA",
        Duration::from_secs(60),
        || {
            webhook_bundles(cp, BOTH)
                .iter()
                .all(|h| same_set(h, &ca1))
                .then_some(())
        },
    );
    rt.block_on(handshake(r1.clone(), &ca1))
        .expect("the served certificate chains to the caBundle");
    assert!(a.status().ca_not_after().is_some() && a.status().serving_not_after().is_some());
    let first_ca_end = a.status().ca_not_after().unwrap();

    // A replica with a CA validity the current CA cannot meet rotates it: both CAs trusted,
    // the new certificate from the new CA, served by every replica.
    let c = rt
        .block_on(SelfManaged::start(
            client.clone(),
            NS,
            &args(2 * 43800, 43800 + 24),
            placeholder(),
        ))
        .expect("replica 3");
    let bundle = pems(&secret_field(cp, "ca.crt"));
    assert_eq!(bundle.len(), ca1.len() + 1, "the old CAs and the new one");
    assert!(ca1.iter().all(|c| bundle.contains(c)));
    for hooks in webhook_bundles(cp, BOTH) {
        assert!(same_set(&hooks, &bundle), "every webhook trusts both CAs");
    }
    let leaf2 = pems(&secret_field(cp, "tls.crt"));
    assert_ne!(leaf2[0], leaf1[0]);
    let new_ca: Vec<_> = bundle
        .iter()
        .filter(|c| !ca1.contains(c))
        .cloned()
        .collect();
    rt.block_on(handshake(Arc::new(served_resolver(&leaf2, cp)), &new_ca))
        .expect("the new certificate is from the new CA");
    for r in [&r1, &r2] {
        wait_for(
            "replicas serve the rotated certificate",
            Duration::from_secs(30),
            || (served(r) == leaf2[0]).then_some(()),
        );
    }
    rt.block_on(handshake(r2.clone(), &webhook_bundles(cp, BOTH)[0]))
        .expect("a replica's certificate is trusted by the caBundle after rotation");
    assert!(c.status().ca_not_after().unwrap() > first_ca_end);
    // Replicas with other validities would rotate each other's CAs: only the first two go on.
    drop(c);

    // The Secret deleted: regenerated, and the CAs the webhooks trusted stay trusted.
    let out = cp.kubectl(&["delete", "secret", "-n", NS, SECRET], None);
    assert!(out.status.success(), "{}", text(&out));
    let regenerated = wait_for("the Secret regenerated", Duration::from_secs(60), || {
        let out = cp.kubectl(&["get", "secret", "-n", NS, SECRET, "-o", "name"], None);
        out.status
            .success()
            .then(|| pems(&secret_field(cp, "ca.crt")))
    });
    assert!(
        regenerated.len() > bundle.len(),
        "a new CA plus the ones still valid"
    );
    assert!(bundle.iter().all(|c| regenerated.contains(c)));
    let leaf3 = pems(&secret_field(cp, "tls.crt"));
    wait_for(
        "replicas serve the regenerated certificate",
        Duration::from_secs(30),
        || {
            [&r1, &r2]
                .iter()
                .all(|r| served(r) == leaf3[0])
                .then_some(())
        },
    );
    wait_for(
        "webhooks trust the regenerated CA",
        Duration::from_secs(30),
        || {
            webhook_bundles(cp, BOTH)
                .iter()
                .all(|h| same_set(h, &regenerated))
                .then_some(())
        },
    );
    rt.block_on(handshake(r1.clone(), &webhook_bundles(cp, BOTH)[1]))
        .expect("trusted after regeneration");
    drop((a, b));

    chart_created_secret(cp, &rt, &regenerated);

    for ns in [NS, PRE] {
        let _ = cp.kubectl(&["delete", "namespace", ns, "--wait=false"], None);
        let _ = cp.kubectl(&["delete", "clusterrole,clusterrolebinding", ns], None);
    }
    let _ = cp.kubectl(
        &[
            "delete",
            "mutatingwebhookconfiguration,validatingwebhookconfiguration",
            CONFIG,
        ],
        None,
    );
}

const PRE: &str = "e2e-self-managed-pre";

/// The chart created the Secret empty: no `create` on Secrets is granted, and the Secret is
/// filled by an update that keeps its type. The CAs the webhooks trusted stay trusted.
fn chart_created_secret(
    cp: &ControlPlane,
    rt: &tokio::runtime::Runtime,
    trusted: &[CertificateDer<'static>],
) {
    let out = cp.kubectl(&["create", "namespace", PRE], None);
    assert!(out.status.success(), "{}", text(&out));
    let out = cp.kubectl(&["apply", "-f", "-"], Some(&rbac(PRE, false)));
    assert!(out.status.success(), "{}", text(&out));
    let out = cp.kubectl(&["create", "secret", "generic", SECRET, "-n", PRE], None);
    assert!(out.status.success(), "{}", text(&out));
    let client = rt.block_on(service_account_client(cp, PRE));
    let resolver = placeholder();
    let usual = args(43800, 8760);
    let it = rt
        .block_on(SelfManaged::start(client, PRE, &usual, resolver.clone()))
        .expect("starts without create on Secrets");
    assert_eq!(get(cp, PRE, "secret", SECRET)["type"], "Opaque");
    let bundle = pems(&secret_field_in(cp, PRE, "ca.crt"));
    assert_eq!(bundle.len(), trusted.len() + 1);
    assert!(trusted.iter().all(|c| bundle.contains(c)));
    assert_eq!(
        served(&resolver),
        pems(&secret_field_in(cp, PRE, "tls.crt"))[0]
    );
    for hooks in webhook_bundles(cp, BOTH) {
        assert!(same_set(&hooks, &bundle));
    }
    rt.block_on(handshake(resolver, &webhook_bundles(cp, BOTH)[0]))
        .expect("trusted by the caBundle");
    drop(it);
}

/// A resolver serving the Secret's current pair (to check it chains to the new CA alone).
fn served_resolver(leaf: &[CertificateDer<'static>], cp: &ControlPlane) -> CertResolver {
    let key = secret_field(cp, "tls.key");
    let cert: String = leaf
        .iter()
        .map(|c| {
            let b64 = base64::engine::general_purpose::STANDARD.encode(c);
            format!("-----BEGIN CERTIFICATE-----\n{b64}\n-----END CERTIFICATE-----\n")
        })
        .collect();
    let src = PairSource {
        cert: "Secret".into(),
        key: "Secret".into(),
    };
    CertResolver::new(certified_key(cert.as_bytes(), &key, &src, &provider()).unwrap())
}
