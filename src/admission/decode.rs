//! Reading an AdmissionReview's `request` in one pass.
//!
//! kube-core's `DynamicObject` flattens its `TypeMeta` and its `data` (`#[serde(flatten)]`), so
//! serde first buffers every object into its private `Content` tree and then walks that tree
//! again to build `metadata` and the `data` value: every string of the object is allocated twice
//! and every map is built twice. On the CARTO workspace-api Deployment that was more than half of
//! the in-process review time. [`deserialize_request`] reads the same request straight into a
//! `DynamicObject` and gives exactly what the derived implementation gives (see the tests); use
//! it on the `request` field of the envelope:
//!
//! ```
//! use kube::core::{DynamicObject, admission::AdmissionRequest};
//!
//! #[derive(serde::Deserialize)]
//! struct Envelope {
//!     #[serde(default, deserialize_with = "carto_wi_webhook::admission::decode::deserialize_request")]
//!     request: Option<AdmissionRequest<DynamicObject>>,
//! }
//! let body = br#"{"request":{"uid":"1","kind":{"group":"","version":"v1","kind":"ConfigMap"},
//!   "resource":{"group":"","version":"v1","resource":"configmaps"},"operation":"CREATE",
//!   "userInfo":{},"object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}}}}"#;
//! let env: Envelope = serde_json::from_slice(body).unwrap();
//! assert_eq!(env.request.unwrap().object.unwrap().metadata.name.as_deref(), Some("x"));
//! ```
//!
//! # The server's parse: only what the admission core reads
//!
//! [`deserialize_request_for_review`] is a second entry point for the HTTP server. It reads the
//! same request but materializes only what [`mutate`](super::mutate) and
//! [`validate`](super::validate) read, and skips the rest with [`serde::de::IgnoredAny`] (still
//! checked to be well-formed JSON, never allocated):
//!
//! - the request: everything but `userInfo` (left default), `oldObject` (left `None`) and
//!   `options` (left `None`), which the core never reads (`userInfo` must still be present, as
//!   for the full parse);
//! - `object.metadata`: `name`, `namespace`, `labels`, `annotations`, `deletionTimestamp` only
//!   (not `managedFields`, which the API server sends and can be large);
//! - `object`'s other members: `apiVersion`, `kind`, `data` and `binaryData` (whole, for a
//!   ConfigMap), and of `spec` only `template.metadata.annotations` and
//!   `template.spec.{serviceAccountName, serviceAccount, containers, initContainers}`, where
//!   every container keeps its place in the list but only its `name` and `env` (whole); `status`
//!   and everything else is dropped. A member of another type than expected (a `spec` that is
//!   not an object, a `containers` that is not a list...) is kept whole, so the core sees exactly
//!   what it would have seen.
//!
//! **The result is for the admission core only**: it is not the object the API server sent, so
//! never apply a patch to it, print it, store it or compare it; the offline `review` command
//! uses [`request_from_slice`] for that. The contract is that `mutate` and `validate` give the
//! same `Decision` as on the full parse (tests/core/pruned.rs). Malformed JSON, a missing
//! required field and a wrong type in any part the core reads are errors as with the full
//! parse; a wrong type inside a skipped part (`managedFields`, `status`, `userInfo`...) is not
//! looked at.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::authentication::v1::UserInfo;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::core::admission::{AdmissionRequest, Operation};
use kube::core::{DynamicObject, GroupVersionKind, GroupVersionResource, ObjectMeta, TypeMeta};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// `deserialize_with` for an `Option<AdmissionRequest<DynamicObject>>` field: the same result
/// as the derived implementation, without serde's flatten buffering. `types` is left default
/// (kube copies it from the envelope).
pub fn deserialize_request<'de, D>(
    d: D,
) -> Result<Option<AdmissionRequest<DynamicObject>>, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(Option::<Request>::deserialize(d)?.map(Request::into_request))
}

