//! What F&O accepts: property names and types from `$metadata`, and string lengths from the EDTs.
//!
//! `schema/fno_schema.json` is a copy of `spec/fno_schema.json` (entity set -> keys, `[name, type, nullable]`,
//! enum members). It is compiled in, so the crate does no I/O. The string lengths are not in `$metadata`
//! output we have, so they are a hand-kept table of the F&O extended data types (EDTs) behind each field.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use serde_json::Value;

static SCHEMA_JSON: &str = include_str!("../schema/fno_schema.json");

/// The Edm type of an F&O property, as far as mapping cares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FnoType {
    String,
    Decimal,
    Int32,
    Int64,
    DateTimeOffset,
    /// An F&O enum, written on the wire as its member name (`"Yes"`); holds the enum type name (`NoYes`).
    Enum(String),
    /// Any other Edm type: not checked.
    Other(String),
}

/// One property of an F&O entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FnoProperty {
    pub name: String,
    pub ty: FnoType,
    pub nullable: bool,
}

#[derive(Deserialize)]
struct RawSchema {
    entities: HashMap<String, RawEntity>,
    enums: HashMap<String, Vec<String>>,
}

#[derive(Deserialize)]
struct RawEntity {
    keys: Vec<String>,
    props: Vec<(String, String, bool)>,
}

struct Entity {
    keys: Vec<String>,
    props: HashMap<String, FnoProperty>,
}

#[derive(Default)]
struct Schema {
    entities: HashMap<String, Entity>,
    enums: HashMap<String, Vec<String>>,
}

fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        // Compiled-in data; a unit test proves it parses. Never panic here: an empty schema only turns checks off.
        let Ok(raw) = serde_json::from_str::<RawSchema>(SCHEMA_JSON) else {
            return Schema::default();
        };
        let entities = raw
            .entities
            .into_iter()
            .map(|(name, e)| {
                let props = e
                    .props
                    .into_iter()
                    .map(|(pname, ty, nullable)| {
                        let ty = parse_type(&ty);
                        (
                            pname.clone(),
                            FnoProperty {
                                name: pname,
                                ty,
                                nullable,
                            },
                        )
                    })
                    .collect();
                (name, Entity { keys: e.keys, props })
            })
            .collect();
        Schema {
            entities,
            enums: raw.enums,
        }
    })
}

fn parse_type(t: &str) -> FnoType {
    match t {
        "Edm.String" => FnoType::String,
        "Edm.Decimal" => FnoType::Decimal,
        "Edm.Int32" => FnoType::Int32,
        "Edm.Int64" => FnoType::Int64,
        "Edm.DateTimeOffset" => FnoType::DateTimeOffset,
        other => match other.strip_prefix("enum:") {
            Some(e) => FnoType::Enum(e.to_string()),
            None => FnoType::Other(other.to_string()),
        },
    }
}

/// Whether the embedded `$metadata` knows this F&O entity set (e.g. `CustomersV2`).
pub fn fno_has_entity(entity: &str) -> bool {
    schema().entities.contains_key(entity)
}

/// The property `field` of F&O entity set `entity`; names are case-sensitive, as on the wire.
pub fn fno_property(entity: &str, field: &str) -> Option<&'static FnoProperty> {
    schema().entities.get(entity)?.props.get(field)
}

/// The key fields of an F&O entity set, `dataAreaId` first.
pub fn fno_entity_keys(entity: &str) -> Option<&'static [String]> {
    schema().entities.get(entity).map(|e| e.keys.as_slice())
}

/// The members of an F&O enum type (e.g. `NoYes` -> `["No", "Yes"]`).
pub fn fno_enum_members(enum_type: &str) -> Option<&'static [String]> {
    schema().enums.get(enum_type).map(Vec::as_slice)
}

/// F&O's empty date: what an X++ date field holds for "no date" (dates are never null in F&O).
pub const FNO_EMPTY_DATE: &str = "1900-01-01T12:00:00Z";

/// What clears F&O field `entity.field`: the value F&O itself holds for "no value", since X++ fields are never
/// null. Text `""`; numbers `0` (null only where `$metadata` makes the number nullable); dates the empty date
/// [`FNO_EMPTY_DATE`]; an enum its first member, the enum's value 0 and the default of a new row (`NoYes` ->
/// `No`, `Gender` -> `Unknown`, `DirPersonMaritalStatus` -> `None`). `None` for a field or type not known here:
/// nothing is written for it.
pub fn fno_empty_value(entity: &str, field: &str) -> Option<Value> {
    let p = fno_property(entity, field)?;
    match &p.ty {
        FnoType::String => Some(Value::from("")),
        FnoType::Decimal | FnoType::Int32 | FnoType::Int64 if p.nullable => Some(Value::Null),
        FnoType::Decimal | FnoType::Int32 | FnoType::Int64 => Some(Value::from(0)),
        FnoType::DateTimeOffset => Some(Value::from(FNO_EMPTY_DATE)),
        FnoType::Enum(e) => fno_enum_members(e)?.first().map(|m| Value::from(m.as_str())),
        FnoType::Other(_) => None,
    }
}

