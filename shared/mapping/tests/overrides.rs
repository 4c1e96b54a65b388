//! The P2C_MAPPING file: each kind of change, and the errors a bad file gets.

mod common;

use std::path::PathBuf;

use common::{account_with, golden};
use p2c_mapping::{Format, MapError, MappingOverrides, OverrideError, Template, accounts_to_customers};
use serde_json::{Value, json};

fn toml(text: &str) -> MappingOverrides {
    MappingOverrides::parse(text, Format::Toml).unwrap_or_else(|e| panic!("{e}"))
}

fn applied(text: &str) -> Template {
    let mut t = accounts_to_customers();
    toml(text).apply(&mut t).unwrap_or_else(|e| panic!("{e}"));
    t
}

fn toml_err(text: &str) -> OverrideError {
    MappingOverrides::parse(text, Format::Toml).expect_err("should be refused")
}

#[test]
fn change_a_default() {
    let t = applied(
        r#"
        [accounts-to-fno.defaults]
        CustomerGroupId = "30"
        AddressCountryRegionISOCode = "CA"   # blank country -> CA
        "#,
    );
    let out = t.map(&account_with(json!({"address1_country": null}))).unwrap();
    assert_eq!(out["CustomerGroupId"], "30");
    assert_eq!(out["AddressCountryRegionISOCode"], "CA");
    assert_eq!(
        out["DeliveryAddressCountryRegionISOCode"], "CA",
        "address2_country = canada is unchanged"
    );
}

#[test]
fn a_default_on_a_copy_row_fills_blanks_only() {
    let t = applied("[accounts-to-fno.defaults]\nPrimaryContactFax = \"n/a\"\n");
    assert_eq!(
        t.map(&account_with(json!({"fax": null}))).unwrap()["PrimaryContactFax"],
        "n/a"
    );
    assert_eq!(
        t.map(&account_with(json!({"fax": "1"}))).unwrap()["PrimaryContactFax"],
        "1"
    );
}

#[test]
fn add_country_entries_on_top_of_the_builtin_table() {
    let t = applied(
        r#"
        [accounts-to-fno.value_maps.AddressCountryRegionISOCode]
        entries = { "Bharat" = "IN", "Narnia" = "GB" }
        "#,
    );
    let map = |c: &str| {
        t.map(&account_with(json!({ "address1_country": c }))).unwrap()["AddressCountryRegionISOCode"].clone()
    };
    assert_eq!(map("narnia"), "GB");
    assert_eq!(map("BHARAT"), "IN");
    assert_eq!(map("USA"), "US", "built-in table still used");
    // Only that field changed.
    let err = t.map(&account_with(json!({"address2_country": "Narnia"}))).unwrap_err();
    assert_eq!(err.field(), "DeliveryAddressCountryRegionISOCode");
}

#[test]
fn replace_a_country_map_drops_the_builtin_table() {
    let t = applied(
        r#"
        [accounts-to-fno.value_maps.AddressCountryRegionISOCode]
        mode = "replace"
        entries = { "Home" = "US", "" = "US" }
        "#,
    );
    assert_eq!(
        t.map(&account_with(json!({"address1_country": "home"}))).unwrap()["AddressCountryRegionISOCode"],
        "US"
    );
    assert_eq!(
        t.map(&account_with(json!({"address1_country": ""}))).unwrap()["AddressCountryRegionISOCode"],
        "US"
    );
    let err = t
        .map(&account_with(json!({"address1_country": "Germany"})))
        .unwrap_err();
    assert!(
        matches!(err, MapError::NoValueMapEntry { ref value, .. } if value == "Germany"),
        "{err}"
    );
}

#[test]
fn a_value_map_on_a_copy_row_renames_listed_values_and_keeps_the_rest() {
    let t = applied("[accounts-to-fno.value_maps.SalesCurrencyCode]\nentries = { \"EURO\" = \"EUR\" }\n");
    let cur = |c: &str| {
        t.map(&account_with(json!({ "transactioncurrencyid.isocurrencycode": c })))
            .unwrap()["SalesCurrencyCode"]
            .clone()
    };
    assert_eq!(cur("EURO"), "EUR");
    assert_eq!(cur("euro"), "EUR", "override maps ignore case unless told otherwise");
    assert_eq!(cur("USD"), "USD");
}

