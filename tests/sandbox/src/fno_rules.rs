//! What F&O's X++ validation checks on the fields of the P2C entities, as data: the string lengths of the
//! fields' extended data types (EDTs), the date-only fields, and the table relations (reference data such as
//! units, currencies, sites, and the parent records such as customers and products).
//!
//! * Lengths and date-only fields come from `shared/mapping/data/fno_edt.json`, one table that p2c-mapping reads too (its
//!   length check and date normalisation), so the two cannot disagree.
//! * Reference data comes from `data/fno_reference.json` (seeded by `seed.rs`). Units, currencies, languages,
//!   countries/regions and states are global tables in F&O (SaveDataPerCompany = No), the others are per company:
//!   a value that exists in `usmf` is unknown in a company that was not set up with it.
//! * A value not in its related table is refused the way X++ `validateField` refuses a field with a table
//!   relation: HTTP 500 `AxODataWriteException`, Infolog "The value 'X' in field 'Y' is not found in the related
//!   table 'Z'." (spec/protocols.md B.4 validation chain `Validatefield → … → Validatewrite`).
//! * A state is validated within the row's country/region (F&O's LogisticsAddressState is keyed by country and
//!   state); an empty country is the company's country, `US` for every sandbox company.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::{Value, json};

use crate::fno_schema::Entity;
use crate::store::{FRow, FnoStore, Key, KeyPart, Row};

/// Where a related table keeps the values a field must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Shared by all legal entities.
    Global,
    /// One set per legal entity (`dataAreaId` in the key).
    Company,
}

/// A table a field is related to. Rows are keyed `[company (per-company tables)] [country (states)] value`.
pub(crate) struct Table {
    /// Storage name: an entity set's storage (customers, products, orders) or the AOT table of reference data.
    pub storage: &'static str,
    /// The row field the value must match.
    pub field: &'static str,
    /// The table as Infolog names it.
    pub label: &'static str,
    pub scope: Scope,
}

const fn table(storage: &'static str, field: &'static str, label: &'static str, scope: Scope) -> Table {
    Table {
        storage,
        field,
        label,
        scope,
    }
}

pub(crate) const UNITS: Table = table("UnitOfMeasure", "Symbol", "Units", Scope::Global);
pub(crate) const CURRENCIES: Table = table("Currency", "CurrencyCode", "Currency", Scope::Global);
pub(crate) const LANGUAGES: Table = table("LanguageTable", "LanguageId", "Languages", Scope::Global);
pub(crate) const COUNTRIES: Table = table(
    "LogisticsAddressCountryRegion",
    "ISOcode",
    "Country/region",
    Scope::Global,
);
pub(crate) const STATES: Table = table("LogisticsAddressState", "StateId", "States", Scope::Global);
pub(crate) const SITES: Table = table("InventSite", "SiteId", "Sites", Scope::Company);
pub(crate) const WAREHOUSES: Table = table("InventLocation", "InventLocationId", "Warehouses", Scope::Company);
pub(crate) const CUSTOMER_GROUPS: Table = table("CustomerGroups", "CustomerGroupId", "Customer groups", Scope::Company);
pub(crate) const PAYMENT_TERMS: Table = table("PaymTerm", "PaymTermId", "Terms of payment", Scope::Company);
pub(crate) const DELIVERY_TERMS: Table = table("DlvTerm", "Code", "Terms of delivery", Scope::Company);
pub(crate) const DELIVERY_MODES: Table = table("DlvMode", "Code", "Modes of delivery", Scope::Company);
const CUSTOMERS: Table = table("CustomersV2", "CustomerAccount", "Customers", Scope::Company);
const PRODUCTS: Table = table(
    "SellableReleasedProducts",
    "ProductNumber",
    "Released products",
    Scope::Company,
);
const ORDERS: Table = table(
    "CDSSalesOrderHeaders",
    "SalesOrderNumber",
    "Sales orders",
    Scope::Company,
);
const QUOTES: Table = table(
    "CDSSalesQuotationHeaders",
    "SalesQuotationNumber",
    "Sales quotations",
    Scope::Company,
);

/// The reference tables a test may add rows to (`Sandbox::fno_add_reference`), by storage name.
pub(crate) const REFERENCE_TABLES: &[&Table] = &[
    &UNITS,
    &CURRENCIES,
    &LANGUAGES,
    &COUNTRIES,
    &STATES,
    &SITES,
    &WAREHOUSES,
    &CUSTOMER_GROUPS,
    &PAYMENT_TERMS,
    &DELIVERY_TERMS,
    &DELIVERY_MODES,
];

