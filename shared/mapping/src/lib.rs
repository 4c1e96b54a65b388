//! p2c-mapping: the prospect-to-cash templates as data, and the pure code that applies them.
//!
//! A [`Template`] says which source entity goes to which target entity, by which key, under which source filter,
//! and lists its field maps in the order of the tables in `spec/templates.md`, so a reader can check it line by
//! line. [`Template::map`] turns one source record into the target payload, a blank source clearing the target
//! field ([`Template::map_parts`] also lists the clears, which a create leaves out); [`MappingOverrides`] applies a
//! site's P2C_MAPPING file (defaults, value maps, extra, disabled and keep-when-blank fields) to the built-in
//! templates.
//!
//! Sales lookups are read and written under their Data Integrator paths (`productid.productnumber`); see
//! [`Template`] for how the pipeline resolves them ([`Template::lookups`], [`Template::binds`],
//! [`Template::bind`]). [`money`] holds the discount rounding rule.
//!
//! No I/O, except [`MappingOverrides::load`] reading the override file.

#![allow(
    clippy::result_large_err,
    reason = "MapError carries the record, field and hint as plain Strings for readable matching; it is built once per bad record, so its size costs nothing that matters"
)]

mod country;
#[rustfmt::skip]
mod country_table;
mod error;
mod hash;
pub mod money;
mod overrides;
mod sales;
mod schema;
mod template;
mod templates;

pub use country::{builtin_country_code, normalize_country};
pub use error::{MapError, Unresolved};
pub use hash::{canonical_json, content_hash};
pub use overrides::{
    ExtraField, FlowOverrides, Format, MapMode, MappingOverrides, OverrideError, TransformKind, UnmappedMode,
    ValueMapOverride,
};
pub use sales::{LookupTarget, bind_value, lookup_targets, sales_lookup_names, sales_lookup_tables, split_state};
pub use schema::{
    FNO_EMPTY_DATE, FnoProperty, FnoType, fno_edt, fno_empty_value, fno_entity_keys, fno_enum_members, fno_has_entity,
    fno_is_date_only, fno_max_len, fno_property,
};
pub use template::{
    Bind, Direction, FieldMap, Filter, Lookup, Mapped, Record, Role, Source, Template, Transform, Unmapped, build,
    select_column, without_clears,
};
pub use templates::{
    KNOWN_FLOWS, PRICE_LISTS, PROCESSING_STATUS, UNIT_NAMES, accounts_to_customers, builtin_templates,
    contacts_to_contact_persons, contacts_to_customers, invoice_headers_to_sales, invoice_lines_to_sales,
    order_headers_to_fno, order_headers_to_sales, order_lines_to_fno, order_lines_to_sales,
    products_to_price_list_items, products_to_sales, quote_headers_to_fno, quote_lines_to_fno, template, templates_for,
};
