//! Typed, borrowing views of what the admission core reads: an AdmissionReview's request
//! ([`ReviewRequest`]) and the object it carries ([`Object`]). Every other member is skipped by
//! serde without being allocated; strings borrow from the input when they have no escapes.
//!
//! Metadata is read strictly (a label that is not a string is an error, as for the API's own
//! types); the parts of a Deployment or ConfigMap the core reads are [`Field`]s, so `null`, an
//! absent member and one of another type stay distinct, as the core's decisions need.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::core::admission::Operation;
use serde::Deserialize;
use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};

use super::Kind;
use crate::config::{ConfigMapShape, DataShape};

mod field;
mod workload;

pub use field::{Field, Keys, LooseMap, StringMap, opt_cow};
pub use workload::{Container, EnvVar, PodSpec, Spec, Template, TemplateMeta};

use field::cow;

use super::limits::MAX_UID_BYTES;

/// Read `T` from JSON text, borrowing from it. The text is checked to be UTF-8 once, whole,
/// rather than string by string (serde_json's byte-slice reader checks each string it returns
/// and none that it skips); an invalid byte is an error wherever it is.
pub fn from_json<'a, T: Deserialize<'a>>(json: &'a [u8]) -> Result<T, serde_json::Error> {
    match std::str::from_utf8(json) {
        Ok(text) => serde_json::from_str(text),
        Err(e) => Err(invalid_utf8(json, e.valid_up_to())),
    }
}

/// The error for the invalid byte at `at`, placed the way serde_json places its own.
fn invalid_utf8(json: &[u8], at: usize) -> serde_json::Error {
    let before = &json[..at];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let column = at - line_start + 1;
    serde::de::Error::custom(format_args!("invalid UTF-8 at line {line} column {column}"))
}

/// `deserialize_with` for the uid: a string of at most [`MAX_UID_BYTES`].
fn bounded_uid<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Cow<'a, str>, D::Error> {
    let uid = cow(d)?;
    if uid.len() > MAX_UID_BYTES {
        return Err(serde::de::Error::custom(format_args!(
            "uid is {} bytes long, over the {MAX_UID_BYTES} accepted (the API server sends a UUID)",
            uid.len()
        )));
    }
    Ok(uid)
}

/// The `request` of an AdmissionReview, with what the core reads and the server logs.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewRequest<'a> {
    /// Echoed in the response (at most [`MAX_UID_BYTES`]: the answer must stay bounded).
    #[serde(borrow, deserialize_with = "bounded_uid")]
    pub uid: Cow<'a, str>,
    /// The kind the request was sent as.
    #[serde(borrow)]
    pub kind: GroupVersionKind<'a>,
    /// The resource (required, not read).
    #[serde(borrow)]
    pub resource: GroupVersionResource<'a>,
    /// `status`, `scale`... (the core leaves subresources alone).
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub sub_resource: Option<Cow<'a, str>>,
    /// The object's name (empty for `generateName` objects).
    #[serde(borrow, default, deserialize_with = "cow")]
    pub name: Cow<'a, str>,
    /// The namespace.
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub namespace: Option<Cow<'a, str>>,
    /// CREATE, UPDATE, DELETE or CONNECT.
    pub operation: Operation,
    /// Required by the API, never read.
    #[allow(dead_code)]
    user_info: IgnoredAny,
    /// The object (`None` for DELETE).
    #[serde(borrow, default)]
    pub object: Option<Object<'a>>,
    /// A dry run (answered the same way).
    #[serde(default)]
    pub dry_run: bool,
}

impl<'a> ReviewRequest<'a> {
    /// Parse the value of an AdmissionReview's `request`, borrowing from `json`.
    pub fn from_slice(json: &'a [u8]) -> Result<Self, serde_json::Error> {
        from_json(json)
    }

    /// Read a request from a JSON value, borrowing from it.
    pub fn from_value(v: &'a serde_json::Value) -> Result<Self, serde_json::Error> {
        Self::deserialize(v)
    }

    /// The kind of object the request is about ([`Kind::Other`] for a subresource).
    pub fn target_kind(&self) -> Kind {
        if self.sub_resource.as_deref().is_some_and(|s| !s.is_empty()) {
            return Kind::Other;
        }
        Kind::of(&self.kind.group, &self.kind.kind)
    }
}

/// A group, version and kind.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct GroupVersionKind<'a> {
    /// API group (empty for the core group).
    #[serde(borrow, deserialize_with = "cow")]
    pub group: Cow<'a, str>,
    /// Version.
    #[serde(borrow, deserialize_with = "cow")]
    pub version: Cow<'a, str>,
    /// Kind.
    #[serde(borrow, deserialize_with = "cow")]
    pub kind: Cow<'a, str>,
}

/// A group, version and resource.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct GroupVersionResource<'a> {
    /// API group (empty for the core group).
    #[serde(borrow, deserialize_with = "cow")]
    pub group: Cow<'a, str>,
    /// Version.
    #[serde(borrow, deserialize_with = "cow")]
    pub version: Cow<'a, str>,
    /// Resource (plural).
    #[serde(borrow, deserialize_with = "cow")]
    pub resource: Cow<'a, str>,
}