/// One field with a table relation.
pub(crate) struct Relation {
    /// Storages of the entities that have the field.
    pub entities: &'static [&'static str],
    pub field: &'static str,
    /// The field as Infolog names it.
    pub label: &'static str,
    pub table: &'static Table,
    /// Mandatory on the table: empty is "Field 'label' must be filled in."
    pub required: bool,
    /// States: the row's field holding the country's ISO code.
    pub within_country: Option<&'static str>,
}

const CUST: &[&str] = &["CustomersV2"];
const CONTACTS: &[&str] = &["CDSContactPersons", "CDSContactPersonsV2"];
const QUOTE_HEAD: &[&str] = &["CDSSalesQuotationHeaders"];
const ORDER_HEAD: &[&str] = &["CDSSalesOrderHeaders"];
const HEADS: &[&str] = &["CDSSalesQuotationHeaders", "CDSSalesOrderHeaders"];
const QUOTE_LINE: &[&str] = &["CDSSalesQuotationLines"];
const ORDER_LINE: &[&str] = &["CDSSalesOrderLines"];
const LINES: &[&str] = &["CDSSalesQuotationLines", "CDSSalesOrderLines"];

const fn rel(
    entities: &'static [&'static str],
    field: &'static str,
    label: &'static str,
    t: &'static Table,
) -> Relation {
    Relation {
        entities,
        field,
        label,
        table: t,
        required: false,
        within_country: None,
    }
}

const fn required(r: Relation) -> Relation {
    Relation { required: true, ..r }
}

const fn state(entities: &'static [&'static str], field: &'static str, country: &'static str) -> Relation {
    Relation {
        within_country: Some(country),
        ..rel(entities, field, "State", &STATES)
    }
}

/// Every table relation the sandbox checks, in the order F&O validates the fields (parents first).
#[rustfmt::skip]
pub(crate) const RELATIONS: &[Relation] = &[
    required(rel(CUST, "CustomerGroupId", "Customer group", &CUSTOMER_GROUPS)),
    rel(CUST, "SalesCurrencyCode", "Currency", &CURRENCIES),
    rel(CUST, "LanguageId", "Language", &LANGUAGES),
    rel(CUST, "SiteId", "Site", &SITES),
    rel(CUST, "WarehouseId", "Warehouse", &WAREHOUSES),
    rel(CUST, "PaymentTerms", "Terms of payment", &PAYMENT_TERMS),
    rel(CUST, "DeliveryTerms", "Delivery terms", &DELIVERY_TERMS),
    rel(CUST, "DeliveryMode", "Mode of delivery", &DELIVERY_MODES),
    rel(CUST, "AddressCountryRegionISOCode", "Country/region", &COUNTRIES),
    state(CUST, "AddressState", "AddressCountryRegionISOCode"),
    rel(CUST, "DeliveryAddressCountryRegionISOCode", "Country/region", &COUNTRIES),
    state(CUST, "DeliveryAddressState", "DeliveryAddressCountryRegionISOCode"),
    rel(CONTACTS, "PrimaryAddressCountryRegionISOCode", "Country/region", &COUNTRIES),
    state(CONTACTS, "PrimaryAddressStateId", "PrimaryAddressCountryRegionISOCode"),
    required(rel(ORDER_HEAD, "OrderingCustomerAccountNumber", "Customer account", &CUSTOMERS)),
    rel(QUOTE_HEAD, "RequestingCustomerAccountNumber", "Customer account", &CUSTOMERS),
    rel(HEADS, "InvoiceCustomerAccountNumber", "Invoice account", &CUSTOMERS),
    rel(HEADS, "CurrencyCode", "Currency", &CURRENCIES),
    rel(HEADS, "LanguageId", "Language", &LANGUAGES),
    rel(HEADS, "DefaultShippingSiteId", "Site", &SITES),
    rel(HEADS, "DefaultShippingWarehouseId", "Warehouse", &WAREHOUSES),
    rel(HEADS, "PaymentTermsName", "Terms of payment", &PAYMENT_TERMS),
    rel(HEADS, "DeliveryTermsCode", "Delivery terms", &DELIVERY_TERMS),
    rel(HEADS, "DeliveryModeCode", "Mode of delivery", &DELIVERY_MODES),
    rel(HEADS, "DeliveryAddressCountryRegionISOCode", "Country/region", &COUNTRIES),
    state(HEADS, "DeliveryAddressStateId", "DeliveryAddressCountryRegionISOCode"),
    required(rel(ORDER_LINE, "SalesOrderNumber", "Sales order", &ORDERS)),
    required(rel(QUOTE_LINE, "SalesQuotationNumber", "Quotation", &QUOTES)),
    required(rel(LINES, "ProductNumber", "Item number", &PRODUCTS)),
    rel(LINES, "SalesUnitSymbol", "Unit", &UNITS),
    rel(LINES, "CurrencyCode", "Currency", &CURRENCIES),
    rel(LINES, "ShippingSiteId", "Site", &SITES),
    rel(LINES, "ShippingWarehouseId", "Warehouse", &WAREHOUSES),
    rel(LINES, "DeliveryTermsId", "Delivery terms", &DELIVERY_TERMS),
    rel(LINES, "DeliveryModeCode", "Mode of delivery", &DELIVERY_MODES),
    rel(LINES, "DeliveryAddressCountryRegionISOCode", "Country/region", &COUNTRIES),
    state(LINES, "DeliveryAddressStateId", "DeliveryAddressCountryRegionISOCode"),
];

