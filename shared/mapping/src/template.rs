//! Templates as data: which source entity goes to which target entity, the key, the source filter and the field
//! maps in the order of the tables in `spec/templates.md`, and the code that applies them to one record.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::country::{builtin_country_code, normalize_country};
use crate::error::{CONSTANT, MapError, Unresolved};
use crate::sales::{LookupTarget, bind_value, lookup_targets};
use crate::schema::{self, Misfit, fno_empty_value, fno_has_entity, fno_max_len};

/// One record as JSON: a Dataverse row or an F&O entity, keyed by wire names.
pub type Record = serde_json::Map<String, Value>;

/// A mapping from one source entity to one target entity (one Data Integrator task).
///
/// # Names and keys
///
/// Source and target fields are wire names: F&O properties case-sensitive (`SalesOrderNumber`), Sales columns
/// lower-case logical names (`ordernumber`). A header or single record is keyed by one source field
/// (`source_key`). A line is keyed under its header: `parent_key` names the source field holding the header's key
/// and `source_key` the line number (`LineCreationSequenceNumber` <-> `sequencenumber`), and [`Template::key_of`]
/// gives `"<header key>/<line number>"`, e.g. `"QUO-01000-BVRCPS/2"`.
///
/// # Sales lookups
///
/// - **As a source** (Sales -> F&O), a lookup is read by its Data Integrator path, `Source::Field("nav.column")`,
///   e.g. `productid.productnumber`, or `customerid.Account(accountnumber).Contact(msdynce_contactnumber)` for a
///   Customer lookup. [`Template::lookups`] lists the paths (rows and filter); the pipeline reads `_nav_value`
///   (see [`Template::source_select`]) and puts the related record's value into the record under the dotted
///   name before [`Template::map`].
/// - **As a target** (F&O -> Sales), a row writes the business value under the dotted path, e.g.
///   `"defaultuomid.name": "ea"`, `"customerid.Account(accountnumber).Contact(msdynce_contactnumber)": "ACC-1"`.
///   So `map` stays pure, its output is what the content hash is taken of, and GUIDs never enter the hash.
///   [`Template::binds`] lists those targets with the tables and columns to look the value up in;
///   [`Template::bind`] then turns the mapped payload into the wire body with a resolver the pipeline supplies
///   (a cache or a query; in tests a map), replacing each dotted key in place by `<nav>@odata.bind:
///   "/<set>(<guid>)"` (`customerid_account@odata.bind` for a Customer that is an account). A value that
///   matches no record is an [`Unresolved`] error naming the record, field and value.
/// - The target key of a Sales template may contain such paths (`["salesorderid.ordernumber",
///   "sequencenumber"]`): the pipeline finds the existing record by the resolved ids.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Template {
    /// The Data Integrator task name, e.g. "Accounts - Customers", "QuoteHeader", "QuoteLine"; unique within its
    /// flow, and the name of its section in the P2C_MAPPING file (`[quotes-to-fno.QuoteLine]`).
    pub name: String,
    /// The p2c flow that runs it, e.g. "accounts-to-fno"; also its section name in the P2C_MAPPING file.
    pub flow: String,
    /// Source entity set, e.g. "accounts".
    pub source_entity: String,
    /// Target entity set, e.g. "CustomersV2".
    pub target_entity: String,
    /// Source field holding the business key, e.g. "accountnumber"; for a line, its line number, e.g.
    /// "sequencenumber" (the full key adds `parent_key`).
    pub source_key: String,
    /// Source primary key used for links and for naming records that have no business key, e.g. "accountid".
    /// F&O entities have no such id: there it is the business key field (for lines, the header's key field).
    pub source_id: String,
    /// Target key fields, e.g. ["dataAreaId", "CustomerAccount"]. `dataAreaId` is added by the pipeline; every
    /// other key field is written by `map` (or `map` fails with `MissingKey`).
    pub target_key: Vec<String>,
    /// What the record is in its flow: a single record, a document header, one of its lines, or a companion.
    pub role: Role,
    /// For a line: the source field (or lookup path) holding its header's key, e.g. "quoteid.quotenumber" or
    /// "SalesOrderNumber". `None` for every other role.
    pub parent_key: Option<String>,
    /// Source filter; `None` syncs every record (that has a key).
    pub filter: Option<Filter>,
    /// Field maps, in the order of the template's table.
    pub fields: Vec<FieldMap>,
}