#[test]
fn disable_a_field() {
    let t = applied("[accounts-to-fno]\ndisabled = [\"PrimaryContactFax\", \"SalesMemo\"]\n");
    let out = t.map(&golden("accounts-to-fno/account_full.json")).unwrap();
    assert!(!out.contains_key("PrimaryContactFax"));
    assert!(!out.contains_key("SalesMemo"));
    assert_eq!(out.len(), 28);
    let sel = t.source_select();
    assert!(!sel.contains(&"fax".to_string()) && !sel.contains(&"description".to_string()));
}

#[test]
fn keep_when_blank_keeps_the_target_value_instead_of_clearing_it() {
    // Without the option a blank fax clears F&O's; with it the row writes nothing for a blank source.
    let blank = account_with(json!({"fax": null, "numberofemployees": null}));
    let plain = accounts_to_customers().map_parts(&blank).unwrap();
    assert_eq!(plain.body["PrimaryContactFax"], "");
    assert!(plain.cleared.contains(&"PrimaryContactFax".to_string()));
    let t = applied("[accounts-to-fno]\nkeep_when_blank = [\"PrimaryContactFax\"]\n");
    assert!(t.field("PrimaryContactFax").unwrap().keep_when_blank);
    let kept = t.map_parts(&blank).unwrap();
    assert!(!kept.body.contains_key("PrimaryContactFax"), "{:?}", kept.body);
    assert!(!kept.cleared.contains(&"PrimaryContactFax".to_string()));
    assert_eq!(kept.body["OrganizationNumberOfEmployees"], 0, "other rows still clear");
    // A value is still written.
    assert_eq!(
        t.map(&account_with(json!({"fax": "+1 555"}))).unwrap()["PrimaryContactFax"],
        "+1 555"
    );

    // Per task, in JSON, and on an extra field.
    let mut t = p2c_mapping::template("quotes-to-fno", "QuoteHeader").unwrap();
    MappingOverrides::parse(
        r#"{"quotes-to-fno": {"QuoteHeader": {"keep_when_blank": ["DeliveryAddressName"]}}}"#,
        Format::Json,
    )
    .unwrap()
    .apply(&mut t)
    .unwrap();
    assert!(t.field("DeliveryAddressName").unwrap().keep_when_blank);
    assert!(!t.field("DeliveryAddressCity").unwrap().keep_when_blank);
    let t = applied(
        "[[accounts-to-fno.fields]]\nsource = \"paymenttermscode\"\ntarget = \"PaymentTerms\"\nkeep_when_blank = true\n",
    );
    let out = t.map(&account_with(json!({"paymenttermscode": null}))).unwrap();
    assert!(!out.contains_key("PaymentTerms"));
}

#[test]
fn keep_when_blank_is_refused_where_it_means_nothing() {
    let msg = toml_err("[accounts-to-fno]\nkeep_when_blank = [\"CustomerAccount\"]\n").to_string();
    assert!(
        msg.contains("[accounts-to-fno.keep_when_blank] CustomerAccount") && msg.contains("part of the F&O key"),
        "{msg}"
    );
    let msg = toml_err("[accounts-to-fno]\nkeep_when_blank = [\"CustomerGroupId\"]\n").to_string();
    assert!(msg.contains("has no source"), "{msg}");
    let msg = toml_err("[accounts-to-fno]\nkeep_when_blank = [\"AddressCountryRegionISOCode\"]\n").to_string();
    assert!(
        msg.contains("writes the text 'US' when its source is blank") && msg.contains("remove the default"),
        "{msg}"
    );
    let msg = toml_err("[accounts-to-fno]\nkeep_when_blank = [\"PrimaryContactFAX\"]\n").to_string();
    assert!(msg.contains("did you mean PrimaryContactFax"), "{msg}");
    let msg = toml_err("[accounts-to-fno]\nkeep_when_blank = \"PrimaryContactFax\"\n").to_string();
    assert!(msg.contains("line 2"), "a list is expected: {msg}");
    let msg =
        toml_err("[[accounts-to-fno.fields]]\ntarget = \"DeliveryMode\"\ndefault = \"UPS\"\nkeep_when_blank = true\n")
            .to_string();
    assert!(msg.contains("DeliveryMode") && msg.contains("has no source"), "{msg}");
    let msg = toml_err("[accounts-to-fno]\nkeep_blank = [\"SalesMemo\"]\n").to_string();
    assert!(msg.contains("keep_when_blank"), "the allowed keys are listed: {msg}");
}

