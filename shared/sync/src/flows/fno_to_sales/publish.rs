//! Products are published once they are in Sales. A product created through the Web API starts in Draft unless the
//! organization's "Create products without parent in active state" (`organization.
//! createproductswithoutparentinactivestate`) is on, and it is off in a fresh installation of Dynamics 365 Sales; a
//! Draft product cannot go on a quote, order or invoice line (spec/templates.md 5.2). Publishing a product that has
//! no family is `SetState` to Active: a PATCH of `statecode` 0 and `statuscode` 1 (`PublishProductHierarchy` is for
//! product families). Source: Microsoft Learn, "Publish, revise, revert, retire, and activate products (product
//! lifecycle)".
//!
//! The flow publishes each product it creates, after its price list item (the update after the create,
//! [`super::unit::Work::after`]), and a product it finds in Sales still in Draft (a run that stopped between the
//! create and the publish, or one created by hand).

use p2c_dynamics::Record;
use serde_json::{Value, json};

use crate::{deps::Deps, error::SyncError};

/// `product.statecode` Draft (DCE `product.md`: 0 Active, 1 Retired, 2 Draft, 3 Under Revision).
const DRAFT: i64 = 2;

/// The organization column of the setting.
const CREATE_ACTIVE: &str = "createproductswithoutparentinactivestate";

/// The update that publishes a product: Active, status Active.
pub(super) fn published() -> Record {
    let mut r = Record::new();
    r.insert("statecode".into(), json!(0));
    r.insert("statuscode".into(), json!(1));
    r
}

/// Whether a Sales product row is in Draft.
pub(super) fn is_draft(row: &Record) -> bool {
    row.get("statecode").and_then(Value::as_i64) == Some(DRAFT)
}

/// Whether products p2c creates start in Draft: the organization's setting, read once per run that writes products
/// (off, i.e. Draft, when the organization row does not say).
pub(super) async fn created_in_draft(deps: &Deps) -> Result<bool, SyncError> {
    let cols = ["organizationid".to_string(), CREATE_ACTIVE.to_string()];
    let rows = deps.sales.list("organizations", &cols, None).await?;
    let active = rows
        .first()
        .and_then(|r| r.get(CREATE_ACTIVE))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(!active)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishing_is_active_with_status_active() {
        assert_eq!(Value::Object(published()), json!({"statecode": 0, "statuscode": 1}));
        let draft: Record = json!({"statecode": 2}).as_object().cloned().unwrap_or_default();
        assert!(is_draft(&draft));
        assert!(!is_draft(&published()));
    }
}
