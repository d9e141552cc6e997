//! Warning hygiene: the API server truncates long or many warnings, so we shape them first.

use super::limits::{MAX_QUOTED_VALUE, quote};

/// Warnings longer than this are cut (the API server's hard limit).
pub const MAX_WARNING_LEN: usize = 256;
/// At most this many warnings are returned.
pub const MAX_WARNINGS: usize = 10;

/// Warnings as they are found, keeping only what [`Warnings::finish`] returns (the first
/// [`MAX_WARNINGS`] and a count), so a request with a million problems holds ten strings.
#[derive(Debug, Default)]
pub struct Warnings {
    kept: Vec<String>,
    total: usize,
}

impl Warnings {
    /// Add a warning.
    pub fn push(&mut self, warning: String) {
        self.push_with(|| warning);
    }

    /// Add a warning, formatted only when it will be kept.
    pub fn push_with(&mut self, warning: impl FnOnce() -> String) {
        self.total += 1;
        if self.kept.len() < MAX_WARNINGS {
            self.kept.push(warning());
        }
    }

    /// The warnings to send: at most 10, each at most 256 characters on one line, the last
    /// saying how many were folded.
    pub fn finish(self) -> Vec<String> {
        let mut warnings = self.kept;
        if self.total > MAX_WARNINGS {
            let extra = self.total - (MAX_WARNINGS - 1);
            warnings.truncate(MAX_WARNINGS - 1);
            warnings.push(format!(
                "... and {extra} more warnings (see the webhook log)"
            ));
        }
        for w in &mut warnings {
            // Warnings must be one printable line.
            if w.contains(['\n', '\r', '\t']) {
                *w = w.replace(['\n', '\r', '\t'], " ");
            }
            if w.chars().count() > MAX_WARNING_LEN {
                let cut: String = w.chars().take(MAX_WARNING_LEN - 3).collect();
                *w = cut + "...";
            }
        }
        warnings
    }
}

/// Cap each warning at 256 characters and the list at 10 (the last saying how many were folded).
pub fn finalize(warnings: Vec<String>) -> Vec<String> {
    let mut out = Warnings::default();
    for w in warnings {
        out.push(w);
    }
    out.finish()
}

/// Quote a user value for a message, cut to [`MAX_QUOTED_VALUE`] characters.
pub fn short(value: &str) -> String {
    quote(value, MAX_QUOTED_VALUE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_count_and_length() {
        let many: Vec<String> = (0..25).map(|i| format!("w{i}")).collect();
        let out = finalize(many);
        assert_eq!(out.len(), 10);
        assert!(out[9].contains("16 more"));
        let long = finalize(vec!["é".repeat(300)]);
        assert_eq!(long[0].chars().count(), 256);
        assert_eq!(finalize(vec!["a\nb".into()]), vec!["a b".to_string()]);
    }

    #[test]
    fn collector_keeps_ten_and_counts_the_rest() {
        let mut w = Warnings::default();
        let mut formatted = 0;
        for i in 0..100_000 {
            w.push_with(|| {
                formatted += 1;
                format!("w{i}")
            });
        }
        assert_eq!(formatted, 10);
        let out = w.finish();
        assert_eq!(out.len(), 10);
        assert_eq!(out[9], "... and 99991 more warnings (see the webhook log)");
    }
}