#[test]
fn add_extra_field_maps() {
    let t = applied(
        r#"
        [[accounts-to-fno.fields]]
        source = "paymenttermscode"
        target = "PaymentTerms"
        transform = "value_map"
        map = { "1" = "Net30", "2" = "Net45" }

        [[accounts-to-fno.fields]]
        target = "DeliveryMode"
        default = "UPS"

        [[accounts-to-fno.fields]]
        source = "primarycontactid.fullname"
        target = "NameAlias"
        transform = "truncate"

        [[accounts-to-fno.fields]]
        source = "creditonhold"
        target = "IsOneTimeCustomer"
        transform = "bool"
        "#,
    );
    let a = account_with(json!({
        "paymenttermscode": 2,
        "primarycontactid.fullname": "Alexandra Featherstonehaugh",
        "creditonhold": false,
    }));
    let out = t.map(&a).unwrap();
    assert_eq!(out["PaymentTerms"], "Net45");
    assert_eq!(out["DeliveryMode"], "UPS");
    assert_eq!(
        out["NameAlias"], "Alexandra Feathersto",
        "cut to NameAlias' 20 characters"
    );
    assert_eq!(out["IsOneTimeCustomer"], "No");
    let keys: Vec<&String> = out.keys().collect();
    assert_eq!(
        keys[30..],
        ["PaymentTerms", "DeliveryMode", "NameAlias", "IsOneTimeCustomer"]
    );
    let sel = t.source_select();
    assert!(sel.ends_with(&[
        "paymenttermscode".into(),
        "_primarycontactid_value".into(),
        "creditonhold".into()
    ]));
    let err = t.map(&account_with(json!({"paymenttermscode": 9}))).unwrap_err();
    assert!(
        err.to_string()
            .contains("add a value-map entry for '9' to PaymentTerms in P2C_MAPPING"),
        "{err}"
    );
}

#[test]
fn replace_a_template_row_with_truncate() {
    let t = applied(
        r#"
        [[accounts-to-fno.fields]]
        source = "name"
        target = "AddressDescription"
        transform = "truncate"
        replace = true

        [[accounts-to-fno.fields]]
        source = "name"
        target = "DeliveryAddressDescription"
        transform = "truncate"
        length = 40
        replace = true
        "#,
    );
    let long = "Contoso Pharmaceuticals, Research and Development Campus North";
    assert_eq!(long.len(), 62);
    let out = t.map(&account_with(json!({ "name": long }))).unwrap();
    assert_eq!(out["AddressDescription"], &long[..60]);
    assert_eq!(out["DeliveryAddressDescription"], &long[..40]);
    assert_eq!(out["OrganizationName"], long);
    // Still in the template's place, not appended.
    assert_eq!(t.fields[22].target, "AddressDescription");
    assert_eq!(t.fields.len(), 30);
}

#[test]
fn json_files_have_the_same_shape() {
    let text = r#"{
        "accounts-to-fno": {
            "defaults": {"CustomerGroupId": "30"},
            "value_maps": {"AddressCountryRegionISOCode": {"entries": {"Bharat": "IN"}}},
            "disabled": ["PrimaryContactFax"],
            "fields": [{"source": "paymenttermscode", "target": "PaymentTerms"}]
        }
    }"#;
    let mut t = accounts_to_customers();
    MappingOverrides::parse(text, Format::Json)
        .unwrap()
        .apply(&mut t)
        .unwrap();
    let out = t
        .map(&account_with(
            json!({"address1_country": "Bharat", "paymenttermscode": "Net10"}),
        ))
        .unwrap();
    assert_eq!(out["CustomerGroupId"], "30");
    assert_eq!(out["AddressCountryRegionISOCode"], "IN");
    assert_eq!(out["PaymentTerms"], "Net10");
    assert!(!out.contains_key("PrimaryContactFax"));
}

#[test]
fn an_empty_file_changes_nothing() {
    let t = applied("# nothing yet\n");
    assert_eq!(t, accounts_to_customers());
    let mut t = accounts_to_customers();
    MappingOverrides::default().apply(&mut t).unwrap();
    assert_eq!(t, accounts_to_customers());
}