/// An object of any kind, with what the core reads of a ServiceAccount, a Deployment or a
/// ConfigMap. It must be a JSON object; only `metadata` is checked strictly.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase", remote = "Self")]
pub struct Object<'a> {
    /// `apiVersion`.
    #[serde(borrow, default)]
    pub api_version: Field<Cow<'a, str>>,
    /// `kind`.
    #[serde(borrow, default)]
    pub kind: Field<Cow<'a, str>>,
    /// `metadata`.
    #[serde(borrow, default, deserialize_with = "present_metadata")]
    pub metadata: Metadata<'a>,
    /// A Deployment's `spec`.
    #[serde(borrow, default)]
    pub spec: Field<Spec<'a>>,
    /// A ConfigMap's `data`.
    #[serde(borrow, default)]
    pub data: Field<LooseMap<'a>>,
    /// The keys of a ConfigMap's `binaryData`.
    #[serde(borrow, default)]
    pub binary_data: Field<Keys<'a>>,
}

/// `metadata`, read as strictly as the API's `ObjectMeta` for the members kept.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase", remote = "Self")]
pub struct Metadata<'a> {
    /// `name`.
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub name: Option<Cow<'a, str>>,
    /// `namespace`.
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub namespace: Option<Cow<'a, str>>,
    /// `labels` (absent and `null` are both `None`).
    #[serde(borrow, default)]
    pub labels: Option<StringMap<'a>>,
    /// `annotations` (absent and `null` are both `None`).
    #[serde(borrow, default)]
    pub annotations: Option<StringMap<'a>>,
    /// `deletionTimestamp`: set while the object is being deleted.
    #[serde(default)]
    pub deletion_timestamp: Option<Time>,
    /// False when the object has no `metadata` (a patch must then add it whole).
    #[serde(skip)]
    pub present: bool,
}

fn present_metadata<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Metadata<'a>, D::Error> {
    let mut m = Metadata::deserialize(d)?;
    m.present = true;
    Ok(m)
}

impl<'a> Object<'a> {
    /// Read an object from a JSON value, borrowing from it.
    pub fn from_value(v: &'a serde_json::Value) -> Result<Self, serde_json::Error> {
        <Self as Deserialize>::deserialize(v)
    }

    /// Parse an object from JSON text, borrowing from it.
    pub fn from_slice(b: &'a [u8]) -> Result<Self, serde_json::Error> {
        from_json(b)
    }

    /// What kind of object this is, by its `apiVersion` group and `kind`.
    pub fn kind(&self) -> Kind {
        let api_version = self.api_version.str().unwrap_or("");
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        Kind::of(group, self.kind.str().unwrap_or(""))
    }

    /// `metadata.name` (empty when unset).
    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or("")
    }

    /// `metadata.namespace`, when set and not empty.
    pub fn namespace(&self) -> Option<&str> {
        self.metadata.namespace.as_deref().filter(|n| !n.is_empty())
    }

    /// Is the object being deleted?
    pub fn is_deleting(&self) -> bool {
        self.metadata.deletion_timestamp.is_some()
    }

    /// The pod template's spec, when the object has one.
    pub fn pod_spec(&self) -> Option<&PodSpec<'a>> {
        self.spec.get()?.template.get()?.spec.get()
    }

    /// The pod template's metadata (`None` when absent, `null` or not an object).
    pub fn template_meta(&self) -> Option<&TemplateMeta<'a>> {
        self.spec.get()?.template.get()?.metadata.get()
    }

    /// What the configuration reads of a ConfigMap. `kind` is checked only when given.
    pub fn config_map_shape(&self, kind: Option<&'a str>) -> ConfigMapShape<'_> {
        let data = match &self.data {
            Field::Absent | Field::Null => DataShape::Absent,
            Field::Wrong => DataShape::NotAMap,
            Field::Value(m) => {
                DataShape::Entries(m.entries().into_iter().map(|(k, v)| (k, v.str())).collect())
            }
        };
        ConfigMapShape {
            kind,
            data,
            binary_keys: self
                .binary_data
                .get()
                .map(|k| k.0.iter().map(AsRef::as_ref).collect())
                .unwrap_or_default(),
        }
    }
}

/// Read from the entries of a JSON object.
trait FromEntries<'de>: Sized {
    fn from_entries<A: MapAccess<'de>>(map: A) -> Result<Self, A::Error>;
}

/// Only a JSON object (a list is refused, unlike serde's derived structs).
macro_rules! map_only {
    ($($t:ident),*) => {$(
        impl<'de: 'a, 'a> FromEntries<'de> for $t<'a> {
            fn from_entries<A: MapAccess<'de>>(map: A) -> Result<Self, A::Error> {
                $t::deserialize(MapAccessDeserializer::new(map))
            }
        }
        impl<'de: 'a, 'a> Deserialize<'de> for $t<'a> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_map(MapOnly::<Self>(PhantomData, concat!("struct ", stringify!($t))))
            }
        }
    )*};
}
map_only!(Object, Metadata);

struct MapOnly<T>(PhantomData<T>, &'static str);

impl<'de, T: FromEntries<'de>> Visitor<'de> for MapOnly<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.1)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::from_entries(map)
    }
}
