//! Warning hygiene: the API server truncates long or many warnings, so we shape them first.

/// Warnings longer than this are cut (the API server's hard limit).
pub const MAX_WARNING_LEN: usize = 256;
/// At most this many warnings are returned.
pub const MAX_WARNINGS: usize = 10;

/// Cap each warning at 256 characters and the list at 10 (the last saying how many were folded).
pub fn finalize(mut warnings: Vec<String>) -> Vec<String> {
    if warnings.len() > MAX_WARNINGS {
        let extra = warnings.len() - (MAX_WARNINGS - 1);
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

/// Quote a user value for a message, shortened so the message stays readable.
pub fn short(value: &str) -> String {
    // Long enough for any service account email (at most 85 characters).
    const MAX: usize = 90;
    if value.chars().count() <= MAX {
        format!("{value:?}")
    } else {
        let cut: String = value.chars().take(MAX).collect();
        format!("{cut:?}...")
    }
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
}
