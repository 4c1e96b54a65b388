//! Dataverse table definitions: `EntityDefinitions`, generated from the tables the sandbox serves (`dv_schema.rs`)
//! so that what the metadata says and what the data endpoints enforce cannot drift apart.
//!
//! Shapes follow Microsoft's "Query table definitions using the Web API" and "Retrieve table definitions by name or
//! MetadataId" (repo `MicrosoftDocs/powerapps-docs`, `powerapps-docs/developer/data-platform/webapi/
//! query-metadata-web-api.md` and `retrieve-metadata-name-metadataid.md`; learn.microsoft.com/power-apps/developer/
//! data-platform/webapi/query-metadata-web-api) and the metadata entity types of the Web API reference
//! (`EntityMetadata`, `AttributeMetadata` and its derived types, `OptionSetMetadata`, `EntityKeyMetadata`):
//! * `GET EntityDefinitions`, `EntityDefinitions(LogicalName='x')` or `EntityDefinitions(<MetadataId>)`, with
//!   `$select`, `$filter` (primitive and enum properties, one level into complex ones: `RequiredLevel/Value eq
//!   Microsoft.Dynamics.CRM.AttributeRequiredLevel'None'`) and `$expand=Attributes($select=...;$filter=...)`,
//!   `Keys`. `MetadataId` is always returned. No paging: every match comes in the first response.
//! * `.../Attributes`, `.../Attributes(LogicalName='y')` (or a MetadataId), optionally cast to a derived type
//!   (`/Microsoft.Dynamics.CRM.PicklistAttributeMetadata`): only a cast gives the type's own properties and its
//!   `OptionSet` / `GlobalOptionSet` navigation properties (`$expand=OptionSet($select=Options)`). Items of the
//!   uncast collection carry their derived type in `@odata.type`. Casting to `EnumAttributeMetadata` is refused,
//!   as the doc says.
//! * `.../Keys`: the alternate keys the sandbox enforces.
//!
//! Choices where the docs are silent (inference): a missing table is 404 `0x80040217` "Could not find an entity
//! with the specified LogicalName '<x>'."; an unknown property in `$select`/`$filter` is 400 `0x80060888` "Could not
//! find a property named ..." (the OData router's text, as for data queries); `$top`, `$orderby`, `$skip` and
//! `$count` are refused (400) on definitions; only GET is served (writes to the schema are 405). The sandbox has no
//! labels for columns: an attribute's `DisplayName` and `SchemaName` repeat its logical name. Table display names,
//! schema names and object type codes are the standard ones.

use serde_json::{Map, Value, json};

use crate::State;
use crate::dataverse::{ROOT, err, parse_target};
use crate::dv_options;
use crate::dv_schema::{self, ColType, Lookup, Table};
use crate::http::{Req, Resp, is_guid};

const NS: &str = "Microsoft.Dynamics.CRM.";

fn query_err(msg: impl Into<String>) -> Resp {
    err(400, "0x80060888", msg)
}

fn no_property(name: &str, ty: &str) -> Resp {
    query_err(format!("Could not find a property named '{name}' on type '{NS}{ty}'."))
}

fn segment_not_found(seg: &str) -> Resp {
    err(
        404,
        "0x8006088a",
        format!("Resource not found for the segment '{seg}'."),
    )
}

// ------------------------------------------------------------------------------------------------
// Identifiers and labels
// ------------------------------------------------------------------------------------------------

