//! Templates as data: which source entity goes to which target entity, the key, the source filter and the field
//! maps in the order of the tables in `spec/templates.md`, and the code that applies them to one record.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::country::{builtin_country_code, normalize_country};
use crate::error::{CONSTANT, MapError};
use crate::schema::{self, Misfit, fno_max_len};

/// One record as JSON: a Dataverse row or an F&O entity, keyed by wire names.
pub type Record = serde_json::Map<String, Value>;

/// A mapping from one source entity to one target entity (one Data Integrator task).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Template {
    /// The Data Integrator task name, e.g. "Accounts - Customers".
    pub name: String,
    /// The p2c flow that runs it, e.g. "accounts-to-fno"; also its section name in the P2C_MAPPING file.
    pub flow: String,
    /// Source entity set, e.g. "accounts".
    pub source_entity: String,
    /// Target entity set, e.g. "CustomersV2".
    pub target_entity: String,
    /// Source field holding the business key, e.g. "accountnumber".
    pub source_key: String,
    /// Source primary key used for links and for naming records that have no business key, e.g. "accountid".
    pub source_id: String,
    /// Target key fields, e.g. ["dataAreaId", "CustomerAccount"]. `dataAreaId` is added by the pipeline.
    pub target_key: Vec<String>,
    /// Source filter; `None` syncs every record (that has a key).
    pub filter: Option<Filter>,
    /// Field maps, in the order of the template's table.
    pub fields: Vec<FieldMap>,
}

/// One row of a template table: source field, transform, target field.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldMap {
    pub source: Source,
    /// Target field, by its wire name (case-sensitive for F&O, e.g. "OrganizationName").
    pub target: String,
    pub transform: Transform,
    /// False when switched off by the P2C_MAPPING file; a disabled row writes nothing.
    pub enabled: bool,
}

/// Where a row takes its value from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A source field, e.g. "name", or a lookup path, e.g. "transactioncurrencyid.isocurrencycode". The pipeline
    /// resolves a lookup path and puts its value into the record under the dotted name before mapping.
    Field(String),
    /// No source: the row writes a constant (`Transform::Default`).
    None,
}

impl Source {
    /// The source field name or lookup path.
    pub fn path(&self) -> Option<&str> {
        match self {
            Source::Field(p) => Some(p),
            Source::None => None,
        }
    }
}

/// What a row does to the source value. "Blank" below means absent, null, or text that is empty or only spaces.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transform {
    /// The source value as is; blank writes nothing.
    Copy,
    /// The Data Integrator "Default": blank (or no source at all) writes this value, anything else is copied.
    Default(Value),
    /// Look the value up (numbers and booleans by their JSON text, e.g. "1", "true"). Blank writes `default`, if
    /// any (the Data Integrator's "blank source side" entry); a value not in the map is handled by `unmapped`.
    ValueMap {
        map: BTreeMap<String, Value>,
        default: Option<Value>,
        case_insensitive: bool,
        unmapped: Unmapped,
    },
    /// The Data Integrator "Country region code": country name or code -> ISO 3166-1 alpha-2. `extra` entries
    /// (keys compared normalised, see `normalize_country`) win over the built-in table; `builtin: false` turns the
    /// table off. Blank writes `default`, if any. A value nobody knows is a `NoValueMapEntry` error.
    Country {
        default: Option<Value>,
        extra: BTreeMap<String, Value>,
        builtin: bool,
    },
    /// Cut text to this many characters (UTF-16 code units, as F&O counts). The only transform that may shorten.
    Truncate(usize),
    /// A source boolean -> `yes` or `no` (e.g. the F&O NoYes enum).
    Bool { yes: Value, no: Value },
}

/// What a value map does with a value it does not list.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unmapped {
    /// Refuse the record with `MapError::NoValueMapEntry` (the safe default: nothing is guessed).
    Error,
    /// Write the source value unchanged (a value map that only renames some values).
    Keep,
    /// Write this value instead.
    Value(Value),
}

/// A source filter: simple predicates over source fields, evaluated in memory after reading.
///
/// Comparisons are JSON equality (numbers by value, so 1 equals 1.0; text is case-sensitive). An absent field
/// counts as null. `Ne` is exactly `not Eq`, so a null field passes `Ne`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Filter {
    Eq { field: String, value: Value },
    Ne { field: String, value: Value },
    In { field: String, values: Vec<Value> },
    NotNull { field: String },
    IsNull { field: String },
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
}

