//! Why a record could not be mapped. Every message names the record (its key, or its id when the key is
//! missing), the field, and what to do.

/// A record that cannot be mapped. Mapping is deterministic, so every variant is permanent: retrying the same
/// record gives the same error until the data or the P2C_MAPPING file changes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    /// A key field is absent, blank or not a valid key: the source key (e.g. `accountnumber`; `id` is then the
    /// source primary key, e.g. `accountid`, since there is no business key to name the record by), a line's
    /// header key (e.g. `quoteid.quotenumber`), or the source of a target key field (`id` is then the key).
    #[error(
        "{entity} {id}: {field} is missing, blank or not a valid key, so the record has no key to sync by; \
         set {field} on the {entity} (records without one are not synced)"
    )]
    MissingKey { entity: String, id: String, field: String },

    /// A value-mapped field got a source value the map does not list.
    #[error(
        "{entity} {key}: {field} has no value-map entry for '{value}' (from {source_field}); \
         add a value-map entry for '{value}' to {field} in P2C_MAPPING, or fix the {entity}"
    )]
    NoValueMapEntry {
        entity: String,
        key: String,
        field: String,
        source_field: String,
        value: String,
    },

    /// A string longer than F&O allows for the field. Never truncated unless the field's transform is Truncate.
    #[error("{entity} {key}: {field} would be {len} characters but F&O allows {max}; {}", too_long_fix(.entity, .field, .source_field))]
    TooLong {
        entity: String,
        key: String,
        field: String,
        source_field: String,
        len: usize,
        max: usize,
    },

    /// A value of the wrong JSON type for the F&O field (e.g. text where a number is expected).
    #[error("{entity} {key}: {field} needs {expected} but got {got} (from {source_field}); {}", bad_type_fix(.entity, .field, .source_field))]
    BadType {
        entity: String,
        key: String,
        field: String,
        source_field: String,
        expected: String,
        got: String,
    },
}

/// The source of a constant (no source field) in messages.
pub(crate) const CONSTANT: &str = "the template's default";

fn too_long_fix(entity: &str, field: &str, source_field: &str) -> String {
    if source_field == CONSTANT {
        format!("give {field} a shorter default in P2C_MAPPING")
    } else {
        format!("shorten {source_field} on the {entity}, or give {field} a truncate transform in P2C_MAPPING")
    }
}

fn bad_type_fix(entity: &str, field: &str, source_field: &str) -> String {
    if source_field == CONSTANT {
        format!("fix the default for {field} in P2C_MAPPING")
    } else {
        format!("fix {source_field} on the {entity}, or map it to {field} with a value map in P2C_MAPPING")
    }
}

impl MapError {
    /// Always true: a mapping error does not go away on retry. Send the record to the DLQ with this message.
    pub fn is_permanent(&self) -> bool {
        true
    }

    /// The field the error is about: the source key field for `MissingKey`, else the F&O target field.
    pub fn field(&self) -> &str {
        match self {
            MapError::MissingKey { field, .. }
            | MapError::NoValueMapEntry { field, .. }
            | MapError::TooLong { field, .. }
            | MapError::BadType { field, .. } => field,
        }
    }

    /// The record the error is about: its key, or its source id for `MissingKey`.
    pub fn record(&self) -> &str {
        match self {
            MapError::MissingKey { id, .. } => id,
            MapError::NoValueMapEntry { key, .. } | MapError::TooLong { key, .. } | MapError::BadType { key, .. } => {
                key
            }
        }
    }
}

/// A Sales lookup target whose value matches no record in Sales (see `Template::bind`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{entity} {key}: {field} '{value}' matches no record in Sales (looked in {}); {}",
    .looked_in.join(", "),
    unresolved_fix(*.synced_data, .field)
)]
pub struct Unresolved {
    /// The source record's noun and key, as in `MapError`.
    pub entity: String,
    pub key: String,
    /// The dotted target, e.g. "defaultuomid.name".
    pub field: String,
    /// The value looked for, e.g. "ea".
    pub value: String,
    /// Where it was looked for, e.g. ["uoms by name"].
    pub looked_in: Vec<String>,
    /// The related record is data a p2c flow syncs (customer, product, order, invoice): it is probably not
    /// synced yet, so the record is worth retrying. Otherwise it is reference data (unit, unit group, price
    /// list, currency) that Sales lacks, or a value map is missing: retrying will not help.
    pub synced_data: bool,
}

impl Unresolved {
    /// Whether retrying later can succeed without anyone changing data or configuration.
    pub fn is_transient(&self) -> bool {
        self.synced_data
    }
}

fn unresolved_fix(synced_data: bool, field: &str) -> String {
    if synced_data {
        "sync that record to Sales first (the record is retried)".to_string()
    } else {
        format!("create it in Sales, or add a value-map entry for {field} in P2C_MAPPING that names one that exists")
    }
}
