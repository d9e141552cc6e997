//! The HTTPS admission server (placeholder until the server lands).

pub mod certs;

/// Flags of `serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub policy: crate::cli::PolicyArgs,
}

/// Run the server (placeholder).
pub fn run(_args: ServeArgs) -> anyhow::Result<()> {
    anyhow::bail!("serve is not built yet")
}
