//! Building blocks of the views: members the core tolerates being null or of another type
//! ([`Field`]), and strict string maps ([`StringMap`]). Strings borrow from the input when they
//! have no escapes.

use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A member as the core sees it: absent, `null`, of an unexpected type (skipped, never
/// allocated), or the expected value.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Field<T> {
    /// Not in the object.
    #[default]
    Absent,
    /// `null`.
    Null,
    /// Present with another JSON type than expected.
    Wrong,
    /// The expected value.
    Value(T),
}

impl<T> Field<T> {
    /// The value, when it has the expected type.
    pub fn get(&self) -> Option<&T> {
        match self {
            Self::Value(v) => Some(v),
            _ => None,
        }
    }

    /// Present with any non-null value (of the expected type or not).
    pub fn is_set(&self) -> bool {
        matches!(self, Self::Wrong | Self::Value(_))
    }

    /// In the object, even as `null`.
    pub fn is_present(&self) -> bool {
        !matches!(self, Self::Absent)
    }
}

impl<'a> Field<Cow<'a, str>> {
    /// The string, when it is one.
    pub fn str(&self) -> Option<&str> {
        self.get().map(|s| s.as_ref())
    }
}

/// How a type reads from each JSON type; anything not overridden is [`Field::Wrong`].
pub trait Typed<'de>: Sized {
    /// A JSON object.
    fn from_map<A: MapAccess<'de>>(mut map: A) -> Result<Field<Self>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Field::Wrong)
    }
    /// A JSON array.
    fn from_seq<A: SeqAccess<'de>>(mut seq: A) -> Result<Field<Self>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Field::Wrong)
    }
    /// A JSON string.
    fn from_str(_: Cow<'de, str>) -> Field<Self> {
        Field::Wrong
    }
}

/// A struct read with its derived implementation when the member is an object.
macro_rules! typed_struct {
    ($($t:ident),*) => {$(
        impl<'de: 'a, 'a> $crate::admission::view::field::Typed<'de> for $t<'a> {
            fn from_map<A: serde::de::MapAccess<'de>>(
                map: A,
            ) -> Result<$crate::admission::view::field::Field<Self>, A::Error> {
                $crate::admission::view::field::struct_from_map(map)
            }
        }
    )*};
}
pub(crate) use typed_struct;

/// Read `T` (a derived struct) from the entries of a JSON object.
pub fn struct_from_map<'de, T: Deserialize<'de>, A: MapAccess<'de>>(
    map: A,
) -> Result<Field<T>, A::Error> {
    T::deserialize(MapAccessDeserializer::new(map)).map(Field::Value)
}

impl<'de: 'a, 'a> Typed<'de> for Cow<'a, str> {
    fn from_str(s: Cow<'de, str>) -> Field<Self> {
        Field::Value(s)
    }
}

/// Any non-null value (only its presence matters).
impl<'de> Typed<'de> for () {}

impl<'de, T: Deserialize<'de>> Typed<'de> for Vec<T> {
    fn from_seq<A: SeqAccess<'de>>(mut seq: A) -> Result<Field<Self>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(v) = seq.next_element()? {
            out.push(v);
        }
        Ok(Field::Value(out))
    }
}

impl<'de, T: Typed<'de>> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(FieldVisitor(PhantomData))
    }
}

struct FieldVisitor<T>(PhantomData<T>);

impl<'de, T: Typed<'de>> Visitor<'de> for FieldVisitor<T> {
    type Value = Field<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Field::Wrong)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Field::Wrong)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Field::Wrong)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Field::Wrong)
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(T::from_str(Cow::Borrowed(s)))
    }
    fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
        Ok(T::from_str(Cow::Owned(s.to_owned())))
    }
    fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
        Ok(T::from_str(Cow::Owned(s)))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Field::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Field::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        Field::deserialize(d)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        T::from_map(map)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        T::from_seq(seq)
    }
}

/// A string, borrowed from the input when it has no escapes.
pub struct Str<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(StrVisitor)
    }
}

struct StrVisitor;

impl<'de> Visitor<'de> for StrVisitor {
    type Value = Str<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Str(Cow::Borrowed(s)))
    }
    fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Str(Cow::Owned(s.to_owned())))
    }
    fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
        Ok(Str(Cow::Owned(s)))
    }
}

/// `deserialize_with` for a required borrowed string.
pub fn cow<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Cow<'a, str>, D::Error> {
    Str::deserialize(d).map(|s| s.0)
}

/// `deserialize_with` for a string or `null`.
pub fn opt_cow<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'a, str>>, D::Error> {
    Option::<Str<'a>>::deserialize(d).map(|s| s.map(|s| s.0))
}

/// A map of strings to strings (labels, annotations), in document order; a value that is not a
/// string is an error, as for the API's own types.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StringMap<'a>(pub Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl StringMap<'_> {
    /// The value of `key` (the last one when repeated, as a JSON map would keep).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_ref())
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for StringMap<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(StringMapVisitor)
    }
}

struct StringMapVisitor;

impl<'de> Visitor<'de> for StringMapVisitor {
    type Value = StringMap<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of strings")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some((k, v)) = map.next_entry::<Str<'de>, Str<'de>>()? {
            out.push((k.0, v.0));
        }
        Ok(StringMap(out))
    }
}

/// A map whose values the core reads only when they are strings (a pod template's annotations,
/// a ConfigMap's `data`), in document order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LooseMap<'a>(pub Vec<(Cow<'a, str>, Field<Cow<'a, str>>)>);

impl<'a> LooseMap<'a> {
    /// The value of `key` (the last one when repeated): `None` when absent.
    pub fn get(&self, key: &str) -> Option<&Field<Cow<'a, str>>> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Each key once, at its first place, with its last value (what a JSON map keeps).
    pub fn entries(&self) -> Vec<(&str, &Field<Cow<'a, str>>)> {
        let mut out: Vec<(&str, &Field<Cow<'a, str>>)> = Vec::with_capacity(self.0.len());
        // Where each key is in `out`: one pass, however many keys.
        let mut slots: HashMap<&str, usize> = HashMap::with_capacity(self.0.len());
        for (k, v) in &self.0 {
            match slots.entry(k.as_ref()) {
                Entry::Occupied(slot) => out[*slot.get()].1 = v,
                Entry::Vacant(slot) => {
                    slot.insert(out.len());
                    out.push((k.as_ref(), v));
                }
            }
        }
        out
    }
}

impl<'de: 'a, 'a> Typed<'de> for LooseMap<'a> {
    fn from_map<A: MapAccess<'de>>(mut map: A) -> Result<Field<Self>, A::Error> {
        let mut out = Vec::new();
        while let Some(k) = map.next_key::<Str<'de>>()? {
            out.push((k.0, map.next_value()?));
        }
        Ok(Field::Value(LooseMap(out)))
    }
}

/// The keys of a JSON object (values skipped).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Keys<'a>(pub Vec<Cow<'a, str>>);

impl<'de: 'a, 'a> Typed<'de> for Keys<'a> {
    fn from_map<A: MapAccess<'de>>(mut map: A) -> Result<Field<Self>, A::Error> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        while let Some(k) = map.next_key::<Str<'de>>()? {
            map.next_value::<IgnoredAny>()?;
            if seen.insert(k.0.clone()) {
                out.push(k.0);
            }
        }
        Ok(Field::Value(Keys(out)))
    }
}
