//! Certificates (placeholder).

/// Flags of `certs`.
#[derive(clap::Args, Debug)]
pub struct CertsArgs {}

/// Run `certs` (placeholder).
pub fn run(_args: &CertsArgs) -> anyhow::Result<()> {
    anyhow::bail!("certs is not built yet")
}