impl Filter {
    pub fn eq(field: &str, value: impl Into<Value>) -> Filter {
        Filter::Eq {
            field: field.to_string(),
            value: value.into(),
        }
    }
    pub fn ne(field: &str, value: impl Into<Value>) -> Filter {
        Filter::Ne {
            field: field.to_string(),
            value: value.into(),
        }
    }
    pub fn is_in(field: &str, values: impl IntoIterator<Item = impl Into<Value>>) -> Filter {
        Filter::In {
            field: field.to_string(),
            values: values.into_iter().map(Into::into).collect(),
        }
    }
    pub fn not_null(field: &str) -> Filter {
        Filter::NotNull {
            field: field.to_string(),
        }
    }
    pub fn is_null(field: &str) -> Filter {
        Filter::IsNull {
            field: field.to_string(),
        }
    }

    /// Whether a source record passes.
    pub fn matches(&self, src: &Record) -> bool {
        let get = |f: &str| src.get(f).unwrap_or(&Value::Null);
        match self {
            Filter::Eq { field, value } => json_eq(get(field), value),
            Filter::Ne { field, value } => !json_eq(get(field), value),
            Filter::In { field, values } => values.iter().any(|v| json_eq(get(field), v)),
            Filter::NotNull { field } => !get(field).is_null(),
            Filter::IsNull { field } => get(field).is_null(),
            Filter::And(fs) => fs.iter().all(|f| f.matches(src)),
            Filter::Or(fs) => fs.iter().any(|f| f.matches(src)),
            Filter::Not(f) => !f.matches(src),
        }
    }

    /// The source fields the filter reads, in order of appearance.
    pub fn fields(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.collect_fields(&mut out);
        out
    }

    fn collect_fields<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Filter::Eq { field, .. }
            | Filter::Ne { field, .. }
            | Filter::In { field, .. }
            | Filter::NotNull { field }
            | Filter::IsNull { field } => out.push(field),
            Filter::And(fs) | Filter::Or(fs) => fs.iter().for_each(|f| f.collect_fields(out)),
            Filter::Not(f) => f.collect_fields(out),
        }
    }
}

fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => x.as_f64() == y.as_f64(),
        },
        _ => a == b,
    }
}

/// A lookup path of a template (`transactioncurrencyid.isocurrencycode`) and what the pipeline needs to resolve
/// it: the lookup column to read (`_transactioncurrencyid_value`) and the field of the related record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lookup {
    /// The dotted path; the resolved value goes into the source record under this name.
    pub path: String,
    /// The navigation property / lookup attribute, e.g. "transactioncurrencyid".
    pub navigation: String,
    /// The `$select` column holding the related record's id, e.g. "_transactioncurrencyid_value".
    pub column: String,
    /// The rest of the path on the related record, e.g. "isocurrencycode".
    pub field: String,
}

/// The `$select` column for a source path: the path itself, or `_<lookup>_value` for a lookup path.
pub fn select_column(path: &str) -> String {
    match path.split_once('.') {
        Some((nav, _)) => format!("_{nav}_value"),
        None => path.to_string(),
    }
}

/// Blank: absent, null, or text that is empty or only white space.
fn is_blank(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.trim().is_empty(),
        Some(_) => false,
    }
}

/// Who a record is, for error messages.
struct Ctx<'a> {
    entity: &'a str,
    key: &'a str,
    fm: &'a FieldMap,
}

impl Ctx<'_> {
    fn source_field(&self) -> String {
        self.fm.source.path().unwrap_or(CONSTANT).to_string()
    }
    fn bad_type(&self, expected: &str, got: &Value) -> MapError {
        MapError::BadType {
            entity: self.entity.to_string(),
            key: self.key.to_string(),
            field: self.fm.target.clone(),
            source_field: self.source_field(),
            expected: expected.to_string(),
            got: schema::describe(got),
        }
    }
    fn no_entry(&self, value: &str) -> MapError {
        MapError::NoValueMapEntry {
            entity: self.entity.to_string(),
            key: self.key.to_string(),
            field: self.fm.target.clone(),
            source_field: self.source_field(),
            value: schema::clip(value, 60),
        }
    }
}

/// The text a value map looks a value up by; None for lists and objects.
pub(crate) fn lookup_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Cut `s` to at most `max` UTF-16 code units without splitting a character.
fn truncate_utf16(s: &str, max: usize) -> &str {
    let mut used = 0;
    for (i, c) in s.char_indices() {
        used += c.len_utf16();
        if used > max {
            return &s[..i];
        }
    }
    s
}

