//! Tolerant field deserializers for requests, and the matching emitters. This is the one
//! place where client-generation quirks in *value types* are absorbed (reference §3.4, §6.2):
//!
//! - `null` means "not set" (proto-era parsers treat it so);
//! - integers may arrive as JSON numbers, as doubles (legacy `NSJSONSerialization`:
//!   `valid_from`, `quarantine_timestamp`) or as decimal strings (2024.6/2024.7 `uint64`s);
//! - booleans may arrive as `true`/`false`, `"true"`/`"false"` or `0`/`1`;
//! - unknown enum names become "unset" (legacy `"UNKNOWN"`, future decisions).
//!
//! Key spellings (snake_case vs lowerCamelCase) are handled by `#[serde(alias)]` on the
//! message structs.

use super::enums::WireEnum;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serializer};
use std::fmt;

/// True when `v` equals its type's default; proto-era JSON omits such fields (§3.1).
pub fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// Any value, with `null` mapped to the default.
pub fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

struct NumberVisitor {
    min: f64,
    max: f64,
    what: &'static str,
}

impl NumberVisitor {
    fn check(&self, v: f64) -> Result<f64, String> {
        if !v.is_finite() {
            return Err(format!("{} must be a finite number", self.what));
        }
        if v < self.min || v > self.max {
            return Err(format!("{} out of range: {v}", self.what));
        }
        Ok(v)
    }
}

impl<'de> Visitor<'de> for NumberVisitor {
    type Value = Option<f64>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} as a JSON number or a decimal string", self.what)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        self.check(v as f64).map(Some).map_err(E::custom)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        self.check(v as f64).map(Some).map_err(E::custom)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        self.check(v).map(Some).map_err(E::custom)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        let t = v.trim();
        if t.is_empty() {
            return Ok(None);
        }
        let n: f64 = t.parse().map_err(|_| E::custom(format!("{} is not a number: {:?}", self.what, truncate(v))))?;
        self.check(n).map(Some).map_err(E::custom)
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

/// A `uint32` sent as a number, a double or a decimal string; `null`/absent → 0.
pub fn u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = d.deserialize_any(NumberVisitor { min: 0.0, max: u32::MAX as f64, what: "unsigned integer" })?;
    Ok(v.map(|n| n.trunc() as u32).unwrap_or(0))
}

/// An `int32` sent as a number, a double or a decimal string; `null`/absent → 0.
pub fn i32<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    let v = d.deserialize_any(NumberVisitor { min: i32::MIN as f64, max: i32::MAX as f64, what: "integer" })?;
    Ok(v.map(|n| n.trunc() as i32).unwrap_or(0))
}

/// A `double` sent as a number or a decimal string; `null`/absent → 0.
pub fn f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = d.deserialize_any(NumberVisitor { min: f64::MIN, max: f64::MAX, what: "number" })?;
    Ok(v.unwrap_or(0.0))
}

struct BoolVisitor;

impl<'de> Visitor<'de> for BoolVisitor {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a boolean")
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_none<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
        Ok(v)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
        match v {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(E::custom(format!("expected a boolean, got {v}"))),
        }
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
        self.visit_u64(u64::try_from(v).map_err(|_| E::custom("expected a boolean"))?)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        match v {
            "true" | "1" => Ok(true),
            "false" | "0" | "" => Ok(false),
            _ => Err(E::custom(format!("expected a boolean, got {:?}", truncate(v)))),
        }
    }
}

/// A `bool` sent as a boolean, `"true"`/`"false"` or `0`/`1`; `null`/absent → false.
pub fn bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    d.deserialize_any(BoolVisitor)
}

struct EnumVisitor<E>(std::marker::PhantomData<E>);

impl<'de, E: WireEnum> Visitor<'de> for EnumVisitor<E> {
    type Value = Option<E>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a {} name or number", E::TYPE_NAME)
    }
    fn visit_unit<Er: de::Error>(self) -> Result<Self::Value, Er> {
        Ok(None)
    }
    fn visit_none<Er: de::Error>(self) -> Result<Self::Value, Er> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_u64<Er: de::Error>(self, v: u64) -> Result<Self::Value, Er> {
        Ok(i32::try_from(v).ok().and_then(E::from_number))
    }
    fn visit_i64<Er: de::Error>(self, v: i64) -> Result<Self::Value, Er> {
        Ok(i32::try_from(v).ok().and_then(E::from_number))
    }
    fn visit_str<Er: de::Error>(self, v: &str) -> Result<Self::Value, Er> {
        if let Some(e) = E::from_name(v) {
            return Ok(Some(e));
        }
        Ok(v.parse::<i32>().ok().and_then(E::from_number))
    }
}

/// A raw enum field (`i32`, as prost stores it): name, number or digit string; unknown → 0.
pub fn enum_i32<'de, E: WireEnum, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    Ok(d.deserialize_any(EnumVisitor::<E>(Default::default()))?.map(E::number).unwrap_or(0))
}

/// An `optional` enum field: unknown names leave it unset (§3.2).
pub fn opt_enum_i32<'de, E: WireEnum, D: Deserializer<'de>>(d: D) -> Result<Option<i32>, D::Error> {
    Ok(d.deserialize_any(EnumVisitor::<E>(Default::default()))?.map(E::number))
}

/// Emits a raw enum field as its name (or its number if it has no name).
pub fn ser_enum_i32<E: WireEnum, S: Serializer>(v: &i32, s: S) -> Result<S::Ok, S::Error> {
    match E::from_number(*v) {
        Some(e) => s.serialize_str(e.name()),
        None => s.serialize_i32(*v),
    }
}

/// Emits an `optional` enum field as its name.
pub fn ser_opt_enum_i32<E: WireEnum, S: Serializer>(v: &Option<i32>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => ser_enum_i32::<E, S>(v, s),
        None => s.serialize_none(),
    }
}

struct StringsVisitor;

impl<'de> Visitor<'de> for StringsVisitor {
    type Value = Vec<String>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of strings or a string")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(vec![v.to_owned()])
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(vec![v])
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // Element by element: the list is never buffered a second time (an untagged enum
        // would copy the whole body into serde's `Content` first). Its length is bounded by
        // the stage's body limit; the server then keeps at most `limits.max_user_groups`.
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(256));
        while let Some(item) = seq.next_element::<Option<String>>()? {
            out.extend(item);
        }
        Ok(out)
    }
}

/// A list of strings; `null` → empty, a bare string → one element, `null` elements dropped.
pub fn strings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    d.deserialize_any(StringsVisitor)
}

#[cfg(test)]
mod tests {
    #[derive(serde::Deserialize, Default, Debug)]
    #[serde(default)]
    struct Groups {
        #[serde(deserialize_with = "super::strings")]
        g: Vec<String>,
    }

    fn check(json: &str, expected: &[&str]) {
        let parsed: Groups = serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"));
        assert_eq!(parsed.g, expected, "{json}");
    }

    #[test]
    fn strings_accept_lists_bare_strings_and_nulls() {
        check(r#"{"g": ["a", "b"]}"#, &["a", "b"]);
        check(r#"{"g": "a"}"#, &["a"]);
        check(r#"{"g": null}"#, &[]);
        check(r#"{"g": [null, "a", null]}"#, &["a"]);
        check(r#"{"g": []}"#, &[]);
        check(r#"{}"#, &[]);
        assert!(serde_json::from_str::<Groups>(r#"{"g": [1]}"#).is_err(), "numbers are not strings");
        assert!(serde_json::from_str::<Groups>(r#"{"g": {"a": 1}}"#).is_err());
    }
}