/// A property of `entity` whose name equals `field` ignoring case: the hint for a wrongly cased name.
pub(crate) fn fno_property_ignore_case(entity: &str, field: &str) -> Option<&'static str> {
    let e = schema().entities.get(entity)?;
    e.props
        .keys()
        .find(|k| k.eq_ignore_ascii_case(field))
        .map(String::as_str)
}

/// F&O's extended data types (EDTs) of the fields, which `$metadata` does not carry: string lengths and
/// date-only fields. One table, `shared/mapping/data/fno_edt.json`, shared with the sandbox so that p2c's check and
/// the emulated F&O cannot disagree (see the `_about` of the file for the sources).
static EDT_JSON: &str = include_str!("../data/fno_edt.json");

#[derive(Deserialize)]
struct RawEdt {
    strings: Vec<(String, String, usize)>,
    date_only: Vec<(String, String)>,
}

#[derive(Default)]
struct Edt {
    /// Property -> (EDT, maximum length).
    strings: HashMap<String, (String, usize)>,
    /// Property -> EDT of the date-only fields.
    date_only: HashMap<String, String>,
}

fn edt() -> &'static Edt {
    static EDT: OnceLock<Edt> = OnceLock::new();
    EDT.get_or_init(|| {
        // Compiled-in data; a unit test proves it parses. An empty table only turns the checks off.
        let Ok(raw) = serde_json::from_str::<RawEdt>(EDT_JSON) else {
            return Edt::default();
        };
        Edt {
            strings: raw.strings.into_iter().map(|(f, e, n)| (f, (e, n))).collect(),
            date_only: raw.date_only.into_iter().collect(),
        }
    })
}

/// Known maximum string length (in UTF-16 code units, as SQL Server `nvarchar` counts) of an F&O field: the
/// length of the extended data type behind it, for a text property of the entity. Where the EDT is not certain
/// the table says "assumed" and the value errs on the long side, so a real value is never refused by us that F&O
/// would take. A field not listed is not length-checked (memo fields, for one, have none).
pub fn fno_max_len(entity: &str, field: &str) -> Option<usize> {
    let p = fno_property(entity, field)?;
    (p.ty == FnoType::String)
        .then(|| edt().strings.get(field).map(|(_, n)| *n))
        .flatten()
}

/// The extended data type of an F&O text field with a known length (for messages and tests).
pub fn fno_edt(field: &str) -> Option<&'static str> {
    edt().strings.get(field).map(|(e, _)| e.as_str())
}

/// Whether `entity.field` is a date-only field: an X++ date published as `Edm.DateTimeOffset`, which F&O stores as
/// the date alone and serves at `12:00:00Z` (spec/protocols.md B.3).
pub fn fno_is_date_only(entity: &str, field: &str) -> bool {
    fno_property(entity, field).is_some_and(|p| p.ty == FnoType::DateTimeOffset) && edt().date_only.contains_key(field)
}

/// A value for a date-only field as F&O will hold it: its UTC date at `12:00:00Z`. Takes a date (`2026-03-10`, as
/// Sales serves date-only columns) or an RFC 3339 date-time; `None` for anything else.
pub(crate) fn fno_date_noon(s: &str) -> Option<String> {
    use time::format_description::well_known::Rfc3339;
    let date = if s.len() == 10 {
        time::Date::parse(s, &time::macros::format_description!("[year]-[month]-[day]")).ok()?
    } else {
        time::OffsetDateTime::parse(s, &Rfc3339)
            .ok()?
            .to_offset(time::UtcOffset::UTC)
            .date()
    };
    Some(format!(
        "{:04}-{:02}-{:02}T12:00:00Z",
        date.year(),
        u8::from(date.month()),
        date.day()
    ))
}

/// Why a value does not fit an F&O field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Misfit {
    TooLong { len: usize, max: usize },
    BadType { expected: String, got: String },
}

/// Length of a string as F&O counts it (UTF-16 code units).
pub(crate) fn fno_len(s: &str) -> usize {
    s.encode_utf16().count()
}

