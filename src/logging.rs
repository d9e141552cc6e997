//! Logging on standard error, as JSON lines or text, written by a dedicated thread.

use clap::Args;

/// Logging.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Logging")]
pub struct LogArgs {
    /// Log line format (on standard error).
    #[arg(
        long,
        env = "CARTO_WI_LOG_FORMAT",
        default_value = "json",
        value_name = "json|text"
    )]
    pub log_format: LogFormat,

    /// Log filter, RUST_LOG syntax: a level (error, warn, info, debug, trace) or directives such
    /// as `info,carto_wi_webhook=debug`.
    #[arg(
        long,
        env = "CARTO_WI_LOG_LEVEL",
        default_value = "info",
        value_name = "FILTER"
    )]
    pub log_level: String,
}

/// Log line format.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable text.
    Text,
}

/// The log filter does not parse.
#[derive(Debug, thiserror::Error)]
#[error("--log-level {value:?}: {message}")]
pub struct LogFilterError {
    /// The filter given.
    pub value: String,
    /// Why.
    pub message: String,
}

/// Set up logging; the guard flushes it when dropped (`None` when a subscriber was already
/// installed, e.g. by a test harness: that one is kept).
pub fn init(
    args: &LogArgs,
) -> Result<Option<tracing_appender::non_blocking::WorkerGuard>, LogFilterError> {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(&args.log_level).map_err(|e| LogFilterError {
        value: args.log_level.clone(),
        message: e.to_string(),
    })?;
    // Lines are written by a dedicated thread, so a request's log line never costs its worker a
    // write(2). Not lossy: when the buffer is full the caller waits rather than drop audit lines.
    // The queue is bounded at 4,096 lines (the default 128,000 preallocates ~4 MiB).
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(4096)
        .lossy(false)
        .thread_name("carto-wi-log")
        .finish(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let installed = match args.log_format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    Ok(installed.is_ok().then_some(guard))
}
