//! The JSON log format as a layer of its own.
//!
//! The same lines as tracing-subscriber's `fmt().json().flatten_event(true)` without the current
//! span or the span list: `{"timestamp":…,"level":…,<the event's fields in order>,"target":…}`,
//! byte for byte but the timestamp's value. Each line is written into a reused per-thread buffer:
//! fields go straight in, strings escaped as serde_json escapes them, `%`/`?` values escaped as
//! they are formatted. Spans are left to the registry: this format prints none of their fields,
//! so formatting them on creation (what the fmt layer does) is wasted.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serializer as _;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer};

/// Writes each event as one JSON line to `W`.
#[derive(Debug)]
pub struct JsonLayer<W> {
    make_writer: W,
}

impl<W> JsonLayer<W>
where
    W: for<'a> MakeWriter<'a> + 'static,
{
    /// Lines go to the writers `make_writer` makes, one `write_all` per line.
    pub fn new(make_writer: W) -> Self {
        Self { make_writer }
    }
}

impl<S, W> Layer<S> for JsonLayer<W>
where
    S: Subscriber,
    W: for<'a> MakeWriter<'a> + 'static,
{
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        with_line_buffer(|line| {
            write_line(line, event, SystemTime::now());
            // A line that cannot be written has nowhere else to go.
            let _ = self
                .make_writer
                .make_writer_for(event.metadata())
                .write_all(line);
        });
    }
}

/// A line buffer kept per thread, larger than this is given back after use (a rare huge event
/// should not pin its size on every worker thread).
const RETAINED_LINE_BYTES: usize = 16 * 1024;

/// Run `f` with this thread's line buffer, empty; with a fresh one when the buffer is in use (an
/// event while formatting one: tracing drops those today, this does not rely on it) or gone (an
/// event from a thread-local destructor).
fn with_line_buffer(mut f: impl FnMut(&mut Vec<u8>)) {
    thread_local! {
        static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(1024));
    }
    let reused = LINE.try_with(|cell| {
        let Ok(mut line) = cell.try_borrow_mut() else {
            return false;
        };
        line.clear();
        f(&mut line);
        if line.capacity() > RETAINED_LINE_BYTES {
            line.clear();
            line.shrink_to(RETAINED_LINE_BYTES);
        }
        true
    });
    if !matches!(reused, Ok(true)) {
        f(&mut Vec::new());
    }
}

/// One event as a JSON line (with its `\n`) appended to `out`.
fn write_line(out: &mut Vec<u8>, event: &Event<'_>, now: SystemTime) {
    // Events from the `log` crate carry their real target and level in fields.
    let normalized = event.normalized_metadata();
    let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
    out.extend_from_slice(b"{\"timestamp\":\"");
    write_timestamp(out, now);
    out.extend_from_slice(b"\",\"level\":\"");
    out.extend_from_slice(meta.level().as_str().as_bytes());
    out.push(b'"');
    event.record(&mut FieldWriter(out));
    out.extend_from_slice(b",\"target\":");
    write_json_str(out, meta.target());
    out.extend_from_slice(b"}\n");
}

/// Each field as `,"name":value`: strings escaped, numbers and booleans as JSON numbers and
/// booleans, anything else through its `Debug` as a string.
struct FieldWriter<'a>(&'a mut Vec<u8>);

impl FieldWriter<'_> {
    fn key(&mut self, field: &Field) {
        self.0.push(b',');
        write_json_str(self.0, field.name());
        self.0.push(b':');
    }

    fn json(&mut self) -> serde_json::Serializer<&mut Vec<u8>> {
        serde_json::Serializer::new(&mut *self.0)
    }
}

impl Visit for FieldWriter<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        write_json_str(self.0, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        self.0
            .extend_from_slice(if value { b"true" } else { b"false" });
    }

    // Writing numbers into a Vec cannot fail.
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        let _ = self.json().serialize_u64(value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        let _ = self.json().serialize_i64(value);
    }

    /// `null` when not finite, as serde_json writes it.
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.key(field);
        let _ = self.json().serialize_f64(value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.key(field);
        self.0.push(b'"');
        // A `Debug` that fails midway leaves what it wrote: the string is closed all the same.
        let _ = write!(EscapingWriter(self.0), "{value:?}");
        self.0.push(b'"');
    }
}

