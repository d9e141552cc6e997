//! The `certs` command: write a CA and a serving certificate for the webhook Service, print the
//! caBundle.

use std::path::PathBuf;

use base64::Engine;

use super::ca::{CertError, CertificateAuthority, service_names, write_file};
use crate::config::rules::dns_name;

/// Flags of `certs`.
#[derive(clap::Args, Debug, Clone)]
pub struct CertsArgs {
    /// Name of the webhook's Service.
    #[arg(long, env = "CARTO_WI_CERTS_SERVICE", default_value = "carto-wi-webhook", value_name = "NAME", value_parser = dns_name)]
    pub service: String,

    /// Namespace of the webhook's Service.
    #[arg(short = 'n', long, env = "CARTO_WI_CERTS_NAMESPACE", value_name = "NS", value_parser = dns_name)]
    pub namespace: String,

    /// Directory to write ca.crt, ca.key, tls.crt and tls.key into (created if missing).
    #[arg(long, env = "CARTO_WI_CERTS_OUT", value_name = "DIR")]
    pub out: PathBuf,

    /// Also valid for localhost, 127.0.0.1 and ::1 (to run `serve` locally with these files).
    #[arg(long, env = "CARTO_WI_CERTS_LOCALHOST")]
    pub localhost: bool,

    /// Validity of the CA and the serving certificate, in days.
    #[arg(long, env = "CARTO_WI_CERTS_DAYS", default_value_t = 365, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub days: u32,

    /// Do not write ca.key: nothing more can be signed by this CA (a renewal then needs a new
    /// caBundle).
    #[arg(long, env = "CARTO_WI_CERTS_NO_CA_KEY")]
    pub no_ca_key: bool,

    /// Overwrite existing files.
    #[arg(long, env = "CARTO_WI_CERTS_FORCE")]
    pub force: bool,
}

/// What `certs` wrote.
#[derive(Debug, Clone)]
pub struct Written {
    /// Files written, in order.
    pub files: Vec<PathBuf>,
    /// Base64 of the CA certificate PEM: the webhook configuration's `caBundle`.
    pub ca_bundle: String,
    /// The serving certificate's names.
    pub names: Vec<String>,
}

/// Write the CA and the serving certificate that `args` describes.
pub fn write(args: &CertsArgs) -> Result<Written, CertError> {
    let names = service_names(&args.service, &args.namespace, args.localhost);
    let ca = CertificateAuthority::new(
        &format!(
            "carto-wi-webhook CA for {}.{}",
            args.service, args.namespace
        ),
        args.days,
    )?;
    let leaf = ca.issue_server(&names, args.days)?;
    let mut files: Vec<(&str, &str, bool)> = vec![("ca.crt", ca.cert_pem(), false)];
    if !args.no_ca_key {
        files.push(("ca.key", ca.key_pem(), true));
    }
    files.push(("tls.crt", &leaf.cert_pem, false));
    files.push(("tls.key", &leaf.key_pem, true));

    std::fs::create_dir_all(&args.out).map_err(|error| CertError::Write {
        path: args.out.clone(),
        error,
    })?;
    let paths: Vec<PathBuf> = files.iter().map(|(n, _, _)| args.out.join(n)).collect();
    if !args.force
        && let Some(p) = paths.iter().find(|p| p.exists())
    {
        return Err(CertError::Exists { path: p.clone() });
    }
    for ((_, pem, secret), path) in files.iter().zip(&paths) {
        write_file(path, pem.as_bytes(), *secret)?;
    }
    Ok(Written {
        files: paths,
        ca_bundle: base64::engine::general_purpose::STANDARD.encode(ca.cert_pem()),
        names,
    })
}

/// Run `certs`: write the files, print the caBundle on standard output and a summary on standard
/// error.
pub fn run(args: &CertsArgs) -> anyhow::Result<()> {
    let w = write(args)?;
    for f in &w.files {
        eprintln!("wrote {}", f.display());
    }
    eprintln!("serving certificate names: {}", w.names.join(", "));
    eprintln!("caBundle (base64 of ca.crt) for the webhook configuration:");
    println!("{}", w.ca_bundle);
    Ok(())
}
