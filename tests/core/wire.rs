//! The answer the server writes (`wire::response_body`, one buffer sized once) is byte for byte
//! serde_json's serialization of the documented `ReviewResponse`.

use std::collections::BTreeMap;

use carto_wi_webhook::admission::wire::{ReviewResponse, response_body};
use carto_wi_webhook::admission::{Decision, Denial};
use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use proptest::prelude::*;
use serde_json::json;

/// `response_body` writes what serde_json writes for the same decision.
pub fn assert_same_answer(uid: &str, d: &Decision) {
    let expected =
        serde_json::to_vec(&ReviewResponse::from_decision(uid.to_owned(), d)).expect("serializes");
    let got = response_body(uid, d);
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&expected),
        "for {d:?}"
    );
    assert_eq!(got.capacity(), got.len(), "sized once, exactly");
}

/// Any text, with the characters JSON escapes made likely.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![".*", "[\"\\\\\u{0}-\u{1f}\u{7f}\u{2028}é€😀a-z ]{0,40}",]
}

fn patch() -> impl Strategy<Value = Option<Patch>> {
    proptest::option::of(
        proptest::collection::vec((text(), text()), 1..4).prop_map(|ops| {
            Patch(
                ops.into_iter()
                    .map(|(path, value)| {
                        PatchOperation::Add(AddOperation {
                            path: PointerBuf::from_tokens([path.as_str()]),
                            value: json!({ "value": value }),
                        })
                    })
                    .collect(),
            )
        }),
    )
}

fn decision() -> impl Strategy<Value = Decision> {
    (
        patch(),
        proptest::collection::vec(text(), 0..4),
        proptest::option::of(text()),
        proptest::collection::btree_map(text(), text(), 0..3),
    )
        .prop_map(|(patch, warnings, denial, audit)| Decision {
            kind: None,
            patch,
            warnings,
            denial: denial.map(|subject| Denial {
                subject,
                violations: Vec::new(),
            }),
            violations: Vec::new(),
            audit_annotations: audit,
        })
}

proptest! {
    #[test]
    fn the_answer_is_what_serde_json_writes(uid in text(), d in decision()) {
        assert_same_answer(&uid, &d);
    }
}

#[test]
fn an_allowed_answer_without_anything_else() {
    let d = Decision {
        audit_annotations: BTreeMap::new(),
        ..Decision::default()
    };
    assert_eq!(
        String::from_utf8(response_body("u-1", &d)).unwrap(),
        r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"u-1","allowed":true}}"#
    );
    assert_same_answer("a\"b\\c\n\u{1}", &d);
}
