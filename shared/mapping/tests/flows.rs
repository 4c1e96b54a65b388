//! The templates of spec/templates.md 5.2-5.6 beyond their golden records: source filters, line keys, value-map
//! errors that name the record and field, Sales lookups (bind), and F&O lengths.

mod common;

use common::{golden, rec};
use p2c_mapping::{
    Direction, LookupTarget, MapError, Record, Role, Template, Unresolved, builtin_templates, split_state, template,
    templates_for,
};
use serde_json::{Value, json};

fn t(flow: &str, task: &str) -> Template {
    template(flow, task).unwrap_or_else(|| panic!("no template {flow}/{task}"))
}

/// The golden input of a template with some fields changed (`null` sets null; use `without` to remove).
fn input_with(flow: &str, task: &str, changes: Value) -> Record {
    let mut r = golden(&format!("{flow}/{task}.input.json"));
    for (k, v) in rec(changes) {
        r.insert(k, v);
    }
    r
}

fn without(mut r: Record, field: &str) -> Record {
    r.remove(field);
    r
}

// ---------------------------------------------------------------- registry

#[test]
fn flows_list_their_templates_in_run_order() {
    let names =
        |flow: &str| -> Vec<(String, Role)> { templates_for(flow).into_iter().map(|t| (t.name, t.role)).collect() };
    assert_eq!(
        names("quotes-to-fno"),
        [("QuoteHeader".into(), Role::Header), ("QuoteLine".into(), Role::Line)]
    );
    assert_eq!(
        names("orders-to-sales"),
        [("OrderHeader".into(), Role::Header), ("OrderLine".into(), Role::Line)]
    );
    assert_eq!(
        names("products-to-sales"),
        [
            ("Products".into(), Role::Single),
            ("ProductPriceListItem".into(), Role::Companion)
        ]
    );
    assert_eq!(
        names("contacts-to-fno"),
        [
            ("Contacts".into(), Role::Single),
            ("ContactToCustomer".into(), Role::Single)
        ]
    );
    for flow in p2c_mapping::KNOWN_FLOWS {
        let ts = templates_for(flow);
        assert!(!ts.is_empty(), "{flow} has no templates");
        // Lines and companions come after the record they belong to.
        let first_dependent = ts.iter().position(|t| matches!(t.role, Role::Line | Role::Companion));
        if let Some(i) = first_dependent {
            assert!(ts[..i].iter().all(|t| matches!(t.role, Role::Header | Role::Single)));
            assert!(ts[i..].iter().all(|t| matches!(t.role, Role::Line | Role::Companion)));
        }
        let mut names: Vec<_> = ts.iter().map(|t| t.name.clone()).collect();
        names.dedup();
        assert_eq!(names.len(), ts.len(), "{flow}: task names are unique");
        let dir = if flow.ends_with("-to-fno") {
            Direction::SalesToFno
        } else {
            Direction::FnoToSales
        };
        assert!(ts.iter().all(|t| t.direction() == dir), "{flow}");
    }
}

#[test]
fn every_template_writes_its_target_key_and_knows_its_lookups() {
    for t in builtin_templates() {
        for k in t.target_key.iter().filter(|k| *k != "dataAreaId") {
            assert!(t.field(k).is_some(), "{}: no row writes key {k}", t.name);
        }
        if let Some(p) = &t.parent_key {
            assert!(
                t.fields.iter().any(|f| f.source.path() == Some(p)),
                "{}: the header key {p} is also mapped",
                t.name
            );
        }
        for l in t.lookups() {
            assert!(!l.targets.is_empty(), "{}: p2c cannot resolve {}", t.name, l.path);
        }
        for b in t.binds() {
            assert!(!b.targets.is_empty(), "{}: p2c cannot bind {}", t.name, b.target);
        }
        let sel = t.source_select();
        assert!(!sel.iter().any(|c| c.contains('.')), "{}: {sel:?}", t.name);
        let mut dedup = sel.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), sel.len(), "{}: duplicate $select columns", t.name);
    }
}

// ---------------------------------------------------------------- filters