impl Transform {
    /// The value to write for source value `v` (`None`: write nothing).
    fn apply(&self, v: Option<&Value>, ctx: &Ctx) -> Result<Option<Value>, MapError> {
        let blank = is_blank(v);
        match self {
            Transform::Copy => Ok(if blank { None } else { v.cloned() }),
            Transform::Default(d) => Ok(Some(if blank {
                d.clone()
            } else {
                v.cloned().unwrap_or_default()
            })),
            Transform::ValueMap {
                map,
                default,
                case_insensitive,
                unmapped,
            } => {
                let Some(v) = v.filter(|_| !blank) else {
                    return Ok(default.clone().or_else(|| map.get("").cloned()));
                };
                let Some(text) = lookup_text(v) else {
                    return Err(ctx.bad_type("text, a number or a boolean", v));
                };
                let hit = map.get(&text).or_else(|| {
                    case_insensitive
                        .then(|| {
                            let lower = text.to_lowercase();
                            map.iter()
                                .find(|(k, _)| k.trim().to_lowercase() == lower)
                                .map(|(_, x)| x)
                        })
                        .flatten()
                });
                match (hit, unmapped) {
                    (Some(x), _) => Ok(Some(x.clone())),
                    (None, Unmapped::Keep) => Ok(Some(v.clone())),
                    (None, Unmapped::Value(x)) => Ok(Some(x.clone())),
                    (None, Unmapped::Error) => Err(ctx.no_entry(&text)),
                }
            }
            Transform::Country {
                default,
                extra,
                builtin,
            } => {
                let Some(v) = v.filter(|_| !blank) else {
                    return Ok(default.clone());
                };
                let Value::String(s) = v else {
                    return Err(ctx.bad_type("a country name or code as text", v));
                };
                let norm = normalize_country(s);
                let from_extra = extra
                    .get(&norm)
                    .or_else(|| extra.iter().find(|(k, _)| normalize_country(k) == norm).map(|(_, x)| x));
                if let Some(x) = from_extra {
                    return Ok(Some(x.clone()));
                }
                match builtin.then(|| builtin_country_code(s)).flatten() {
                    Some(code) => Ok(Some(Value::from(code))),
                    None => Err(ctx.no_entry(s.trim())),
                }
            }
            Transform::Truncate(n) => match v {
                _ if blank => Ok(None),
                Some(Value::String(s)) => Ok(Some(Value::from(truncate_utf16(s, *n)))),
                Some(other) => Err(ctx.bad_type("text", other)),
                None => Ok(None),
            },
            Transform::Bool { yes, no } => match v {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Bool(true)) => Ok(Some(yes.clone())),
                Some(Value::Bool(false)) => Ok(Some(no.clone())),
                Some(other) => Err(ctx.bad_type("a boolean", other)),
            },
        }
    }

    /// Short name used in messages and in the override file.
    pub fn kind(&self) -> &'static str {
        match self {
            Transform::Copy => "copy",
            Transform::Default(_) => "default",
            Transform::ValueMap { .. } => "value_map",
            Transform::Country { .. } => "country",
            Transform::Truncate(_) => "truncate",
            Transform::Bool { .. } => "bool",
        }
    }
}

impl Template {
    /// The record's noun in messages: the source entity set without its plural "s" ("accounts" -> "account").
    pub fn record_noun(&self) -> &str {
        self.source_entity.strip_suffix('s').unwrap_or(&self.source_entity)
    }

    /// The source id (e.g. `accountid`) as text, for messages about records without a key.
    fn id_of(&self, src: &Record) -> String {
        match src.get(&self.source_id) {
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => format!("(no {})", self.source_id),
        }
    }