fn temp_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("p2c-mapping-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_bad_toml_file_names_the_file_and_line() {
    let path = temp_file(
        "bad-syntax.toml",
        "[accounts-to-fno.defaults]\nCustomerGroupId = \"30\"\nSiteId = \"1\n",
    );
    let err = MappingOverrides::load(&path).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, OverrideError::Parse { line: Some(3), .. }), "{msg}");
    assert!(
        msg.starts_with(&format!("mapping file {}, line 3", path.display())),
        "{msg}"
    );

    let path = temp_file(
        "typo.toml",
        "[accounts-to-fno]\ndisabled = []\n\n[accounts-to-fno.value_maps.AddressCountryRegionISOCode]\nentires = { \"X\" = \"DE\" }\n",
    );
    let msg = MappingOverrides::load(&path).unwrap_err().to_string();
    assert!(msg.contains(", line 5") && msg.contains("entires"), "{msg}");
}

#[test]
fn a_bad_json_file_names_the_file_and_line() {
    let path = temp_file(
        "bad.json",
        "{\n  \"accounts-to-fno\": {\n    \"defaults\": {\"SiteId\": \"1\",}\n  }\n}\n",
    );
    let err = MappingOverrides::load(&path).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, OverrideError::Parse { line: Some(3), .. }), "{msg}");
    assert!(msg.contains("bad.json, line 3"), "{msg}");
}

#[test]
fn a_missing_file_is_named() {
    let path = std::env::temp_dir().join("p2c-mapping-test-does-not-exist.toml");
    let msg = MappingOverrides::load(&path).unwrap_err().to_string();
    assert!(
        msg.contains("p2c-mapping-test-does-not-exist.toml") && msg.contains("P2C_MAPPING"),
        "{msg}"
    );
}

#[test]
fn a_good_file_loads_from_disk() {
    let path = temp_file("good.toml", "[accounts-to-fno.defaults]\nCustomerGroupId = \"30\"\n");
    let o = MappingOverrides::load(&path).unwrap();
    let mut t = accounts_to_customers();
    o.apply(&mut t).unwrap();
    assert_eq!(
        t.map(&golden("accounts-to-fno/account_full.json")).unwrap()["CustomerGroupId"],
        "30"
    );
    assert!(o.origin.contains("good.toml"));
}

#[test]
fn unknown_flows_and_fields_are_named() {
    let err = toml_err("[account-to-fno.defaults]\nCustomerGroupId = \"30\"\n");
    assert!(
        matches!(&err, OverrideError::UnknownFlow { flow, .. } if flow == "account-to-fno"),
        "{err}"
    );
    assert!(
        err.to_string().contains("accounts-to-fno"),
        "lists the real flows: {err}"
    );

    let err = toml_err("[accounts-to-fno.defaults]\nCustomerGroupID = \"30\"\n");
    let msg = err.to_string();
    assert!(
        matches!(&err, OverrideError::UnknownField { field, .. } if field == "CustomerGroupID"),
        "{msg}"
    );
    assert!(
        msg.contains("[accounts-to-fno.defaults] CustomerGroupID") && msg.contains("did you mean CustomerGroupId"),
        "{msg}"
    );

    let msg = toml_err("[accounts-to-fno]\ndisabled = [\"NoSuchField\"]\n").to_string();
    assert!(msg.contains("CustomersV2 has no field NoSuchField"), "{msg}");

    let msg = toml_err("[accounts-to-fno.defaults]\nPaymentTerms = \"Net30\"\n").to_string();
    assert!(
        msg.contains("does not map PaymentTerms") && msg.contains("[[accounts-to-fno.fields]]"),
        "{msg}"
    );

    let msg = toml_err("[[accounts-to-fno.fields]]\nsource = \"x\"\ntarget = \"paymentterms\"\n").to_string();
    assert!(msg.contains("did you mean PaymentTerms"), "{msg}");
}

#[test]
fn bad_values_are_refused_at_load() {
    let msg = toml_err("[accounts-to-fno.defaults]\nSiteId = 1\n").to_string();
    assert!(msg.contains("SiteId") && msg.contains("write it in quotes"), "{msg}");

    let msg = toml_err("[accounts-to-fno.defaults]\nCustomerGroupId = \"WHOLESALE-WEST\"\n").to_string();
    assert!(msg.contains("14 characters but F&O allows 10"), "{msg}");

    let msg = toml_err("[accounts-to-fno.defaults]\nIsExternallyMaintained = \"yes\"\n").to_string();
    assert!(msg.contains("NoYes"), "{msg}");

    let msg = toml_err("[accounts-to-fno]\ndisabled = [\"CustomerAccount\"]\n").to_string();
    assert!(msg.contains("part of the F&O key"), "{msg}");

    let msg = toml_err("[[accounts-to-fno.fields]]\nsource = \"name\"\ntarget = \"OrganizationName\"\n").to_string();
    assert!(
        msg.contains("already mapped") && msg.contains("replace = true"),
        "{msg}"
    );

    let msg = toml_err("[[accounts-to-fno.fields]]\ntarget = \"dataAreaId\"\ndefault = \"usmf\"\n").to_string();
    assert!(msg.contains("company"), "{msg}");

    let msg =
        toml_err("[[accounts-to-fno.fields]]\nsource = \"x\"\ntarget = \"PaymentTerms\"\nlength = 3\n").to_string();
    assert!(msg.contains("'length' does not apply to transform copy"), "{msg}");

    let msg = toml_err("[accounts-to-fno.value_maps.CustomerGroupId]\nentries = { a = \"b\" }\n").to_string();
    assert!(msg.contains("has no source"), "{msg}");
}

