//! Logging on standard error, as JSON lines ([`JsonLayer`]) or text (tracing-subscriber's fmt
//! layer), written by a dedicated thread ([`BackgroundWriter`]).
//!
//! What a client controls stays small and on one line: request fields are cut ([`clip`]), the
//! text format escapes control characters, and the per-connection warnings of rustls (illegal
//! SNI, alerts) and h2 (rapid resets) are kept below `error` unless the filter names them.

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::io::IsTerminal;

use clap::Args;
use tracing::field::Field;
use tracing_subscriber::fmt::format::Writer;

mod json;
mod writer;

pub use json::JsonLayer;
pub use writer::{BackgroundWriter, LineSink, LogGuard, MAX_PENDING_BYTES};

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
pub fn init(args: &LogArgs) -> Result<Option<LogGuard>, LogFilterError> {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::{EnvFilter, Registry};
    let filter =
        EnvFilter::try_new(filter_directives(&args.log_level)).map_err(|e| LogFilterError {
            value: args.log_level.clone(),
            message: e.to_string(),
        })?;
    // Lines are written by a dedicated thread, so a request's log line never costs its worker a
    // write(2). Not lossy: when the writer falls behind the caller waits rather than drop audit
    // lines.
    let (writer, guard) = BackgroundWriter::spawn(std::io::stderr(), "carto-wi-log")
        .expect("cannot start the log writer thread");
    let installed = match args.log_format {
        LogFormat::Json => Registry::default()
            .with(JsonLayer::new(writer))
            .with(filter)
            .try_init(),
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(writer)
            .with_ansi(std::io::stderr().is_terminal())
            .fmt_fields(escaped_fields())
            .finish()
            .try_init(),
    };
    Ok(installed.is_ok().then_some(guard))
}

/// Libraries that log one line at `warn` per connection for what a client sends (rustls: illegal
/// or IP-literal SNI, alerts; h2: too many resets). Those failures are counted in metrics.
const CLIENT_NOISE: [&str; 2] = ["rustls", "h2"];

/// The user's filter, with [`CLIENT_NOISE`] at `error` unless the filter names those targets.
fn filter_directives(user: &str) -> String {
    let mut directives = user.trim().to_owned();
    for target in CLIENT_NOISE {
        let named = user
            .split(',')
            .any(|d| d.trim().split(['=', '[']).next() == Some(target));
        if !named {
            if !directives.is_empty() {
                directives.push(',');
            }
            directives.push_str(target);
            directives.push_str("=error");
        }
    }
    directives
}

/// Longest logged request field (uid, name, namespace, kind), in chars: a Kubernetes name's limit.
pub const MAX_FIELD_CHARS: usize = 253;

/// `s` cut to `max` chars, with `…` appended when cut.
pub fn clip(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    match s.char_indices().nth(max) {
        Some((end, _)) => Cow::Owned(format!("{}…", &s[..end])),
        None => Cow::Borrowed(s),
    }
}

/// Text-format fields as `name=value`, control characters escaped (`\n`, `\u{1b}`), so that
/// one event is one line and carries no terminal escape.
fn escaped_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + 'static {
    use tracing_subscriber::field::MakeExt;
    tracing_subscriber::fmt::format::debug_fn(
        |w: &mut Writer<'_>, field: &Field, value: &dyn fmt::Debug| {
            let mut out = EscapeControl(w);
            match field.name() {
                "message" => write!(out, "{value:?}"),
                name => write!(out, "{name}={value:?}"),
            }
        },
    )
    .delimited(" ")
}

/// Writes through, with control characters escaped.
struct EscapeControl<'a, 'w>(&'a mut Writer<'w>);

impl fmt::Write for EscapeControl<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s;
        while let Some(i) = rest.find(char::is_control) {
            self.0.write_str(&rest[..i])?;
            let c = rest[i..].chars().next().unwrap_or_default();
            write!(self.0, "{}", c.escape_debug())?;
            rest = &rest[i + c.len_utf8()..];
        }
        self.0.write_str(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_noise_is_kept_below_error_unless_named() {
        assert_eq!(filter_directives("info"), "info,rustls=error,h2=error");
        assert_eq!(filter_directives(""), "rustls=error,h2=error");
        assert_eq!(
            filter_directives("debug,rustls=debug"),
            "debug,rustls=debug,h2=error"
        );
        assert_eq!(
            filter_directives("h2[conn]=trace,rustls"),
            "h2[conn]=trace,rustls"
        );
        // A target that merely starts like one of them is not one of them.
        assert_eq!(
            filter_directives("h2o=info"),
            "h2o=info,rustls=error,h2=error"
        );
    }

    #[test]
    fn clip_cuts_on_char_boundaries() {
        assert_eq!(clip("short", 253), "short");
        assert_eq!(clip(&"é".repeat(10), 4), "éééé…");
        assert_eq!(clip(&"a".repeat(300), 253).chars().count(), 254);
        assert_eq!(clip(&"é".repeat(200), 253), "é".repeat(200));
    }

    #[test]
    fn control_characters_are_escaped() {
        let mut out = String::new();
        {
            let mut writer = Writer::new(&mut out);
            write!(EscapeControl(&mut writer), "a\nb\x1b[31mc\td").unwrap();
        }
        assert_eq!(out, "a\\nb\\u{1b}[31mc\\td");
    }
}