#[test]
fn a_draft_quote_and_its_lines_are_filtered() {
    let h = t("quotes-to-fno", "QuoteHeader");
    let l = t("quotes-to-fno", "QuoteLine");
    assert!(h.passes_filter(&input_with("quotes-to-fno", "QuoteHeader", json!({}))));
    assert!(!h.passes_filter(&input_with("quotes-to-fno", "QuoteHeader", json!({"statecode": 0}))));
    assert!(!h.passes_filter(&input_with("quotes-to-fno", "QuoteHeader", json!({"statecode": 2}))));
    // A line is filtered like its header: its quote is read through the quoteid lookup.
    assert!(!l.passes_filter(&input_with(
        "quotes-to-fno",
        "QuoteLine",
        json!({"quoteid.statecode": 0})
    )));
    assert!(!l.passes_filter(&without(
        golden("quotes-to-fno/QuoteLine.input.json"),
        "quoteid.statecode"
    )));
    assert!(
        l.lookups().iter().any(|x| x.path == "quoteid.statecode"
            && x.column == "_quoteid_value"
            && x.targets[0].entity_set == "quotes")
    );
}

#[test]
fn a_quote_with_a_product_from_sales_is_filtered() {
    let h = t("quotes-to-fno", "QuoteHeader");
    let l = t("quotes-to-fno", "QuoteLine");
    for v in [json!(false), Value::Null] {
        let q = input_with(
            "quotes-to-fno",
            "QuoteHeader",
            json!({ "msdynce_hasexternallymaintainedproductsonly": v }),
        );
        assert!(!h.passes_filter(&q));
        let ql = input_with(
            "quotes-to-fno",
            "QuoteLine",
            json!({ "msdynce_quotehasexternalmaintainedproductsonly": v }),
        );
        assert!(!l.passes_filter(&ql));
    }
    assert!(
        h.source_select()
            .ends_with(&["msdynce_hasexternallymaintainedproductsonly".into(), "statecode".into()])
    );
}

#[test]
fn only_activated_sales_orders_go_to_fno() {
    let h = t("orders-to-fno", "OrderHeader");
    let l = t("orders-to-fno", "OrderLine");
    let ok = |c: Value| h.passes_filter(&input_with("orders-to-fno", "OrderHeader", c));
    assert!(ok(json!({})));
    assert!(!ok(json!({"msdynce_processingstatus": 647390011})), "Draft");
    assert!(
        !ok(json!({"msdynce_processingstatus": 647390001})),
        "Confirmed: F&O owns it now"
    );
    assert!(!ok(json!({"msdynce_processingstatus": null})));
    assert!(!ok(json!({"statecode": 2})), "Canceled in Sales");
    assert!(!ok(json!({"msdynce_hasexternallymaintainedproductsonly": false})));
    let line_ok = |c: Value| l.passes_filter(&input_with("orders-to-fno", "OrderLine", c));
    assert!(line_ok(json!({})));
    assert!(!line_ok(json!({"salesorderid.msdynce_processingstatus": 647390011})));
    assert!(!line_ok(
        json!({"msdynce_orderhasexternalmaintainedproductsonly": false})
    ));
}

#[test]
fn an_unconfirmed_fno_order_is_filtered() {
    let h = t("orders-to-sales", "OrderHeader");
    let l = t("orders-to-sales", "OrderLine");
    let ok = |c: Value| h.passes_filter(&input_with("orders-to-sales", "OrderHeader", c));
    let line_ok = |c: Value| l.passes_filter(&input_with("orders-to-sales", "OrderLine", c));
    assert!(ok(json!({})));
    assert!(!ok(json!({"SalesOrderProcessingStatus": "Active"})), "not confirmed");
    assert!(!line_ok(json!({"SalesOrderProcessingStatus": "Active"})));
    for later in [
        "Picked",
        "Delivered",
        "Invoiced",
        "Canceled",
        "DeliveredPartiallyInvoiced",
    ] {
        assert!(ok(json!({ "SalesOrderProcessingStatus": later })), "{later}");
    }
    assert!(!ok(json!({"OrderingCustomerIsExternallyMaintained": "No"})));
    assert!(!ok(json!({"InvoiceCustomerIsExternallyMaintained": "No"})));
    assert!(
        !ok(json!({"AreTotalsUpdated": "No"})),
        "Calculate sales totals has not run"
    );
    assert!(!line_ok(json!({"AreSalesOrderTotalsUpdated": "No"})));
    assert!(
        !ok(json!({"SalesOrderOriginType": "WorkOrderIntegration"})),
        "Field Service"
    );
    assert!(ok(json!({"SalesOrderOriginType": "SalesOrderIntegration"})));
}

