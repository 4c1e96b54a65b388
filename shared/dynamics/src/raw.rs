//! A page of OData rows kept as their JSON text. A parsed row (a map of owned keys and values) takes about four
//! times the bytes of its text, so a sweep holds its large pages as text and parses them a step at a time.

use std::{borrow::Cow, collections::HashMap, fmt};

use serde::{
    Deserialize, Deserializer,
    de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor},
};
use serde_json::{Value, value::RawValue};

use crate::Record;

/// Rows of a `value` array, each as its JSON text.
#[derive(Debug, Default)]
pub struct RawRows(Vec<Box<RawValue>>);

/// One answer of a collection read: its rows (as `T`) and its next link.
#[derive(Deserialize)]
pub(crate) struct PageOf<T> {
    pub value: Vec<T>,
    #[serde(rename = "@odata.nextLink")]
    pub next: Option<String>,
}

impl RawRows {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn extend(&mut self, other: RawRows) {
        self.0.extend(other.0);
    }

    /// The rows from `at` on; `self` keeps those before.
    pub fn split_off(&mut self, at: usize) -> RawRows {
        RawRows(self.0.split_off(at.min(self.0.len())))
    }

    /// One field of row `i`, without building the rest of the row.
    pub fn field(&self, i: usize, name: &str) -> Option<Value> {
        field_of(self.0.get(i)?, name)
    }

    /// The rows by `key` of their field `field`, each group in read order; rows without a key are left out.
    pub fn group_by(self, field: &str, key: impl Fn(Option<&Value>) -> Option<String>) -> HashMap<String, RawRows> {
        let mut by: HashMap<String, RawRows> = HashMap::new();
        for row in self.0 {
            if let Some(k) = key(field_of(&row, field).as_ref()) {
                by.entry(k).or_default().0.push(row);
            }
        }
        by
    }

    /// The rows as records; a row that is not a JSON object is left out, as a parsed page leaves it out.
    pub fn parse(self) -> Vec<Record> {
        self.0
            .into_iter()
            .filter_map(|r| serde_json::from_str::<Record>(r.get()).ok())
            .collect()
    }
}

impl From<Vec<Box<RawValue>>> for RawRows {
    fn from(rows: Vec<Box<RawValue>>) -> Self {
        RawRows(rows)
    }
}

fn field_of(raw: &RawValue, name: &str) -> Option<Value> {
    let mut de = serde_json::Deserializer::from_str(raw.get());
    Field(name).deserialize(&mut de).ok().flatten()
}

/// Picks one field out of a JSON object, skipping the others unbuilt.
struct Field<'n>(&'n str);

impl<'de> DeserializeSeed<'de> for Field<'_> {
    type Value = Option<Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Field<'_> {
    type Value = Option<Value>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(k) = map.next_key::<Cow<'de, str>>()? {
            if found.is_none() && k == self.0 {
                found = Some(map.next_value::<Value>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rows(text: &str) -> RawRows {
        serde_json::from_str::<PageOf<Box<RawValue>>>(text)
            .unwrap()
            .value
            .into()
    }

    #[test]
    fn a_field_is_read_without_the_row_and_rows_parse_as_records() {
        let mut r = rows(
            r#"{"value":[{"ProductNumber":"A\u0031","SalesPrice":1.5,"Nested":{"ProductNumber":"no"}},
                          {"SalesPrice":2},7,{"ProductNumber":"C"}]}"#,
        );
        assert_eq!(r.len(), 4);
        assert_eq!(r.field(0, "ProductNumber"), Some(json!("A1")));
        assert_eq!(r.field(1, "ProductNumber"), None);
        assert_eq!(r.field(2, "ProductNumber"), None, "not an object");
        assert_eq!(r.field(9, "ProductNumber"), None);
        let tail = r.split_off(2);
        assert_eq!((r.len(), tail.len()), (2, 2));
        let parsed = r.parse();
        assert_eq!(parsed[0]["SalesPrice"], json!(1.5));
        assert_eq!(parsed[0]["Nested"], json!({"ProductNumber": "no"}));
        assert_eq!(tail.parse().len(), 1, "a row that is not an object is left out");
    }

    #[test]
    fn rows_group_by_a_field_in_read_order() {
        let r = rows(r#"{"value":[{"H":"A","L":1},{"H":"B","L":1},{"H":"A","L":2},{"L":9}]}"#);
        let by = r.group_by("H", |v| v.and_then(Value::as_str).map(str::to_string));
        assert_eq!(by.len(), 2, "the row without a key is left out");
        let a = by.into_iter().find(|(k, _)| k == "A").unwrap().1.parse();
        assert_eq!((a[0]["L"].clone(), a[1]["L"].clone()), (json!(1), json!(2)));
    }
}
