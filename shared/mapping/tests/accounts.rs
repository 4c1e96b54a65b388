//! The accounts template (spec/templates.md 5.1): golden records and the errors a bad account gets.

mod common;

use common::{account_with, golden, rec};
use p2c_mapping::{Filter, MapError, Record, Transform, accounts_to_customers, content_hash, fno_max_len};
use serde_json::{Value, json};

fn keys(r: &Record) -> Vec<&str> {
    r.keys().map(String::as_str).collect()
}

#[test]
fn golden_full_account_maps_to_the_exact_customer() {
    let t = accounts_to_customers();
    let out = t.map(&golden("accounts-to-fno/account_full.json")).unwrap();
    let want = golden("accounts-to-fno/customer_full.json");
    assert_eq!(Value::Object(out.clone()), Value::Object(want.clone()));
    // Every row of table 5.1 is written, in table order.
    assert_eq!(keys(&out), keys(&want));
    let targets: Vec<&str> = t.fields.iter().map(|f| f.target.as_str()).collect();
    assert_eq!(keys(&out), targets);
    // The company is the pipeline's business.
    assert!(!out.contains_key("dataAreaId"));
}

#[test]
fn golden_sparse_account_clears_every_blank_field() {
    let t = accounts_to_customers();
    let m = t.map_parts(&golden("accounts-to-fno/account_sparse.json")).unwrap();
    let want = golden("accounts-to-fno/customer_sparse.json");
    assert_eq!(Value::Object(m.body.clone()), Value::Object(want.clone()));
    assert_eq!(keys(&m.body), keys(&want));
    // Blank text is F&O's "", a blank number 0 (CreditLimit and OrganizationNumberOfEmployees are not nullable).
    let cleared: Vec<&str> = m.cleared.iter().map(String::as_str).collect();
    assert_eq!(
        cleared,
        [
            "CreditLimit",
            "PrimaryContactFax",
            "OrganizationNumberOfEmployees",
            "SalesCurrencyCode",
            "AddressCity",
            "SalesMemo",
            "PrimaryContactEmail",
            "AddressStreet",
            "PrimaryContactPhone",
            "AddressZipCode",
            "AddressState",
            "PrimaryContactURL",
            "DeliveryAddressStreet",
            "DeliveryAddressCity",
            "DeliveryAddressZipCode",
            "DeliveryAddressState",
        ]
    );
    // A create leaves the clears out: defaults and present values only.
    let create = m.create_body();
    assert!(create.keys().all(|k| !m.cleared.contains(k)));
    assert_eq!(create.len(), t.fields.len() - cleared.len());
    assert_eq!(create["AddressCountryRegionISOCode"], "US", "a default is no clear");
}

#[test]
fn null_absent_and_blank_source_fields_clear_the_fno_field() {
    let t = accounts_to_customers();
    let mut a = account_with(json!({"fax": null, "telephone1": "   ", "numberofemployees": null}));
    a.remove("emailaddress1");
    let m = t.map_parts(&a).unwrap();
    for f in ["PrimaryContactFax", "PrimaryContactPhone", "PrimaryContactEmail"] {
        assert_eq!(m.body[f], "", "{f}: F&O text has no null");
    }
    assert_eq!(m.body["OrganizationNumberOfEmployees"], 0);
    assert_eq!(
        m.cleared,
        [
            "PrimaryContactFax",
            "OrganizationNumberOfEmployees",
            "PrimaryContactEmail",
            "PrimaryContactPhone"
        ]
    );
    assert_eq!(m.body.len(), t.fields.len(), "every row writes");
    assert_eq!(t.map(&a).unwrap(), m.body, "map is the update body");
    // The hash covers the clears: clearing is a change once, and the same clear hashes the same next time.
    let full = t.map(&account_with(json!({}))).unwrap();
    assert_ne!(content_hash(&m.body), content_hash(&full));
    assert_eq!(content_hash(&m.body), content_hash(&t.map(&a).unwrap()));
    // A real 0 is a value, not a clear.
    let m = t.map_parts(&account_with(json!({"numberofemployees": 0}))).unwrap();
    assert_eq!(m.body["OrganizationNumberOfEmployees"], 0);
    assert!(m.cleared.is_empty());
}