/// Appends what is formatted into it, JSON-escaped, with no string in between.
struct EscapingWriter<'a>(&'a mut Vec<u8>);

impl fmt::Write for EscapingWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_escaped(self.0, s);
        Ok(())
    }
}

/// `s` as a JSON string.
fn write_json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    write_escaped(out, s);
    out.push(b'"');
}

/// `s` escaped for a JSON string, as serde_json does (whose escaper is private and writes whole
/// quoted strings, while `?`/`%` values arrive in pieces; a property test holds the two equal): `"` and `\` with a backslash, the control
/// characters U+0000 to U+001F as `\b \t \n \f \r` or `\u00XX`; everything else as it is.
fn write_escaped(out: &mut Vec<u8>, s: &str) {
    let mut rest = s.as_bytes();
    loop {
        let clean = clean_prefix_len(rest);
        out.extend_from_slice(&rest[..clean]);
        let Some(&b) = rest.get(clean) else {
            return;
        };
        let escape = ESCAPE[usize::from(b)];
        if escape == b'u' {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            let (high, low) = (HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]);
            out.extend_from_slice(&[b'\\', b'u', b'0', b'0', high, low]);
        } else {
            out.extend_from_slice(&[b'\\', escape]);
        }
        rest = &rest[clean + 1..];
    }
}

/// How many bytes `bytes` starts with that stand for themselves, 8 at a time where it can.
fn clean_prefix_len(bytes: &[u8]) -> usize {
    let needs_escape = |b: &u8| ESCAPE[usize::from(*b)] != 0;
    let mut i = 0;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        if may_need_escape(word)
            && let Some(j) = chunk.iter().position(needs_escape)
        {
            return i + j;
        }
        i += 8;
    }
    i + bytes[i..]
        .iter()
        .position(needs_escape)
        .unwrap_or(bytes.len() - i)
}

/// Whether one of the 8 bytes of `word` is below U+0020, `"` or `\` (no false negative).
fn may_need_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_byte_below = |w: u64, n: u8| w.wrapping_sub(ONES * u64::from(n)) & !w & HIGH != 0;
    has_byte_below(word, 0x20)
        || has_byte_below(word ^ (ONES * u64::from(b'"')), 1)
        || has_byte_below(word ^ (ONES * u64::from(b'\\')), 1)
}

/// For each byte: 0 when it stands for itself, else the letter after the backslash (`u`: `\u00XX`).
const ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

/// `now` in UTC as `2026-11-26T02:01:16.022060Z` (microseconds), tracing-subscriber's format.
/// Written by hand, not by `time`'s formatter, to stay allocation-free without its `formatting`
/// feature; the tests hold it equal to `time`'s calendar.
fn write_timestamp(out: &mut Vec<u8>, now: SystemTime) {
    let (secs, nanos) = match now.duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_nanos(),
        ),
        Err(before) => {
            let d = before.duration();
            let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            match d.subsec_nanos() {
                0 => (-secs, 0),
                n => (-secs - 1, 1_000_000_000 - n),
            }
        }
    };
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let day_secs = secs.rem_euclid(86_400) as u32;
    match year {
        0..=9999 => {
            let ([y0, y1], [y2, y3]) =
                (two_digits(year as u32 / 100), two_digits(year as u32 % 100));
            out.extend_from_slice(&[y0, y1, y2, y3]);
        }
        10_000.. => {
            let _ = write!(out, "+{year}");
        }
        _ => {
            let _ = write!(out, "{year:05}");
        }
    }
    let [mo0, mo1] = two_digits(month);
    let [d0, d1] = two_digits(day);
    let [h0, h1] = two_digits(day_secs / 3600);
    let [mi0, mi1] = two_digits(day_secs / 60 % 60);
    let [s0, s1] = two_digits(day_secs % 60);
    let micros = nanos / 1000;
    let [u0, u1] = two_digits(micros / 10_000);
    let [u2, u3] = two_digits(micros / 100 % 100);
    let [u4, u5] = two_digits(micros % 100);
    out.extend_from_slice(&[
        b'-', mo0, mo1, b'-', d0, d1, b'T', h0, h1, b':', mi0, mi1, b':', s0, s1, b'.', u0, u1, u2,
        u3, u4, u5, b'Z',
    ]);
}