/// What a template's records are in its flow; [`crate::templates_for`] lists a flow's templates in run order
/// (single or header first, then lines or companions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A record on its own: an account, a contact, a product.
    Single,
    /// A document header (quote, order, invoice); its lines are written after it.
    Header,
    /// A document line, synced under its header: keyed by the header's key (`parent_key`) and its line number.
    Line,
    /// A second target record made from the same source record as the flow's `Single` template, written after
    /// it: the price list item of a product. Keyed like the single record.
    Companion,
}

/// Which way a template moves data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    SalesToFno,
    FnoToSales,
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
    /// True when the P2C_MAPPING file says `keep_when_blank`: a blank source writes nothing, so the target keeps
    /// its value. Otherwise a blank source clears the target (see [`Template::map`]).
    pub keep_when_blank: bool,
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
/// Where a blank source gives no value, [`Template::map`] clears the target (unless the row keeps it).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transform {
    /// The source value as is; blank gives no value.
    Copy,
    /// The Data Integrator "Default": blank (or no source at all) writes this value, anything else is copied.
    Default(Value),
    /// Look the value up (numbers and booleans by their JSON text, e.g. "1", "true"). Blank writes `default`, if
    /// any (the Data Integrator's "blank source side" entry), else gives no value; a value not in the map is
    /// handled by `unmapped`.
    ValueMap {
        map: BTreeMap<String, Value>,
        default: Option<Value>,
        case_insensitive: bool,
        unmapped: Unmapped,
    },
    /// The Data Integrator "Country region code": country name or code -> ISO 3166-1 alpha-2. `extra` entries
    /// (keys compared normalised, see `normalize_country`) win over the built-in table; `builtin: false` turns the
    /// table off. Blank writes `default`, if any, else gives no value. A value nobody knows is a `NoValueMapEntry`
    /// error.
    Country {
        default: Option<Value>,
        extra: BTreeMap<String, Value>,
        builtin: bool,
    },
    /// Cut text to this many characters (UTF-16 code units, as F&O counts). The only transform that may shorten.
    /// Blank gives no value.
    Truncate(usize),
    /// A source boolean -> `yes` or `no` (e.g. the F&O NoYes enum). Null gives no value.
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

/// One record mapped: what an update writes, and which of its fields are clears.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mapped {
    /// Every row's value in row order, clears included: what an update writes and what the content hash is of,
    /// so a cleared field is a change once and then unchanged.
    pub body: Record,
    /// The target fields of `body` that hold a clear (their source is blank), in row order. A create leaves them
    /// out: a new record is blank there anyway, and the target's own defaults stay in force.
    pub cleared: Vec<String>,
}

impl Mapped {
    /// The body of a create: `body` without the clears.
    pub fn create_body(&self) -> Record {
        without_clears(&self.body, &self.cleared)
    }
}