#[test]
fn missing_account_number_names_the_accountid_and_the_field() {
    let t = accounts_to_customers();
    for bad in [Value::Null, json!(""), json!("   "), json!(42)] {
        let a = account_with(json!({ "accountnumber": bad }));
        let err = t.map(&a).unwrap_err();
        assert_eq!(
            err,
            MapError::MissingKey {
                entity: "account".into(),
                id: "a8a19cdd-88df-e311-b8e5-6c3be5a8b200".into(),
                field: "accountnumber".into(),
            }
        );
        assert_eq!(t.key_of(&a).unwrap_err(), err);
        let msg = err.to_string();
        assert!(
            msg.contains("a8a19cdd-88df-e311-b8e5-6c3be5a8b200") && msg.contains("accountnumber"),
            "{msg}"
        );
        assert!(err.is_permanent());
    }
    let mut a = account_with(json!({}));
    a.remove("accountnumber");
    a.remove("accountid");
    let msg = t.key_of(&a).unwrap_err().to_string();
    assert!(msg.contains("(no accountid)") && msg.contains("accountnumber"), "{msg}");
}

#[test]
fn key_of_returns_the_account_number() {
    let t = accounts_to_customers();
    assert_eq!(
        t.key_of(&golden("accounts-to-fno/account_full.json")).unwrap(),
        "ACC-01000-BVRCPS"
    );
}

#[test]
fn unknown_country_is_a_value_map_error_naming_account_and_field() {
    let t = accounts_to_customers();
    let err = t.map(&account_with(json!({"address1_country": "Narnia"}))).unwrap_err();
    assert_eq!(
        err,
        MapError::NoValueMapEntry {
            entity: "account".into(),
            key: "ACC-01000-BVRCPS".into(),
            field: "AddressCountryRegionISOCode".into(),
            source_field: "address1_country".into(),
            value: "Narnia".into(),
        }
    );
    let msg = err.to_string();
    assert!(
        msg.starts_with("account ACC-01000-BVRCPS: AddressCountryRegionISOCode"),
        "{msg}"
    );
    assert!(
        msg.contains(
            "add a value-map entry for 'Narnia' to AddressCountryRegionISOCode in P2C_MAPPING, or fix the account"
        ),
        "{msg}"
    );
    let err = t
        .map(&account_with(json!({"address2_country": "Atlantis"})))
        .unwrap_err();
    assert_eq!(err.field(), "DeliveryAddressCountryRegionISOCode");
}

#[test]
fn country_spellings_all_reach_iso_codes() {
    let t = accounts_to_customers();
    for (input, code) in [
        ("USA", "US"),
        ("us", "US"),
        ("United States", "US"),
        ("Germany", "DE"),
        ("U.K.", "GB"),
    ] {
        let out = t.map(&account_with(json!({ "address1_country": input }))).unwrap();
        assert_eq!(out["AddressCountryRegionISOCode"], code, "{input}");
    }
}

#[test]
fn account_number_of_21_characters_is_too_long() {
    let t = accounts_to_customers();
    let n = "ACC-0100000000-ABCDEF";
    assert_eq!(n.len(), 21);
    let err = t.map(&account_with(json!({ "accountnumber": n }))).unwrap_err();
    assert_eq!(
        err,
        MapError::TooLong {
            entity: "account".into(),
            key: n.into(),
            field: "CustomerAccount".into(),
            source_field: "accountnumber".into(),
            len: 21,
            max: 20,
        }
    );
    assert!(err.to_string().contains("F&O allows 20"), "{err}");
    // 20 is fine.
    assert!(t.map(&account_with(json!({ "accountnumber": &n[1..] }))).is_ok());
}

#[test]
fn long_names_are_refused_where_they_are_data_and_cut_where_they_are_descriptions() {
    let t = accounts_to_customers();
    let err = t.map(&account_with(json!({ "name": "N".repeat(101) }))).unwrap_err();
    assert!(matches!(&err, MapError::TooLong { field, len: 101, max: 100, .. } if field == "OrganizationName"));
    assert!(err.to_string().contains("shorten name on the account"), "{err}");
    // F&O keeps address descriptions to 60 characters: the template cuts the name there (Truncate).
    let out = t.map(&account_with(json!({ "name": "N".repeat(61) }))).unwrap();
    assert_eq!(out["OrganizationName"], json!("N".repeat(61)));
    assert_eq!(out["AddressDescription"], json!("N".repeat(60)));
    assert_eq!(out["DeliveryAddressDescription"], json!("N".repeat(60)));
    assert_eq!(fno_max_len("CustomersV2", "AddressDescription"), Some(60));
}