#[test]
fn a_value_map_override_checks_its_values() {
    let msg =
        toml_err("[accounts-to-fno.value_maps.SalesCurrencyCode]\nentries = { \"Euro\" = \"EURO\" }\n").to_string();
    assert!(
        msg.contains("the value for 'Euro' is 4 characters but F&O allows 3"),
        "{msg}"
    );
}

#[test]
fn applying_keeps_map_errors_actionable() {
    // After a country replace, the error still says where to add the entry.
    let t = applied(
        "[accounts-to-fno.value_maps.AddressCountryRegionISOCode]\nmode = \"replace\"\nentries = { \"Home\" = \"US\" }\n",
    );
    let err = t.map(&account_with(json!({"address1_country": "Canada"}))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "account ACC-01000-BVRCPS: AddressCountryRegionISOCode has no value-map entry for 'Canada' (from address1_country); add a value-map entry for 'Canada' to AddressCountryRegionISOCode in P2C_MAPPING, or fix the account"
    );
    assert_eq!(Value::from(err.record()), json!("ACC-01000-BVRCPS"));
}

#[test]
fn the_documented_example_file_loads_and_applies() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("p2c_mapping.example.toml");
    let o = MappingOverrides::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let mut t = accounts_to_customers();
    o.apply(&mut t).unwrap();
    let long = "N".repeat(70);
    let out = t
        .map(&account_with(
            json!({"paymenttermscode": 1, "address1_country": "Holland", "name": null, "description": null}),
        ))
        .unwrap();
    assert_eq!(out["CustomerGroupId"], "30");
    assert_eq!(out["AddressCountryRegionISOCode"], "NL");
    assert_eq!(out["PaymentTerms"], "Net30");
    assert_eq!(out["DeliveryMode"], "UPS");
    assert!(!out.contains_key("PrimaryContactFax"));
    assert!(!out.contains_key("SalesMemo"), "kept when blank: {out:?}");
    assert_eq!(out["PrimaryContactEmail"], "orders@fourthcoffee.example.com");
    // A long name is cut where the template and the example say so.
    let out = t
        .map(&account_with(json!({"paymenttermscode": 1, "name": long})))
        .unwrap();
    assert_eq!(out["NameAlias"], json!("N".repeat(20)));
    assert_eq!(out["DeliveryAddressDescription"], json!("N".repeat(60)));
}

// ---------------------------------------------------------------- flows with several templates

fn applied_to(flow: &str, task: &str, text: &str) -> Template {
    let mut t = p2c_mapping::template(flow, task).unwrap();
    toml(text).apply(&mut t).unwrap_or_else(|e| panic!("{e}"));
    t
}

fn input(flow: &str, task: &str) -> p2c_mapping::Record {
    golden(&format!("{flow}/{task}.input.json"))
}

#[test]
fn a_task_section_changes_only_its_template() {
    let text = r#"
        [quotes-to-fno.QuoteHeader.defaults]
        DeliveryAddressDescription = "Ship to"

        [quotes-to-fno.QuoteLine]
        disabled = ["TotalDiscountAmount"]
    "#;
    let h = applied_to("quotes-to-fno", "QuoteHeader", text);
    let l = applied_to("quotes-to-fno", "QuoteLine", text);
    let out = h.map(&input("quotes-to-fno", "QuoteHeader")).unwrap();
    assert_eq!(out["DeliveryAddressDescription"], "Ship to");
    let out = l.map(&input("quotes-to-fno", "QuoteLine")).unwrap();
    assert!(!out.contains_key("TotalDiscountAmount"));
    assert_eq!(out["SalesPrice"], 250.0);
    // The other flows are untouched.
    let oh = applied_to("orders-to-fno", "OrderHeader", text);
    assert_eq!(oh, p2c_mapping::template("orders-to-fno", "OrderHeader").unwrap());
}