/// Parse one `AdmissionRequest` (the value of an AdmissionReview's `request`).
pub fn request_from_slice(json: &[u8]) -> serde_json::Result<AdmissionRequest<DynamicObject>> {
    serde_json::from_slice::<Request>(json).map(Request::into_request)
}

/// `deserialize_with` for the server's envelope: the request with only what the admission core
/// reads (see the [module](self) documentation).
///
/// **Only for [`mutate`](super::mutate) / [`validate`](super::validate)**: the object is pruned
/// (no `managedFields`, no `status`, containers reduced to `name` and `env`...), `oldObject`
/// and `options` are `None` and `userInfo` is default. Never apply a patch to it, print it or
/// keep it; use [`deserialize_request`] for that.
pub fn deserialize_request_for_review<'de, D>(
    d: D,
) -> Result<Option<AdmissionRequest<DynamicObject>>, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(Option::<ReviewRequest>::deserialize(d)?.map(ReviewRequest::into_request))
}

/// [`deserialize_request_for_review`] on one `AdmissionRequest` (the value of an
/// AdmissionReview's `request`). Same restriction: for the admission core only.
pub fn request_for_review_from_slice(
    json: &[u8],
) -> serde_json::Result<AdmissionRequest<DynamicObject>> {
    serde_json::from_slice::<ReviewRequest>(json).map(ReviewRequest::into_request)
}

/// [`Request`] with what the core never reads skipped: `userInfo` (required, as in kube-core),
/// `oldObject` and `options`; the object read by [`ReviewObject`].
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewRequest {
    uid: String,
    kind: GroupVersionKind,
    resource: GroupVersionResource,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    request_kind: Option<GroupVersionKind>,
    #[serde(default)]
    request_resource: Option<GroupVersionResource>,
    #[serde(default)]
    request_sub_resource: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    operation: Operation,
    #[allow(dead_code)]
    user_info: IgnoredAny,
    object: Option<ReviewObject>,
    #[allow(dead_code)]
    old_object: Option<IgnoredAny>,
    #[serde(default)]
    dry_run: bool,
    #[allow(dead_code)]
    #[serde(default)]
    options: Option<IgnoredAny>,
}

impl ReviewRequest {
    fn into_request(self) -> AdmissionRequest<DynamicObject> {
        AdmissionRequest {
            types: TypeMeta::default(),
            uid: self.uid,
            kind: self.kind,
            resource: self.resource,
            sub_resource: self.sub_resource,
            request_kind: self.request_kind,
            request_resource: self.request_resource,
            request_sub_resource: self.request_sub_resource,
            name: self.name,
            namespace: self.namespace,
            operation: self.operation,
            user_info: UserInfo::default(),
            object: self.object.map(|o| o.0),
            old_object: None,
            dry_run: self.dry_run,
            options: None,
        }
    }
}

/// Which parts of a JSON value to keep.
enum Shape {
    /// The whole value.
    Whole,
    /// An object: these members (each with its own shape); the others are skipped.
    Fields(&'static [(&'static str, Shape)]),
    /// A list: every element (so indices stay right), each with this shape.
    Each(&'static Shape),
}

/// A container: its name and its env (whole: `null` stays `null`, absent stays absent).
const CONTAINER: Shape = Shape::Fields(&[("name", Shape::Whole), ("env", Shape::Whole)]);
const CONTAINERS: Shape = Shape::Each(&CONTAINER);
/// A Deployment's `spec`, as `target` reads it.
const SPEC: Shape = Shape::Fields(&[(
    "template",
    Shape::Fields(&[
        ("metadata", Shape::Fields(&[("annotations", Shape::Whole)])),
        (
            "spec",
            Shape::Fields(&[
                ("serviceAccountName", Shape::Whole),
                ("serviceAccount", Shape::Whole),
                ("containers", CONTAINERS),
                ("initContainers", CONTAINERS),
            ]),
        ),
    ]),
)]);

