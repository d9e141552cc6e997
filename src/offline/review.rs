//! `review`: every object of a YAML stream through mutation then validation, as the API server
//! would run them, printing each object patched or exactly as given.

use std::fmt::Write;

use serde_json::{Value, json};

use crate::admission::view::Object;
use crate::admission::{self, Decision};
use crate::config::{ConfigEntry, ConfigSnapshot, config_from_object};
use crate::settings::Settings;
use crate::yaml::{self, Document};

/// What `review` prints on standard output.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// Every object, patched or exactly as given.
    #[default]
    Yaml,
    /// One JSON line per patched object: kind, namespace, name and its JSON patch.
    Patch,
}

/// The outcome of a review.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReviewReport {
    /// Standard output.
    pub stdout: String,
    /// Standard error: warnings, denials, errors.
    pub stderr: String,
    /// Objects that would be patched.
    pub patched: usize,
    /// Objects that would be denied.
    pub denied: usize,
    /// Documents that could not be read.
    pub errors: usize,
}

struct Reviewer<'a> {
    snapshot: ConfigSnapshot,
    settings: &'a Settings,
    default_ns: &'a str,
    report: ReviewReport,
    patches: Vec<Value>,
}

/// Review a multi-document stream. `default_config` is the default for every namespace; a valid
/// or invalid `carto-workload-identity` ConfigMap in the stream applies to its own namespace.
pub fn review_stream(
    input: &str,
    default_config: ConfigEntry,
    settings: &Settings,
    default_ns: &str,
    format: OutputFormat,
) -> ReviewReport {
    let docs: Vec<(Document<'_>, Option<Result<Value, String>>)> = yaml::split_documents(input)
        .into_iter()
        .map(|d| {
            let parsed = (!d.is_empty()).then(|| yaml::parse_document(&d));
            (d, parsed)
        })
        .collect();
    let mut r = Reviewer {
        snapshot: snapshot_of_stream(&docs, default_config, settings, default_ns),
        settings,
        default_ns,
        report: ReviewReport::default(),
        patches: Vec::new(),
    };
    let mut out = Vec::new();
    for (doc, parsed) in &docs {
        match parsed {
            None => out.push(doc.text.to_owned()),
            Some(Err(e)) => {
                r.report.errors += 1;
                let _ = writeln!(r.report.stderr, "error: document at line {}: {e}", doc.line);
                out.push(doc.text.to_owned());
            }
            Some(Ok(v)) => match r.object(v, doc.line) {
                Some(patched) => out.push(doc.leading_comments() + &yaml::render(&patched)),
                None => out.push(doc.text.to_owned()),
            },
        }
    }
    let mut report = r.report;
    write_output(&mut report, format, &out, &r.patches);
    report
}

/// `--config` as every namespace's default, and the ConfigMaps of that name found in the stream
/// for their own namespaces.
fn snapshot_of_stream(
    docs: &[(Document<'_>, Option<Result<Value, String>>)],
    default_config: ConfigEntry,
    settings: &Settings,
    default_ns: &str,
) -> ConfigSnapshot {
    let mut snapshot = ConfigSnapshot::with_default(default_config);
    for v in docs.iter().filter_map(|(_, p)| p.as_ref()?.as_ref().ok()) {
        if v.get("kind").and_then(Value::as_str) == Some("ConfigMap")
            && v.pointer("/metadata/name").and_then(Value::as_str) == Some(&settings.config_map)
        {
            let ns = v
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or(default_ns);
            snapshot.set_namespace(
                ns,
                ConfigEntry::from_result(config_from_object(v, &settings.extra_env)),
            );
        }
    }
    snapshot
}

/// Every document (patched or as given) as one YAML stream, or the patches as JSON lines.
fn write_output(
    report: &mut ReviewReport,
    format: OutputFormat,
    docs: &[String],
    patches: &[Value],
) {
    match format {
        OutputFormat::Yaml => {
            for (i, text) in docs.iter().enumerate() {
                if i > 0 {
                    report.stdout.push_str("---\n");
                }
                report.stdout.push_str(text);
                if !text.ends_with('\n') {
                    report.stdout.push('\n');
                }
            }
        }
        OutputFormat::Patch => {
            for p in patches {
                let _ = writeln!(report.stdout, "{p}");
            }
        }
    }
}

impl Reviewer<'_> {
    /// Review one object (or each item of a `List`); the patched object when anything changed.
    fn object(&mut self, v: &Value, line: usize) -> Option<Value> {
        if v.get("kind").and_then(Value::as_str) == Some("List")
            && let Some(items) = v.get("items").and_then(Value::as_array)
        {
            let mut changed = false;
            let new_items: Vec<Value> = items
                .iter()
                .map(|item| match self.object(item, line) {
                    Some(p) => {
                        changed = true;
                        p
                    }
                    None => item.clone(),
                })
                .collect();
            let mut list = v.clone();
            list["items"] = Value::Array(new_items);
            return changed.then_some(list);
        }
        let obj = match view_of(v) {
            Ok(o) => o,
            Err(e) => {
                self.report.errors += 1;
                let _ = writeln!(self.report.stderr, "error: document at line {line}: {e}");
                return None;
            }
        };
        let (kind, namespace) = (obj.kind(), obj.namespace().unwrap_or(self.default_ns));
        let subject = subject(v, namespace);
        let mutation =
            admission::mutate_object(kind, &obj, namespace, &self.snapshot, self.settings);
        self.emit(&subject, &mutation);
        let patched = match &mutation.patch {
            None => None,
            Some(p) => {
                let mut patched = v.clone();
                if let Err(e) = json_patch::patch(&mut patched, p) {
                    self.report.errors += 1;
                    let _ = writeln!(self.report.stderr, "error: {subject}: patch failed: {e}");
                    return None;
                }
                self.report.patched += 1;
                self.patches.push(json!({
                    "kind": v.get("kind"),
                    "namespace": namespace,
                    "name": obj.name(),
                    "patch": p,
                }));
                Some(patched)
            }
        };
        // The validating webhook sees the object as mutated.
        let reparsed = patched.as_ref().map(view_of);
        let checked = match &reparsed {
            Some(r) => r.as_ref().ok(),
            None => Some(&obj),
        };
        if let Some(o) = checked {
            let validation =
                admission::validate_object(kind, o, namespace, &self.snapshot, self.settings);
            self.emit(&subject, &validation);
        }
        patched
    }

    fn emit(&mut self, subject: &str, d: &Decision) {
        for w in &d.warnings {
            let _ = writeln!(self.report.stderr, "warning: {subject}: {w}");
        }
        if let Some(denial) = &d.denial {
            self.report.denied += 1;
            let _ = writeln!(self.report.stderr, "denied: {denial}");
        }
    }
}

/// The core's view of a document, which must name its apiVersion and kind.
fn view_of(v: &Value) -> Result<Object<'_>, String> {
    let obj = Object::from_value(v).map_err(|e| format!("not a Kubernetes object: {e}"))?;
    obj.api_version.str().ok_or("object has no apiVersion")?;
    obj.kind.str().ok_or("object has no kind")?;
    Ok(obj)
}

fn subject(v: &Value, ns: &str) -> String {
    let kind = v.get("kind").and_then(Value::as_str).unwrap_or("?");
    let name = v
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("?");
    format!("{kind} {ns}/{name}")
}