#[test]
fn contacts_go_to_exactly_one_template() {
    let person = t("contacts-to-fno", "Contacts");
    let customer = t("contacts-to-fno", "ContactToCustomer");
    let base = golden("contacts-to-fno/Contacts.input.json");
    for active in [json!(true), json!(false), Value::Null] {
        for of_account in [json!(true), json!(false), Value::Null] {
            let mut c = base.clone();
            c.insert("msdynce_isactivecustomer".into(), active.clone());
            c.insert("msdynce_iscompanyanaccount".into(), of_account.clone());
            let routes = [person.passes_filter(&c), customer.passes_filter(&c)];
            let want = match (&active, &of_account) {
                (Value::Bool(true), _) => [false, true],
                (_, Value::Bool(true)) => [true, false],
                _ => [false, false],
            };
            assert_eq!(routes, want, "active {active}, company is an account {of_account}");
        }
    }
}

#[test]
fn invoices_without_a_sales_order_are_filtered() {
    let h = t("invoices-to-sales", "SalesInvoiceHeader");
    let ok = |c: Value| h.passes_filter(&input_with("invoices-to-sales", "SalesInvoiceHeader", c));
    assert!(ok(json!({})));
    assert!(!ok(json!({"SalesOrderNumber": ""})), "F&O sends \"\" for no value");
    assert!(!ok(json!({"SalesOrderNumber": "  "})));
    assert!(!ok(json!({"SalesOrderNumber": null})));
}

// ---------------------------------------------------------------- keys

#[test]
fn lines_are_keyed_under_their_header() {
    let ql = t("quotes-to-fno", "QuoteLine");
    let src = golden("quotes-to-fno/QuoteLine.input.json");
    assert_eq!(ql.key_of(&src).unwrap(), "QUO-01000-BVRCPS/1");
    assert_eq!(ql.parent_key_of(&src).unwrap().as_deref(), Some("QUO-01000-BVRCPS"));
    let ol = t("orders-to-sales", "OrderLine");
    let src = input_with(
        "orders-to-sales",
        "OrderLine",
        json!({"LineCreationSequenceNumber": 2.0}),
    );
    assert_eq!(ol.key_of(&src).unwrap(), "ORD-01000-QWERTY/2");
    let h = t("orders-to-sales", "OrderHeader");
    assert_eq!(
        h.parent_key_of(&golden("orders-to-sales/OrderHeader.input.json"))
            .unwrap(),
        None
    );
    assert_eq!(
        ql.source_select()[..3],
        ["quotedetailid", "_quoteid_value", "sequencenumber"]
    );
}

#[test]
fn a_line_without_its_header_key_or_number_names_the_field() {
    let ql = t("quotes-to-fno", "QuoteLine");
    let src = without(golden("quotes-to-fno/QuoteLine.input.json"), "quoteid.quotenumber");
    let err = ql.map(&src).unwrap_err();
    assert_eq!(
        err,
        MapError::MissingKey {
            entity: "quotedetail".into(),
            id: "e2d49cdd-88df-e311-b8e5-6c3be5a8b301".into(),
            field: "quoteid.quotenumber".into(),
        }
    );
    assert!(
        err.to_string().contains("set quoteid.quotenumber on the quotedetail"),
        "{err}"
    );
    for bad in [json!(1.5), json!(""), Value::Null, json!([1])] {
        let src = input_with("quotes-to-fno", "QuoteLine", json!({ "sequencenumber": bad }));
        assert_eq!(ql.key_of(&src).unwrap_err().field(), "sequencenumber");
    }
    let ol = t("orders-to-sales", "OrderLine");
    let src = without(golden("orders-to-sales/OrderLine.input.json"), "SalesOrderNumber");
    let err = ol.key_of(&src).unwrap_err();
    assert_eq!(err.field(), "SalesOrderNumber");
    assert!(
        err.to_string()
            .starts_with("F&O sales order line (no SalesOrderNumber)"),
        "{err}"
    );
}