#[test]
fn a_flow_section_applies_wherever_the_target_is_mapped() {
    // Units are mapped on the line only; currencies on both the header and the line.
    let text = r#"
        [quotes-to-fno.value_maps.SalesUnitSymbol]
        entries = { "Each" = "ea" }

        [orders-to-sales.value_maps."transactioncurrencyid.isocurrencycode"]
        entries = { "USD" = "usd" }
    "#;
    let l = applied_to("quotes-to-fno", "QuoteLine", text);
    let mut src = input("quotes-to-fno", "QuoteLine");
    src.insert("uomid.name".into(), json!("EACH"));
    assert_eq!(l.map(&src).unwrap()["SalesUnitSymbol"], "ea");
    let h = applied_to("quotes-to-fno", "QuoteHeader", text);
    assert_eq!(h, p2c_mapping::template("quotes-to-fno", "QuoteHeader").unwrap());
    for task in ["OrderHeader", "OrderLine"] {
        let t = applied_to("orders-to-sales", task, text);
        let out = t.map(&input("orders-to-sales", task)).unwrap();
        assert_eq!(out["transactioncurrencyid.isocurrencycode"], "usd", "{task}");
    }
}

#[test]
fn task_fields_add_the_optional_site_and_warehouse() {
    let text = r#"
        [[orders-to-fno.OrderLine.fields]]
        target = "ShippingSiteId"
        default = "1"

        [[orders-to-fno.OrderLine.fields]]
        target = "ShippingWarehouseId"
        default = "13"
    "#;
    let l = applied_to("orders-to-fno", "OrderLine", text);
    let out = l.map(&input("orders-to-fno", "OrderLine")).unwrap();
    assert_eq!(
        (&out["ShippingSiteId"], &out["ShippingWarehouseId"]),
        (&json!("1"), &json!("13"))
    );
    assert_eq!(l.fields.len(), 9);
}

#[test]
fn the_quote_header_quirk_can_be_replaced() {
    let text = r#"
        [[quotes-to-fno.QuoteHeader.fields]]
        source = "shipto_line2"
        target = "DeliveryAddressStreetNumber"
        replace = true

        [[quotes-to-fno.QuoteHeader.fields]]
        source = "shipto_postalcode"
        target = "DeliveryAddressZipCode"
        replace = true
    "#;
    let h = applied_to("quotes-to-fno", "QuoteHeader", text);
    let mut src = input("quotes-to-fno", "QuoteHeader");
    src.insert("shipto_line2".into(), json!("Floor 3"));
    let out = h.map(&src).unwrap();
    assert_eq!(out["DeliveryAddressStreetNumber"], "Floor 3");
    assert_eq!(out["DeliveryAddressZipCode"], "98101");
    assert_eq!(h.fields[5].target, "DeliveryAddressStreetNumber", "replaced in place");
}

#[test]
fn a_price_list_per_currency_for_orders_from_fno() {
    let text = r#"
        [[orders-to-sales.OrderHeader.fields]]
        source = "CurrencyCode"
        target = "pricelevelid.name"
        transform = "value_map"
        map = { "USD" = "CRM Service USA (sample)", "EUR" = "Price list EUR" }
        replace = true
    "#;
    let h = applied_to("orders-to-sales", "OrderHeader", text);
    let mut src = input("orders-to-sales", "OrderHeader");
    src.insert("CurrencyCode".into(), json!("EUR"));
    assert_eq!(h.map(&src).unwrap()["pricelevelid.name"], "Price list EUR");
    src.insert("CurrencyCode".into(), json!("GBP"));
    let err = h.map(&src).unwrap_err();
    assert_eq!((err.record(), err.field()), ("ORD-01000-QWERTY", "pricelevelid.name"));
}

