//! The flags of `--certs self` and the policy they make.

use std::net::IpAddr;
use std::time::Duration;

use super::SelfManagedError;
use crate::duration::parse_interval;
use crate::pki::plan::Policy;
use crate::pki::service_names;

/// Flags of `--certs self`.
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "Self-managed certificates")]
pub struct SelfManagedArgs {
    /// Name of the webhook's Service: the serving certificate is for NAME, NAME.NS, NAME.NS.svc
    /// and NAME.NS.svc.cluster.local.
    #[arg(long, env = "CARTO_WI_SERVICE", default_value = "carto-wi-webhook", value_name = "NAME", value_parser = object_name)]
    pub service: String,

    /// Secret (in the webhook's namespace) holding the CA and the serving certificate.
    #[arg(long, env = "CARTO_WI_CERT_SECRET", default_value = "carto-wi-webhook-tls", value_name = "NAME", value_parser = object_name)]
    pub cert_secret: String,

    /// MutatingWebhookConfiguration and ValidatingWebhookConfiguration names whose caBundle is
    /// kept current (each name: both kinds, whichever exist).
    #[arg(long, env = "CARTO_WI_WEBHOOK_CONFIGS", default_value = "carto-wi-webhook", value_delimiter = ',', value_name = "A,B", value_parser = object_name)]
    pub webhook_configs: Vec<String>,

    /// More DNS names or IP addresses for the serving certificate (e.g. localhost,127.0.0.1 to
    /// run outside the cluster).
    #[arg(long, env = "CARTO_WI_CERT_EXTRA_NAMES", value_delimiter = ',', value_name = "A,B", value_parser = extra_name)]
    pub cert_extra_names: Vec<String>,

    /// Validity of a new CA (e.g. 43800h: 5 years).
    #[arg(long, env = "CARTO_WI_CA_VALIDITY", default_value = "43800h", value_name = "DURATION", value_parser = parse_interval)]
    pub ca_validity: Duration,

    /// Make a new CA when the current one has less than this left (e.g. 8760h: 1 year).
    #[arg(long, env = "CARTO_WI_CA_RENEW_BEFORE", default_value = "8760h", value_name = "DURATION", value_parser = parse_interval)]
    pub ca_renew_before: Duration,

    /// Validity of a new serving certificate (e.g. 8760h: 1 year).
    #[arg(long, env = "CARTO_WI_CERT_VALIDITY", default_value = "8760h", value_name = "DURATION", value_parser = parse_interval)]
    pub cert_validity: Duration,

    /// Reissue the serving certificate when it has less than this left (e.g. 2160h: 90 days).
    #[arg(long, env = "CARTO_WI_CERT_RENEW_BEFORE", default_value = "2160h", value_name = "DURATION", value_parser = parse_interval)]
    pub cert_renew_before: Duration,
}

impl SelfManagedArgs {
    /// The validities in seconds; each renewal margin must be shorter than its validity (else
    /// every new certificate would be due at once).
    pub fn policy(&self) -> Result<Policy, SelfManagedError> {
        let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        let check = |validity: Duration, renew: Duration, flag: &'static str| {
            if renew >= validity {
                Err(SelfManagedError::Args {
                    flag,
                    message: format!(
                        "{}s must be shorter than the validity ({}s)",
                        renew.as_secs(),
                        validity.as_secs()
                    ),
                })
            } else {
                Ok(())
            }
        };
        check(self.ca_validity, self.ca_renew_before, "--ca-renew-before")?;
        check(
            self.cert_validity,
            self.cert_renew_before,
            "--cert-renew-before",
        )?;
        Ok(Policy {
            ca_validity: secs(self.ca_validity),
            ca_renew_before: secs(self.ca_renew_before),
            leaf_validity: secs(self.cert_validity),
            leaf_renew_before: secs(self.cert_renew_before),
        })
    }

    /// Every name of the serving certificate, in the webhook's namespace.
    pub fn names(&self, namespace: &str) -> Vec<String> {
        let mut names = service_names(&self.service, namespace, false);
        for extra in &self.cert_extra_names {
            if !names.contains(extra) {
                names.push(extra.clone());
            }
        }
        names
    }
}

/// A Kubernetes object name (RFC 1123 subdomain).
fn object_name(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 253
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric();
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} is not a Kubernetes object name (lowercase letters, digits, '-' and '.')"
        ))
    }
}

/// A DNS name or an IP address for the certificate.
fn extra_name(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.parse::<IpAddr>().is_ok() {
        return Ok(s.to_owned());
    }
    match rustls::pki_types::DnsName::try_from(s) {
        Ok(_) if !s.is_empty() => Ok(s.to_ascii_lowercase()),
        _ => Err(format!("{s:?} is neither a DNS name nor an IP address")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: SelfManagedArgs,
    }

    fn parse(argv: &[&str]) -> Result<SelfManagedArgs, clap::Error> {
        Cli::try_parse_from([&["test"], argv].concat()).map(|c| c.args)
    }

    #[test]
    fn defaults_match_the_product() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.service, "carto-wi-webhook");
        assert_eq!(a.cert_secret, "carto-wi-webhook-tls");
        assert_eq!(a.webhook_configs, ["carto-wi-webhook"]);
        let p = a.policy().unwrap();
        const DAY: i64 = 86_400;
        assert_eq!(
            (
                p.ca_validity,
                p.ca_renew_before,
                p.leaf_validity,
                p.leaf_renew_before
            ),
            (5 * 365 * DAY, 365 * DAY, 365 * DAY, 90 * DAY)
        );
        assert_eq!(
            a.names("ns"),
            [
                "carto-wi-webhook.ns.svc",
                "carto-wi-webhook",
                "carto-wi-webhook.ns",
                "carto-wi-webhook.ns.svc.cluster.local"
            ]
        );
    }

    #[test]
    fn extra_names_and_lists() {
        let a = parse(&[
            "--cert-extra-names",
            "localhost,127.0.0.1,::1",
            "--webhook-configs",
            "a,b",
        ])
        .unwrap();
        assert_eq!(a.webhook_configs, ["a", "b"]);
        assert_eq!(&a.names("ns")[4..], ["localhost", "127.0.0.1", "::1"]);
        assert!(parse(&["--cert-extra-names", "not a name"]).is_err());
        assert!(parse(&["--cert-secret", "Bad_Name"]).is_err());
        assert!(parse(&["--ca-validity", "0s"]).is_err());
    }

    #[test]
    fn renewal_must_come_before_the_end() {
        let a = parse(&["--cert-validity", "24h", "--cert-renew-before", "24h"]).unwrap();
        let e = a.policy().unwrap_err().to_string();
        assert!(e.starts_with("--cert-renew-before:"), "{e}");
        let a = parse(&["--ca-validity", "1h", "--ca-renew-before", "2h"]).unwrap();
        assert!(
            a.policy()
                .unwrap_err()
                .to_string()
                .starts_with("--ca-renew-before:")
        );
    }
}