#[test]
fn a_blank_target_key_part_is_refused() {
    // The price list item is keyed by price list, product and unit: no unit, no item.
    let item = t("products-to-sales", "ProductPriceListItem");
    let src = input_with(
        "products-to-sales",
        "ProductPriceListItem",
        json!({"SalesUnitSymbol": ""}),
    );
    let err = item.map(&src).unwrap_err();
    assert_eq!(
        err,
        MapError::MissingKey {
            entity: "F&O product".into(),
            id: "S0001".into(),
            field: "SalesUnitSymbol".into(),
        }
    );
}

// ---------------------------------------------------------------- value maps

#[test]
fn an_unknown_processing_status_names_the_order_and_field() {
    let h = t("orders-to-sales", "OrderHeader");
    let err = h
        .map(&input_with(
            "orders-to-sales",
            "OrderHeader",
            json!({"SalesOrderProcessingStatus": "OnHold"}),
        ))
        .unwrap_err();
    assert_eq!(
        err,
        MapError::NoValueMapEntry {
            entity: "F&O sales order".into(),
            key: "ORD-01000-QWERTY".into(),
            field: "msdynce_processingstatus".into(),
            source_field: "SalesOrderProcessingStatus".into(),
            value: "OnHold".into(),
        }
    );
    assert_eq!(
        err.to_string(),
        "F&O sales order ORD-01000-QWERTY: msdynce_processingstatus has no value-map entry for 'OnHold' \
         (from SalesOrderProcessingStatus); add a value-map entry for 'OnHold' to msdynce_processingstatus in \
         P2C_MAPPING, or fix the F&O sales order"
    );
}

#[test]
fn every_processing_status_maps_to_a_p2c_option() {
    let h = t("orders-to-sales", "OrderHeader");
    let options = [
        647_390_000,
        647_390_001,
        647_390_002,
        647_390_003,
        647_390_004,
        647_390_005,
        647_390_006,
        647_390_007,
        647_390_008,
        647_390_009,
        647_390_010,
        647_390_011,
    ];
    for s in p2c_mapping::fno_enum_members("SalesOrderProcessingStatus").unwrap() {
        let out = h
            .map(&input_with(
                "orders-to-sales",
                "OrderHeader",
                json!({ "SalesOrderProcessingStatus": s }),
            ))
            .unwrap_or_else(|e| panic!("{s}: {e}"));
        let v = out["msdynce_processingstatus"].as_i64().unwrap();
        assert!(options.contains(&v), "{s} -> {v}");
    }
}

#[test]
fn product_value_maps_name_the_product_and_field() {
    let p = t("products-to-sales", "Products");
    let err = p
        .map(&input_with(
            "products-to-sales",
            "Products",
            json!({"CurrencyCode": "EUR"}),
        ))
        .unwrap_err();
    assert!(
        matches!(&err, MapError::NoValueMapEntry { key, field, value, .. }
            if key == "D0001" && field == "pricelevelid.name" && value == "EUR"),
        "{err}"
    );
    let out = p
        .map(&input_with(
            "products-to-sales",
            "Products",
            json!({"ProductType": "Service", "IsStockedProduct": "No"}),
        ))
        .unwrap();
    assert_eq!(
        (&out["producttypecode"], &out["isstockitem"]),
        (&json!(3), &json!(false))
    );
    let err = p
        .map(&input_with(
            "products-to-sales",
            "Products",
            json!({"ProductType": "Bundle"}),
        ))
        .unwrap_err();
    assert_eq!((err.record(), err.field()), ("D0001", "producttypecode"));
    // Units are found by their F&O symbol unless a map says otherwise, and blank precision means 0.
    let out = p
        .map(&input_with(
            "products-to-sales",
            "Products",
            json!({"SalesUnitSymbol": "Box", "SalesUnitDecimalPrecision": null}),
        ))
        .unwrap();
    assert_eq!(out["defaultuomid.name"], "Box");
    assert_eq!(out["quantitydecimal"], 0);
}

