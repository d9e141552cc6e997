//! `review`'s YAML stream: the splitter (`yaml::split_documents`) and the whole offline review
//! (`offline::review_stream`: parse each document, mutate, patch, validate, render), with a valid
//! default configuration.
//!
//! Asserted for any text: no panic; documents are disjoint pieces of the input, in order, none
//! holding a marker line; every patch applies; reviewing the output again patches nothing.

use carto_wi_webhook::config::ConfigEntry;
use carto_wi_webhook::offline::{OutputFormat, ReviewReport, review_stream};
use carto_wi_webhook::settings::Settings;
use carto_wi_webhook::yaml::split_documents;

use crate::{NAMESPACE, acme, settings_for};

/// The checks of one input.
pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    check_split(text);
    let settings = settings_for(data);
    let first = review(text, &settings);
    assert!(
        !first.stderr.contains("patch failed"),
        "a patch does not apply:\n{}",
        first.stderr
    );
    if first.patched > 0 && first.errors == 0 {
        let second = review(&first.stdout, &settings);
        assert_eq!(
            second.patched, 0,
            "reviewing the output patches again:\n{}\n--- output:\n{}",
            second.stderr, first.stdout
        );
    }
}

fn review(text: &str, settings: &Settings) -> ReviewReport {
    review_stream(
        text,
        ConfigEntry::Valid(acme()),
        settings,
        NAMESPACE,
        OutputFormat::Yaml,
    )
}

fn check_split(text: &str) {
    let base = text.as_ptr() as usize;
    let mut end = 0;
    for doc in split_documents(text) {
        let start = doc.text.as_ptr() as usize - base;
        assert!(start >= end, "documents overlap or are out of order");
        assert!(
            start + doc.text.len() <= text.len(),
            "a document outside the input"
        );
        assert!(!doc.text.is_empty(), "an empty document");
        assert!(
            !doc.text.lines().any(|l| l.starts_with("---")
                && l[3..]
                    .chars()
                    .next()
                    .is_none_or(|c| c == ' ' || c == '\t' || c == '\r')),
            "a document holds a marker line"
        );
        end = start + doc.text.len();
    }
}