#[test]
fn units_named_differently_in_sales() {
    // Both directions: F&O symbol -> Sales name on products, Sales name -> symbol on quote lines.
    let text = r#"
        [products-to-sales.value_maps."defaultuomid.name"]
        entries = { "ea" = "Each" }

        [products-to-sales.ProductPriceListItem.value_maps."uomid.name"]
        entries = { "hr" = "Hour" }

        [quotes-to-fno.value_maps.SalesUnitSymbol]
        entries = { "Each" = "ea" }
    "#;
    let p = applied_to("products-to-sales", "Products", text);
    assert_eq!(
        p.map(&input("products-to-sales", "Products")).unwrap()["defaultuomid.name"],
        "Each"
    );
    let i = applied_to("products-to-sales", "ProductPriceListItem", text);
    assert_eq!(
        i.map(&input("products-to-sales", "ProductPriceListItem")).unwrap()["uomid.name"],
        "Hour"
    );
    let l = applied_to("quotes-to-fno", "QuoteLine", text);
    let mut src = input("quotes-to-fno", "QuoteLine");
    src.insert("uomid.name".into(), json!("Each"));
    assert_eq!(l.map(&src).unwrap()["SalesUnitSymbol"], "ea");
}

#[test]
fn task_sections_in_json() {
    let text = r#"{
        "quotes-to-fno": {
            "defaults": {"DeliveryAddressDescription": "Ship to"},
            "QuoteLine": {
                "fields": [{"target": "ShippingSiteId", "default": "2"}],
                "disabled": ["TotalDiscountAmount"]
            }
        }
    }"#;
    let o = MappingOverrides::parse(text, Format::Json).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        o.flows["quotes-to-fno"].tasks["QuoteLine"].disabled,
        ["TotalDiscountAmount"]
    );
    let mut l = p2c_mapping::template("quotes-to-fno", "QuoteLine").unwrap();
    o.apply(&mut l).unwrap();
    let out = l.map(&input("quotes-to-fno", "QuoteLine")).unwrap();
    assert_eq!(out["ShippingSiteId"], "2");
    let mut h = p2c_mapping::template("quotes-to-fno", "QuoteHeader").unwrap();
    o.apply(&mut h).unwrap();
    assert_eq!(
        h.map(&input("quotes-to-fno", "QuoteHeader")).unwrap()["DeliveryAddressDescription"],
        "Ship to"
    );
}

#[test]
fn the_accounts_task_can_be_named_too() {
    let t = applied("[accounts-to-fno.\"Accounts - Customers\".defaults]\nCustomerGroupId = \"20\"\n");
    assert_eq!(
        t.map(&golden("accounts-to-fno/account_full.json")).unwrap()["CustomerGroupId"],
        "20"
    );
}

#[test]
fn bad_task_sections_are_named() {
    let err = toml_err("[quotes-to-fno.QuoteHedaer.defaults]\nDeliveryAddressDescription = \"x\"\n");
    let msg = err.to_string();
    assert!(
        matches!(&err, OverrideError::UnknownField { field, .. } if field == "QuoteHedaer"),
        "{msg}"
    );
    assert!(msg.contains("its tasks are QuoteHeader, QuoteLine"), "{msg}");
    let msg = toml_err("[quotes-to-fno.quoteline]\ndisabled = []\n").to_string();
    assert!(
        msg.contains("unknown key `quoteline`") && msg.contains("line 1"),
        "{msg}"
    );
    let msg = toml_err("[quotes-to-fno.Quoteline]\ndisabled = []\n").to_string();
    assert!(msg.contains("did you mean QuoteLine"), "{msg}");
    let msg = toml_err("[quotes-to-fno]\ndefualts = { SalesPrice = 1 }\n").to_string();
    assert!(
        msg.contains("unknown key `defualts`") && msg.contains(", line "),
        "{msg}"
    );
    let msg = toml_err("[quotes-to-fno.QuoteLine.Extra]\ndisabled = []\n").to_string();
    assert!(msg.contains("tasks do not nest"), "{msg}");

    // Flow-level extra fields are ambiguous when a flow has several templates.
    let msg = toml_err("[[quotes-to-fno.fields]]\ntarget = \"ShippingSiteId\"\ndefault = \"1\"\n").to_string();
    assert!(
        msg.contains("[quotes-to-fno.fields] ShippingSiteId")
            && msg.contains("several templates (QuoteHeader, QuoteLine)")
            && msg.contains("[[quotes-to-fno.QuoteHeader.fields]]"),
        "{msg}"
    );
    // A flow-level target no template maps.
    let msg = toml_err("[quotes-to-fno.defaults]\nShippingSiteId = \"1\"\n").to_string();
    assert!(
        msg.contains("no template of quotes-to-fno (QuoteHeader, QuoteLine) maps ShippingSiteId")
            && msg.contains("[[quotes-to-fno.<task>.fields]]"),
        "{msg}"
    );
    let msg = toml_err("[quotes-to-fno.defaults]\nsalesprice = 1\n").to_string();
    assert!(msg.contains("did you mean SalesPrice"), "{msg}");
    // A task-level target that task does not map.
    let msg = toml_err("[quotes-to-fno.QuoteHeader.defaults]\nSalesPrice = 1\n").to_string();
    assert!(
        msg.contains("[quotes-to-fno.QuoteHeader.defaults] SalesPrice")
            && msg.contains("CDSSalesQuotationHeaders has no field SalesPrice"),
        "{msg}"
    );
    // Key fields of any template stay.
    let msg = toml_err("[orders-to-fno]\ndisabled = [\"LineCreationSequenceNumber\"]\n").to_string();
    assert!(msg.contains("part of the F&O key"), "{msg}");
    let msg = toml_err("[orders-to-sales.OrderLine]\ndisabled = [\"salesorderid.ordernumber\"]\n").to_string();
    assert!(msg.contains("part of the Sales key"), "{msg}");
}