/// Check `value` against the F&O field `entity.field` and return it in wire form (whole numbers for integer
/// fields). `Ok(None)` means "write nothing" (a null never reaches F&O). Unknown entities or fields are passed
/// through unchecked.
pub(crate) fn conform(entity: &str, field: &str, value: &Value) -> Result<Option<Value>, Misfit> {
    if value.is_null() {
        return Ok(None);
    }
    let Some(prop) = fno_property(entity, field) else {
        return Ok(Some(value.clone()));
    };
    let bad = |expected: &str| Misfit::BadType {
        expected: expected.to_string(),
        got: describe(value),
    };
    match &prop.ty {
        FnoType::DateTimeOffset if fno_is_date_only(entity, field) => match value.as_str().and_then(fno_date_noon) {
            // What F&O will serve back, so the next comparison with the target sees no change.
            Some(d) => Ok(Some(Value::String(d))),
            None => Err(bad("a date (2026-03-10) or an ISO 8601 date-time")),
        },
        FnoType::String | FnoType::DateTimeOffset => {
            let Value::String(s) = value else {
                return Err(bad("text"));
            };
            if let Some(max) = fno_max_len(entity, field) {
                let len = fno_len(s);
                if len > max {
                    return Err(Misfit::TooLong { len, max });
                }
            }
            Ok(Some(value.clone()))
        }
        FnoType::Decimal => match value {
            Value::Number(_) => Ok(Some(value.clone())),
            _ => Err(bad("a number")),
        },
        FnoType::Int32 | FnoType::Int64 => {
            let (lo, hi) = match prop.ty {
                FnoType::Int32 => (i64::from(i32::MIN), i64::from(i32::MAX)),
                _ => (i64::MIN, i64::MAX),
            };
            let whole = match value {
                Value::Number(n) => n.as_i64().or_else(|| {
                    // 12.0 is a whole number; keep it, written as 12.
                    n.as_f64()
                        .filter(|f| f.fract() == 0.0 && *f >= lo as f64 && *f <= hi as f64)
                        .map(|f| f as i64)
                }),
                _ => None,
            };
            match whole {
                Some(i) if (lo..=hi).contains(&i) => Ok(Some(Value::from(i))),
                _ if matches!(prop.ty, FnoType::Int32) => Err(bad("a whole number (32-bit)")),
                _ => Err(bad("a whole number")),
            }
        }
        FnoType::Enum(name) => {
            let members = fno_enum_members(name).unwrap_or(&[]);
            match value {
                Value::String(s) if members.is_empty() || members.iter().any(|m| m == s) => Ok(Some(value.clone())),
                _ => {
                    let mut list: Vec<&str> = members.iter().take(12).map(String::as_str).collect();
                    if members.len() > 12 {
                        list.push("...");
                    }
                    Err(bad(&format!("one of the {name} values ({})", list.join(", "))))
                }
            }
        }
        FnoType::Other(_) => Ok(Some(value.clone())),
    }
}

/// A short description of a value for error messages: its kind and at most 60 characters of it.
pub(crate) fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the text '{}'", clip(s, 60)),
        Value::Array(_) => "a list".to_string(),
        Value::Object(_) => "an object".to_string(),
    }
}

