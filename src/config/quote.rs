//! Quoting what a user wrote into a message: escaped, so control characters cannot forge lines
//! or terminal output, and cut, so a huge key or value cannot blow up a message.

/// At most this many characters of a key or value are quoted.
pub const MAX_QUOTED_CHARS: usize = 64;

/// `s` in double quotes with Rust escapes, cut to [`MAX_QUOTED_CHARS`] characters (`…` after the
/// closing quote when cut).
pub fn quoted(s: &str) -> String {
    match s.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((end, _)) => format!("{:?}…", &s[..end]),
        None => format!("{s:?}"),
    }
}

/// `s` cut to [`MAX_QUOTED_CHARS`] characters (`…` appended when cut), for text already known to
/// hold only safe characters (a valid key).
pub fn cut(s: &str) -> String {
    match s.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_cuts() {
        assert_eq!(quoted("WORKSPACE_A B"), "\"WORKSPACE_A B\"");
        assert_eq!(quoted("WORKSPACE_\n"), "\"WORKSPACE_\\n\"");
        assert_eq!(quoted("a\u{200b}b"), "\"a\\u{200b}b\"");
        let long = "é".repeat(1000);
        let q = quoted(&long);
        assert_eq!(q, format!("\"{}\"…", "é".repeat(MAX_QUOTED_CHARS)));
        assert_eq!(cut("WORKSPACE_A"), "WORKSPACE_A");
        assert_eq!(cut(&"A".repeat(65)), format!("{}…", "A".repeat(64)));
    }
}
