//! The `carto-wi-webhook` binary: parse flags, install the TLS crypto provider, dispatch.

#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};

use carto_wi_webhook::cli::{CheckArgs, Cli, Command, ReviewArgs};
use carto_wi_webhook::cluster::inspect;
use carto_wi_webhook::config::{self, ConfigEntry, MAX_CONFIG_FILE_BYTES};
use carto_wi_webhook::offline;

fn main() -> ExitCode {
    // One crypto provider for every rustls user in the process, chosen explicitly.
    if rustls::crypto::ring::default_provider()
        .install_default()
        .is_err()
    {
        eprintln!("error: a rustls crypto provider was already installed");
        return ExitCode::from(2);
    }
    let cli = Cli::parse_args();
    let result = match cli.command {
        Command::Check(args) => check(&args),
        Command::Review(args) => review(&args),
        Command::Serve(args) => carto_wi_webhook::app::run(*args).map(|()| ExitCode::SUCCESS),
        Command::Certs(args) => {
            carto_wi_webhook::pki::command::run(&args).map(|()| ExitCode::SUCCESS)
        }
        Command::Plan(args) => plan(&args),
        Command::Status(args) => inspect_report(inspect::run_status(&args)),
        Command::Version => {
            println!("carto-wi-webhook {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The largest manifest stream `review` reads (a `helm template` of CARTO is ~100 KiB).
const MAX_MANIFESTS_BYTES: u64 = 64 * 1024 * 1024;

/// Read a file, or standard input for `-`, refusing more than `max` bytes.
fn read_input(path: &Path, flag: &str, max: u64) -> Result<String> {
    let what = if path == Path::new("-") {
        "standard input".to_owned()
    } else {
        path.display().to_string()
    };
    let reader: Box<dyn Read> = if path == Path::new("-") {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(path).with_context(|| format!("{flag}: cannot read {what}"))?)
    };
    let mut bytes = Vec::new();
    reader
        .take(max + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("{flag}: cannot read {what}"))?;
    if bytes.len() as u64 > max {
        anyhow::bail!("{flag}: {what} is larger than the {max} byte limit");
    }
    String::from_utf8(bytes).with_context(|| format!("{flag}: {what} is not UTF-8 text"))
}

fn check(args: &CheckArgs) -> Result<ExitCode> {
    let allowed = args.extra_env.allowlist();
    let cx = offline::CheckContext {
        namespace: args.namespace.as_deref(),
        service_account: &args.service_account,
        allowed: &allowed,
    };
    let report = match (&args.file, &args.env_file) {
        (Some(f), _) => {
            offline::check_config_map(&read_input(f, "--filename", MAX_CONFIG_FILE_BYTES)?, cx)
        }
        (None, Some(f)) => {
            offline::check_env_file(&read_input(f, "--env-file", MAX_CONFIG_FILE_BYTES)?, cx)
        }
        (None, None) => anyhow::bail!("--filename or --env-file is required"),
    };
    print!("{}", report.text);
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn review(args: &ReviewArgs) -> Result<ExitCode> {
    let settings = args.policy.settings();
    if args.config == Path::new("-") && args.file == Path::new("-") {
        anyhow::bail!("--config and --filename cannot both read standard input");
    }
    let config_text = read_input(&args.config, "--config", MAX_CONFIG_FILE_BYTES)?;
    let loaded = config::load_config_map(&config_text, &settings.config_map, &settings.extra_env)
        .map_err(|e| anyhow::anyhow!("--config {}: {e}", args.config.display()))?;
    if let Err(problems) = &loaded.config {
        let list: Vec<String> = problems.iter().map(|p| format!("- {p}")).collect();
        anyhow::bail!(
            "--config {}: the ConfigMap is invalid ({} problems):\n{}",
            args.config.display(),
            problems.len(),
            list.join("\n")
        );
    }
    let input = read_input(&args.file, "--filename", MAX_MANIFESTS_BYTES)?;
    let report = offline::review_stream(
        &input,
        ConfigEntry::from_result(loaded.config),
        &settings,
        &args.namespace,
        args.output,
    );
    std::io::stdout().write_all(report.stdout.as_bytes())?;
    std::io::stderr().write_all(report.stderr.as_bytes())?;
    eprintln!(
        "reviewed: {} patched, {} denied, {} unreadable",
        report.patched, report.denied, report.errors
    );
    Ok(if report.errors > 0 {
        ExitCode::from(2)
    } else if report.denied > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn plan(args: &inspect::PlanArgs) -> Result<ExitCode> {
    let text = read_input(&args.file, "--filename", MAX_CONFIG_FILE_BYTES)?;
    inspect_report(inspect::run_plan(args, &text))
}

/// Print a `plan` or `status` report; an error is exit 1 (2 means "changes" for `plan`).
fn inspect_report(report: Result<inspect::Report, inspect::Error>) -> Result<ExitCode> {
    match report {
        Ok(r) => {
            std::io::stdout().write_all(r.stdout.as_bytes())?;
            eprintln!("(read the cluster in {} list requests)", r.requests);
            Ok(ExitCode::from(r.code))
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(1))
        }
    }
}