/// Every sandbox company has its primary address in the United States (see module docs).
const COMPANY_COUNTRY: &str = "US";

fn s<'a>(data: &'a Row, k: &str) -> &'a str {
    data.get(k).and_then(Value::as_str).unwrap_or("")
}

fn part(v: &str) -> KeyPart {
    KeyPart::Str(v.to_lowercase())
}

/// The key of `value` in `t`: `[company] [country] value`.
pub(crate) fn ref_key(t: &Table, company: &str, country: Option<&str>, value: &str) -> Key {
    let mut k = Vec::new();
    if t.scope == Scope::Company {
        k.push(part(company));
    }
    if let Some(c) = country {
        k.push(part(c));
    }
    k.push(part(value));
    k
}

pub(crate) fn not_in_related(value: &str, field: &str, table: &str) -> String {
    format!("Warning: The value '{value}' in field '{field}' is not found in the related table '{table}'.")
}

/// `validateField` of every related field of the row about to be written.
pub(crate) fn check_relations(store: &FnoStore, e: &Entity, data: &Row) -> Result<(), String> {
    let company = s(data, "dataAreaId");
    for r in RELATIONS.iter().filter(|r| r.entities.contains(&e.storage.as_str())) {
        let v = s(data, r.field);
        if v.is_empty() {
            if r.required {
                return Err(format!("Warning: Field '{}' must be filled in.", r.label));
            }
            continue;
        }
        let country = r.within_country.map(|f| match s(data, f) {
            "" => COMPANY_COUNTRY,
            c => c,
        });
        if store
            .get(r.table.storage, &ref_key(r.table, company, country, v))
            .is_none()
        {
            return Err(format!(
                "{}; Warning: validateField failed on field '{}.{}'.",
                not_in_related(v, r.label, r.table.label),
                e.aot_name(),
                r.field
            ));
        }
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// Extended data types: lengths and date-only fields
// ------------------------------------------------------------------------------------------------

pub(crate) struct Edt {
    /// Maximum length of string fields: (EDT, length) by property name.
    pub strings: HashMap<String, (String, usize)>,
    /// Date-only properties (X++ date fields served as `Edm.DateTimeOffset`).
    pub date_only: HashMap<String, String>,
}

fn load_edt() -> Edt {
    let raw: Value =
        serde_json::from_str(include_str!("../../../shared/mapping/data/fno_edt.json")).unwrap_or(Value::Null);
    let rows = |k: &str| raw.get(k).and_then(Value::as_array).cloned().unwrap_or_default();
    let text = |r: &Value, i: usize| r.get(i).and_then(Value::as_str).unwrap_or("").to_string();
    let strings = rows("strings")
        .iter()
        .filter_map(|r| {
            let max = usize::try_from(r.get(2)?.as_u64()?).ok()?;
            Some((text(r, 0), (text(r, 1), max)))
        })
        .collect();
    let date_only = rows("date_only").iter().map(|r| (text(r, 0), text(r, 1))).collect();
    Edt { strings, date_only }
}

pub(crate) fn edt() -> &'static Edt {
    static EDT: OnceLock<Edt> = OnceLock::new();
    EDT.get_or_init(load_edt)
}

/// Whether F&O keeps only the date of this property (served at 12:00:00Z).
pub(crate) fn is_date_only(prop: &str) -> bool {
    edt().date_only.contains_key(prop)
}

/// A date-only value as F&O stores and serves it: the UTC date at 12:00:00Z (`iso` is an ISO UTC date-time).
pub(crate) fn noon(iso: &str) -> String {
    format!("{}T12:00:00Z", iso.get(..10).unwrap_or(iso))
}

/// `validateField` of string lengths: F&O counts UTF-16 code units (SQL Server nvarchar).
pub(crate) fn check_lengths(e: &Entity, data: &Row) -> Result<(), String> {
    for p in &e.props {
        let Some((_, max)) = edt().strings.get(&p.name) else {
            continue;
        };
        let n = s(data, &p.name).encode_utf16().count();
        if n > *max {
            return Err(format!(
                "Warning: The value of field '{}' ({}) is too long: {n} characters; the maximum is {max}.; \
                 Warning: validateField failed on field '{}.{}'.",
                crate::fno_schema::label(&p.name),
                p.name,
                e.aot_name(),
                p.name
            ));
        }
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// Reference data
// ------------------------------------------------------------------------------------------------

fn put(store: &mut FnoStore, t: &Table, key: Key, data: Row) {
    if store.get(t.storage, &key).is_none() {
        let recid = store.alloc_recid();
        store.put(
            t.storage,
            key,
            FRow {
                data,
                recid,
                recversion: 1,
            },
        );
    }
}

/// Add `value` to reference table `t` (for `company` when the table is per company; `country` for states).
pub(crate) fn add_reference(store: &mut FnoStore, t: &Table, company: &str, country: Option<&str>, value: &str) {
    let mut data = Row::new();
    if t.scope == Scope::Company {
        data.insert("dataAreaId".into(), json!(company.to_lowercase()));
    }
    if let Some(c) = country {
        data.insert("CountryRegionISOCode".into(), json!(c));
    }
    data.insert(t.field.into(), json!(value));
    put(store, t, ref_key(t, company, country, value), data);
}

/// The reference table named by its storage (AOT) name.
pub(crate) fn reference_table(name: &str) -> Option<&'static Table> {
    REFERENCE_TABLES
        .iter()
        .copied()
        .find(|t| t.storage.eq_ignore_ascii_case(name))
}

fn reference_json() -> Value {
    serde_json::from_str(include_str!("../data/fno_reference.json")).unwrap_or(Value::Null)
}

fn column(raw: &Value, list: &str, i: usize) -> Vec<String> {
    raw.get(list)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|r| r.get(i).and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The global reference tables (units, currencies, languages, countries, states).
pub(crate) fn seed_global(store: &mut FnoStore) {
    let raw = reference_json();
    for (t, list) in [
        (&UNITS, "units"),
        (&CURRENCIES, "currencies"),
        (&LANGUAGES, "languages"),
    ] {
        for v in column(&raw, list, 0) {
            add_reference(store, t, "", None, &v);
        }
    }
    let iso3: Vec<String> = column(&raw, "countries", 0);
    let iso2: Vec<String> = column(&raw, "countries", 1);
    for c in &iso2 {
        add_reference(store, &COUNTRIES, "", None, c);
    }
    let by_region: HashMap<&str, &str> = iso3
        .iter()
        .map(String::as_str)
        .zip(iso2.iter().map(String::as_str))
        .collect();
    for (region, st) in column(&raw, "states", 0).iter().zip(column(&raw, "states", 1)) {
        if let Some(c) = by_region.get(region.as_str()) {
            add_reference(store, &STATES, "", Some(c), &st);
        }
    }
}

/// The per-company reference tables of `company` (sites, warehouses, customer groups, payment and delivery terms,
/// delivery modes), shaped like the Contoso demo data.
pub(crate) fn seed_company(store: &mut FnoStore, company: &str) {
    let raw = reference_json();
    for (t, list) in [
        (&SITES, "sites"),
        (&WAREHOUSES, "warehouses"),
        (&PAYMENT_TERMS, "payment_terms"),
        (&DELIVERY_TERMS, "delivery_terms"),
        (&DELIVERY_MODES, "delivery_modes"),
    ] {
        for v in column(&raw, list, 0) {
            add_reference(store, t, company, None, &v);
        }
    }
}

/// Customer groups (an OData entity too): id and description.
pub(crate) fn customer_groups() -> Vec<(String, String)> {
    let raw = reference_json();
    column(&raw, "customer_groups", 0)
        .into_iter()
        .zip(column(&raw, "customer_groups", 1))
        .collect()
}