#[test]
fn numbers_stay_numbers_and_text_is_not_a_number() {
    let t = accounts_to_customers();
    let out = t
        .map(&account_with(json!({"creditlimit": 1234.5, "numberofemployees": 7})))
        .unwrap();
    assert_eq!(out["CreditLimit"], json!(1234.5));
    assert_eq!(out["OrganizationNumberOfEmployees"], json!(7));

    let err = t.map(&account_with(json!({"creditlimit": "5000"}))).unwrap_err();
    match &err {
        MapError::BadType { field, key, got, .. } => {
            assert_eq!(field, "CreditLimit");
            assert_eq!(key, "ACC-01000-BVRCPS");
            assert!(got.contains("'5000'"), "{got}");
        }
        other => panic!("{other:?}"),
    }
    let err = t.map(&account_with(json!({"numberofemployees": 12.5}))).unwrap_err();
    assert!(
        matches!(&err, MapError::BadType { field, .. } if field == "OrganizationNumberOfEmployees"),
        "{err}"
    );
    let err = t
        .map(&account_with(json!({"numberofemployees": 3_000_000_000u64})))
        .unwrap_err();
    assert!(matches!(&err, MapError::BadType { .. }), "{err}");
    let err = t.map(&account_with(json!({"name": 17}))).unwrap_err();
    assert!(
        matches!(&err, MapError::BadType { field, .. } if field == "OrganizationName"),
        "{err}"
    );
}

#[test]
fn source_select_lists_plain_columns_once_in_stable_order() {
    let t = accounts_to_customers();
    assert_eq!(
        t.source_select(),
        [
            "accountid",
            "accountnumber",
            "creditlimit",
            "fax",
            "numberofemployees",
            "_transactioncurrencyid_value",
            "address1_city",
            "address1_country",
            "description",
            "emailaddress1",
            "address1_line1",
            "telephone1",
            "address1_postalcode",
            "address1_stateorprovince",
            "websiteurl",
            "name",
            "address2_line1",
            "address2_city",
            "address2_country",
            "address2_postalcode",
            "address2_stateorprovince",
        ]
    );
    let l = t.lookups();
    assert_eq!(l.len(), 1);
    assert_eq!(
        (
            l[0].path.as_str(),
            l[0].navigation.as_str(),
            l[0].column.as_str(),
            l[0].field.as_str()
        ),
        (
            "transactioncurrencyid.isocurrencycode",
            "transactioncurrencyid",
            "_transactioncurrencyid_value",
            "isocurrencycode"
        )
    );
}

#[test]
fn template_reads_like_table_5_1() {
    let t = accounts_to_customers();
    assert_eq!(t.flow, "accounts-to-fno");
    assert_eq!(
        (t.source_entity.as_str(), t.target_entity.as_str()),
        ("accounts", "CustomersV2")
    );
    assert_eq!(
        (t.source_key.as_str(), t.source_id.as_str()),
        ("accountnumber", "accountid")
    );
    assert_eq!(t.target_key, ["dataAreaId", "CustomerAccount"]);
    assert!(t.filter.is_none());
    assert!(t.passes_filter(&rec(json!({}))));
    let defaults: Vec<(&str, &Value)> = t
        .fields
        .iter()
        .filter_map(|f| match &f.transform {
            Transform::Default(v) => Some((f.target.as_str(), v)),
            _ => None,
        })
        .collect();
    assert_eq!(
        defaults,
        [
            ("CustomerGroupId", &json!("10")),
            ("PartyType", &json!("Organization")),
            ("AddressLocationRoles", &json!("Business")),
            ("SiteId", &json!("1")),
            ("WarehouseId", &json!("13")),
            ("LanguageId", &json!("en-us")),
            ("IsExternallyMaintained", &json!("Yes")),
        ]
    );
}

#[test]
fn filters_evaluate_in_memory() {
    let r = rec(json!({"statecode": 1, "flag": true, "name": "A", "nothing": null}));
    assert!(Filter::eq("statecode", 1.0).matches(&r));
    assert!(Filter::ne("statecode", 0).matches(&r));
    assert!(Filter::ne("missing", 0).matches(&r), "Ne is not Eq, so null passes");
    assert!(Filter::is_in("name", ["B", "A"]).matches(&r));
    assert!(!Filter::is_in("name", ["B"]).matches(&r));
    assert!(Filter::not_null("flag").matches(&r));
    assert!(!Filter::not_null("nothing").matches(&r));
    assert!(Filter::is_null("missing").matches(&r));
    let both = Filter::And(vec![Filter::eq("flag", true), Filter::eq("statecode", 1)]);
    assert!(both.matches(&r));
    let either = Filter::Or(vec![Filter::eq("flag", false), Filter::eq("name", "A")]);
    assert!(either.matches(&r));
    assert!(!Filter::Not(Box::new(either.clone())).matches(&r));
    let mut t = accounts_to_customers();
    t.filter = Some(Filter::And(vec![
        Filter::eq("statecode", 0),
        Filter::not_null("customertypecode"),
    ]));
    assert!(!t.passes_filter(&r));
    assert!(
        t.source_select()
            .ends_with(&["statecode".to_string(), "customertypecode".to_string()])
    );
}
