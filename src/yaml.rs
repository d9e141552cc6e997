//! YAML streams: split into documents as written (so untouched objects are echoed byte for byte),
//! parse one document, and render a changed object.

use serde_json::Value;

/// One document of a stream, exactly as written (without its `---` line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Document<'a> {
    /// The document's text.
    pub text: &'a str,
    /// 1-based line where it starts in the stream.
    pub line: usize,
}

impl Document<'_> {
    /// True when the document holds nothing but blank lines and comments.
    pub fn is_empty(&self) -> bool {
        self.text.lines().all(|l| {
            let t = l.trim();
            t.is_empty() || t.starts_with('#') || t == "..."
        })
    }

    /// The comment lines before the first content line (e.g. helm's `# Source:`), kept when the
    /// document is rewritten.
    pub fn leading_comments(&self) -> String {
        self.text
            .lines()
            .take_while(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
            .filter(|l| !l.trim().is_empty())
            .map(|l| format!("{l}\n"))
            .collect()
    }
}

/// Is this line a document marker (`---` at column 0, followed by nothing or whitespace)?
fn is_marker(line: &str) -> bool {
    line.strip_prefix("---")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r']))
}

/// Split a stream at `---` lines. A marker at column 0 always ends a document in YAML, even
/// inside a block scalar, so splitting the text is exact.
pub fn split_documents(stream: &str) -> Vec<Document<'_>> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut start_line = 1;
    let mut offset = 0;
    for (n, line) in stream.split_inclusive('\n').enumerate() {
        if is_marker(line.trim_end_matches('\n')) {
            docs.push(Document {
                text: &stream[start..offset],
                line: start_line,
            });
            start = offset + line.len();
            start_line = n + 2;
        }
        offset += line.len();
    }
    docs.push(Document {
        text: &stream[start..],
        line: start_line,
    });
    docs.retain(|d| !d.text.is_empty());
    docs
}

/// Parse one YAML document into JSON.
pub fn parse(doc: &str) -> Result<Value, String> {
    serde_saphyr::from_str::<Value>(doc).map_err(|e| e.to_string())
}

/// Render an object as YAML.
pub fn render(v: &Value) -> String {
    // Long one-line strings (commands, image names) stay on one line instead of being folded.
    let mut options = serde_saphyr::SerializerOptions::default();
    options.folded_wrap_chars = usize::MAX / 2;
    let mut s = serde_saphyr::to_string_with_options(v, options)
        .unwrap_or_else(|e| format!("# cannot render: {e}\n"));
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_markers_only() {
        let s = "a: 1\n---\n# c\nb: |\n  --- not a marker\n---   \nc: 3\n";
        let d = split_documents(s);
        assert_eq!(d.len(), 3);
        assert_eq!(d[0].text, "a: 1\n");
        assert_eq!(d[1].text, "# c\nb: |\n  --- not a marker\n");
        assert_eq!(d[1].line, 3);
        assert_eq!(d[1].leading_comments(), "# c\n");
        assert_eq!(d[2].text, "c: 3\n");
    }

    #[test]
    fn leading_marker_and_empty_docs() {
        let d = split_documents("---\na: 1\n---\n---\n# only\n");
        assert_eq!(d.len(), 2);
        assert!(d[1].is_empty());
    }

    #[test]
    fn render_round_trips() {
        let v: Value =
            serde_json::json!({"a": "true", "b": null, "c": [1, "x|y"], "d": "l1\nl2\n"});
        assert_eq!(parse(&render(&v)).unwrap(), v);
    }
}
