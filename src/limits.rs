//! The cost bounds of one admission request, and the one helper that cuts client input quoted in
//! messages. A leaf module (no imports from the crate) so both the admission core and the config
//! can use it; the core re-exports it as `admission::limits`.
//!
//! The contract: a request body of at most [`MAX_REQUEST_BYTES`] gets an answer of at most
//! [`MAX_RESPONSE_BYTES`], whatever it contains. Messages never repeat unbounded input: names
//! and values are cut ([`cut`], [`quote`]), violations are grouped and at most
//! [`MAX_LISTED_VIOLATIONS`] are listed, and a pod template beyond any real pod
//! ([`MAX_CONTAINERS`], [`MAX_ENV_ENTRIES`]) is neither patched nor checked entry by entry.

use std::borrow::Cow;

/// The largest AdmissionReview body considered (the API server's own request limit).
pub const MAX_REQUEST_BYTES: usize = 3 * 1024 * 1024;
/// The largest AdmissionReview answer the webhook writes.
pub const MAX_RESPONSE_BYTES: usize = 3 * 1024 * 1024;
/// At most this many containers and init containers in a pod template; more is refused by
/// validation and left unpatched by mutation.
pub const MAX_CONTAINERS: usize = 1_000;
/// At most this many env entries in one container (a real pod has tens); more is treated like
/// too many containers.
pub const MAX_ENV_ENTRIES: usize = 10_000;
/// The largest JSON patch mutation returns (base64 makes it 4/3 larger on the wire, which
/// leaves room for the rest of the answer within [`MAX_RESPONSE_BYTES`]). A larger patch is
/// not sent: the object is allowed unpatched, with a warning.
pub const MAX_PATCH_BYTES: usize = 2 * 1024 * 1024;
/// The longest request uid accepted (the API server sends a 36-character UUID); the answer
/// echoes it, so it must be bounded too.
pub const MAX_UID_BYTES: usize = 128;
/// A Kubernetes object name (or ConfigMap key) quoted in a message is cut to this many chars.
pub const MAX_QUOTED_NAME: usize = 253;
/// A container name quoted in a message is cut to this many chars.
pub const MAX_QUOTED_CONTAINER: usize = 63;
/// A value quoted in a message is cut to this many chars.
pub const MAX_QUOTED_VALUE: usize = 64;
/// At most this many violations are listed in a denial, warning or audit annotation; the rest
/// are grouped or counted ("… and N more").
pub const MAX_LISTED_VIOLATIONS: usize = 20;
/// What [`cut`] appends to a shortened text.
pub const ELLIPSIS: char = '…';

/// `text` when it has at most `max` chars, else its first `max - 1` chars and `…` (so `max`
/// chars in all, and cutting again changes nothing). Never splits a char.
pub fn cut(text: &str, max: usize) -> Cow<'_, str> {
    // Cheap exit for the usual short text: a char is at least one byte.
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    match text.char_indices().nth(max) {
        None => Cow::Borrowed(text),
        Some(_) => {
            let end = text
                .char_indices()
                .nth(max.saturating_sub(1))
                .map_or(text.len(), |(i, _)| i);
            let mut out = String::with_capacity(end + ELLIPSIS.len_utf8());
            out.push_str(&text[..end]);
            out.push(ELLIPSIS);
            Cow::Owned(out)
        }
    }
}

/// `text` cut to `max` chars ([`cut`]) and quoted as Rust's `{:?}` does (escapes included).
pub fn quote(text: &str, max: usize) -> String {
    format!("{:?}", cut(text, max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_unchanged() {
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(quote("a\"b", 64), "\"a\\\"b\"");
        assert!(matches!(cut("abc", 10), Cow::Borrowed(_)));
    }

    #[test]
    fn long_text_is_cut_on_a_char_boundary() {
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("éééééé", 3), "éé…");
        assert_eq!(cut("éé", 2), "éé");
        assert_eq!(quote("ééé", 2), "\"é…\"");
        let once = cut("xyzxyzxyz", 5).into_owned();
        assert_eq!(cut(&once, 5), once);
        assert_eq!(cut("abc", 0), "…");
    }
}