/// At most `n` characters of `s`, with "..." when cut (for messages only).
pub(crate) fn clip(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_schema_parses_and_knows_customers() {
        assert!(fno_has_entity("CustomersV2"));
        let p = fno_property("CustomersV2", "CreditLimit").unwrap();
        assert_eq!(p.ty, FnoType::Decimal);
        assert!(!p.nullable);
        assert_eq!(
            fno_entity_keys("CustomersV2").unwrap(),
            ["dataAreaId", "CustomerAccount"]
        );
        assert_eq!(fno_enum_members("NoYes").unwrap(), ["No", "Yes"]);
        assert!(
            fno_property("CustomersV2", "organizationname").is_none(),
            "names are case-sensitive"
        );
        assert_eq!(
            fno_property_ignore_case("CustomersV2", "organizationname"),
            Some("OrganizationName")
        );
    }

    #[test]
    fn every_edt_row_names_a_real_field_of_its_type() {
        let raw: RawEdt = serde_json::from_str(EDT_JSON).unwrap();
        let entities: Vec<&String> = schema().entities.keys().collect();
        let typed = |f: &str, ty: FnoType| entities.iter().any(|e| fno_property(e, f).is_some_and(|p| p.ty == ty));
        for (f, edt_name, n) in &raw.strings {
            assert!(typed(f, FnoType::String), "{f} is no text property of any entity");
            assert!(*n > 0 && !edt_name.is_empty(), "{f}");
            assert_eq!(fno_edt(f), Some(edt_name.as_str()));
        }
        for (f, _) in &raw.date_only {
            assert!(
                typed(f, FnoType::DateTimeOffset),
                "{f} is no date property of any entity"
            );
        }
        assert_eq!(edt().strings.len(), raw.strings.len(), "a text field is listed twice");
        assert_eq!(fno_max_len("CDSContactPersonsV2", "FirstName"), Some(25));
        assert_eq!(fno_max_len("CustomersV2", "CustomerAccount"), Some(20));
        assert_eq!(fno_max_len("CustomersV2", "OrganizationName"), Some(100));
        assert_eq!(fno_max_len("SellableReleasedProducts", "ProductName"), None);
        assert!(fno_is_date_only("CDSSalesOrderHeaders", "RequestedReceiptDate"));
        assert!(!fno_is_date_only("CDSSalesOrderHeaders", "OrderCreationDateTime"));
    }

    #[test]
    fn date_only_values_become_noon_utc() {
        let e = "CDSSalesOrderHeaders";
        for (given, held) in [
            ("2026-03-10", "2026-03-10T12:00:00Z"),
            ("2026-03-10T08:30:00Z", "2026-03-10T12:00:00Z"),
            ("2026-03-10T23:30:00-05:00", "2026-03-11T12:00:00Z"),
            ("2026-03-10T12:00:00Z", "2026-03-10T12:00:00Z"),
        ] {
            assert_eq!(
                conform(e, "RequestedReceiptDate", &Value::from(given)),
                Ok(Some(Value::from(held)))
            );
        }
        assert!(matches!(
            conform(e, "RequestedReceiptDate", &Value::from("next week")),
            Err(Misfit::BadType { .. })
        ));
        // A date-time field keeps its time.
        assert_eq!(
            conform(e, "OrderCreationDateTime", &Value::from("2026-03-10T08:30:00Z")),
            Ok(Some(Value::from("2026-03-10T08:30:00Z")))
        );
    }

    #[test]
    fn conform_checks_types() {
        let e = "CustomersV2";
        assert_eq!(
            conform(e, "OrganizationNumberOfEmployees", &Value::from(12.0)),
            Ok(Some(Value::from(12)))
        );
        assert!(matches!(
            conform(e, "OrganizationNumberOfEmployees", &Value::from(1.5)),
            Err(Misfit::BadType { .. })
        ));
        assert!(matches!(
            conform(e, "CreditLimit", &Value::from("5")),
            Err(Misfit::BadType { .. })
        ));
        assert!(matches!(
            conform(e, "IsExternallyMaintained", &Value::from("yes")),
            Err(Misfit::BadType { .. })
        ));
        assert_eq!(
            conform(e, "IsExternallyMaintained", &Value::from("Yes")),
            Ok(Some(Value::from("Yes")))
        );
        assert_eq!(
            conform(e, "SalesCurrencyCode", &Value::from("EURO")),
            Err(Misfit::TooLong { len: 4, max: 3 })
        );
        assert_eq!(conform(e, "NoSuchField", &Value::from(1)), Ok(Some(Value::from(1))));
        assert_eq!(conform(e, "SalesMemo", &Value::Null), Ok(None));
    }

    #[test]
    fn empty_values_are_what_fno_holds_for_no_value() {
        let e = "CustomersV2";
        assert_eq!(fno_empty_value(e, "PrimaryContactFax"), Some(Value::from("")));
        assert_eq!(
            fno_empty_value(e, "OrganizationNumberOfEmployees"),
            Some(Value::from(0))
        );
        assert_eq!(fno_empty_value(e, "CreditLimit"), Some(Value::from(0)));
        assert_eq!(fno_empty_value(e, "AddressValidTo"), Some(Value::from(FNO_EMPTY_DATE)));
        assert_eq!(fno_empty_value(e, "IsExternallyMaintained"), Some(Value::from("No")));
        assert_eq!(
            fno_empty_value("CDSContactPersons", "Gender"),
            Some(Value::from("Unknown"))
        );
        assert_eq!(
            fno_empty_value("CDSContactPersons", "MaritalStatus"),
            Some(Value::from("None"))
        );
        assert_eq!(fno_empty_value(e, "NoSuchField"), None);
        // Every empty value fits its field.
        for field in [
            "PrimaryContactFax",
            "OrganizationNumberOfEmployees",
            "AddressValidTo",
            "OnHoldStatus",
        ] {
            let v = fno_empty_value(e, field).unwrap();
            assert_eq!(conform(e, field, &v), Ok(Some(v.clone())), "{field}");
        }
    }
}