/// `body` without the `cleared` fields (a create body).
pub fn without_clears(body: &Record, cleared: &[String]) -> Record {
    body.iter()
        .filter(|(k, _)| !cleared.contains(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A source filter: simple predicates over source fields, evaluated in memory after reading.
///
/// Comparisons are JSON equality (numbers by value, so 1 equals 1.0; text is case-sensitive). An absent field
/// counts as null. `Ne` is exactly `not Eq`, so a null field passes `Ne`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Filter {
    Eq {
        field: String,
        value: Value,
    },
    Ne {
        field: String,
        value: Value,
    },
    In {
        field: String,
        values: Vec<Value>,
    },
    NotNull {
        field: String,
    },
    IsNull {
        field: String,
    },
    /// Present and not blank: not null, and not text that is empty or only spaces (F&O sends "" for no value).
    NotBlank {
        field: String,
    },
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
    pub fn not_blank(field: &str) -> Filter {
        Filter::NotBlank {
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
            Filter::NotBlank { field } => !is_blank(src.get(field)),
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
            | Filter::IsNull { field }
            | Filter::NotBlank { field } => out.push(field),
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
    /// The rest of the path on the related record, e.g. "isocurrencycode", or
    /// "Account(accountnumber).Contact(msdynce_contactnumber)" for a Customer lookup.
    pub field: String,
    /// The tables the lookup can point to and the column to read on each (for a Customer: the account's
    /// `accountnumber`, the contact's `msdynce_contactnumber`; pick by the `_x_value` column's
    /// `@Microsoft.Dynamics.CRM.lookuplogicalname` annotation). Empty for a lookup p2c does not know.
    pub targets: Vec<LookupTarget>,
}

/// A Sales lookup a template writes (see [`Template`], "Sales lookups"): the dotted target in `map`'s output and
/// where its value is looked up, tried in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bind {
    /// The dotted target in the mapped payload, e.g. "defaultuomid.name".
    pub target: String,
    /// The lookup (navigation property), e.g. "defaultuomid".
    pub navigation: String,
    /// Where to look the value up, and the `@odata.bind` property each hit is written as.
    pub targets: Vec<LookupTarget>,
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

/// A JSON number that is a whole number (1 or 1.0), as i64.
fn whole_number(n: &serde_json::Number) -> Option<i64> {
    n.as_i64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
            .map(|f| f as i64)
    })
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
    /// The record's noun in messages: a Sales entity set without its plural "s" ("accounts" -> "account"), or
    /// a short name for an F&O entity ("F&O sales order").
    pub fn record_noun(&self) -> &str {
        match self.source_entity.as_str() {
            "SellableReleasedProducts" => "F&O product",
            "CDSSalesOrderHeaders" => "F&O sales order",
            "CDSSalesOrderLines" | "CDSSalesOrderLinesV2" => "F&O sales order line",
            "ExternallyMaintainedCustomerSalesInvoiceHeaders" => "F&O invoice",
            "ExternallyMaintainedCustomerSalesInvoiceLines" | "ExternallyMaintainedCustomerSalesInvoiceLinesV2" => {
                "F&O invoice line"
            }
            s => s.strip_suffix('s').unwrap_or(s),
        }
    }

    /// Which way the template moves data: into F&O when its target is an F&O entity set.
    pub fn direction(&self) -> Direction {
        if fno_has_entity(&self.target_entity) {
            Direction::SalesToFno
        } else {
            Direction::FnoToSales
        }
    }

    /// Whether the template writes F&O (its target is an F&O entity set, checked against `$metadata`).
    pub fn writes_fno(&self) -> bool {
        self.direction() == Direction::SalesToFno
    }

    /// The source id (e.g. `accountid`) as text, for messages about records without a key.
    fn id_of(&self, src: &Record) -> String {
        match src.get(&self.source_id) {
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => format!("(no {})", self.source_id),
        }
    }

    fn missing_key(&self, id: String, field: &str) -> MapError {
        MapError::MissingKey {
            entity: self.record_noun().to_string(),
            id,
            field: field.to_string(),
        }
    }

    /// The record's business key, exactly as in the source: e.g. its `accountnumber`. For a line,
    /// `"<header key>/<line number>"`, e.g. `"QUO-01000-BVRCPS/2"`; a line number may be text or a whole number.
    pub fn key_of(&self, src: &Record) -> Result<String, MapError> {
        let own = match src.get(&self.source_key) {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
            Some(Value::Number(n)) if self.role == Role::Line => whole_number(n).map(|i| i.to_string()),
            _ => None,
        };
        let Some(own) = own else {
            return Err(self.missing_key(self.id_of(src), &self.source_key));
        };
        match self.parent_key_of(src)? {
            Some(parent) => Ok(format!("{parent}/{own}")),
            None => Ok(own),
        }
    }

    /// For a line, its header's key (from `parent_key`): what the pipeline looks the header's link up by, and
    /// defers the line on while the header is not synced. `Ok(None)` for other roles.
    pub fn parent_key_of(&self, src: &Record) -> Result<Option<String>, MapError> {
        let Some(field) = &self.parent_key else {
            return Ok(None);
        };
        match src.get(field) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
            _ => Err(self.missing_key(self.id_of(src), field)),
        }
    }

    /// Whether the record passes the template's source filter (no filter: always).
    pub fn passes_filter(&self, src: &Record) -> bool {
        self.filter.as_ref().is_none_or(|f| f.matches(src))
    }

    /// Map one source record to the target payload, keyed by target wire names in template order: the body of
    /// an update, clears included ([`Template::map_parts`] also says which fields are clears).
    ///
    /// - The company (`dataAreaId`) is not mapped here; the pipeline adds it.
    /// - A row whose source is blank (absent, null, empty or only spaces) and whose transform gives no value for
    ///   it (no default) **clears** the target, so removing a value in the source removes it in the target: F&O
    ///   text `""`, numbers `0` (null where `$metadata` makes them nullable), dates the empty date, enums their
    ///   first member ([`crate::fno_empty_value`]); Sales `null` (a lookup is unlinked by `bind`). Not cleared:
    ///   rows marked `keep_when_blank` (the target keeps its value), rows without a source, and key fields.
    /// - Every value is checked against the target's `$metadata` type and, for text, its known length
    ///   (`fno_max_len`): too long is `TooLong`, never silently cut, unless the row's transform is Truncate.
    ///   Numbers stay JSON numbers; text where a number is expected is `BadType`.
    /// - Every target key field except `dataAreaId` must be written; a blank one (e.g. an unresolved header
    ///   lookup on a line) is `MissingKey` naming its source field.
    /// - For Sales targets lookups are written under their dotted path (see the type's docs); `bind` turns them
    ///   into `@odata.bind` properties.
    /// - Never panics, whatever the input.
    pub fn map(&self, src: &Record) -> Result<Record, MapError> {
        self.map_parts(src).map(|m| m.body)
    }

    /// [`Template::map`], with the list of cleared fields a create leaves out.
    pub fn map_parts(&self, src: &Record) -> Result<Mapped, MapError> {
        let key = self.key_of(src)?;
        let entity = self.record_noun();
        let mut out = Mapped::default();
        for fm in self.fields.iter().filter(|f| f.enabled) {
            let ctx = Ctx { entity, key: &key, fm };
            let raw = match &fm.source {
                Source::Field(path) => src.get(path),
                Source::None => None,
            };
            let value = match fm.transform.apply(raw, &ctx)? {
                Some(v) if !v.is_null() => v,
                _ => {
                    if let Some(empty) = self.clear_of(fm) {
                        out.body.insert(fm.target.clone(), empty);
                        out.cleared.push(fm.target.clone());
                    }
                    continue;
                }
            };
            match schema::conform(&self.target_entity, &fm.target, &value) {
                Ok(Some(v)) => {
                    out.body.insert(fm.target.clone(), v);
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
        // Every key field but the company must be written, or the target record cannot be found or created.
        for k in self.target_key.iter().filter(|k| *k != "dataAreaId") {
            if !out.body.contains_key(k) {
                let field = self.field(k).and_then(|f| f.source.path()).unwrap_or(k.as_str());
                return Err(self.missing_key(key, field));
            }
        }
        Ok(out)
    }

    /// What a blank source writes through row `fm`: the target's empty value, or `None` (write nothing) for a
    /// row that keeps the target's value, has no source, or writes a key field (a blank key is `MissingKey`).
    fn clear_of(&self, fm: &FieldMap) -> Option<Value> {
        if fm.keep_when_blank || fm.source == Source::None || self.target_key.contains(&fm.target) {
            return None;
        }
        self.empty_value(&fm.target)
    }

    /// The value that clears target field `target`: F&O's empty value of its type, or null in Sales.
    pub fn empty_value(&self, target: &str) -> Option<Value> {
        if self.writes_fno() {
            fno_empty_value(&self.target_entity, target)
        } else {
            Some(Value::Null)
        }
    }

    /// The source columns to `$select`: the id, the header key of a line, and the key first, then each enabled
    /// row's source (a lookup path
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
        if let Some(p) = &self.parent_key {
            push(select_column(p));
        }
        push(select_column(&self.source_key));
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

    /// The lookup paths the template reads, each once: enabled rows' sources in row order, then the filter's
    /// (a line's filter may look at its header, e.g. `quoteid.statecode`). What the pipeline must resolve into
    /// the record (under `path`) before calling `passes_filter` and `map`.
    pub fn lookups(&self) -> Vec<Lookup> {
        let mut paths: Vec<&str> = self
            .fields
            .iter()
            .filter(|f| f.enabled)
            .filter_map(|f| f.source.path())
            .collect();
        if let Some(p) = &self.parent_key {
            paths.push(p);
        }
        if let Some(f) = &self.filter {
            paths.extend(f.fields());
        }
        let mut out: Vec<Lookup> = Vec::new();
        for p in paths {
            let Some((nav, rest)) = p.split_once('.') else { continue };
            if out.iter().any(|l| l.path == p) {
                continue;
            }
            out.push(Lookup {
                path: p.to_string(),
                navigation: nav.to_string(),
                column: select_column(p),
                field: rest.to_string(),
                targets: lookup_targets(p).map(|(_, t)| t).unwrap_or_default(),
            });
        }
        out
    }

    /// The Sales lookups the template writes (Sales targets only): each enabled row whose target is a dotted
    /// lookup path, in row order. [`Template::bind`] resolves them.
    pub fn binds(&self) -> Vec<Bind> {
        if self.writes_fno() {
            return Vec::new();
        }
        self.fields
            .iter()
            .filter(|f| f.enabled)
            .filter_map(|f| {
                let (navigation, targets) = lookup_targets(&f.target)?;
                Some(Bind {
                    target: f.target.clone(),
                    navigation,
                    targets,
                })
            })
            .collect()
    }

    /// Turn `map`'s output into the Sales wire body: each dotted lookup target (see [`Template::binds`]) is
    /// replaced, in place, by `<bind_property>: "/<entity_set>(<id>)"` for the first lookup target where
    /// `resolve(target, value)` finds a record id; a cleared one (null) by `<bind_property>: null` of the first
    /// lookup target. Everything else is copied as is. `key` names the record in
    /// errors (from `key_of`).
    ///
    /// A value that matches nothing is [`Unresolved`]: for synced data (customer, product, order, invoice) the
    /// related record is probably not synced yet, so retry later; for reference data (unit, unit group, price
    /// list, currency) Sales lacks it or a value map is missing.
    pub fn bind(
        &self,
        key: &str,
        mapped: &Record,
        mut resolve: impl FnMut(&LookupTarget, &str) -> Option<String>,
    ) -> Result<Record, Unresolved> {
        let binds = self.binds();
        let mut out = Record::new();
        for (k, v) in mapped {
            let Some(b) = binds.iter().find(|b| &b.target == k) else {
                out.insert(k.clone(), v.clone());
                continue;
            };
            // A cleared lookup: `<nav>@odata.bind: null` unlinks it (Dataverse's disassociate on update).
            if v.is_null()
                && let Some(t) = b.targets.first()
            {
                out.insert(t.bind_property.clone(), Value::Null);
                continue;
            }
            let text = lookup_text(v).filter(|t| !t.is_empty());
            let hit = text
                .as_deref()
                .and_then(|text| b.targets.iter().find_map(|t| resolve(t, text).map(|id| (t, id))));
            match hit {
                Some((t, id)) => {
                    out.insert(t.bind_property.clone(), bind_value(&t.entity_set, &id));
                }
                None => {
                    return Err(Unresolved {
                        entity: self.record_noun().to_string(),
                        key: key.to_string(),
                        field: k.clone(),
                        value: text.unwrap_or_else(|| schema::describe(v)),
                        looked_in: b
                            .targets
                            .iter()
                            .map(|t| format!("{} by {}", t.entity_set, t.column))
                            .collect(),
                        synced_data: b.targets.iter().any(LookupTarget::is_synced_data),
                    });
                }
            }
        }
        Ok(out)
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
            keep_when_blank: false,
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

    /// `source Fn target` with a Country region code transform and no default (F&O -> Sales, where p2c does not
    /// invent an address): blank clears the target like a copy.
    pub fn country_code(source: &str, target: &str) -> FieldMap {
        let t = Transform::Country {
            default: None,
            extra: BTreeMap::new(),
            builtin: true,
        };
        row(Source::Field(source.to_string()), target, t)
    }

    /// `source Fn target` with a ValueMap (exact match; values not listed are errors). Option-set and other
    /// numeric sources match by their JSON text ("1"). See [`FieldMap::ignore_case`] and
    /// [`FieldMap::keep_unmapped`] for the other flavours.
    pub fn value_map<V: Clone + Into<Value>>(source: &str, target: &str, entries: &[(&str, V)]) -> FieldMap {
        let map = entries.iter().map(|(k, v)| (k.to_string(), v.clone().into())).collect();
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
        bool_map(source, target, "Yes", "No")
    }

    /// `source Fn target`: a boolean to `if_true` / `if_false` (e.g. inverted: `donotemail` true -> "No").
    pub fn bool_map(source: &str, target: &str, if_true: impl Into<Value>, if_false: impl Into<Value>) -> FieldMap {
        row(
            Source::Field(source.to_string()),
            target,
            Transform::Bool {
                yes: if_true.into(),
                no: if_false.into(),
            },
        )
    }
}

impl FieldMap {
    /// A value-map row that matches source values ignoring case (unit names, unit symbols). No effect on other
    /// transforms.
    pub fn ignore_case(mut self) -> FieldMap {
        if let Transform::ValueMap { case_insensitive, .. } = &mut self.transform {
            *case_insensitive = true;
        }
        self
    }

    /// A row that writes nothing for a blank source, so the target keeps its value instead of being cleared.
    pub fn keep_when_blank(mut self) -> FieldMap {
        self.keep_when_blank = true;
        self
    }

    /// A value-map row that passes values it does not list through unchanged (a map that only renames some
    /// values). No effect on other transforms.
    pub fn keep_unmapped(mut self) -> FieldMap {
        if let Transform::ValueMap { unmapped, .. } = &mut self.transform {
            *unmapped = Unmapped::Keep;
        }
        self
    }
}
