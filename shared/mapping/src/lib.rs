//! p2c-mapping: the prospect-to-cash templates as data, and the pure code that applies them.
//!
//! A [`Template`] says which source entity goes to which target entity, by which key, under which source filter,
//! and lists its field maps in the order of the tables in `spec/templates.md`, so a reader can check it line by
//! line. [`Template::map`] turns one source record into the target payload; [`MappingOverrides`] applies a site's
//! P2C_MAPPING file (defaults, value maps, extra and disabled fields) to the built-in templates.
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
mod overrides;
mod schema;
mod template;
mod templates;

pub use country::{builtin_country_code, normalize_country};
pub use error::MapError;
pub use hash::{canonical_json, content_hash};
pub use overrides::{
    ExtraField, FlowOverrides, Format, MapMode, MappingOverrides, OverrideError, TransformKind, UnmappedMode,
    ValueMapOverride,
};
pub use schema::{FnoProperty, FnoType, fno_entity_keys, fno_enum_members, fno_has_entity, fno_max_len, fno_property};
pub use template::{FieldMap, Filter, Lookup, Record, Source, Template, Transform, Unmapped, build, select_column};
pub use templates::{KNOWN_FLOWS, accounts_to_customers, builtin_templates, templates_for};