#[test]
fn contact_option_sets_map_to_fno_enums() {
    let c = t("contacts-to-fno", "Contacts");
    let out = c
        .map(&input_with(
            "contacts-to-fno",
            "Contacts",
            json!({"gendercode": 1, "familystatuscode": 4, "donotemail": true, "statecode": 1}),
        ))
        .unwrap();
    assert_eq!(out["Gender"], "Male");
    assert_eq!(out["MaritalStatus"], "Widowhood");
    assert_eq!(out["IsReceivingDirectMail"], "No");
    assert_eq!(out["IsInactive"], "Yes");
    let err = c
        .map(&input_with("contacts-to-fno", "Contacts", json!({"gendercode": 3})))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "contact CON-01000-BVRCPS: Gender has no value-map entry for '3' (from gendercode); add a value-map \
         entry for '3' to Gender in P2C_MAPPING, or fix the contact"
    );
    // Blank option sets clear the enum: its first member, F&O's "no value".
    let m = c
        .map_parts(&input_with(
            "contacts-to-fno",
            "Contacts",
            json!({"gendercode": null, "familystatuscode": null, "donotemail": null}),
        ))
        .unwrap();
    assert_eq!(
        (
            &m.body["Gender"],
            &m.body["MaritalStatus"],
            &m.body["IsReceivingDirectMail"]
        ),
        (&json!("Unknown"), &json!("None"), &json!("No"))
    );
    assert_eq!(m.cleared, ["Gender", "MaritalStatus", "IsReceivingDirectMail"]);
}

#[test]
fn a_line_error_names_the_line_by_header_and_number() {
    let l = t("quotes-to-fno", "QuoteLine");
    let err = l
        .map(&input_with("quotes-to-fno", "QuoteLine", json!({"quantity": "3"})))
        .unwrap_err();
    assert_eq!(
        (err.record(), err.field()),
        ("QUO-01000-BVRCPS/1", "RequestedSalesQuantity")
    );
    assert!(
        err.to_string()
            .starts_with("quotedetail QUO-01000-BVRCPS/1: RequestedSalesQuantity needs a number")
    );
}

#[test]
fn blank_quote_country_is_us_and_names_are_iso_coded() {
    let h = t("quotes-to-fno", "QuoteHeader");
    let out = h
        .map(&input_with(
            "quotes-to-fno",
            "QuoteHeader",
            json!({"shipto_country": null}),
        ))
        .unwrap();
    assert_eq!(out["DeliveryAddressCountryRegionISOCode"], "US");
    let out = h
        .map(&input_with(
            "quotes-to-fno",
            "QuoteHeader",
            json!({"shipto_country": "Germany"}),
        ))
        .unwrap();
    assert_eq!(out["DeliveryAddressCountryRegionISOCode"], "DE");
    let err = h
        .map(&input_with(
            "quotes-to-fno",
            "QuoteHeader",
            json!({"shipto_country": "Narnia"}),
        ))
        .unwrap_err();
    assert_eq!(
        (err.record(), err.field()),
        ("QUO-01000-BVRCPS", "DeliveryAddressCountryRegionISOCode")
    );
    let oh = t("orders-to-fno", "OrderHeader");
    let out = oh
        .map(&input_with(
            "orders-to-fno",
            "OrderHeader",
            json!({"shipto_country": ""}),
        ))
        .unwrap();
    assert_eq!(out["DeliveryAddressCountryRegionISOCode"], "US");
    // F&O -> Sales: a blank invoice country clears Sales' (p2c invents no address), F&O region ids become ISO.
    let sh = t("orders-to-sales", "OrderHeader");
    let out = sh
        .map(&input_with(
            "orders-to-sales",
            "OrderHeader",
            json!({"InvoiceAddressCountryRegionId": ""}),
        ))
        .unwrap();
    assert_eq!(out["billto_country"], Value::Null);
    let out = sh
        .map(&input_with(
            "orders-to-sales",
            "OrderHeader",
            json!({"InvoiceAddressCountryRegionId": "DEU"}),
        ))
        .unwrap();
    assert_eq!(out["billto_country"], "DE");
}