impl<'de> DeserializeSeed<'de> for &'static Shape {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        match self {
            Shape::Whole => Value::deserialize(d),
            shape => d.deserialize_any(Pruning(shape)),
        }
    }
}

/// Builds a `Value` as serde_json's own visitor does, pruned to a [`Shape`] where the value has
/// the expected type (a value of another type is kept whole).
struct Pruning(&'static Shape);

impl<'de> Visitor<'de> for Pruning {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any valid JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.0.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        match self.0 {
            Shape::Each(elem) => {
                while let Some(v) = seq.next_element_seed(*elem)? {
                    out.push(v);
                }
            }
            _ => {
                while let Some(v) = seq.next_element::<Value>()? {
                    out.push(v);
                }
            }
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        match self.0 {
            Shape::Fields(fields) => {
                while let Some(key) = map.next_key::<String>()? {
                    match fields.iter().find(|(name, _)| *name == key) {
                        Some((_, shape)) => {
                            let v = map.next_value_seed(shape)?;
                            out.insert(key, v);
                        }
                        None => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
            }
            _ => {
                while let Some(key) = map.next_key::<String>()? {
                    let v: Value = map.next_value()?;
                    out.insert(key, v);
                }
            }
        }
        Ok(Value::Object(out))
    }
}

/// A `DynamicObject` read as [`Object`] does, but with only what the core reads (see the
/// [module](self) documentation).
struct ReviewObject(DynamicObject);

impl<'de> Deserialize<'de> for ReviewObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ReviewObjectVisitor)
    }
}

struct ReviewObjectVisitor;

impl<'de> Visitor<'de> for ReviewObjectVisitor {
    type Value = ReviewObject;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("struct DynamicObject")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ReviewObject, A::Error> {
        let mut metadata: Option<ObjectMeta> = None;
        // As in `ObjectVisitor`, for the members kept: `take_type_meta` only looks at
        // `apiVersion` and `kind`, so dropping the others changes nothing for it.
        let mut rest: Vec<Option<(String, Value)>> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "metadata" => {
                    if metadata.is_some() {
                        return Err(de::Error::duplicate_field("metadata"));
                    }
                    metadata = Some(map.next_value::<ReviewMeta>()?.0);
                }
                "apiVersion" | "kind" | "data" | "binaryData" => {
                    let v: Value = map.next_value()?;
                    rest.push(Some((key, v)));
                }
                "spec" => {
                    let v = map.next_value_seed(&SPEC)?;
                    rest.push(Some((key, v)));
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let types = take_type_meta(&mut rest);
        let mut data = Map::new();
        for (k, v) in rest.into_iter().flatten() {
            data.insert(k, v);
        }
        Ok(ReviewObject(DynamicObject {
            types,
            metadata: metadata.unwrap_or_default(),
            data: Value::Object(data),
        }))
    }
}

/// `ObjectMeta` with the members the core reads; as k8s-openapi's implementation, a repeated
/// member keeps its last value and unknown members are ignored (here also `managedFields`,
/// `ownerReferences`...).
struct ReviewMeta(ObjectMeta);

impl<'de> Deserialize<'de> for ReviewMeta {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ReviewMetaVisitor)
    }
}

struct ReviewMetaVisitor;

impl<'de> Visitor<'de> for ReviewMetaVisitor {
    type Value = ReviewMeta;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("struct ObjectMeta")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ReviewMeta, A::Error> {
        let mut meta = ObjectMeta::default();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "name" => meta.name = map.next_value::<Option<String>>()?,
                "namespace" => meta.namespace = map.next_value::<Option<String>>()?,
                "labels" => meta.labels = map.next_value::<Option<BTreeMap<String, String>>>()?,
                "annotations" => {
                    meta.annotations = map.next_value::<Option<BTreeMap<String, String>>>()?;
                }
                "deletionTimestamp" => {
                    meta.deletion_timestamp = map.next_value::<Option<Time>>()?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(ReviewMeta(meta))
    }
}

/// Field for field kube-core's `AdmissionRequest` (same names, defaults and types), but with the
/// objects read by [`Object`].
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    uid: String,
    kind: GroupVersionKind,
    resource: GroupVersionResource,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    request_kind: Option<GroupVersionKind>,
    #[serde(default)]
    request_resource: Option<GroupVersionResource>,
    #[serde(default)]
    request_sub_resource: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    operation: Operation,
    user_info: UserInfo,
    object: Option<Object>,
    old_object: Option<Object>,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    options: Option<RawExtension>,
}