    /// The record's business key (e.g. `accountnumber`), exactly as in the source.
    pub fn key_of(&self, src: &Record) -> Result<String, MapError> {
        match src.get(&self.source_key) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
            _ => Err(MapError::MissingKey {
                entity: self.record_noun().to_string(),
                id: self.id_of(src),
                field: self.source_key.clone(),
            }),
        }
    }

    /// Whether the record passes the template's source filter (no filter: always).
    pub fn passes_filter(&self, src: &Record) -> bool {
        self.filter.as_ref().is_none_or(|f| f.matches(src))
    }

    /// Map one source record to the target payload, keyed by target wire names in template order.
    ///
    /// - The company (`dataAreaId`) is not mapped here; the pipeline adds it.
    /// - A row whose source is blank (absent, null, empty or only spaces) writes nothing, unless its transform
    ///   has a default. So an update never blanks a target field, and clearing a field in the source does not
    ///   clear it in the target: the target keeps its last value (and the F&O default on create).
    /// - Every value is checked against the target's `$metadata` type and, for text, its known length
    ///   (`fno_max_len`): too long is `TooLong`, never silently cut, unless the row's transform is Truncate.
    ///   Numbers stay JSON numbers; text where a number is expected is `BadType`.
    /// - Never panics, whatever the input.
    pub fn map(&self, src: &Record) -> Result<Record, MapError> {
        let key = self.key_of(src)?;
        let entity = self.record_noun();
        let mut out = Record::new();
        for fm in self.fields.iter().filter(|f| f.enabled) {
            let ctx = Ctx { entity, key: &key, fm };
            let raw = match &fm.source {
                Source::Field(path) => src.get(path),
                Source::None => None,
            };
            let Some(value) = fm.transform.apply(raw, &ctx)? else {
                continue;
            };
            match schema::conform(&self.target_entity, &fm.target, &value) {
                Ok(Some(v)) => {
                    out.insert(fm.target.clone(), v);
                }
                Ok(None) => {}
                Err(Misfit::TooLong { len, max }) => {
                    return Err(MapError::TooLong {
                        entity: entity.to_string(),
                        key: key.clone(),
                        field: fm.target.clone(),
                        source_field: ctx.source_field(),
                        len,
                        max,
                    });
                }
                Err(Misfit::BadType { expected, got }) => {
                    return Err(MapError::BadType {
                        entity: entity.to_string(),
                        key: key.clone(),
                        field: fm.target.clone(),
                        source_field: ctx.source_field(),
                        expected,
                        got,
                    });
                }
            }
        }
        Ok(out)
    }

    /// The source columns to `$select`: the id and key first, then each enabled row's source (a lookup path
    /// `x.y` as `_x_value`), then the filter's fields; without duplicates, in that stable order. The pipeline
    /// adds its own bookkeeping columns (version, owner) itself.
    pub fn source_select(&self) -> Vec<String> {
        let mut cols: Vec<String> = Vec::new();
        let mut push = |c: String| {
            if !cols.contains(&c) {
                cols.push(c);
            }
        };
        push(self.source_id.clone());
        push(self.source_key.clone());
        for fm in self.fields.iter().filter(|f| f.enabled) {
            if let Source::Field(p) = &fm.source {
                push(select_column(p));
            }
        }
        if let Some(f) = &self.filter {
            for field in f.fields() {
                push(select_column(field));
            }
        }
        cols
    }

    /// The lookup paths enabled rows read, each once, in row order: what the pipeline must resolve into the
    /// record (under `path`) before calling `map`.
    pub fn lookups(&self) -> Vec<Lookup> {
        let mut out: Vec<Lookup> = Vec::new();
        for fm in self.fields.iter().filter(|f| f.enabled) {
            let Source::Field(p) = &fm.source else { continue };
            let Some((nav, rest)) = p.split_once('.') else { continue };
            if out.iter().any(|l| &l.path == p) {
                continue;
            }
            out.push(Lookup {
                path: p.clone(),
                navigation: nav.to_string(),
                column: select_column(p),
                field: rest.to_string(),
            });
        }
        out
    }

    /// The row writing `target`, if any.
    pub fn field(&self, target: &str) -> Option<&FieldMap> {
        self.fields.iter().find(|f| f.target == target)
    }

    /// The maximum length of a target text field, if known.
    pub fn max_len(&self, target: &str) -> Option<usize> {
        fno_max_len(&self.target_entity, target)
    }
}

/// Builders that make a template read like its table: one call per row.
pub mod build {
    use super::*;

    fn row(source: Source, target: &str, transform: Transform) -> FieldMap {
        FieldMap {
            source,
            target: target.to_string(),
            transform,
            enabled: true,
        }
    }

    /// `source = target`: a plain copy.
    pub fn copy(source: &str, target: &str) -> FieldMap {
        row(Source::Field(source.to_string()), target, Transform::Copy)
    }

    /// `None Fn target` with a Default: a constant.
    pub fn default(target: &str, value: impl Into<Value>) -> FieldMap {
        row(Source::None, target, Transform::Default(value.into()))
    }

    /// `source Fn target` with a Default: copy, or the default when the source is blank.
    pub fn copy_or(source: &str, target: &str, value: impl Into<Value>) -> FieldMap {
        row(
            Source::Field(source.to_string()),
            target,
            Transform::Default(value.into()),
        )
    }

    /// `source Fn target` with a Country region code transform; blank gives `blank` (e.g. "US").
    pub fn country(source: &str, target: &str, blank: &str) -> FieldMap {
        let t = Transform::Country {
            default: Some(Value::from(blank)),
            extra: BTreeMap::new(),
            builtin: true,
        };
        row(Source::Field(source.to_string()), target, t)
    }

    /// `source Fn target` with a ValueMap (exact match; values not listed are errors).
    pub fn value_map(source: &str, target: &str, entries: &[(&str, Value)]) -> FieldMap {
        let map = entries.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let t = Transform::ValueMap {
            map,
            default: None,
            case_insensitive: false,
            unmapped: Unmapped::Error,
        };
        row(Source::Field(source.to_string()), target, t)
    }

    /// `source Fn target` with a Truncate to `n` characters.
    pub fn truncate(source: &str, target: &str, n: usize) -> FieldMap {
        row(Source::Field(source.to_string()), target, Transform::Truncate(n))
    }

    /// `source Fn target`: a boolean to the F&O NoYes enum.
    pub fn no_yes(source: &str, target: &str) -> FieldMap {
        row(
            Source::Field(source.to_string()),
            target,
            Transform::Bool {
                yes: "Yes".into(),
                no: "No".into(),
            },
        )
    }
}
