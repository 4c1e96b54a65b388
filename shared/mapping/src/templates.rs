//! The built-in templates, one function per Data Integrator task, each a transcription of its table in
//! `spec/templates.md` section 5 (same rows, same order; F&O fields by their case-sensitive wire names).

use crate::template::Template;
use crate::template::build::{copy, country, default, truncate};

/// Every flow p2c has or will have (DESIGN.md); the sections a P2C_MAPPING file may contain.
pub const KNOWN_FLOWS: &[&str] = &[
    "accounts-to-fno",
    "contacts-to-fno",
    "products-to-sales",
    "quotes-to-fno",
    "orders-to-fno",
    "orders-to-sales",
    "invoices-to-sales",
];

/// All built-in templates.
pub fn builtin_templates() -> Vec<Template> {
    vec![accounts_to_customers()]
}

/// The built-in templates of one flow, in the order they run (headers before lines).
pub fn templates_for(flow: &str) -> Vec<Template> {
    builtin_templates().into_iter().filter(|t| t.flow == flow).collect()
}

/// 5.1 Accounts (Sales to Fin and Ops) - Direct, task `Accounts - Customers`: Sales `account` -> F&O `CustomersV2`.
///
/// Choices where the table says "(not shown)":
/// - SalesCurrencyCode: a plain copy of the currency's ISO code; F&O currency codes are ISO 4217 codes.
/// - AddressCountryRegionISOCode / DeliveryAddressCountryRegionISOCode: the built-in country table, blank = "US"
///   (the CDS-era default was USA; the quote and order templates document "blank = US").
/// - PartyType: "Organization", the doc's own Default example; accounts are organisations.
/// - AddressLocationRoles: "Business", the role F&O gives a party's main address; address2 goes to the delivery
///   fields, which make their own delivery address. Change it in P2C_MAPPING (e.g. "Business;Invoice").
/// - AddressDescription / DeliveryAddressDescription: the name cut to F&O's 60 characters (Data Integrator's
///   Truncate), so a 61–100 character account name, valid as OrganizationName, does not fail the customer.
pub fn accounts_to_customers() -> Template {
    Template {
        name: "Accounts - Customers".into(),
        flow: "accounts-to-fno".into(),
        source_entity: "accounts".into(),
        target_entity: "CustomersV2".into(),
        source_key: "accountnumber".into(),
        source_id: "accountid".into(),
        target_key: vec!["dataAreaId".into(), "CustomerAccount".into()],
        // No funnel icon in the screenshot: no source filter (so no customertypecode filter either). Accounts
        // without an accountnumber are refused by `key_of` (MissingKey), which is a key check, not a filter.
        filter: None,
        fields: vec![
            copy("creditlimit", "CreditLimit"),
            default("CustomerGroupId", "10"), // docs: change to a valid customer group
            copy("fax", "PrimaryContactFax"),
            copy("numberofemployees", "OrganizationNumberOfEmployees"),
            copy("transactioncurrencyid.isocurrencycode", "SalesCurrencyCode"),
            copy("accountnumber", "CustomerAccount"), // key
            copy("address1_city", "AddressCity"),
            country("address1_country", "AddressCountryRegionISOCode", "US"),
            copy("description", "SalesMemo"),
            copy("emailaddress1", "PrimaryContactEmail"),
            copy("address1_line1", "AddressStreet"),
            default("PartyType", "Organization"),
            copy("telephone1", "PrimaryContactPhone"),
            copy("address1_postalcode", "AddressZipCode"),
            copy("address1_stateorprovince", "AddressState"),
            copy("websiteurl", "PrimaryContactURL"),
            default("AddressLocationRoles", "Business"),
            copy("name", "OrganizationName"),
            default("SiteId", "1"),
            default("WarehouseId", "13"),
            default("LanguageId", "en-us"),
            copy("accountnumber", "PartyNumber"),
            truncate("name", "AddressDescription", 60), // F&O keeps 60; a long name must not fail the customer
            default("IsExternallyMaintained", "Yes"), // orders and invoices are later filtered on this flag
            copy("address2_line1", "DeliveryAddressStreet"),
            copy("address2_city", "DeliveryAddressCity"),
            country("address2_country", "DeliveryAddressCountryRegionISOCode", "US"),
            copy("address2_postalcode", "DeliveryAddressZipCode"),
            copy("address2_stateorprovince", "DeliveryAddressState"),
            truncate("name", "DeliveryAddressDescription", 60),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{conform, fno_has_entity, fno_property};
    use crate::template::{Source, Transform, select_column};

    #[test]
    fn every_builtin_target_and_constant_fits_fno() {
        for t in builtin_templates() {
            assert!(KNOWN_FLOWS.contains(&t.flow.as_str()), "{}", t.flow);
            if !fno_has_entity(&t.target_entity) {
                continue;
            }
            for fm in &t.fields {
                assert!(
                    fno_property(&t.target_entity, &fm.target).is_some(),
                    "{}.{}",
                    t.name,
                    fm.target
                );
                if let Transform::Default(v) = &fm.transform {
                    assert!(
                        conform(&t.target_entity, &fm.target, v).is_ok(),
                        "{}.{} = {v}",
                        t.name,
                        fm.target
                    );
                }
            }
            let mut targets: Vec<_> = t.fields.iter().map(|f| &f.target).collect();
            targets.sort();
            targets.dedup();
            assert_eq!(targets.len(), t.fields.len(), "{}: a target is mapped twice", t.name);
        }
    }

    #[test]
    fn accounts_select_and_lookups() {
        let t = accounts_to_customers();
        let sel = t.source_select();
        assert_eq!(&sel[..3], ["accountid", "accountnumber", "creditlimit"]);
        assert!(sel.contains(&"_transactioncurrencyid_value".to_string()));
        assert!(!sel.iter().any(|c| c.contains('.')));
        assert_eq!(sel.iter().filter(|c| *c == "name").count(), 1);
        let l = t.lookups();
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].column, select_column(&l[0].path));
        assert_eq!(l[0].field, "isocurrencycode");
        assert!(t.fields.iter().all(|f| f.enabled));
        assert_eq!(t.fields.iter().filter(|f| f.source == Source::None).count(), 7);
        assert_eq!(t.fields.len(), 30, "table 5.1 has 30 rows");
    }
}