impl Request {
    fn into_request(self) -> AdmissionRequest<DynamicObject> {
        AdmissionRequest {
            types: TypeMeta::default(),
            uid: self.uid,
            kind: self.kind,
            resource: self.resource,
            sub_resource: self.sub_resource,
            request_kind: self.request_kind,
            request_resource: self.request_resource,
            request_sub_resource: self.request_sub_resource,
            name: self.name,
            namespace: self.namespace,
            operation: self.operation,
            user_info: self.user_info,
            object: self.object.map(|o| o.0),
            old_object: self.old_object.map(|o| o.0),
            dry_run: self.dry_run,
            options: self.options,
        }
    }
}

/// A `DynamicObject` read in one pass: `metadata` straight into `ObjectMeta`, every other member
/// straight into `data`; then `apiVersion`/`kind` move to `types` as the flattened `TypeMeta`
/// would take them.
struct Object(DynamicObject);

impl<'de> Deserialize<'de> for Object {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ObjectVisitor)
    }
}

struct ObjectVisitor;

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = Object;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("struct DynamicObject")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Object, A::Error> {
        let mut metadata: Option<ObjectMeta> = None;
        // The other members in document order, duplicates kept, as serde's flatten sees them.
        let mut rest: Vec<Option<(String, Value)>> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if key == "metadata" {
                if metadata.is_some() {
                    return Err(de::Error::duplicate_field("metadata"));
                }
                metadata = Some(map.next_value()?);
            } else {
                let v: Value = map.next_value()?;
                rest.push(Some((key, v)));
            }
        }
        let types = take_type_meta(&mut rest);
        let mut data = Map::new();
        for (k, v) in rest.into_iter().flatten() {
            data.insert(k, v);
        }
        Ok(Object(DynamicObject {
            types,
            metadata: metadata.unwrap_or_default(),
            data: Value::Object(data),
        }))
    }
}

