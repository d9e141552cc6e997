//! YAML streams: split into documents as written (so untouched objects are echoed byte for byte),
//! parse one document, and render a changed object.

use std::borrow::Cow;

use serde_json::Value;
use serde_saphyr::Budget;
use serde_saphyr::budget::BudgetBreach;

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

/// Parse one YAML document into JSON; an error says what is wrong and where, lines counted from
/// the start of `doc`.
pub fn parse(doc: &str) -> Result<Value, String> {
    parse_from_line(doc, 1)
}

/// Parse one document of a stream; an error names the line in the stream.
pub fn parse_document(doc: &Document<'_>) -> Result<Value, String> {
    parse_from_line(doc.text, doc.line)
}

fn parse_from_line(text: &str, first_line: usize) -> Result<Value, String> {
    serde_saphyr::from_str::<Value>(text).map_err(|e| {
        let mut options = serde_saphyr::RenderOptions::new(&HumanLimits);
        options.snippets = serde_saphyr::SnippetMode::Off;
        options.line_offset = first_line.saturating_sub(1) as u64;
        e.render_with_options(options)
    })
}

/// The parser's messages, except the limits it enforces against hostile input, which it names by
/// their Rust debug form (`budget breached: Nodes { nodes: 250001 }`): those say which limit.
struct HumanLimits;

impl serde_saphyr::MessageFormatter for HumanLimits {
    fn format_message<'a>(&self, err: &'a serde_saphyr::Error) -> Cow<'a, str> {
        match err {
            serde_saphyr::Error::Budget { breach, .. } => Cow::Owned(limit_message(breach)),
            _ => serde_saphyr::DefaultMessageFormatter.format_message(err),
        }
    }
}

/// What a breached parser limit means, in words, with the limit in force.
fn limit_message(breach: &BudgetBreach) -> String {
    let b = Budget::default();
    let n = thousands;
    match breach {
        BudgetBreach::Nodes { .. } => format!(
            "more than {} YAML nodes (values, lists and maps, counting each alias expansion)",
            n(b.max_nodes)
        ),
        BudgetBreach::Depth { .. } => format!(
            "lists and maps nested deeper than {} levels",
            n(b.max_depth)
        ),
        BudgetBreach::Events { .. } => format!(
            "more than {} YAML parser events (the document is too large)",
            n(b.max_events)
        ),
        BudgetBreach::InputBytes { .. } => format!(
            "document larger than {} bytes",
            n(b.max_reader_input_bytes.unwrap_or(usize::MAX))
        ),
        BudgetBreach::ScalarBytes { .. } => format!(
            "more than {} bytes of text in values",
            n(b.max_total_scalar_bytes)
        ),
        BudgetBreach::Documents { .. } => {
            format!("more than {} YAML documents", n(b.max_documents))
        }
        BudgetBreach::Aliases { .. } => {
            format!("more than {} aliases (*name)", n(b.max_aliases))
        }
        BudgetBreach::Anchors { .. } => {
            format!("more than {} anchors (&name)", n(b.max_anchors))
        }
        BudgetBreach::AliasAnchorRatio { aliases, anchors } => format!(
            "alias expansion refused: {} aliases for {} anchors (at most {} aliases per anchor)",
            n(*aliases),
            n(*anchors),
            b.alias_anchor_ratio_multiplier
        ),
        BudgetBreach::RecordedAnchorEvents { .. } | BudgetBreach::RecordedAnchorBytes { .. } => {
            "alias expansion refused: the anchored values are too large to repeat".to_owned()
        }
        BudgetBreach::MergeKeys { .. } => {
            format!("more than {} merge keys (<<)", n(b.max_merge_keys))
        }
        BudgetBreach::SequenceUnbalanced => {
            "unbalanced lists or maps (a truncated document?)".to_owned()
        }
        other => format!("a YAML parser limit is exceeded ({other:?})"),
    }
}

/// `1234567` as `1,234,567`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
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

    fn parse_error(text: &str) -> String {
        parse(text).unwrap_err()
    }

    #[test]
    fn limit_errors_say_which_limit_and_where() {
        let nodes = format!("a: [{}]\n", "1,".repeat(260_000));
        let e = parse_error(&nodes);
        assert!(e.contains("more than 250,000 YAML nodes"), "{e}");
        assert!(e.ends_with("at line 1, column 499999"), "{e}");
        let deep = format!("x: 1\na: {}1{}\n", "[".repeat(100), "]".repeat(100));
        let e = parse_error(&deep);
        assert!(e.contains("nested deeper than 64 levels"), "{e}");
        assert!(e.contains("at line 2,"), "{e}");
        let aliases: String = std::iter::once("a: &a 1\nl:\n".to_owned())
            .chain((0..200).map(|_| "- *a\n".to_owned()))
            .collect();
        let e = parse_error(&aliases);
        assert!(
            e.contains("alias expansion refused: 200 aliases for 1 anchors"),
            "{e}"
        );
        for e in [
            parse_error(&nodes),
            parse_error(&deep),
            parse_error(&aliases),
        ] {
            assert!(
                !e.contains("budget") && !e.contains('{') && !e.contains('\n'),
                "{e}"
            );
            assert!(e.len() < 200, "{e}");
        }
    }

    #[test]
    fn errors_of_a_document_name_the_line_in_the_stream() {
        let s = "a: 1\n---\nb: 2\nc: [\n";
        let d = split_documents(s);
        let e = parse_document(&d[1]).unwrap_err();
        assert!(e.contains("at line 4,"), "{e}");
        assert!(e.contains("unclosed bracket"), "{e}");
        assert!(parse_error("b: 2\nc: [\n").contains("at line 2,"));
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(250_000), "250,000");
        assert_eq!(thousands(1_048_576), "1,048,576");
    }
}