/// `value` (below 100) as two ASCII digits.
fn two_digits(value: u32) -> [u8; 2] {
    [b'0' + (value / 10 % 10) as u8, b'0' + (value % 10) as u8]
}

/// (year, month 1-12, day 1-31) of the day `days` after 1970-01-01, proleptic Gregorian (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use proptest::prelude::*;
    use serde_json::Value;
    use tracing::Level;
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    /// Collects what is written, for comparing the two formats.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Capture {
        fn lines(&self) -> Vec<String> {
            let bytes = self.0.lock().unwrap();
            let text = std::str::from_utf8(&bytes).expect("log output is UTF-8");
            assert!(text.is_empty() || text.ends_with('\n'), "{text}");
            text.lines().map(str::to_owned).collect()
        }
    }

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Capture {
        type Writer = Capture;

        fn make_writer(&'a self) -> Capture {
            self.clone()
        }
    }

    /// The lines `emit` logs through tracing-subscriber's JSON format as `init` configured it
    /// before this layer, and through this layer.
    fn both_formats(emit: impl Fn()) -> (Vec<String>, Vec<String>) {
        let old = Capture::default();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_env_filter(EnvFilter::new("trace"))
            .with_writer(old.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, &emit);
        let new = Capture::default();
        let subscriber = tracing_subscriber::registry()
            .with(JsonLayer::new(new.clone()))
            .with(EnvFilter::new("trace"));
        tracing::subscriber::with_default(subscriber, &emit);
        (old.lines(), new.lines())
    }

    /// `line` with the timestamp's value blanked (the one part that differs between runs).
    fn without_timestamp(line: &str) -> String {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["timestamp"].is_string(), "{line}");
        let prefix = "{\"timestamp\":\"";
        assert!(line.starts_with(prefix), "{line}");
        let end = prefix.len() + line[prefix.len()..].find('"').unwrap();
        format!("{prefix}{}", &line[end..])
    }

    /// Same lines, byte for byte but the timestamps, and each parses to the same JSON object
    /// with its keys in the same order.
    fn assert_same_lines(emit: impl Fn()) -> Vec<Value> {
        let (old, new) = both_formats(emit);
        assert_eq!(old.len(), new.len(), "old {old:#?}\nnew {new:#?}");
        let mut parsed = Vec::new();
        for (o, n) in old.iter().zip(&new) {
            assert_eq!(without_timestamp(o), without_timestamp(n));
            let (mut o, mut n): (Value, Value) = (
                serde_json::from_str(o).unwrap(),
                serde_json::from_str(n).unwrap(),
            );
            o["timestamp"] = Value::Null;
            n["timestamp"] = Value::Null;
            let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
            assert_eq!(keys(&o), keys(&n));
            assert_eq!(o, n);
            parsed.push(n);
        }
        parsed
    }

    /// The router's span and review line (src/server/router.rs), with `uid` given.
    fn review(uid: &str, level: Level, violations: Option<String>, denial: Option<String>) {
        let span = tracing::info_span!(
            "admission",
            webhook = "mutate",
            uid = %uid,
            kind = %"Deployment",
            namespace = %"carto",
            name = %"carto-workspace-api",
        );
        span.in_scope(|| {
            macro_rules! line {
                ($level:expr) => {
                    tracing::event!(
                        target: "carto_wi_webhook::review",
                        $level,
                        webhook = "mutate",
                        uid = %uid,
                        kind = %"Deployment",
                        namespace = %"carto",
                        name = %"carto-workspace-api",
                        operation = "CREATE",
                        dry_run = false,
                        decision = "patched",
                        allowed = true,
                        patch_ops = 5usize,
                        warnings = 0usize,
                        violations = violations.clone(),
                        denial = denial.clone(),
                        duration_us = 42u64,
                        "review"
                    )
                };
            }
            match level {
                Level::WARN => line!(Level::WARN),
                _ => line!(Level::INFO),
            }
        });
    }

    #[test]
    fn the_review_line_is_the_one_of_tracing_subscriber() {
        let lines = assert_same_lines(|| {
            review("6f1c2a52-0d3e", Level::INFO, None, None);
            review(
                "u",
                Level::WARN,
                Some("container \"a\" has none; b: c".into()),
                None,
            );
            review("u", Level::INFO, None, Some("denied: \\ \n".into()));
        });
        let first = &lines[0];
        let keys: Vec<&str> = first.as_object().unwrap().keys().map(|k| &**k).collect();
        assert_eq!(
            keys,
            [
                "timestamp",
                "level",
                "message",
                "webhook",
                "uid",
                "kind",
                "namespace",
                "name",
                "operation",
                "dry_run",
                "decision",
                "allowed",
                "patch_ops",
                "warnings",
                "duration_us",
                "target"
            ]
        );
        assert_eq!(first["level"], "INFO");
        assert_eq!(first["message"], "review");
        assert_eq!(first["target"], "carto_wi_webhook::review");
        assert_eq!(first["patch_ops"], 5);
        assert_eq!(first["dry_run"], false);
        assert_eq!(lines[1]["level"], "WARN");
        assert_eq!(lines[1]["violations"], "container \"a\" has none; b: c");
        assert_eq!(lines[2]["denial"], "denied: \\ \n");
    }

    #[test]
    fn other_events_are_the_ones_of_tracing_subscriber() {
        assert_same_lines(|| {
            let e = std::io::Error::other("disk \"full\"\n");
            tracing::warn!(error = %e, retry_in = ?Duration::from_millis(1500), "watch failed");
            tracing::error!(
                error = &e as &(dyn std::error::Error + 'static),
                "as an error"
            );
            tracing::info!(connections = 3, "drained");
            tracing::info!("stopped");
            tracing::debug!(peer = %"127.0.0.1:1", "no other field");
            tracing::trace!(n = -7i64, big = u128::MAX, small = i128::MIN, "integers");
            tracing::info!(x = 1.5f64, nan = f64::NAN, inf = f64::INFINITY, "floats");
            tracing::info!(bytes = &b"\x00\xff"[..], "bytes");
            tracing::info!(r#type = "raw", http.method = "GET", "names");
            tracing::info!(only = "fields");
            tracing::info!(target: "other::target", "a target of its own");
            tracing::info!(missing = tracing::field::Empty, "an empty field");
            tracing::info!(missing = None::<&str>, present = Some(1u64), "options");
            tracing::info!(list = ?["a\"b", "c\\d"], "debug of a list");
            tracing::info!("formatted {} and {:?}", "q\"uote", "new\nline");
        });
    }

    #[test]
    fn events_from_the_log_crate_are_the_ones_of_tracing_subscriber() {
        let bad = "\"bad\"";
        let lines = assert_same_lines(|| {
            tracing_log::format_trace(
                &log::Record::builder()
                    .args(format_args!("an alert: {bad}"))
                    .level(log::Level::Warn)
                    .target("rustls::conn")
                    .module_path_static(Some("rustls::conn"))
                    .file_static(Some("src/conn.rs"))
                    .line(Some(12))
                    .build(),
            )
            .unwrap();
        });
        assert_eq!(lines[0]["target"], "rustls::conn");
        assert_eq!(lines[0]["level"], "WARN");
    }

    #[test]
    fn hostile_strings_stay_one_valid_json_line() {
        let hostile = [
            "quote \" backslash \\ slash /",
            "new\nline\r\ttab \u{8}\u{c}",
            "nul \0 esc \u{1b}[31m del \u{7f} c1 \u{85}",
            "line separator \u{2028} paragraph \u{2029}",
            "non-ASCII é ü 日本 🦀",
            "\"}\n{\"level\":\"ERROR\",\"message\":\"forged",
        ];
        let lines = assert_same_lines(|| {
            for s in hostile {
                tracing::info!(s, shown = %s, debug = ?s, "{s}");
            }
        });
        for (line, s) in lines.iter().zip(hostile) {
            assert_eq!(line["s"], s);
            assert_eq!(line["shown"], s);
            assert_eq!(line["message"], s);
            assert_eq!(line["debug"], format!("{s:?}"));
            assert_eq!(line["level"], "INFO");
        }
    }

    #[test]
    fn a_failing_debug_still_closes_its_string() {
        struct Fails;
        impl fmt::Debug for Fails {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("partial \"")?;
                Err(fmt::Error)
            }
        }
        let out = Capture::default();
        let subscriber = tracing_subscriber::registry().with(JsonLayer::new(out.clone()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(x = ?Fails, after = 1, "m");
        });
        let lines = out.lines();
        let v: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(v["x"], "partial \"");
        assert_eq!(v["after"], 1);
    }

    #[test]
    fn a_debug_that_logs_leaves_the_line_whole() {
        // tracing drops what is logged while an event is being formatted.
        struct Logs;
        impl fmt::Debug for Logs {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                tracing::info!("from inside");
                f.write_str("value")
            }
        }
        let out = Capture::default();
        let subscriber = tracing_subscriber::registry().with(JsonLayer::new(out.clone()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(x = ?Logs, "outer");
        });
        let lines = out.lines();
        assert_eq!(lines.len(), 1, "{lines:#?}");
        let v: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!((&v["message"], &v["x"]), (&"outer".into(), &"value".into()));
    }

    fn timestamp(t: SystemTime) -> String {
        let mut out = Vec::new();
        write_timestamp(&mut out, t);
        String::from_utf8(out).unwrap()
    }

    fn at(secs: i64, nanos: u32) -> SystemTime {
        let d = Duration::new(secs.unsigned_abs(), 0);
        let whole = if secs < 0 {
            UNIX_EPOCH - d
        } else {
            UNIX_EPOCH + d
        };
        whole + Duration::from_nanos(u64::from(nanos))
    }

    #[test]
    fn timestamps_are_utc_with_microseconds() {
        assert_eq!(timestamp(at(0, 0)), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            timestamp(at(-1, 999_999_999)),
            "1969-12-31T23:59:59.999999Z"
        );
        assert_eq!(
            timestamp(at(951_782_400, 1_000)),
            "2000-02-29T00:00:00.000001Z"
        );
        assert_eq!(
            timestamp(at(1_795_658_476, 22_060_123)),
            "2026-11-26T02:01:16.022060Z"
        );
        assert_eq!(
            timestamp(at(253_402_300_799, 0)),
            "9999-12-31T23:59:59.000000Z"
        );
        assert_eq!(
            timestamp(at(253_402_300_800, 0)),
            "+10000-01-01T00:00:00.000000Z"
        );
        assert_eq!(
            timestamp(at(-62_167_219_201, 0)),
            "-0001-12-31T23:59:59.000000Z"
        );
    }

    #[test]
    fn the_word_test_misses_no_byte_to_escape() {
        for filler in [b'a', 0x7f, 0x80, 0xc3, 0xff, b' '] {
            for b in 0..=255u8 {
                for at in 0..8 {
                    let mut word = [filler; 8];
                    word[at] = b;
                    let flagged = may_need_escape(u64::from_le_bytes(word));
                    assert!(flagged || ESCAPE[usize::from(b)] == 0, "{b:#x} at {at}");
                }
            }
        }
        assert!(!may_need_escape(u64::from_le_bytes(*b"carto-wo")));
    }

    proptest! {
        #[test]
        fn timestamps_agree_with_the_time_crate(secs in -62_135_596_800i64..253_402_300_800, nanos in 0u32..1_000_000_000) {
            let t = time::OffsetDateTime::from_unix_timestamp(secs).unwrap();
            let expected = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
                t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute(), t.second(), nanos / 1000
            );
            prop_assert_eq!(timestamp(at(secs, nanos)), expected);
        }

        #[test]
        fn escaping_agrees_with_serde_json(s in any::<String>(), ctl in "[a-z\\x00-\\x1f\"\\\\\u{7f}\u{2028}é]{0,40}") {
            for s in [&s, &ctl] {
                let mut out = Vec::new();
                write_json_str(&mut out, s);
                prop_assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(s).unwrap());
            }
        }
    }
}