#[test]
fn fno_lengths_are_checked_on_the_new_entities() {
    let h = t("quotes-to-fno", "QuoteHeader");
    let err = h
        .map(&input_with(
            "quotes-to-fno",
            "QuoteHeader",
            json!({"name": "N".repeat(61)}),
        ))
        .unwrap_err();
    assert!(
        matches!(&err, MapError::TooLong { field, len: 61, max: 60, .. } if field == "SalesQuotationName"),
        "{err}"
    );
    let l = t("orders-to-fno", "OrderLine");
    let err = l
        .map(&input_with(
            "orders-to-fno",
            "OrderLine",
            json!({"uomid.name": "Kilogram-12"}),
        ))
        .unwrap_err();
    assert!(
        matches!(&err, MapError::TooLong { field, max: 10, .. } if field == "SalesUnitSymbol"),
        "{err}"
    );
    let c = t("contacts-to-fno", "ContactToCustomer");
    let err = c
        .map(&input_with(
            "contacts-to-fno",
            "ContactToCustomer",
            json!({"firstname": "F".repeat(26)}),
        ))
        .unwrap_err();
    assert!(matches!(&err, MapError::TooLong { max: 25, .. }), "{err}");
    // The full name is cut for the address description, like an account name.
    let out = c
        .map(&input_with(
            "contacts-to-fno",
            "ContactToCustomer",
            json!({"fullname": "F".repeat(80)}),
        ))
        .unwrap();
    assert_eq!(out["AddressDescription"], json!("F".repeat(60)));
}

// ---------------------------------------------------------------- Sales lookups

fn resolve_nothing(_: &LookupTarget, _: &str) -> Option<String> {
    None
}

#[test]
fn bind_writes_the_typed_customer_lookup() {
    let h = t("orders-to-sales", "OrderHeader");
    let src = input_with(
        "orders-to-sales",
        "OrderHeader",
        json!({"OrderingCustomerAccountNumber": "ACC-01000-BVRCPS"}),
    );
    let out = h.map(&src).unwrap();
    let mut asked = Vec::new();
    let wire = h
        .bind("ORD-01000-QWERTY", &out, |t, v| {
            asked.push(format!("{}.{}={v}", t.entity_set, t.column));
            (t.entity_set != "contacts").then(|| "11111111-2222".to_string())
        })
        .unwrap();
    assert_eq!(wire["customerid_account@odata.bind"], "/accounts(11111111-2222)");
    assert!(!wire.contains_key("customerid_contact@odata.bind"));
    assert!(asked.contains(&"accounts.accountnumber=ACC-01000-BVRCPS".to_string()));
    assert!(
        !asked.iter().any(|a| a.starts_with("contacts")),
        "an account hit stops the search"
    );
}

#[test]
fn an_unresolved_lookup_names_record_field_and_value() {
    let p = t("products-to-sales", "Products");
    let out = p
        .map(&input_with(
            "products-to-sales",
            "Products",
            json!({"SalesUnitSymbol": "box"}),
        ))
        .unwrap();
    let err = p
        .bind("D0001", &out, |t, v| {
            (t.entity_set != "uoms" || v != "box").then(|| "0000".to_string())
        })
        .unwrap_err();
    assert_eq!(
        err,
        Unresolved {
            entity: "F&O product".into(),
            key: "D0001".into(),
            field: "defaultuomid.name".into(),
            value: "box".into(),
            looked_in: vec!["uoms by name".into()],
            synced_data: false,
        }
    );
    assert!(!err.is_transient());
    assert!(
        err.to_string().contains("add a value-map entry for defaultuomid.name"),
        "{err}"
    );

    let l = t("orders-to-sales", "OrderLine");
    let out = l.map(&golden("orders-to-sales/OrderLine.input.json")).unwrap();
    let err = l.bind("ORD-01000-QWERTY/2", &out, resolve_nothing).unwrap_err();
    assert_eq!(
        err.field, "transactioncurrencyid.isocurrencycode",
        "the first lookup of the row order"
    );
    let err = l
        .bind("ORD-01000-QWERTY/2", &out, |t, _| {
            (t.entity_set != "products").then(|| "0000".to_string())
        })
        .unwrap_err();
    assert!(err.is_transient(), "a product not synced yet is worth a retry");
    assert_eq!(
        err.to_string(),
        "F&O sales order line ORD-01000-QWERTY/2: productid.productnumber 'D0003' matches no record in Sales \
         (looked in products by productnumber); sync that record to Sales first (the record is retried)"
    );
}

