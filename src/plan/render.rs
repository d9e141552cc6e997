//! `plan` and `status` as text: a compact table, then a diff-like body. JSON is their serde form.

use std::fmt::Write;

use super::compute::{NamespacePlan, ObjectChange, Plan};
use super::diff::FieldChange;
use super::status::{NamespaceStatus, Status};

/// The plan for a person: a table of namespaces, then each change.
pub fn plan_text(plan: &Plan, what: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{what}");
    if !plan.problems.is_empty() {
        let n = plan.problems.len();
        let _ = writeln!(
            out,
            "The ConfigMap is invalid ({n} problem{}):",
            if n == 1 { "" } else { "s" }
        );
        for p in &plan.problems {
            let _ = writeln!(out, "- {p}");
        }
    }
    for w in &plan.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    if plan.namespaces.is_empty() {
        let _ = writeln!(out, "No namespace is affected: nothing would change.");
        return out;
    }
    out.push_str(&plan_table(&plan.namespaces));
    for ns in &plan.namespaces {
        namespace_body(&mut out, ns);
    }
    let objects: usize = plan.namespaces.iter().map(|n| n.objects.len()).sum();
    let rolls = rolling(plan);
    let _ = writeln!(
        out,
        "\nPlan: {objects} object(s) change in {} namespace(s); {rolls} Deployment(s) roll.",
        plan.namespaces
            .iter()
            .filter(|n| !n.objects.is_empty())
            .count()
    );
    out
}

fn rolling(plan: &Plan) -> usize {
    plan.namespaces
        .iter()
        .flat_map(|n| &n.objects)
        .filter(|o| o.rolls)
        .count()
}

fn plan_table(namespaces: &[NamespacePlan]) -> String {
    let rows: Vec<[String; 5]> = namespaces
        .iter()
        .map(|n| {
            [
                n.namespace.clone(),
                format!("{} → {}", n.source_before.as_str(), n.source_after.as_str()),
                n.objects.len().to_string(),
                n.objects.iter().filter(|o| o.rolls).count().to_string(),
                n.iam_bindings.len().to_string(),
            ]
        })
        .collect();
    table(
        &["NAMESPACE", "SOURCE", "CHANGES", "ROLLS", "IAM BINDINGS"],
        &rows,
    )
}

fn namespace_body(out: &mut String, ns: &NamespacePlan) {
    let _ = writeln!(out, "\n=== namespace {}", ns.namespace);
    for o in &ns.objects {
        object_body(out, o);
    }
    for l in &ns.left_alone {
        let _ = writeln!(out, "  left alone: {} {} ({})", l.kind, l.name, l.why);
    }
    for b in &ns.iam_bindings {
        let _ = writeln!(out, "  IAM binding required (grant once):\n    {b}");
    }
}

fn object_body(out: &mut String, o: &ObjectChange) {
    let rolls = if o.rolls { " (pods roll)" } else { "" };
    let _ = writeln!(out, "~ {} {}{rolls}", o.kind, o.name);
    for c in &o.changes {
        let _ = writeln!(out, "    {}", field_line(c));
    }
}

fn field_line(c: &FieldChange) -> String {
    let (what, old, new) = match c {
        FieldChange::Env {
            container,
            name,
            old,
            new,
        } => (format!("container {container}: {name}"), old, new),
        FieldChange::Annotation {
            key,
            pod_template,
            old,
            new,
        } => {
            let on = if *pod_template {
                "pod template annotation"
            } else {
                "annotation"
            };
            (format!("{on} {key}"), old, new)
        }
    };
    match (old, new) {
        (None, Some(n)) => format!("+ {what} = {n:?}"),
        (Some(o), None) => format!("- {what} (was {o:?})"),
        (Some(o), Some(n)) => format!("~ {what}: {o:?} → {n:?}"),
        (None, None) => format!("  {what}"),
    }
}

/// Where every namespace stands, for a person.
pub fn status_text(status: &Status) -> String {
    if status.namespaces.is_empty() {
        return "No namespace holds a target ServiceAccount or Deployment.\n".into();
    }
    let rows: Vec<[String; 5]> = status.namespaces.iter().map(status_row).collect();
    let mut out = table(
        &["NAMESPACE", "SOURCE", "SA", "DEPLOYMENTS", "LAST EVENT"],
        &rows,
    );
    for ns in &status.namespaces {
        status_body(&mut out, ns);
    }
    let bad = status.namespaces.iter().filter(|n| !n.ok()).count();
    let _ = writeln!(
        out,
        "\n{} namespace(s), {bad} needing attention.",
        status.namespaces.len()
    );
    out
}

fn status_row(n: &NamespaceStatus) -> [String; 5] {
    let sa = match n.service_account_ok {
        Some(true) => "✓",
        Some(false) => "✗",
        None => "-",
    };
    [
        n.namespace.clone(),
        n.source.as_str().to_owned(),
        sa.to_owned(),
        format!("{}/{}", n.deployments_compliant, n.deployments_total),
        n.last_event
            .as_ref()
            .map_or_else(|| "-".to_owned(), |e| e.reason.clone()),
    ]
}

fn status_body(out: &mut String, n: &NamespaceStatus) {
    if n.ok() && n.iam_binding.is_none() {
        return;
    }
    let _ = writeln!(out, "\n=== namespace {}", n.namespace);
    for d in &n.drifted {
        let _ = writeln!(out, "  drifted: {d}");
    }
    for p in &n.problems {
        let _ = writeln!(out, "  invalid config: {p}");
    }
    if let Some(b) = &n.iam_binding {
        let _ = writeln!(
            out,
            "  IAM binding (cannot be verified from the cluster):\n    {b}"
        );
    }
    if let Some(e) = &n.last_event {
        let _ = writeln!(
            out,
            "  last event: {} {} {}: {}",
            e.time, e.reason, e.object, e.message
        );
    }
}

/// Left-aligned columns, two spaces apart.
fn table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths: [usize; N] = header.map(|h| h.chars().count());
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == N {
                l.push_str(cell);
            } else {
                let pad = w - cell.chars().count();
                let _ = write!(l, "{cell}{}  ", " ".repeat(pad));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
    out
}