#[test]
fn sales_targets_and_fno_sources_are_checked() {
    let msg = toml_err(
        "[[orders-to-sales.OrderHeader.fields]]\ntarget = \"ownerid.fullname\"\nsource = \"SalesOrderName\"\n",
    )
    .to_string();
    assert!(msg.contains("p2c cannot bind the lookup ownerid"), "{msg}");
    let msg = toml_err(
        "[[orders-to-sales.OrderHeader.fields]]\ntarget = \"pricelevelid@odata.bind\"\ndefault = \"x\"\nreplace = true\n",
    )
    .to_string();
    assert!(
        msg.contains("write a lookup as its path, e.g. pricelevelid.name"),
        "{msg}"
    );
    let msg = toml_err(
        "[[orders-to-sales.OrderHeader.fields]]\ntarget = \"RequestDeliveryBy\"\nsource = \"RequestedShippingDate\"\n",
    )
    .to_string();
    assert!(
        msg.contains("lower-case logical names, e.g. requestdeliveryby"),
        "{msg}"
    );
    let msg = toml_err(
        "[[orders-to-sales.OrderHeader.fields]]\ntarget = \"requestdeliveryby\"\nsource = \"RequestedShippingdate\"\n",
    )
    .to_string();
    assert!(
        msg.contains("CDSSalesOrderHeaders has no field RequestedShippingdate")
            && msg.contains("did you mean RequestedShippingDate"),
        "{msg}"
    );
    let msg =
        toml_err("[[quotes-to-fno.QuoteHeader.fields]]\ntarget = \"OpportunityId\"\nsource = \"opportunityid.name\"\n")
            .to_string();
    assert!(msg.contains("p2c cannot resolve the lookup opportunityid"), "{msg}");
    // A good one: the requested date from F&O.
    let t = applied_to(
        "orders-to-sales",
        "OrderHeader",
        "[[orders-to-sales.OrderHeader.fields]]\ntarget = \"requestdeliveryby\"\nsource = \"RequestedShippingDate\"\n",
    );
    let mut src = input("orders-to-sales", "OrderHeader");
    src.insert("RequestedShippingDate".into(), json!("2026-03-10T12:00:00Z"));
    assert_eq!(t.map(&src).unwrap()["requestdeliveryby"], "2026-03-10T12:00:00Z");
}

#[test]
fn the_documented_example_file_applies_to_quotes_and_orders() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("p2c_mapping.example.toml");
    let o = MappingOverrides::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let mut h = p2c_mapping::template("quotes-to-fno", "QuoteHeader").unwrap();
    o.apply(&mut h).unwrap();
    let mut src = input("quotes-to-fno", "QuoteHeader");
    src.insert("shipto_line2".into(), json!("Floor 3"));
    let out = h.map(&src).unwrap();
    assert_eq!(out["DeliveryAddressStreetNumber"], "Floor 3");
    assert_eq!(out["DeliveryAddressZipCode"], "98101");
    let mut l = p2c_mapping::template("quotes-to-fno", "QuoteLine").unwrap();
    o.apply(&mut l).unwrap();
    let out = l.map(&input("quotes-to-fno", "QuoteLine")).unwrap();
    assert_eq!(
        (&out["ShippingSiteId"], &out["ShippingWarehouseId"]),
        (&json!("1"), &json!("13"))
    );
    for t in p2c_mapping::builtin_templates() {
        let mut t = t;
        o.apply(&mut t).unwrap_or_else(|e| panic!("{}: {e}", t.name));
    }
}