#[test]
fn binds_list_what_the_pipeline_resolves() {
    let h = t("invoices-to-sales", "SalesInvoiceHeader");
    let b: Vec<(String, Vec<String>)> = h
        .binds()
        .into_iter()
        .map(|b| {
            (
                b.target,
                b.targets
                    .into_iter()
                    .map(|t| format!("{}.{} -> {}", t.entity_set, t.column, t.bind_property))
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        b,
        [
            (
                "customerid.Account(accountnumber).Contact(msdynce_contactnumber)".to_string(),
                vec![
                    "accounts.accountnumber -> customerid_account@odata.bind".to_string(),
                    "contacts.msdynce_contactnumber -> customerid_contact@odata.bind".to_string()
                ]
            ),
            (
                "transactioncurrencyid.isocurrencycode".to_string(),
                vec!["transactioncurrencies.isocurrencycode -> transactioncurrencyid@odata.bind".to_string()]
            ),
            (
                "salesorderid.ordernumber".to_string(),
                vec!["salesorders.ordernumber -> salesorderid@odata.bind".to_string()]
            ),
            (
                "pricelevelid.name".to_string(),
                vec!["pricelevels.name -> pricelevelid@odata.bind".to_string()]
            ),
        ]
    );
    assert!(t("quotes-to-fno", "QuoteHeader").binds().is_empty());
}

#[test]
fn an_order_from_fno_is_created_without_its_state() {
    let h = t("orders-to-sales", "OrderHeader");
    let mut body = golden("orders-to-sales/OrderHeader.wire.json");
    let patch = split_state(&mut body).unwrap();
    assert_eq!(Value::Object(patch), json!({"statecode": 0, "statuscode": 1}));
    assert!(!body.contains_key("statecode") && !body.contains_key("statuscode"));
    // Invoices carry a status of the default state only, which is valid on create.
    let mut inv = golden("invoices-to-sales/SalesInvoiceHeader.wire.json");
    assert!(split_state(&mut inv).is_none());
    assert_eq!(inv["statuscode"], 4);
    assert_eq!(h.target_key, ["ordernumber"]);
}

#[test]
fn fno_to_sales_blank_values_clear_sales() {
    // F&O sends "" for an empty string: Sales gets null, its "no value".
    let l = t("orders-to-sales", "OrderLine");
    let m = l
        .map_parts(&input_with(
            "orders-to-sales",
            "OrderLine",
            json!({"DeliveryAddressStreetNumber": "", "ProductName": " "}),
        ))
        .unwrap();
    assert_eq!(
        (&m.body["shipto_line2"], &m.body["description"]),
        (&Value::Null, &Value::Null)
    );
    assert_eq!(m.cleared, ["shipto_line2", "description"]);
    assert!(
        !m.create_body().contains_key("shipto_line2"),
        "a create leaves clears out"
    );
    // A cleared lookup unlinks: `<nav>@odata.bind: null`, nothing to resolve.
    let p = t("products-to-sales", "Products");
    let src = input_with("products-to-sales", "Products", json!({"CurrencyCode": ""}));
    let out = p.map(&src).unwrap();
    assert_eq!(out["transactioncurrencyid.isocurrencycode"], Value::Null);
    let wire = p
        .bind("D0001", &out, |t, v| Some(format!("{}-{v}", t.entity_set)))
        .unwrap();
    assert_eq!(wire["transactioncurrencyid@odata.bind"], Value::Null);
    // A blank key part is still refused, not cleared.
    let err = l
        .map(&input_with(
            "orders-to-sales",
            "OrderLine",
            json!({"SalesOrderNumber": ""}),
        ))
        .unwrap_err();
    assert!(matches!(err, MapError::MissingKey { .. }), "{err}");
}