/// What the flattened `Option<TypeMeta>` does (serde's `FlatStructAccess` and the derived
/// visitor): visit the `apiVersion` and `kind` members in document order, taking each one out
/// of the object as it is reached; a repeated one or one that is not a string ends the visit
/// (members after it stay in `data`). `Some` only when both were read as strings. Checked
/// against serde in the tests below.
fn take_type_meta(rest: &mut [Option<(String, Value)>]) -> Option<TypeMeta> {
    let (mut api_version, mut kind) = (None, None);
    for entry in rest.iter_mut() {
        let slot = match entry.as_ref().map(|(k, _)| k.as_str()) {
            Some("apiVersion") => &mut api_version,
            Some("kind") => &mut kind,
            _ => continue,
        };
        let (_, value) = entry.take()?;
        match (slot.is_some(), value) {
            (false, Value::String(s)) => *slot = Some(s),
            _ => return None,
        }
    }
    Some(TypeMeta {
        api_version: api_version?,
        kind: kind?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(object: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "uid": "u-1",
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "subResource": null,
            "name": "d",
            "namespace": "ns",
            "operation": "UPDATE",
            "userInfo": {"username": "u", "groups": ["g"]},
            "object": object,
            "oldObject": {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}},
            "dryRun": true,
            "options": {"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1"},
        }))
        .unwrap()
    }

    /// Ours and kube-core's derived implementation agree: same value, or both refuse.
    fn same(body: &[u8]) {
        let theirs = serde_json::from_slice::<AdmissionRequest<DynamicObject>>(body);
        let ours = request_from_slice(body);
        match (theirs, ours) {
            (Ok(t), Ok(o)) => {
                assert_eq!(t.object, o.object, "{}", String::from_utf8_lossy(body));
                assert_eq!(t.old_object, o.old_object);
                assert_eq!(
                    serde_json::to_value(&t).unwrap(),
                    serde_json::to_value(&o).unwrap()
                );
            }
            (Err(_), Err(_)) => {}
            (t, o) => panic!(
                "disagree on {}: kube {:?}, ours {:?}",
                String::from_utf8_lossy(body),
                t.map(|r| r.object),
                o.map(|r| r.object)
            ),
        }
    }

    #[test]
    fn agrees_with_the_derived_implementation() {
        let objects = [
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "labels": {"a": "b"}},
                   "spec": {"template": {"spec": {"containers": [{"name": "c", "env": null}]}}}, "status": {}}),
            json!({"metadata": {"name": "x"}, "spec": 1, "z": [1, 2.5, -3, true, null, "s\u{e9}\n"]}),
            json!({"kind": "Deployment", "spec": {}}),
            json!({"apiVersion": "apps/v1", "spec": {}}),
            json!({"apiVersion": 5, "kind": "Deployment"}),
            json!({"apiVersion": "v1", "kind": null}),
            json!({"kind": ["x"], "apiVersion": "v1", "metadata": {}}),
            json!({"spec": {}, "kind": "K", "metadata": {"annotations": {"x/y": "z"}}, "apiVersion": "v1"}),
            json!({"metadata": null}),
            json!({"metadata": 3}),
            json!("not an object"),
            json!([]),
            json!({}),
            Value::Null,
        ];
        for o in objects {
            same(&request(o));
        }
        // Missing required fields, wrong operation, no object at all.
        same(br#"{"uid":"1"}"#);
        same(br#"{"uid":"1","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"operation":"PATCH","userInfo":{}}"#);
        same(br#"{"uid":"1","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"operation":"DELETE","userInfo":{}}"#);
        // Duplicate members.
        same(br#"{"uid":"1","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"operation":"CREATE","userInfo":{},"object":{"metadata":{},"metadata":{}}}"#);
        same(br#"{"uid":"1","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"operation":"CREATE","userInfo":{},"object":{"spec":1,"spec":2}}"#);
    }

    #[test]
    fn agrees_on_the_carto_chart() {
        let stream = include_str!("../../tests/fixtures/carto-plain.yaml");
        let mut n = 0;
        for d in crate::yaml::split_documents(stream) {
            let Ok(obj) = crate::yaml::parse(d.text) else {
                continue;
            };
            same(&request(obj));
            n += 1;
        }
        assert!(n > 20);
    }

    fn leaf() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[a-z/0-9]{0,6}".prop_map(Value::from),
            Just(json!({"name": "n", "labels": {"a": "b"}})),
            Just(json!([1, "x"])),
        ]
    }

    proptest::proptest! {
        /// Any order and any types of `apiVersion`, `kind`, `metadata` and other members.
        #[test]
        fn agrees_on_random_objects(
            members in proptest::collection::vec(
                (proptest::sample::select(vec!["apiVersion", "kind", "metadata", "spec", "data", "x"]), leaf()),
                0..7,
            )
        ) {
            // Written by hand so that duplicate members reach both parsers as they are.
            let body: Vec<String> = members
                .iter()
                .map(|(k, v)| format!("{}:{}", json!(k), v))
                .collect();
            let object = format!("{{{}}}", body.join(","));
            let req = format!(
                r#"{{"uid":"1","kind":{{"group":"","version":"v1","kind":"Pod"}},"resource":{{"group":"","version":"v1","resource":"pods"}},"operation":"CREATE","userInfo":{{}},"object":{object}}}"#
            );
            same(req.as_bytes());
        }
    }
}
