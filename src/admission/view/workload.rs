//! The parts of a Deployment the core reads: the pod template's annotations, its ServiceAccount
//! and its containers' names and env lists (positions kept: patch paths use them).

use std::borrow::Cow;

use serde::Deserialize;

use super::field::{Field, LooseMap, typed_struct};

/// A Deployment's `spec`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct Spec<'a> {
    /// `spec.template`.
    #[serde(borrow, default)]
    pub template: Field<Template<'a>>,
}

/// `spec.template`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct Template<'a> {
    /// `spec.template.metadata`.
    #[serde(borrow, default)]
    pub metadata: Field<TemplateMeta<'a>>,
    /// `spec.template.spec`.
    #[serde(borrow, default)]
    pub spec: Field<PodSpec<'a>>,
}

/// `spec.template.metadata`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct TemplateMeta<'a> {
    /// Its annotations (values that are not strings kept as [`Field::Wrong`]).
    #[serde(borrow, default)]
    pub annotations: Field<LooseMap<'a>>,
}

/// `spec.template.spec`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec<'a> {
    /// `serviceAccountName`.
    #[serde(borrow, default)]
    pub service_account_name: Field<Cow<'a, str>>,
    /// The deprecated `serviceAccount`.
    #[serde(borrow, default)]
    pub service_account: Field<Cow<'a, str>>,
    /// `containers`, every element in its place.
    #[serde(borrow, default)]
    pub containers: Field<Vec<Field<Container<'a>>>>,
    /// `initContainers`, every element in its place.
    #[serde(borrow, default)]
    pub init_containers: Field<Vec<Field<Container<'a>>>>,
}

impl<'a> PodSpec<'a> {
    /// `containers` or `initContainers` by field name (empty when not a list).
    pub fn list(&self, field: &str) -> &[Field<Container<'a>>] {
        let list = match field {
            "initContainers" => &self.init_containers,
            _ => &self.containers,
        };
        list.get().map_or(&[], Vec::as_slice)
    }
}

/// One container.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct Container<'a> {
    /// Its name.
    #[serde(borrow, default)]
    pub name: Field<Cow<'a, str>>,
    /// Its env list, every entry in its place.
    #[serde(borrow, default)]
    pub env: Field<Vec<Field<EnvVar<'a>>>>,
}

/// One env entry.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar<'a> {
    /// `name`.
    #[serde(borrow, default)]
    pub name: Field<Cow<'a, str>>,
    /// `value` (present even when `null` or not a string).
    #[serde(borrow, default)]
    pub value: Field<Cow<'a, str>>,
    /// `valueFrom` (only whether it is set matters).
    #[serde(default)]
    pub value_from: Field<()>,
}

typed_struct!(Spec, Template, TemplateMeta, PodSpec, Container, EnvVar);