fn fnv(seed: u64, s: &str) -> u64 {
    let mut h = seed;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A stable MetadataId per definition item (clients treat it as opaque; it must only stay the same between calls).
fn mid(name: &str) -> String {
    let a = fnv(0xcbf2_9ce4_8422_2325, name);
    let b = fnv(0x8422_2325_cbf2_9ce4, name);
    let hex = format!("{a:016x}{b:016x}");
    format!(
        "{}-{}-4{}-a{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

fn label(text: &str, seed: &str) -> Value {
    let l = json!({
        "Label": text, "LanguageCode": 1033, "IsManaged": true, "MetadataId": mid(seed), "HasChanged": null
    });
    json!({"LocalizedLabels": [l.clone()], "UserLocalizedLabel": l})
}

fn empty_label() -> Value {
    json!({"LocalizedLabels": [], "UserLocalizedLabel": null})
}

fn managed(value: Value, can_change: bool, name: &str) -> Value {
    json!({"Value": value, "CanBeChanged": can_change, "ManagedPropertyLogicalName": name})
}

// ------------------------------------------------------------------------------------------------
// Tables
// ------------------------------------------------------------------------------------------------

/// Schema name, display name, plural display name and object type code of the standard tables.
fn table_names(t: &Table) -> (String, String, String, i64) {
    let (schema, display, plural, otc) = match t.logical {
        "account" => ("Account", "Account", "Accounts", 1),
        "contact" => ("Contact", "Contact", "Contacts", 2),
        "businessunit" => ("BusinessUnit", "Business Unit", "Business Units", 10),
        "transactioncurrency" => ("TransactionCurrency", "Currency", "Currencies", 9105),
        "uomschedule" => ("UoMSchedule", "Unit Group", "Unit Groups", 1056),
        "uom" => ("UoM", "Unit", "Units", 1055),
        "product" => ("Product", "Product", "Products", 1024),
        "pricelevel" => ("PriceLevel", "Price List", "Price Lists", 1022),
        "productpricelevel" => ("ProductPriceLevel", "Price List Item", "Price List Items", 1026),
        "quote" => ("Quote", "Quote", "Quotes", 1084),
        "quotedetail" => ("QuoteDetail", "Quote Product", "Quote Products", 1085),
        "salesorder" => ("SalesOrder", "Order", "Orders", 1088),
        "salesorderdetail" => ("SalesOrderDetail", "Order Product", "Order Products", 1089),
        "invoice" => ("Invoice", "Invoice", "Invoices", 1090),
        "invoicedetail" => ("InvoiceDetail", "Invoice Product", "Invoice Products", 1091),
        "systemuser" => ("SystemUser", "User", "Users", 8),
        "team" => ("Team", "Team", "Teams", 9),
        other => {
            let mut s = other.to_string();
            if let Some(f) = s.get_mut(0..1) {
                f.make_ascii_uppercase();
            }
            let n = 10_000 + (fnv(7, other) % 1000) as i64;
            return (s.clone(), s.clone(), format!("{s}s"), n);
        }
    };
    (schema.into(), display.into(), plural.into(), otc)
}

fn ownership(t: &Table) -> &'static str {
    if t.logical == "businessunit" {
        "BusinessOwned"
    } else if t
        .lookups
        .iter()
        .any(|l| l.name == "owningbusinessunit" || l.name == "ownerid")
    {
        "UserOwned"
    } else {
        "OrganizationOwned"
    }
}

/// `tracked`: change tracking is on for the table (`SandboxConfig::change_tracking_off` turns it off).
fn entity_json(t: &Table, tracked: bool) -> Map<String, Value> {
    let (schema, display, plural, otc) = table_names(t);
    let seed = format!("entity:{}", t.logical);
    let v = json!({
        "MetadataId": mid(&seed),
        "HasChanged": null,
        "LogicalName": t.logical,
        "SchemaName": schema,
        "EntitySetName": t.set,
        "LogicalCollectionName": t.set,
        "CollectionSchemaName": format!("{schema}s"),
        "PrimaryIdAttribute": t.pk,
        "PrimaryNameAttribute": t.primary_name,
        "PrimaryImageAttribute": null,
        "ObjectTypeCode": otc,
        "OwnershipType": ownership(t),
        "ChangeTrackingEnabled": tracked,
        "IsCustomEntity": false,
        "IsManaged": true,
        "IsActivity": false,
        "IsActivityParty": matches!(t.logical, "account" | "contact"),
        "IsIntersect": false,
        "IsLogicalEntity": false,
        "IsPrivate": false,
        "IsStateModelAware": t.has_state,
        "IsValidForAdvancedFind": true,
        "IsOptimisticConcurrencyEnabled": true,
        "IsAvailableOffline": true,
        "IsKnowledgeManagementEnabled": false,
        "HasActivities": matches!(t.logical, "account" | "contact" | "quote" | "salesorder" | "invoice"),
        "HasNotes": true,
        "TableType": "Standard",
        "IntroducedVersion": "5.0.0.0",
        "EntityColor": null,
        "ExternalName": null,
        "ExternalCollectionName": null,
        "DisplayName": label(&display, &format!("{seed}:display")),
        "DisplayCollectionName": label(&plural, &format!("{seed}:plural")),
        "Description": empty_label(),
        "CanCreateAttributes": managed(json!(true), false, "cancreateattributes"),
        "IsAuditEnabled": managed(json!(true), true, "canmodifyauditsettings"),
        "IsCustomizable": managed(json!(true), true, "iscustomizable"),
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

const ENTITY_NAV: &[&str] = &[
    "Attributes",
    "Keys",
    "ManyToOneRelationships",
    "OneToManyRelationships",
    "ManyToManyRelationships",
    "Privileges",
];

fn keys_json(t: &Table) -> Vec<Value> {
    t.alt_keys
        .iter()
        .map(|cols| {
            let name = format!("{}_{}", t.logical, cols.join("_"));
            json!({
                "MetadataId": mid(&format!("key:{name}")),
                "HasChanged": null,
                "LogicalName": name,
                "SchemaName": name,
                "EntityLogicalName": t.logical,
                "KeyAttributes": cols,
                "EntityKeyIndexStatus": "Active",
                "AsyncJob": null,
                "IsManaged": true,
                "IntroducedVersion": "1.0",
                "DisplayName": label(&cols.join(", "), &format!("key:{name}:display")),
                "IsCustomizable": managed(json!(true), true, "iscustomizable"),
            })
        })
        .collect()
}

// ------------------------------------------------------------------------------------------------
// Attributes
// ------------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    PrimaryId,
    Str(usize),
    Memo(usize),
    Integer,
    BigInt,
    Money,
    Decimal,
    Double,
    Boolean,
    Picklist,
    State,
    Status,
    DateTime,
    DateOnly,
    Guid,
    Lookup,
    Customer,
    Owner,
}

impl Kind {
    /// (AttributeType, AttributeTypeName, derived metadata type)
    fn names(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Kind::PrimaryId | Kind::Guid => (
                "Uniqueidentifier",
                "UniqueidentifierType",
                "UniqueIdentifierAttributeMetadata",
            ),
            Kind::Str(_) => ("String", "StringType", "StringAttributeMetadata"),
            Kind::Memo(_) => ("Memo", "MemoType", "MemoAttributeMetadata"),
            Kind::Integer => ("Integer", "IntegerType", "IntegerAttributeMetadata"),
            Kind::BigInt => ("BigInt", "BigIntType", "BigIntAttributeMetadata"),
            Kind::Money => ("Money", "MoneyType", "MoneyAttributeMetadata"),
            Kind::Decimal => ("Decimal", "DecimalType", "DecimalAttributeMetadata"),
            Kind::Double => ("Double", "DoubleType", "DoubleAttributeMetadata"),
            Kind::Boolean => ("Boolean", "BooleanType", "BooleanAttributeMetadata"),
            Kind::Picklist => ("Picklist", "PicklistType", "PicklistAttributeMetadata"),
            Kind::State => ("State", "StateType", "StateAttributeMetadata"),
            Kind::Status => ("Status", "StatusType", "StatusAttributeMetadata"),
            Kind::DateTime | Kind::DateOnly => ("DateTime", "DateTimeType", "DateTimeAttributeMetadata"),
            Kind::Lookup => ("Lookup", "LookupType", "LookupAttributeMetadata"),
            Kind::Customer => ("Customer", "CustomerType", "LookupAttributeMetadata"),
            Kind::Owner => ("Owner", "OwnerType", "LookupAttributeMetadata"),
        }
    }

    fn has_option_set(self) -> bool {
        matches!(self, Kind::Picklist | Kind::State | Kind::Status | Kind::Boolean)
    }
}

struct Attr<'a> {
    name: String,
    kind: Kind,
    lookup: Option<&'a Lookup>,
    column: usize,
}

fn attributes(t: &Table) -> Vec<Attr<'_>> {
    let mut out = Vec::new();
    for (i, (c, ty)) in t.columns.iter().enumerate() {
        let column = i + 1;
        if let Some(l) = t.lookup_by_value_col(c) {
            let kind = if l.name == "ownerid" {
                Kind::Owner
            } else if l.targets.len() > 1 {
                Kind::Customer
            } else {
                Kind::Lookup
            };
            out.push(Attr {
                name: l.name.clone(),
                kind,
                lookup: Some(l),
                column,
            });
            continue;
        }
        let kind = match ty {
            _ if *c == t.pk => Kind::PrimaryId,
            ColType::Str(n) if c == "description" || *n > 4000 => Kind::Memo(*n),
            ColType::Str(n) => Kind::Str(*n),
            ColType::Int => Kind::Integer,
            ColType::BigInt => Kind::BigInt,
            ColType::Money => Kind::Money,
            ColType::Decimal => Kind::Decimal,
            ColType::Float => Kind::Double,
            ColType::Bool => Kind::Boolean,
            ColType::Choice if c == "statecode" => Kind::State,
            ColType::Choice if c == "statuscode" => Kind::Status,
            ColType::Choice => Kind::Picklist,
            ColType::DateTime => Kind::DateTime,
            ColType::DateOnly => Kind::DateOnly,
            ColType::Guid => Kind::Guid,
        };
        out.push(Attr {
            name: c.clone(),
            kind,
            lookup: None,
            column,
        });
    }
    out
}

/// Properties every attribute has (`AttributeMetadata`), in output order.
const COMMON: &[&str] = &[
    "MetadataId",
    "HasChanged",
    "AttributeOf",
    "AttributeType",
    "AttributeTypeName",
    "ColumnNumber",
    "Description",
    "DisplayName",
    "EntityLogicalName",
    "ExternalName",
    "IntroducedVersion",
    "IsCustomAttribute",
    "IsFilterable",
    "IsLogical",
    "IsManaged",
    "IsPrimaryId",
    "IsPrimaryName",
    "IsRetrievable",
    "IsSearchable",
    "IsSecured",
    "IsValidForAdvancedFind",
    "IsValidForCreate",
    "IsValidForRead",
    "IsValidForUpdate",
    "IsValidODataAttribute",
    "LogicalName",
    "RequiredLevel",
    "SchemaName",
    "SourceType",
    "IsAuditEnabled",
    "IsCustomizable",
];

fn attr_seed(t: &Table, a: &Attr) -> String {
    format!("attr:{}.{}", t.logical, a.name)
}

fn attr_json(t: &Table, a: &Attr) -> Map<String, Value> {
    let (ty, ty_name, derived) = a.kind.names();
    let seed = attr_seed(t, a);
    let read_only = t.read_only.contains(&a.name)
        || a.lookup.is_some_and(|l| l.name == "owningbusinessunit")
        || matches!(a.name.as_str(), "versionnumber" | "createdon" | "modifiedon");
    let computed = t.computed.contains(&a.name.as_str());
    let valid_create = !read_only && !computed && a.name != "statecode";
    let valid_update = !read_only && a.kind != Kind::PrimaryId;
    let required = if a.kind == Kind::PrimaryId || matches!(a.name.as_str(), "statecode" | "statuscode") {
        "SystemRequired"
    } else if a.name == t.primary_name && valid_create {
        "ApplicationRequired"
    } else {
        "None"
    };
    let mut m = Map::new();
    m.insert("@odata.type".into(), json!(format!("#{NS}{derived}")));
    let common = json!({
        "MetadataId": mid(&seed),
        "HasChanged": null,
        "AttributeOf": null,
        "AttributeType": ty,
        "AttributeTypeName": {"Value": ty_name},
        "ColumnNumber": a.column,
        "Description": empty_label(),
        "DisplayName": label(&a.name, &format!("{seed}:display")),
        "EntityLogicalName": t.logical,
        "ExternalName": null,
        "IntroducedVersion": "5.0.0.0",
        "IsCustomAttribute": a.name.starts_with("msdynce_"),
        "IsFilterable": true,
        "IsLogical": false,
        "IsManaged": true,
        "IsPrimaryId": a.kind == Kind::PrimaryId,
        "IsPrimaryName": a.name == t.primary_name,
        "IsRetrievable": true,
        "IsSearchable": true,
        "IsSecured": false,
        "IsValidForAdvancedFind": managed(json!(true), true, "canmodifysearchsettings"),
        "IsValidForCreate": valid_create,
        "IsValidForRead": true,
        "IsValidForUpdate": valid_update,
        "IsValidODataAttribute": true,
        "LogicalName": a.name,
        "RequiredLevel": managed(json!(required), required != "SystemRequired", "canmodifyrequirementlevelsettings"),
        "SchemaName": a.name,
        "SourceType": 0,
        "IsAuditEnabled": managed(json!(true), true, "canmodifyauditsettings"),
        "IsCustomizable": managed(json!(true), true, "iscustomizable"),
    });
    if let Value::Object(c) = common {
        m.extend(c);
    }
    m.extend(specific(a));
    m
}

/// Properties of the derived type (shown only when the collection is cast to it).
fn specific(a: &Attr) -> Map<String, Value> {
    let v = match a.kind {
        Kind::Str(n) => json!({
            "MaxLength": n, "DatabaseLength": n * 2, "Format": "Text", "FormatName": {"Value": "Text"},
            "IsLocalizable": false, "YomiOf": null
        }),
        Kind::Memo(n) => json!({
            "MaxLength": n, "DatabaseLength": n * 2, "Format": "TextArea", "FormatName": {"Value": "TextArea"},
            "IsLocalizable": false
        }),
        Kind::Integer => json!({"MinValue": i32::MIN, "MaxValue": i32::MAX, "Format": "None"}),
        Kind::BigInt => json!({"MinValue": i64::MIN, "MaxValue": i64::MAX}),
        Kind::Money => json!({
            "Precision": 2, "PrecisionSource": 2, "MinValue": -922_337_203_685_477.0_f64,
            "MaxValue": 922_337_203_685_477.0_f64, "IsBaseCurrency": false, "CalculationOf": null
        }),
        Kind::Decimal => json!({
            "Precision": if a.name == "exchangerate" { 10 } else { 2 },
            "MinValue": -100_000_000_000.0_f64, "MaxValue": 100_000_000_000.0_f64
        }),
        Kind::Double => json!({"Precision": 5, "MinValue": -100_000_000_000.0_f64, "MaxValue": 100_000_000_000.0_f64}),
        Kind::Boolean => json!({"DefaultValue": false}),
        Kind::Picklist | Kind::Status => json!({"DefaultFormValue": -1, "ParentPicklistLogicalName": null}),
        Kind::State => json!({"DefaultFormValue": null}),
        Kind::DateTime => json!({
            "Format": "DateAndTime", "DateTimeBehavior": {"Value": "UserLocal"},
            "MinSupportedValue": "1753-01-01T00:00:00Z", "MaxSupportedValue": "9999-12-30T23:59:59Z"
        }),
        Kind::DateOnly => json!({
            "Format": "DateOnly", "DateTimeBehavior": {"Value": "DateOnly"},
            "MinSupportedValue": "1753-01-01T00:00:00Z", "MaxSupportedValue": "9999-12-30T23:59:59Z"
        }),
        Kind::Lookup | Kind::Customer | Kind::Owner => {
            let targets: Vec<&str> = a
                .lookup
                .map(|l| {
                    l.targets
                        .iter()
                        .filter_map(|s| dv_schema::table(s).map(|t| t.logical))
                        .collect()
                })
                .unwrap_or_default();
            json!({"Targets": targets, "Format": "None"})
        }
        Kind::PrimaryId | Kind::Guid => json!({}),
    };
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn option(value: i64, text: &str, seed: &str) -> Map<String, Value> {
    let v = json!({
        "Value": value,
        "Color": null,
        "IsManaged": true,
        "ExternalValue": null,
        "ParentValues": [],
        "Tag": null,
        "IsHidden": false,
        "MetadataId": null,
        "HasChanged": null,
        "Label": label(text, &format!("{seed}:{value}")),
        "Description": empty_label(),
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// The `OptionSet` navigation property of a choice, state, status or yes/no attribute.
fn option_set(t: &Table, a: &Attr) -> Value {
    let seed = format!("{}:optionset", attr_seed(t, a));
    let name = format!("{}_{}", t.logical, a.name);
    let mut m = Map::new();
    m.insert("MetadataId".into(), json!(mid(&seed)));
    m.insert("HasChanged".into(), Value::Null);
    m.insert("IsCustomOptionSet".into(), json!(a.name.starts_with("msdynce_")));
    m.insert("IsGlobal".into(), json!(false));
    m.insert("IsManaged".into(), json!(true));
    m.insert("Name".into(), json!(name));
    m.insert("ExternalTypeName".into(), Value::Null);
    m.insert("IntroducedVersion".into(), json!("5.0.0.0"));
    m.insert("Description".into(), empty_label());
    m.insert("DisplayName".into(), label(&a.name, &format!("{seed}:display")));
    m.insert("IsCustomizable".into(), managed(json!(true), true, "iscustomizable"));
    match a.kind {
        Kind::Boolean => {
            m.insert("@odata.type".into(), json!(format!("#{NS}BooleanOptionSetMetadata")));
            m.insert("OptionSetType".into(), json!("Boolean"));
            m.insert("TrueOption".into(), Value::Object(option(1, "Yes", &seed)));
            m.insert("FalseOption".into(), Value::Object(option(0, "No", &seed)));
        }
        Kind::State => {
            m.insert("OptionSetType".into(), json!("State"));
            let opts: Vec<Value> = dv_options::states(t)
                .into_iter()
                .map(|(v, n, default)| {
                    let mut o = Map::new();
                    o.insert("@odata.type".into(), json!(format!("#{NS}StateOptionMetadata")));
                    o.extend(option(v, &dv_options::state_display(&n), &seed));
                    o.insert("DefaultStatus".into(), json!(default));
                    o.insert("InvariantName".into(), json!(n));
                    Value::Object(o)
                })
                .collect();
            m.insert("Options".into(), Value::Array(opts));
        }
        Kind::Status => {
            m.insert("OptionSetType".into(), json!("Status"));
            let opts: Vec<Value> = dv_options::statuses(t)
                .into_iter()
                .map(|(v, text, state)| {
                    let mut o = Map::new();
                    o.insert("@odata.type".into(), json!(format!("#{NS}StatusOptionMetadata")));
                    o.extend(option(v, text, &seed));
                    o.insert("State".into(), json!(state));
                    o.insert("TransitionData".into(), Value::Null);
                    Value::Object(o)
                })
                .collect();
            m.insert("Options".into(), Value::Array(opts));
        }
        _ => {
            m.insert("OptionSetType".into(), json!("Picklist"));
            let opts: Vec<Value> = dv_options::picklist(t, &a.name)
                .unwrap_or(&[])
                .iter()
                .map(|(v, text)| Value::Object(option(*v, text, &seed)))
                .collect();
            m.insert("Options".into(), Value::Array(opts));
        }
    }
    Value::Object(m)
}

// ------------------------------------------------------------------------------------------------
// Query options: $select, $expand, $filter
// ------------------------------------------------------------------------------------------------

#[derive(Default)]
struct Opts {
    select: Option<Vec<String>>,
    filter: Option<Filter>,
    /// Navigation property and its nested options, parsed once the level they apply to is known.
    expand: Vec<(String, Vec<(String, String)>)>,
}

fn split_top(s: &str, sep: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut in_q = false;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '\'' => in_q = !in_q,
            '(' if !in_q => depth += 1,
            ')' if !in_q => depth -= 1,
            _ => {}
        }
        if c == sep && depth == 0 && !in_q {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out.into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// What a level of the query may name: its properties and navigation properties, and the type name for errors.
struct Level<'a> {
    ty: &'a str,
    props: Vec<String>,
    nav: &'a [&'a str],
}

fn parse_opts(pairs: &[(String, String)], level: &Level) -> Result<Opts, Resp> {
    let mut o = Opts::default();
    for (k, v) in pairs {
        match k.as_str() {
            "$select" => {
                let mut cols = Vec::new();
                for c in v.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                    if !level.props.iter().any(|p| p == c) && !level.nav.contains(&c) {
                        return Err(no_property(c, level.ty));
                    }
                    cols.push(c.to_string());
                }
                o.select = Some(cols);
            }
            "$filter" => o.filter = Some(parse_filter(v, level)?),
            "$expand" => {
                for item in split_top(v, ',') {
                    let (nav, inner) = match item.find('(') {
                        Some(i) => (item[..i].trim().to_string(), Some(item[i + 1..].trim_end_matches(')'))),
                        None => (item.clone(), None),
                    };
                    if !level.nav.contains(&nav.as_str()) {
                        return Err(no_property(&nav, level.ty));
                    }
                    let inner_pairs: Vec<(String, String)> = inner
                        .map(|s| {
                            split_top(s, ';')
                                .into_iter()
                                .map(|p| match p.split_once('=') {
                                    Some((k, v)) => (k.trim().to_string(), v.to_string()),
                                    None => (p, String::new()),
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    o.expand.push((nav, inner_pairs));
                }
            }
            k if k.starts_with('$') => {
                return Err(query_err(format!(
                    "The query parameter {k} is not supported on table definitions."
                )));
            }
            _ => {} // e.g. LabelLanguages: all labels are 1033 here
        }
    }
    Ok(o)
}

// A small `$filter` for definitions: comparisons of primitive and enum properties (one level into complex
// properties), `and`, `or`, `not`, parentheses.

enum Lit {
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
}

enum Filter {
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    Cmp(Vec<String>, String, Lit),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Open,
    Close,
}

fn lex(s: &str) -> Result<Vec<Tok>, String> {
    let cs: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < cs.len() {
        let c = cs[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '(' {
            out.push(Tok::Open);
            i += 1;
        } else if c == ')' {
            out.push(Tok::Close);
            i += 1;
        } else if c == '\'' {
            let mut v = String::new();
            i += 1;
            loop {
                match cs.get(i) {
                    None => return Err(format!("There is an unterminated literal at position {i} in '{s}'.")),
                    Some('\'') if cs.get(i + 1) == Some(&'\'') => {
                        v.push('\'');
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(ch) => {
                        v.push(*ch);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Str(v));
        } else {
            let start = i;
            while i < cs.len() && !cs[i].is_whitespace() && !matches!(cs[i], '(' | ')' | '\'') {
                i += 1;
            }
            out.push(Tok::Word(cs[start..i].iter().collect()));
        }
    }
    Ok(out)
}

struct FParser<'a> {
    toks: Vec<Tok>,
    pos: usize,
    level: &'a Level<'a>,
}

impl FParser<'_> {
    fn peek_word(&self, w: &str) -> bool {
        matches!(self.toks.get(self.pos), Some(Tok::Word(x)) if x == w)
    }

    fn or(&mut self) -> Result<Filter, Resp> {
        let mut l = self.and()?;
        while self.peek_word("or") {
            self.pos += 1;
            l = Filter::Or(Box::new(l), Box::new(self.and()?));
        }
        Ok(l)
    }

    fn and(&mut self) -> Result<Filter, Resp> {
        let mut l = self.unary()?;
        while self.peek_word("and") {
            self.pos += 1;
            l = Filter::And(Box::new(l), Box::new(self.unary()?));
        }
        Ok(l)
    }

    fn unary(&mut self) -> Result<Filter, Resp> {
        if self.peek_word("not") {
            self.pos += 1;
            return Ok(Filter::Not(Box::new(self.unary()?)));
        }
        if self.toks.get(self.pos) == Some(&Tok::Open) {
            self.pos += 1;
            let e = self.or()?;
            if self.toks.get(self.pos) != Some(&Tok::Close) {
                return Err(query_err("Syntax error in $filter: ')' expected."));
            }
            self.pos += 1;
            return Ok(e);
        }
        let Some(Tok::Word(path)) = self.toks.get(self.pos).cloned() else {
            return Err(query_err("Syntax error in $filter: a property name was expected."));
        };
        let segs: Vec<String> = path.split('/').map(str::to_string).collect();
        if !self.level.props.iter().any(|p| *p == segs[0]) {
            return Err(no_property(&segs[0], self.level.ty));
        }
        let Some(Tok::Word(op)) = self.toks.get(self.pos + 1).cloned() else {
            return Err(query_err(format!("Syntax error in $filter after '{path}'.")));
        };
        if !["eq", "ne", "gt", "ge", "lt", "le"].contains(&op.as_str()) {
            return Err(query_err(format!("Syntax error in $filter: unknown operator '{op}'.")));
        }
        self.pos += 2;
        let lit = match self.toks.get(self.pos).cloned() {
            Some(Tok::Str(s)) => Lit::Str(s),
            // Enum literal: `Microsoft.Dynamics.CRM.AttributeTypeCode'Picklist'` (type name, then the member).
            Some(Tok::Word(w)) if w.starts_with(NS) && matches!(self.toks.get(self.pos + 1), Some(Tok::Str(_))) => {
                self.pos += 1;
                match self.toks.get(self.pos) {
                    Some(Tok::Str(s)) => Lit::Str(s.clone()),
                    _ => Lit::Null,
                }
            }
            Some(Tok::Word(w)) if w == "true" || w == "false" => Lit::Bool(w == "true"),
            Some(Tok::Word(w)) if w == "null" => Lit::Null,
            Some(Tok::Word(w)) => match w.parse::<f64>() {
                Ok(n) => Lit::Num(n),
                Err(_) => return Err(query_err(format!("Syntax error in $filter at '{w}'."))),
            },
            _ => return Err(query_err("Syntax error in $filter: a literal was expected.")),
        };
        self.pos += 1;
        Ok(Filter::Cmp(segs, op, lit))
    }
}

fn parse_filter(text: &str, level: &Level) -> Result<Filter, Resp> {
    let toks = lex(text).map_err(query_err)?;
    let mut p = FParser { toks, pos: 0, level };
    let f = p.or()?;
    if p.pos != p.toks.len() {
        return Err(query_err(format!("Syntax error in $filter '{text}'.")));
    }
    Ok(f)
}

fn eval(f: &Filter, obj: &Map<String, Value>) -> bool {
    match f {
        Filter::And(a, b) => eval(a, obj) && eval(b, obj),
        Filter::Or(a, b) => eval(a, obj) || eval(b, obj),
        Filter::Not(a) => !eval(a, obj),
        Filter::Cmp(path, op, lit) => {
            let mut v = obj.get(&path[0]).unwrap_or(&Value::Null);
            for s in &path[1..] {
                v = v.get(s).unwrap_or(&Value::Null);
            }
            let ord = match (v, lit) {
                (Value::String(a), Lit::Str(b)) => Some(a.to_lowercase().cmp(&b.to_lowercase())),
                (Value::Bool(a), Lit::Bool(b)) => Some(a.cmp(b)),
                (Value::Number(a), Lit::Num(b)) => a.as_f64().and_then(|a| a.partial_cmp(b)),
                (Value::Null, Lit::Null) => Some(std::cmp::Ordering::Equal),
                _ => None,
            };
            use std::cmp::Ordering::*;
            match (op.as_str(), ord) {
                ("eq", o) => o == Some(Equal),
                ("ne", o) => o != Some(Equal),
                ("gt", Some(o)) => o == Greater,
                ("ge", Some(o)) => o != Less,
                ("lt", Some(o)) => o == Less,
                ("le", Some(o)) => o != Greater,
                _ => false,
            }
        }
    }
}

fn project(mut m: Map<String, Value>, select: &Option<Vec<String>>) -> Map<String, Value> {
    let Some(cols) = select else { return m };
    let mut out = Map::new();
    if let Some(t) = m.remove("@odata.type") {
        out.insert("@odata.type".into(), t);
    }
    for c in cols {
        if let Some(v) = m.get(c) {
            out.insert(c.clone(), v.clone());
        }
    }
    // MetadataId is always returned (like a primary key).
    if let Some(id) = m.get("MetadataId") {
        out.insert("MetadataId".into(), id.clone());
    }
    out
}

fn context_list(select: &Option<Vec<String>>, expand: &[(String, Vec<(String, String)>)]) -> String {
    let mut cols = select.clone().unwrap_or_default();
    for (n, _) in expand {
        if !cols.contains(n) {
            cols.push(n.clone());
        }
    }
    if cols.is_empty() {
        String::new()
    } else {
        format!("({})", cols.join(","))
    }
}

// ------------------------------------------------------------------------------------------------
// Levels
// ------------------------------------------------------------------------------------------------

fn entity_level() -> Level<'static> {
    let sample = dv_schema::table("accounts")
        .map(|t| entity_json(t, true))
        .unwrap_or_default();
    Level {
        ty: "EntityMetadata",
        props: sample.keys().cloned().collect(),
        nav: ENTITY_NAV,
    }
}

const OPTION_NAV: &[&str] = &["OptionSet", "GlobalOptionSet"];

/// Properties of `AttributeMetadata`, or of a derived type when cast.
fn attribute_level(cast: Option<Kind>) -> Level<'static> {
    let mut props: Vec<String> = COMMON.iter().map(|s| s.to_string()).collect();
    let mut ty = "AttributeMetadata";
    let mut nav: &[&str] = &[];
    if let Some(k) = cast {
        ty = k.names().2;
        let a = Attr {
            name: String::new(),
            kind: k,
            lookup: None,
            column: 0,
        };
        props.extend(specific(&a).keys().cloned());
        if k.has_option_set() {
            nav = if k == Kind::Picklist {
                OPTION_NAV
            } else {
                &OPTION_NAV[..1]
            };
        }
    }
    Level { ty, props, nav }
}

fn option_set_level() -> Level<'static> {
    Level {
        ty: "OptionSetMetadataBase",
        props: [
            "MetadataId",
            "HasChanged",
            "IsCustomOptionSet",
            "IsGlobal",
            "IsManaged",
            "Name",
            "ExternalTypeName",
            "IntroducedVersion",
            "Description",
            "DisplayName",
            "IsCustomizable",
            "OptionSetType",
            "Options",
            "TrueOption",
            "FalseOption",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        nav: &[],
    }
}

/// The cast segment `Microsoft.Dynamics.CRM.PicklistAttributeMetadata` -> the kinds it selects.
fn cast_kinds(seg: &str) -> Result<Vec<Kind>, Resp> {
    let Some(name) = seg.strip_prefix(NS) else {
        return Err(segment_not_found(seg));
    };
    let all = [
        Kind::PrimaryId,
        Kind::Str(0),
        Kind::Memo(0),
        Kind::Integer,
        Kind::BigInt,
        Kind::Money,
        Kind::Decimal,
        Kind::Double,
        Kind::Boolean,
        Kind::Picklist,
        Kind::State,
        Kind::Status,
        Kind::DateTime,
        Kind::Lookup,
    ];
    let kinds: Vec<Kind> = all.into_iter().filter(|k| k.names().2 == name).collect();
    if kinds.is_empty() {
        if name == "EnumAttributeMetadata" {
            return Err(query_err(format!(
                "The type '{NS}EnumAttributeMetadata' cannot be used as a cast: cast to a derived type such as \
                 {NS}PicklistAttributeMetadata."
            )));
        }
        return Err(segment_not_found(seg));
    }
    Ok(kinds)
}

fn same_type(a: Kind, b: Kind) -> bool {
    a.names().2 == b.names().2
}

// ------------------------------------------------------------------------------------------------
// Handler
// ------------------------------------------------------------------------------------------------

fn key_of<'k>(seg: &'k str, name: &str) -> Option<&'k str> {
    let inner = seg.strip_prefix(name)?.strip_prefix('(')?.strip_suffix(')')?;
    Some(inner)
}

fn find_table(key: &str) -> Result<&'static Table, Resp> {
    let key = key.trim();
    let found = if is_guid(key) {
        dv_schema::all_sets()
            .into_iter()
            .filter_map(dv_schema::table)
            .find(|t| mid(&format!("entity:{}", t.logical)) == key.to_ascii_lowercase())
    } else {
        let v = key
            .strip_prefix("LogicalName=")
            .map(str::trim)
            .and_then(|v| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .map(|v| v.replace("''", "'"));
        match v {
            Some(v) => dv_schema::all_sets()
                .into_iter()
                .filter_map(dv_schema::table)
                .find(|t| t.logical == v),
            None => {
                return Err(query_err(format!(
                    "The key '{key}' is not valid for EntityDefinitions: use LogicalName='<name>' or a MetadataId."
                )));
            }
        }
    };
    found.ok_or_else(|| {
        err(
            404,
            "0x80040217",
            format!("Could not find an entity with the specified LogicalName '{key}'."),
        )
    })
}

fn find_attr<'t>(t: &'t Table, key: &str) -> Result<Attr<'t>, Resp> {
    let key = key.trim();
    let name = key
        .strip_prefix("LogicalName=")
        .map(str::trim)
        .and_then(|v| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
        .map(|v| v.replace("''", "'"));
    attributes(t)
        .into_iter()
        .find(|a| match &name {
            Some(n) => a.name == *n,
            None => mid(&attr_seed(t, a)) == key.to_ascii_lowercase(),
        })
        .ok_or_else(|| {
            err(
                404,
                "0x80040217",
                format!(
                    "Could not find an attribute with the specified key '{key}' on entity '{}'.",
                    t.logical
                ),
            )
        })
}

/// Render an entity with its expansions.
fn render_entity(state: &State, t: &Table, o: &Opts) -> Result<Map<String, Value>, Resp> {
    let mut m = project(entity_json(t, crate::tracks_changes(state, t.set)), &o.select);
    for (nav, inner) in &o.expand {
        match nav.as_str() {
            "Attributes" => {
                let lv = attribute_level(None);
                let io = parse_opts(inner, &lv)?;
                if !io.expand.is_empty() {
                    return Err(query_err(
                        "OptionSet can only be expanded on attributes cast to their derived type, e.g. \
                         Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata?$expand=OptionSet.",
                    ));
                }
                let items = render_attrs(t, None, &io)?;
                m.insert("Attributes".into(), Value::Array(items));
            }
            "Keys" => {
                let io = parse_opts(inner, &keys_level())?;
                let items = keys_json(t)
                    .into_iter()
                    .filter_map(|k| match k {
                        Value::Object(km) => Some(km),
                        _ => None,
                    })
                    .filter(|k| io.filter.as_ref().is_none_or(|f| eval(f, k)))
                    .map(|k| Value::Object(project(k, &io.select)))
                    .collect();
                m.insert("Keys".into(), Value::Array(items));
            }
            other => {
                return Err(query_err(format!(
                    "Expanding '{other}' is not supported by this service emulator (Attributes and Keys are)."
                )));
            }
        }
    }
    Ok(m)
}

fn keys_level() -> Level<'static> {
    Level {
        ty: "EntityKeyMetadata",
        props: [
            "MetadataId",
            "HasChanged",
            "LogicalName",
            "SchemaName",
            "EntityLogicalName",
            "KeyAttributes",
            "EntityKeyIndexStatus",
            "AsyncJob",
            "IsManaged",
            "IntroducedVersion",
            "DisplayName",
            "IsCustomizable",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        nav: &[],
    }
}

/// One attribute: common properties (plus the derived type's when `cast`), option sets when expanded.
fn render_attr(t: &Table, a: &Attr, cast: bool, o: &Opts) -> Result<Map<String, Value>, Resp> {
    let mut full = attr_json(t, a);
    if !cast {
        let keep: Vec<String> = std::iter::once("@odata.type".to_string())
            .chain(COMMON.iter().map(|s| s.to_string()))
            .collect();
        full.retain(|k, _| keep.contains(k));
    }
    let mut m = project(full, &o.select);
    for (nav, inner) in &o.expand {
        let io = parse_opts(inner, &option_set_level())?;
        let v = match nav.as_str() {
            "OptionSet" => match option_set(t, a) {
                Value::Object(os) => Value::Object(project(os, &io.select)),
                v => v,
            },
            // Every option set here is local to its attribute.
            _ => Value::Null,
        };
        m.insert(nav.clone(), v);
    }
    Ok(m)
}

fn render_attrs(t: &Table, cast: Option<&[Kind]>, o: &Opts) -> Result<Vec<Value>, Resp> {
    let mut out = Vec::new();
    for a in attributes(t) {
        if let Some(kinds) = cast
            && !kinds.iter().any(|k| same_type(*k, a.kind))
        {
            continue;
        }
        if let Some(f) = &o.filter {
            // The filter sees every property of the level, whatever `$select` keeps.
            let mut full = attr_json(t, &a);
            if cast.is_none() {
                full.retain(|k, _| COMMON.contains(&k.as_str()));
            }
            if !eval(f, &full) {
                continue;
            }
        }
        out.push(Value::Object(render_attr(t, &a, cast.is_some(), o)?));
    }
    Ok(out)
}

pub(crate) fn handle(state: &State, req: &Req, rest: &str) -> Resp {
    if req.method != "GET" {
        return err(
            405,
            "0x80060888",
            format!(
                "The sandbox serves table definitions read-only: {} is not supported on EntityDefinitions.",
                req.method
            ),
        );
    }
    let target = match parse_target(rest) {
        Ok(t) => t,
        Err(e) => return query_err(e),
    };
    let params = req.query_params();
    let base = format!("{}{ROOT}/$metadata#EntityDefinitions", state.sales_url);
    let result = (|| -> Result<Value, Resp> {
        let Some(key) = target.key else {
            if !target.sub.is_empty() {
                return Err(segment_not_found(target.sub[0]));
            }
            let o = parse_opts(&params, &entity_level())?;
            let mut value = Vec::new();
            for t in dv_schema::all_sets().into_iter().filter_map(dv_schema::table) {
                if let Some(f) = &o.filter
                    && !eval(f, &entity_json(t, crate::tracks_changes(state, t.set)))
                {
                    continue;
                }
                value.push(Value::Object(render_entity(state, t, &o)?));
            }
            return Ok(json!({
                "@odata.context": format!("{base}{}", context_list(&o.select, &o.expand)),
                "value": value,
            }));
        };
        let t = find_table(key)?;
        let ent = format!("{base}({})", mid(&format!("entity:{}", t.logical)));
        match target.sub.as_slice() {
            [] => {
                let o = parse_opts(&params, &entity_level())?;
                let mut m = Map::new();
                m.insert(
                    "@odata.context".into(),
                    json!(format!("{base}{}/$entity", context_list(&o.select, &o.expand))),
                );
                m.extend(render_entity(state, t, &o)?);
                Ok(Value::Object(m))
            }
            ["Keys"] => {
                let o = parse_opts(&params, &keys_level())?;
                let value: Vec<Value> = keys_json(t)
                    .into_iter()
                    .filter_map(|k| match k {
                        Value::Object(km) => Some(km),
                        _ => None,
                    })
                    .filter(|k| o.filter.as_ref().is_none_or(|f| eval(f, k)))
                    .map(|k| Value::Object(project(k, &o.select)))
                    .collect();
                Ok(json!({"@odata.context": format!("{ent}/Keys"), "value": value}))
            }
            ["Attributes"] => {
                let o = parse_opts(&params, &attribute_level(None))?;
                let value = render_attrs(t, None, &o)?;
                Ok(json!({
                    "@odata.context": format!("{ent}/Attributes{}", context_list(&o.select, &o.expand)),
                    "value": value,
                }))
            }
            ["Attributes", cast] => {
                let kinds = cast_kinds(cast)?;
                let o = parse_opts(&params, &attribute_level(Some(kinds[0])))?;
                let value = render_attrs(t, Some(&kinds), &o)?;
                Ok(json!({
                    "@odata.context": format!("{ent}/Attributes/{cast}{}", context_list(&o.select, &o.expand)),
                    "value": value,
                }))
            }
            [seg, more @ ..] if seg.starts_with("Attributes(") => {
                let Some(k) = key_of(seg, "Attributes") else {
                    return Err(segment_not_found(seg));
                };
                let a = find_attr(t, k)?;
                let aid = mid(&attr_seed(t, &a));
                match more {
                    [] => {
                        let o = parse_opts(&params, &attribute_level(None))?;
                        let mut m = Map::new();
                        m.insert(
                            "@odata.context".into(),
                            json!(format!(
                                "{ent}/Attributes{}/$entity",
                                context_list(&o.select, &o.expand)
                            )),
                        );
                        m.extend(render_attr(t, &a, false, &o)?);
                        Ok(Value::Object(m))
                    }
                    [cast, rest @ ..] => {
                        let kinds = cast_kinds(cast)?;
                        if !kinds.iter().any(|k| same_type(*k, a.kind)) {
                            return Err(segment_not_found(cast));
                        }
                        match rest {
                            [] => {
                                let o = parse_opts(&params, &attribute_level(Some(a.kind)))?;
                                let mut m = Map::new();
                                m.insert(
                                    "@odata.context".into(),
                                    json!(format!(
                                        "{ent}/Attributes/{cast}{}/$entity",
                                        context_list(&o.select, &o.expand)
                                    )),
                                );
                                m.extend(render_attr(t, &a, true, &o)?);
                                Ok(Value::Object(m))
                            }
                            ["OptionSet"] if a.kind.has_option_set() => {
                                let o = parse_opts(&params, &option_set_level())?;
                                let mut m = Map::new();
                                m.insert(
                                    "@odata.context".into(),
                                    json!(format!(
                                        "{ent}/Attributes({aid})/{cast}/OptionSet{}/$entity",
                                        context_list(&o.select, &[])
                                    )),
                                );
                                if let Value::Object(os) = option_set(t, &a) {
                                    m.extend(project(os, &o.select));
                                }
                                Ok(Value::Object(m))
                            }
                            [seg, ..] => Err(segment_not_found(seg)),
                        }
                    }
                }
            }
            [seg, ..] => Err(segment_not_found(seg)),
        }
    })();
    match result {
        Ok(v) => Resp::odata_json(200, &v),
        Err(r) => r,
    }
}
