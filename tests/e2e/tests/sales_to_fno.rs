//! Sales → F&O contacts, quotes and orders, end to end through the handler, against the sandbox and moto.

use std::collections::BTreeSet;

use p2c_e2e::{Env, sqs_event};
use p2c_state::Link;
use p2c_sync::{FlowName, Message, Reason, RunOptions, Skip, handle_sqs, run_flow};
use serde_json::{Value, json};

/// Ids of the reference data the tests build on.
struct Fixture {
    bu: String,
    usd: String,
    ea: String,
    pcs: String,
    /// Synced accounts: (accountid, accountnumber).
    accounts: Vec<(String, String)>,
}

fn id_where(env: &Env, set: &str, col: &str, value: &str, pk: &str) -> String {
    env.sb
        .sales_rows(set)
        .into_iter()
        .find(|r| r[col] == value)
        .and_then(|r| r[pk].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("{set} with {col} = {value}"))
}

/// Demo reference data, `accounts` accounts synced to F&O by accounts-to-fno.
async fn fixture(env: &Env) -> Fixture {
    let r = env.run(FlowName::AccountsToFno).await;
    assert_eq!(r.failed, 0, "{:?}", r.errors);
    let accounts = env
        .sb
        .sales_rows("accounts")
        .into_iter()
        .map(|a| {
            (
                a["accountid"].as_str().unwrap().to_string(),
                a["accountnumber"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    Fixture {
        bu: env.sb.business_unit_id("usmf").unwrap(),
        usd: id_where(
            env,
            "transactioncurrencies",
            "isocurrencycode",
            "USD",
            "transactioncurrencyid",
        ),
        ea: id_where(env, "uoms", "name", "ea", "uomid"),
        pcs: id_where(env, "uoms", "name", "pcs", "uomid"),
        accounts,
    }
}

/// A Sales product as products-to-sales leaves it: the product, and its link from the F&O product number.
/// `linked: false` leaves the link out (the product is not synced yet).
async fn product(env: &Env, number: &str, external: bool, linked: bool) -> String {
    let existing = env
        .sb
        .sales_rows("products")
        .into_iter()
        .find(|p| p["productnumber"] == number)
        .and_then(|p| p["productid"].as_str().map(str::to_string));
    let id = existing.unwrap_or_else(|| {
        env.sb.sales_insert(
            "products",
            json!({"name": format!("Product {number}"), "productnumber": number,
                   "msdynce_ismaintainedexternally": external}),
        )
    });
    if linked {
        link_product(env, number, &id).await;
    }
    id
}

async fn link_product(env: &Env, number: &str, id: &str) {
    env.deps
        .state
        .put_links(
            &[Link {
                entity: "product".into(),
                company: "usmf".into(),
                system: "fno".into(),
                source_key: number.into(),
                target_key: id.into(),
                source_version: None,
                source_hash: None,
                target_hash: None,
                previous: None,
                synced_at: "2024-01-01T00:00:00Z".into(),
            }],
            &[],
        )
        .await
        .unwrap();
}

/// Runs a flow once over whatever the demo data holds and empties its queues, so a test counts only its own
/// records afterwards.
async fn settle(env: &Env, flow: FlowName) {
    env.run(flow).await;
    let _ = env.queued(flow).await;
}

fn fno_rows_of(env: &Env, set: &str, key_field: &str, key: &str) -> Vec<Value> {
    env.sb
        .fno_rows(set)
        .into_iter()
        .filter(|r| r["dataAreaId"] == "usmf" && r[key_field].as_str().is_some_and(|k| k.eq_ignore_ascii_case(key)))
        .collect()
}

/// Asserts each expected field of an F&O row and returns the field names, so a test can check it covered
/// every row of the template.
fn assert_fields(row: &Value, want: &Value, what: &str) -> BTreeSet<String> {
    let want = want.as_object().unwrap();
    for (k, v) in want {
        let got = &row[k];
        let same = match (got.as_f64(), v.as_f64()) {
            (Some(a), Some(b)) => (a - b).abs() < 1e-9,
            _ => got == v,
        };
        assert!(same, "{what}: field {k} is {got}, expected {v}");
    }
    want.keys().cloned().collect()
}

/// The F&O fields a flow's template writes (enabled rows), by task name.
fn template_targets(env: &Env, flow: FlowName, task: &str) -> BTreeSet<String> {
    env.deps
        .template(flow, task)
        .unwrap()
        .fields
        .iter()
        .filter(|f| f.enabled)
        .map(|f| f.target.clone())
        .collect()
}

fn fno_writes(env: &Env) -> u64 {
    env.sb
        .requests()
        .iter()
        .filter(|(k, _)| k.starts_with("fno ") && !k.contains(" GET "))
        .map(|(_, v)| v)
        .sum()
}

// ------------------------------------------------------------------------------------------------ contacts

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_become_customers_and_contact_persons_under_their_account() {
    let env = Env::start(2).await;
    let fx = fixture(&env).await;
    settle(&env, FlowName::ContactsToFno).await;
    let (acc_id, acc_no) = fx.accounts[0].clone();
    let other_bu = env.sb.sales_insert("businessunits", json!({"name": "demf"}));
    let customer = env.sb.sales_insert(
        "contacts",
        json!({"firstname": "Jane", "middlename": "Q", "lastname": "Doe", "msdynce_contactnumber": "CON-0001",
               "msdynce_isactivecustomer": true, "_owningbusinessunit_value": fx.bu,
               "_transactioncurrencyid_value": fx.usd, "creditlimit": 5000, "fax": "+1 555 0101",
               "address1_city": "Redmond", "address1_country": "United States", "address1_line1": "1 Main St",
               "address1_postalcode": "98052", "address1_stateorprovince": "WA", "description": "VIP",
               "emailaddress1": "jane@example.com", "telephone1": "+1 555 0100",
               "websiteurl": "https://jane.example.com"}),
    );
    let person = env.sb.sales_insert(
        "contacts",
        json!({"firstname": "John", "middlename": "R", "lastname": "Smith", "msdynce_contactnumber": "CON-0002",
               "msdynce_isactivecustomer": false, "msdynce_iscompanyanaccount": true,
               "_parentcustomerid_value": acc_id, "_owningbusinessunit_value": fx.bu,
               "department": "Purchasing", "description": "Buyer", "emailaddress1": "john@example.com",
               "gendercode": 1, "governmentid": "123-45-6789", "address1_city": "Berlin",
               "address1_country": "Germany", "address1_line1": "Unter den Linden 1", "telephone1": "+49 30 1234",
               "address1_postalcode": "10117", "address1_stateorprovince": "BE",
               "websiteurl": "https://john.example.com", "familystatuscode": 2, "donotemail": true,
               "jobtitle": "Buyer", "statecode": 0}),
    );
    // Neither an active customer nor a contact of an account; and one of another company.
    env.sb.sales_insert(
        "contacts",
        json!({"lastname": "Nobody", "msdynce_contactnumber": "CON-0003", "msdynce_isactivecustomer": false,
               "msdynce_iscompanyanaccount": false, "_owningbusinessunit_value": fx.bu}),
    );
    env.sb.sales_insert(
        "contacts",
        json!({"lastname": "Elsewhere", "msdynce_contactnumber": "CON-0004", "msdynce_isactivecustomer": true,
               "_owningbusinessunit_value": other_bu}),
    );

    let r = env.run(FlowName::ContactsToFno).await;
    assert_eq!((r.read, r.written, r.created, r.failed), (4, 2, 2, 0), "{r:?}");
    assert_eq!(r.skipped_by_reason.get(&Skip::OtherBusinessUnit), Some(&1));

    // The active customer is an F&O customer, every mapped field as the template says. (Sales computes fullname.)
    let fullname = env.sb.sales_get("contacts", &customer).unwrap()["fullname"].clone();
    assert!(fullname.as_str().is_some_and(|n| n.contains("Doe")), "{fullname}");
    let c = fno_rows_of(&env, "CustomersV2", "CustomerAccount", "CON-0001");
    assert_eq!(c.len(), 1);
    let asserted = assert_fields(
        &c[0],
        &json!({"PersonFirstName": "Jane", "PersonMiddleName": "Q", "PersonLastName": "Doe", "CreditLimit": 5000,
                "CustomerGroupId": "10", "PrimaryContactFax": "+1 555 0101", "SalesCurrencyCode": "USD",
                "CustomerAccount": "CON-0001", "AddressCity": "Redmond", "AddressCountryRegionISOCode": "US",
                "SalesMemo": "VIP", "PrimaryContactEmail": "jane@example.com", "AddressStreet": "1 Main St",
                "PartyType": "Person", "PrimaryContactPhone": "+1 555 0100", "AddressZipCode": "98052",
                "AddressState": "WA", "PrimaryContactURL": "https://jane.example.com",
                "AddressDescription": fullname, "LanguageId": "en-us", "PartyNumber": "CON-0001",
                "IsExternallyMaintained": "Yes"}),
        "customer CON-0001",
    );
    let targets = template_targets(&env, FlowName::ContactsToFno, "ContactToCustomer");
    assert!(
        targets.is_subset(&asserted),
        "unasserted: {:?}",
        targets.difference(&asserted)
    );

    // The account's contact is a contact person under the account's party.
    let p = fno_rows_of(&env, "CDSContactPersons", "ContactPersonPartyNumber", "CON-0002");
    assert_eq!(p.len(), 1);
    let asserted = assert_fields(
        &p[0],
        &json!({"EmploymentDepartment": "Purchasing", "Notes": "Buyer", "PrimaryEmailAddress": "john@example.com",
                "Gender": "Male", "GovernmentIdentificationNumber": "123-45-6789", "FirstName": "John",
                "LastName": "Smith", "ContactPersonPartyNumber": "CON-0002", "PrimaryAddressCity": "Berlin",
                "PrimaryAddressCountryRegionISOCode": "DE", "MiddleName": "R",
                "PrimaryAddressStreet": "Unter den Linden 1", "ContactPersonPartyType": "Person",
                "PrimaryPhoneNumber": "+49 30 1234", "PrimaryAddressZipCode": "10117",
                "PrimaryAddressStateId": "BE", "PrimaryURL": "https://john.example.com", "MaritalStatus": "Married",
                "IsReceivingDirectMail": "No", "EmploymentProfession": "Buyer", "IsInactive": "No",
                "AssociatedPartyNumber": acc_no, "IsContactPersonExternallyMaintained": "Yes"}),
        "contact person CON-0002",
    );
    let targets = template_targets(&env, FlowName::ContactsToFno, "Contacts");
    assert!(
        targets.is_subset(&asserted),
        "unasserted: {:?}",
        targets.difference(&asserted)
    );
    assert!(fno_rows_of(&env, "CustomersV2", "CustomerAccount", "CON-0004").is_empty());

    // Links: the customer under `contact` (what quotes and orders resolve), the person under `contactperson`.
    let links = env
        .deps
        .state
        .get_links("contact", "usmf", "sales", std::slice::from_ref(&customer))
        .await
        .unwrap();
    assert_eq!(links[&customer].target_key, "CON-0001");
    let links = env
        .deps
        .state
        .get_links("contactperson", "usmf", "sales", std::slice::from_ref(&person))
        .await
        .unwrap();
    assert_eq!(links[&person].target_key, format!("CON-0002/{acc_no}"));

    // No changes: nothing read, nothing written.
    env.sb.reset_counters();
    let r = env.run(FlowName::ContactsToFno).await;
    assert_eq!((r.read, r.written), (0, 0));
    assert_eq!(env.sb.total_requests("fno"), 0, "{:?}", env.sb.requests());

    // A change goes through as an update of just that contact person.
    env.sb
        .sales_update("contacts", &person, json!({"jobtitle": "Head of Purchasing"}));
    let r = env.run(FlowName::ContactsToFno).await;
    assert_eq!((r.read, r.written, r.updated), (1, 1, 1), "{r:?}");
    let p = fno_rows_of(&env, "CDSContactPersons", "ContactPersonPartyNumber", "CON-0002");
    assert_eq!(p[0]["EmploymentProfession"], "Head of Purchasing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contact_of_an_unsynced_account_waits_then_goes_after_accounts() {
    let env = Env::start(0).await;
    settle(&env, FlowName::AccountsToFno).await;
    settle(&env, FlowName::ContactsToFno).await;
    let bu = env.sb.business_unit_id("usmf").unwrap();
    let account = env.sb.sales_insert(
        "accounts",
        json!({"name": "Late Account Ltd", "accountnumber": "ACC-LATE-1", "_owningbusinessunit_value": bu}),
    );
    let contact = env.sb.sales_insert(
        "contacts",
        json!({"firstname": "Wait", "lastname": "Er", "msdynce_contactnumber": "CON-0100",
               "msdynce_iscompanyanaccount": true, "_parentcustomerid_value": account,
               "_owningbusinessunit_value": bu}),
    );

    // Accounts have not run: the contact fails transiently, naming its account, and is queued.
    let r = env.run(FlowName::ContactsToFno).await;
    assert_eq!((r.read, r.written, r.failed, r.retry_queued), (1, 0, 1, 1), "{r:?}");
    let e = &r.errors[0];
    assert!(e.transient);
    assert_eq!(e.id, contact);
    assert!(
        e.reason.contains("ACC-LATE-1") && e.reason.contains("accounts-to-fno"),
        "{}",
        e.reason
    );
    assert!(
        fno_rows_of(&env, "CDSContactPersons", "ContactPersonPartyNumber", "CON-0100").is_empty(),
        "never written without its party"
    );
    let (queued, dead) = env.queued(FlowName::ContactsToFno).await;
    assert!(dead.is_empty());
    assert_eq!(queued.len(), 1);
    let m: Value = serde_json::from_str(&queued[0]).unwrap();
    assert_eq!(m["keys"], json!([contact]));
    assert_eq!(m["attempt"], 2);
    assert!(m["last_error"].as_str().unwrap().contains("ACC-LATE-1"), "{m}");

    // Still waiting while the account is missing from F&O.
    let (_, reports) = p2c_sync::handle_sqs_report(&env.deps, FlowName::ContactsToFno, sqs_event(&queued)).await;
    assert_eq!(reports.iter().map(|r| r.failed).sum::<u64>(), 1, "{reports:?}");
    let _ = env.queued(FlowName::ContactsToFno).await;

    // Accounts run; the queued message now succeeds.
    let r = env.run(FlowName::AccountsToFno).await;
    assert_eq!(r.written, 1);
    let resp = handle_sqs(&env.deps, FlowName::ContactsToFno, sqs_event(&queued)).await;
    assert!(resp.batch_item_failures.is_empty());
    let p = fno_rows_of(&env, "CDSContactPersons", "ContactPersonPartyNumber", "CON-0100");
    assert_eq!(p.len(), 1);
    assert_eq!(p[0]["AssociatedPartyNumber"], "ACC-LATE-1");
    assert_eq!(p[0]["LastName"], "Er");
}

// ------------------------------------------------------------------------------------------------ quotes

struct QuoteIds {
    id: String,
    number: String,
    lines: Vec<String>,
}

/// An active quote of `customer` made of externally maintained products, one line per (product, qty, price,
/// discount).
fn quote(env: &Env, fx: &Fixture, number: &str, customer: &str, lines: &[(&str, f64, f64, f64)]) -> QuoteIds {
    let id = env.sb.sales_insert(
        "quotes",
        json!({"name": format!("Quote {number}"), "quotenumber": number, "_customerid_value": customer,
               "_owningbusinessunit_value": fx.bu, "_transactioncurrencyid_value": fx.usd,
               "msdynce_hasexternallymaintainedproductsonly": true,
               "shipto_name": "Receiving dock", "shipto_line1": "1 Main St", "shipto_city": "Redmond",
               "shipto_stateorprovince": "WA", "shipto_country": "USA", "shipto_postalcode": "98052",
               "billto_line2": "Suite 200", "billto_postalcode": "98053"}),
    );
    let lines = lines
        .iter()
        .enumerate()
        .map(|(i, (product, qty, price, discount))| {
            env.sb.sales_insert(
                "quotedetails",
                json!({"_quoteid_value": id, "_productid_value": product, "_uomid_value": fx.ea,
                       "_transactioncurrencyid_value": fx.usd, "_owningbusinessunit_value": fx.bu,
                       "sequencenumber": i + 1, "quantity": qty, "priceperunit": price,
                       "manualdiscountamount": discount, "msdynce_quotehasexternalmaintainedproductsonly": true}),
            )
        })
        .collect();
    // Created Draft, lines added, then activated (as in Sales).
    env.sb
        .sales_update("quotes", &id, json!({"statecode": 1, "statuscode": 2}));
    QuoteIds {
        id,
        number: number.into(),
        lines,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quote_with_three_lines_then_a_changed_line_then_a_deleted_line() {
    let env = Env::start(2).await;
    let fx = fixture(&env).await;
    settle(&env, FlowName::QuotesToFno).await;
    let (p1, p2, p3) = (
        product(&env, "D0001", true, true).await,
        product(&env, "D0002", true, true).await,
        product(&env, "D0003", true, true).await,
    );
    let (acc_id, acc_no) = fx.accounts[0].clone();
    let q = quote(
        &env,
        &fx,
        "QUO-1001",
        &acc_id,
        &[(&p1, 2.0, 250.0, 0.0), (&p2, 3.0, 180.0, 10.0), (&p3, 1.0, 220.0, 5.5)],
    );
    let other = quote(&env, &fx, "QUO-1002", &fx.accounts[1].0, &[(&p1, 1.0, 250.0, 0.0)]);
    env.sb
        .sales_update("quotedetails", &q.lines[2], json!({"_uomid_value": fx.pcs}));

    env.sb.reset_counters();
    let r = env.run(FlowName::QuotesToFno).await;
    assert_eq!((r.read, r.written, r.created, r.failed), (2, 2, 2, 0), "{:?}", r.errors);
    assert_eq!(
        env.sb.requests().get("fno POST $batch"),
        Some(&1),
        "both quotes, headers with their lines, in one $batch: {:?}",
        env.sb.requests()
    );

    let h = fno_rows_of(&env, "CDSSalesQuotationHeaders", "SalesQuotationNumber", "QUO-1001");
    assert_eq!(h.len(), 1);
    let asserted = assert_fields(
        &h[0],
        &json!({"RequestingCustomerAccountNumber": acc_no, "DeliveryAddressCity": "Redmond",
                "DeliveryAddressCountryRegionISOCode": "US", "CurrencyCode": "USD",
                "DeliveryAddressStreet": "1 Main St", "DeliveryAddressStreetNumber": "Suite 200",
                "DeliveryAddressZipCode": "98053", "SalesQuotationNumber": "QUO-1001",
                "DeliveryAddressStateId": "WA", "QuotationTotalAmount": 1244.5, "SalesQuotationName": "Quote QUO-1001",
                "DeliveryAddressName": "Receiving dock", "IsDeliveryAddressOrderSpecific": "Yes",
                "DeliveryAddressDescription": "Sales ship-to address"}),
        "quotation header",
    );
    let targets = template_targets(&env, FlowName::QuotesToFno, "QuoteHeader");
    assert!(
        targets.is_subset(&asserted),
        "unasserted: {:?}",
        targets.difference(&asserted)
    );

    let mut lines = fno_rows_of(&env, "CDSSalesQuotationLines", "SalesQuotationNumber", "QUO-1001");
    lines.sort_by_key(|l| l["LineCreationSequenceNumber"].as_i64());
    assert_eq!(lines.len(), 3);
    let want = [
        json!({"ProductNumber": "D0001", "RequestedSalesQuantity": 2, "SalesQuotationNumber": "QUO-1001",
               "LineCreationSequenceNumber": 1, "SalesUnitSymbol": "ea", "TotalDiscountAmount": 0,
               "SalesPrice": 250, "LineDiscountAmount": 0, "TotalChargesAmount": 0}),
        json!({"ProductNumber": "D0002", "RequestedSalesQuantity": 3, "SalesQuotationNumber": "QUO-1001",
               "LineCreationSequenceNumber": 2, "SalesUnitSymbol": "ea", "TotalDiscountAmount": 10,
               "SalesPrice": 180, "LineDiscountAmount": 3.33, "TotalChargesAmount": -0.01}),
        json!({"ProductNumber": "D0003", "RequestedSalesQuantity": 1, "SalesQuotationNumber": "QUO-1001",
               "LineCreationSequenceNumber": 3, "SalesUnitSymbol": "pcs", "TotalDiscountAmount": 5.5,
               "SalesPrice": 220, "LineDiscountAmount": 5.5, "TotalChargesAmount": 0}),
    ];
    let targets = template_targets(&env, FlowName::QuotesToFno, "QuoteLine");
    for (l, w) in lines.iter().zip(&want) {
        let asserted = assert_fields(l, w, "quotation line");
        assert!(
            targets.is_subset(&asserted),
            "unasserted: {:?}",
            targets.difference(&asserted)
        );
    }

    // No changes: nothing read, nothing written.
    env.sb.reset_counters();
    let r = env.run(FlowName::QuotesToFno).await;
    assert_eq!((r.read, r.written), (0, 0));
    assert_eq!(env.sb.total_requests("fno"), 0, "{:?}", env.sb.requests());

    // A changed line re-syncs its document only, and PATCHes only that line's changed field.
    env.sb.sales_update("quotedetails", &q.lines[1], json!({"quantity": 4}));
    env.sb.reset_counters();
    let r = env.run(FlowName::QuotesToFno).await;
    assert_eq!((r.read, r.written, r.updated, r.failed), (1, 1, 1, 0), "{r:?}");
    assert_eq!(fno_writes(&env), 1, "{:?}", env.sb.requests());
    let lines = fno_rows_of(&env, "CDSSalesQuotationLines", "SalesQuotationNumber", "QUO-1001");
    let l2 = lines.iter().find(|l| l["LineCreationSequenceNumber"] == 2).unwrap();
    assert_eq!(l2["RequestedSalesQuantity"].as_f64(), Some(4.0));
    assert_eq!(l2["LineDiscountAmount"].as_f64(), Some(2.5), "10.00 over 4 units");
    assert_eq!(l2["TotalChargesAmount"].as_f64(), Some(0.0));
    let untouched = fno_rows_of(&env, "CDSSalesQuotationHeaders", "SalesQuotationNumber", &other.number);
    assert_eq!(untouched.len(), 1);

    // A line deleted in Sales is deleted in F&O; the rest of the quote stays. (Sales may re-total the header,
    // which brings the document along as an update.)
    env.sb.sales_delete("quotedetails", &q.lines[2]);
    let r = env.run(FlowName::QuotesToFno).await;
    assert_eq!((r.deleted, r.failed), (1, 0), "{r:?}");
    assert!(r.read <= 2, "{r:?}");
    let mut lines = fno_rows_of(&env, "CDSSalesQuotationLines", "SalesQuotationNumber", "QUO-1001");
    lines.sort_by_key(|l| l["LineCreationSequenceNumber"].as_i64());
    let numbers: Vec<i64> = lines
        .iter()
        .map(|l| l["LineCreationSequenceNumber"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, vec![1, 2]);
    assert_eq!(
        fno_rows_of(&env, "CDSSalesQuotationHeaders", "SalesQuotationNumber", "QUO-1001").len(),
        1
    );
    // An added line is created under the same header.
    env.sb.sales_insert(
        "quotedetails",
        json!({"_quoteid_value": q.id, "_productid_value": p3, "_uomid_value": fx.ea,
               "_owningbusinessunit_value": fx.bu, "sequencenumber": 4, "quantity": 7, "priceperunit": 220,
               "msdynce_quotehasexternalmaintainedproductsonly": true}),
    );
    let r = env.run(FlowName::QuotesToFno).await;
    assert_eq!((r.read, r.written, r.failed), (1, 1, 0), "{r:?}");
    let lines = fno_rows_of(&env, "CDSSalesQuotationLines", "SalesQuotationNumber", "QUO-1001");
    assert_eq!(lines.len(), 3);
    assert!(
        lines
            .iter()
            .any(|l| l["LineCreationSequenceNumber"] == 4 && l["ProductNumber"] == "D0003")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draft_quotes_and_quotes_with_write_in_or_internal_products_are_filtered() {
    let env = Env::start(1).await;
    let fx = fixture(&env).await;
    settle(&env, FlowName::QuotesToFno).await;
    let p1 = product(&env, "D0001", true, true).await;
    let internal = product(&env, "SALES-ONLY-1", false, false).await;
    let acc = fx.accounts[0].0.clone();

    let draft = quote(&env, &fx, "QUO-2001", &acc, &[(&p1, 1.0, 250.0, 0.0)]);
    env.sb
        .sales_update("quotes", &draft.id, json!({"statecode": 0, "statuscode": 1}));
    // A write-in line: no product; Sales clears the "only externally maintained products" flags.
    let write_in = quote(&env, &fx, "QUO-2002", &acc, &[(&p1, 1.0, 250.0, 0.0)]);
    env.sb.sales_insert(
        "quotedetails",
        json!({"_quoteid_value": write_in.id, "productdescription": "Installation", "sequencenumber": 2,
               "quantity": 1, "priceperunit": 100, "msdynce_quotehasexternalmaintainedproductsonly": false}),
    );
    env.sb.sales_update(
        "quotes",
        &write_in.id,
        json!({"msdynce_hasexternallymaintainedproductsonly": false}),
    );
    // A product made in Sales, not maintained in F&O, even with the flags left on.
    quote(
        &env,
        &fx,
        "QUO-2003",
        &acc,
        &[(&p1, 1.0, 250.0, 0.0), (&internal, 1.0, 10.0, 0.0)],
    );

    let r = env.run(FlowName::QuotesToFno).await;
    assert_eq!((r.read, r.written, r.skipped, r.failed), (3, 0, 3, 0), "{r:?}");
    assert_eq!(r.skipped_by_reason.get(&Skip::Filtered), Some(&2), "{r:?}");
    assert_eq!(r.skipped_by_reason.get(&Skip::ProductNotInFno), Some(&1), "{r:?}");
    for n in ["QUO-2001", "QUO-2002", "QUO-2003"] {
        assert!(fno_rows_of(&env, "CDSSalesQuotationHeaders", "SalesQuotationNumber", n).is_empty());
        assert!(fno_rows_of(&env, "CDSSalesQuotationLines", "SalesQuotationNumber", n).is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quote_of_an_unsynced_product_waits_naming_the_product() {
    let env = Env::start(1).await;
    let fx = fixture(&env).await;
    settle(&env, FlowName::QuotesToFno).await;
    let p1 = product(&env, "D0001", true, true).await;
    let late = product(&env, "D0009", true, false).await;
    let q = quote(
        &env,
        &fx,
        "QUO-3001",
        &fx.accounts[0].0,
        &[(&p1, 1.0, 250.0, 0.0), (&late, 2.0, 99.0, 0.0)],
    );

    let r = env.run(FlowName::QuotesToFno).await;
    assert_eq!((r.read, r.written, r.failed, r.retry_queued), (1, 0, 1, 1), "{r:?}");
    let e = &r.errors[0];
    assert!(e.transient);
    assert_eq!((e.id.as_str(), e.key.as_str()), (q.id.as_str(), "QUO-3001"));
    assert!(
        e.reason.contains("D0009") && e.reason.contains("products-to-sales"),
        "{}",
        e.reason
    );
    assert!(
        fno_rows_of(&env, "CDSSalesQuotationHeaders", "SalesQuotationNumber", "QUO-3001").is_empty(),
        "no header without its lines"
    );
    let (queued, _) = env.queued(FlowName::QuotesToFno).await;
    assert_eq!(queued.len(), 1);
    assert!(queued[0].contains("D0009"), "{}", queued[0]);

    // products-to-sales brings the product (F&O has it, the link appears); the retry goes through.
    env.sb.fno_insert(
        "SellableReleasedProducts",
        json!({"dataAreaId": "usmf", "ProductNumber": "D0009", "ProductName": "Late product"}),
    );
    link_product(&env, "D0009", &late).await;
    let resp = handle_sqs(&env.deps, FlowName::QuotesToFno, sqs_event(&queued)).await;
    assert!(resp.batch_item_failures.is_empty());
    assert_eq!(
        fno_rows_of(&env, "CDSSalesQuotationLines", "SalesQuotationNumber", "QUO-3001").len(),
        2
    );
}

// ------------------------------------------------------------------------------------------------ orders

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_with_discount_split_echo_and_duplicate_message() {
    let env = Env::start(1).await;
    let fx = fixture(&env).await;
    settle(&env, FlowName::OrdersToFno).await;
    let (p1, p2) = (
        product(&env, "D0001", true, true).await,
        product(&env, "D0004", true, true).await,
    );
    let (acc_id, acc_no) = fx.accounts[0].clone();
    let order = env.sb.sales_insert(
        "salesorders",
        json!({"name": "PO 4711", "ordernumber": "ORD-5001", "_customerid_value": acc_id,
               "_owningbusinessunit_value": fx.bu, "_transactioncurrencyid_value": fx.usd,
               "statecode": 0, "msdynce_processingstatus": 647_390_000,
               "msdynce_hasexternallymaintainedproductsonly": true, "shipto_name": "Warehouse 2",
               "shipto_line1": "2 Oak Ave", "shipto_line2": "Gate 4", "shipto_city": "Chicago",
               "shipto_stateorprovince": "IL", "shipto_country": "", "shipto_postalcode": "60601",
               "totalamount": 2240.0}),
    );
    let line = |seq: i64, product: &str, qty: f64, price: f64, discount: f64| {
        env.sb.sales_insert(
            "salesorderdetails",
            json!({"_salesorderid_value": order, "_productid_value": product, "_uomid_value": fx.ea,
                   "_transactioncurrencyid_value": fx.usd, "_owningbusinessunit_value": fx.bu,
                   "sequencenumber": seq, "quantity": qty, "priceperunit": price,
                   "manualdiscountamount": discount, "msdynce_orderhasexternalmaintainedproductsonly": true}),
        )
    };
    let l1 = line(1, &p1, 3.0, 250.0, 10.0);
    line(2, &p2, 1.0, 1500.0, 0.0);
    // A draft order (processing status Draft) is not sent.
    env.sb.sales_insert(
        "salesorders",
        json!({"name": "Draft", "ordernumber": "ORD-5002", "_customerid_value": acc_id,
               "_owningbusinessunit_value": fx.bu, "statecode": 0, "msdynce_processingstatus": 647_390_011,
               "msdynce_hasexternallymaintainedproductsonly": true}),
    );

    let r = env.run(FlowName::OrdersToFno).await;
    assert_eq!(
        (r.read, r.written, r.created, r.skipped, r.failed),
        (2, 1, 1, 1, 0),
        "{:?}",
        r.errors
    );
    let h = fno_rows_of(&env, "CDSSalesOrderHeaders", "SalesOrderNumber", "ORD-5001");
    assert_eq!(h.len(), 1);
    let asserted = assert_fields(
        &h[0],
        &json!({"OrderingCustomerAccountNumber": acc_no, "DeliveryAddressCity": "Chicago",
                "DeliveryAddressCountryRegionISOCode": "US", "CurrencyCode": "USD",
                "DeliveryAddressStreet": "2 Oak Ave", "DeliveryAddressZipCode": "60601",
                "SalesOrderNumber": "ORD-5001", "DeliveryAddressStreetNumber": "Gate 4",
                "DeliveryAddressStateId": "IL", "OrderTotalAmount": 2240.0, "CustomersOrderReference": "PO 4711",
                "DeliveryAddressName": "Warehouse 2", "IsDeliveryAddressOrderSpecific": "Yes",
                "DeliveryAddressDescription": "Sales ship-to address"}),
        "order header",
    );
    let targets = template_targets(&env, FlowName::OrdersToFno, "OrderHeader");
    assert!(
        targets.is_subset(&asserted),
        "unasserted: {:?}",
        targets.difference(&asserted)
    );
    assert!(fno_rows_of(&env, "CDSSalesOrderHeaders", "SalesOrderNumber", "ORD-5002").is_empty());

    // Discount split: qty 3, discount 10.00 → 3.33 per unit, and the 0.01 left over as a −0.01 sales charge.
    let mut lines = fno_rows_of(&env, "CDSSalesOrderLines", "SalesOrderNumber", "ORD-5001");
    lines.sort_by_key(|l| l["LineCreationSequenceNumber"].as_i64());
    assert_eq!(lines.len(), 2);
    let asserted = assert_fields(
        &lines[0],
        &json!({"ProductNumber": "D0001", "OrderedSalesQuantity": 3, "SalesOrderNumber": "ORD-5001",
                "LineCreationSequenceNumber": 1, "SalesUnitSymbol": "ea", "TotalDiscountAmount": 10,
                "SalesPrice": 250, "LineDiscountAmount": 3.33, "TotalChargesAmount": -0.01}),
        "order line 1",
    );
    let targets = template_targets(&env, FlowName::OrdersToFno, "OrderLine");
    assert!(
        targets.is_subset(&asserted),
        "unasserted: {:?}",
        targets.difference(&asserted)
    );
    assert_fields(
        &lines[1],
        &json!({"ProductNumber": "D0004", "OrderedSalesQuantity": 1, "LineCreationSequenceNumber": 2,
                "SalesPrice": 1500, "LineDiscountAmount": 0, "TotalChargesAmount": 0}),
        "order line 2",
    );

    // No changes: nothing read, nothing written.
    env.sb.reset_counters();
    let r = env.run(FlowName::OrdersToFno).await;
    assert_eq!((r.read, r.written), (0, 0));
    assert_eq!(env.sb.total_requests("fno"), 0, "{:?}", env.sb.requests());

    // Echo: a price changed in F&O, and orders-to-sales writes it (and F&O's new total) into Sales. Sales reports
    // the change; F&O already holds the values, so nothing is written back.
    env.sb.fno_update(
        "CDSSalesOrderLines",
        &[
            ("dataAreaId", "usmf"),
            ("SalesOrderNumber", "ORD-5001"),
            ("LineCreationSequenceNumber", "1"),
        ],
        json!({"SalesPrice": 245.0}),
    );
    env.sb.fno_update(
        "CDSSalesOrderHeaders",
        &[("dataAreaId", "usmf"), ("SalesOrderNumber", "ORD-5001")],
        json!({"OrderTotalAmount": 2225.0}),
    );
    env.sb
        .sales_update("salesorderdetails", &l1, json!({"priceperunit": 245.0}));
    env.sb
        .sales_update("salesorders", &order, json!({"totalamount": 2225.0}));
    env.sb.reset_counters();
    let r = env.run(FlowName::OrdersToFno).await;
    assert_eq!((r.read, r.written, r.skipped), (1, 0, 1), "{r:?}");
    assert_eq!(r.skipped_by_reason.get(&Skip::Echo), Some(&1), "{r:?}");
    assert_eq!(fno_writes(&env), 0, "{:?}", env.sb.requests());

    // The same SQS message twice (and again later) creates no duplicate.
    env.sb
        .sales_update("salesorders", &order, json!({"name": "PO 4711 rev 2"}));
    let body = Message::new(
        FlowName::OrdersToFno.as_str(),
        "usmf",
        vec![order.clone()],
        Reason::Change,
    )
    .to_body();
    let resp = handle_sqs(
        &env.deps,
        FlowName::OrdersToFno,
        sqs_event(&[body.clone(), body.clone()]),
    )
    .await;
    assert!(resp.batch_item_failures.is_empty());
    let resp = handle_sqs(&env.deps, FlowName::OrdersToFno, sqs_event(&[body])).await;
    assert!(resp.batch_item_failures.is_empty());
    let h = fno_rows_of(&env, "CDSSalesOrderHeaders", "SalesOrderNumber", "ORD-5001");
    assert_eq!(h.len(), 1);
    assert_eq!(h[0]["CustomersOrderReference"], "PO 4711 rev 2");
    assert_eq!(
        fno_rows_of(&env, "CDSSalesOrderLines", "SalesOrderNumber", "ORD-5001").len(),
        2
    );

    // The links lost (a crash before their commit), then a full resync: the records are found in F&O with the
    // same values, so nothing is created or written.
    let watermark = env
        .deps
        .state
        .watermark("orders-to-fno", "usmf")
        .await
        .unwrap()
        .unwrap();
    assert!(watermark.value.contains("\"salesorders\"") && watermark.value.contains("\"salesorderdetails\""));
    let mut links = env
        .deps
        .state
        .get_links("salesorder", "usmf", "sales", std::slice::from_ref(&order))
        .await
        .unwrap();
    let mut lost = links.remove(&order).unwrap();
    lost.target_hash = None;
    env.deps.state.put_links(&[lost], &[]).await.unwrap();
    let r = run_flow(
        &env.deps,
        FlowName::OrdersToFno,
        "usmf",
        &RunOptions {
            full_resync: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!((r.written, r.failed), (0, 0), "{r:?}");
    assert_eq!(r.skipped_by_reason.get(&Skip::Echo), Some(&1), "{r:?}");
    assert_eq!(
        fno_rows_of(&env, "CDSSalesOrderLines", "SalesOrderNumber", "ORD-5001").len(),
        2
    );
}

// ------------------------------------------------------------------------------------------------ companies

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_companies_with_the_same_customer_number_stay_apart() {
    let env = Env::start_with(p2c_sandbox::SandboxConfig::default(), 0, |cfg| {
        cfg.companies.push(p2c_sync::Company {
            legal_entity: "dat".into(),
            business_unit: "dat".into(),
            include_child_units: true,
        });
    })
    .await;
    let usmf = env.sb.business_unit_id("usmf").unwrap();
    let dat = env.sb.sales_insert("businessunits", json!({"name": "dat"}));
    for c in ["usmf", "dat"] {
        run_flow(&env.deps, FlowName::ContactsToFno, c, &RunOptions::default())
            .await
            .unwrap();
        let _ = env.queued(FlowName::ContactsToFno).await;
    }
    let mut ids = Vec::new();
    for (bu, last) in [(&usmf, "Usmf"), (&dat, "Dat")] {
        ids.push(env.sb.sales_insert(
            "contacts",
            json!({"firstname": "Sam", "lastname": last, "msdynce_contactnumber": "CON-7777",
                   "msdynce_isactivecustomer": true, "_owningbusinessunit_value": bu}),
        ));
    }
    for c in ["usmf", "dat"] {
        let r = run_flow(&env.deps, FlowName::ContactsToFno, c, &RunOptions::default())
            .await
            .unwrap();
        assert_eq!((r.written, r.failed), (1, 0), "{c}: {r:?}");
        assert_eq!(
            r.skipped_by_reason.get(&Skip::OtherBusinessUnit),
            Some(&1),
            "{c}: {r:?}"
        );
    }
    let rows: Vec<(String, String)> = env
        .sb
        .fno_rows("CustomersV2")
        .into_iter()
        .filter(|r| r["CustomerAccount"] == "CON-7777")
        .map(|r| {
            (
                r["dataAreaId"].as_str().unwrap().to_string(),
                r["PersonLastName"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.contains(&("usmf".into(), "Usmf".into())) && rows.contains(&("dat".into(), "Dat".into())));
    for (company, id) in [("usmf", &ids[0]), ("dat", &ids[1])] {
        let l = env
            .deps
            .state
            .get_links("contact", company, "sales", std::slice::from_ref(id))
            .await
            .unwrap();
        assert_eq!(l[id.as_str()].target_key, "CON-7777");
    }
}

// ------------------------------------------------------------------------------------------------ crash

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_writing_documents_then_rerun_duplicates_nothing() {
    let env = Env::start_with(p2c_sandbox::SandboxConfig::default(), 1, |c| {
        c.lease_ttl = std::time::Duration::from_secs(1)
    })
    .await;
    let fx = fixture(&env).await;
    settle(&env, FlowName::QuotesToFno).await;
    let p1 = product(&env, "D0001", true, true).await;
    let q = quote(
        &env,
        &fx,
        "QUO-9001",
        &fx.accounts[0].0,
        &[(&p1, 1.0, 250.0, 0.0), (&p1, 2.0, 250.0, 1.0)],
    );

    // The documents are written, their links are not: the worst place to die.
    env.deps.crashes.arm(p2c_sync::faults::CrashPoint::AfterTargetWrite, 1);
    let err = run_flow(&env.deps, FlowName::QuotesToFno, "usmf", &RunOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, p2c_sync::SyncError::SimulatedCrash(_)), "{err}");
    assert_eq!(
        fno_rows_of(&env, "CDSSalesQuotationLines", "SalesQuotationNumber", "QUO-9001").len(),
        2
    );
    let links = env
        .deps
        .state
        .get_links("quote", "usmf", "sales", std::slice::from_ref(&q.id))
        .await
        .unwrap();
    assert!(links.is_empty());

    // After the dead run's lease expires, the redo tries to create the document (it has no links, so F&O is not
    // read first), F&O refuses it as already there, and the re-plan from a fresh read writes nothing.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    env.sb.reset_counters();
    let r = env.run(FlowName::QuotesToFno).await;
    assert_eq!((r.read, r.written, r.failed), (1, 0, 0), "{r:?}");
    assert_eq!(r.skipped_by_reason.get(&Skip::Echo), Some(&1), "{r:?}");
    assert_eq!(fno_writes(&env), 1, "one refused create: {:?}", env.sb.requests());
    assert_eq!(
        fno_rows_of(&env, "CDSSalesQuotationHeaders", "SalesQuotationNumber", "QUO-9001").len(),
        1
    );
    assert_eq!(
        fno_rows_of(&env, "CDSSalesQuotationLines", "SalesQuotationNumber", "QUO-9001").len(),
        2
    );
    let links = env
        .deps
        .state
        .get_links("quotedetail", "usmf", "sales", &q.lines)
        .await
        .unwrap();
    assert_eq!(links.len(), 2);
}

/// A Sales date mapped to a date-only F&O field (`RequestedShippingDate`: an X++ date that F&O serves at
/// 12:00:00Z) is sent as F&O holds it, so a redo that compares with F&O's row finds it equal and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_date_only_field_is_sent_as_fno_holds_it_and_a_redo_writes_nothing() {
    let mapping = std::env::temp_dir().join(format!("p2c-date-only-{}.toml", std::process::id()));
    std::fs::write(
        &mapping,
        "[[quotes-to-fno.QuoteHeader.fields]]\nsource = \"requestdeliveryby\"\ntarget = \"RequestedShippingDate\"\n\
         transform = \"copy\"\n",
    )
    .unwrap();
    let env = Env::start_with(p2c_sandbox::SandboxConfig::default(), 1, |c| {
        c.lease_ttl = std::time::Duration::from_secs(1);
        c.mapping = Some(mapping.clone());
    })
    .await;
    let fx = fixture(&env).await;
    settle(&env, FlowName::QuotesToFno).await;
    let p1 = product(&env, "D0001", true, true).await;
    let q = quote(&env, &fx, "QUO-9101", &fx.accounts[0].0, &[(&p1, 1.0, 250.0, 0.0)]);
    // Sales serves a date-only column as a bare date.
    env.sb
        .sales_update("quotes", &q.id, json!({"requestdeliveryby": "2026-09-15"}));

    env.deps.crashes.arm(p2c_sync::faults::CrashPoint::AfterTargetWrite, 1);
    let err = run_flow(&env.deps, FlowName::QuotesToFno, "usmf", &RunOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, p2c_sync::SyncError::SimulatedCrash(_)), "{err}");
    let h = fno_rows_of(&env, "CDSSalesQuotationHeaders", "SalesQuotationNumber", "QUO-9101");
    assert_eq!(h[0]["RequestedShippingDate"], "2026-09-15T12:00:00Z");

    // The redo has no link: F&O refuses the create, the re-plan reads the row and finds every value held.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    env.sb.reset_counters();
    let r = env.run(FlowName::QuotesToFno).await;
    assert_eq!((r.read, r.written, r.failed), (1, 0, 0), "{r:?}");
    assert_eq!(r.skipped_by_reason.get(&Skip::Echo), Some(&1), "{r:?}");
    assert_eq!(
        fno_writes(&env),
        1,
        "one refused create, no PATCH: {:?}",
        env.sb.requests()
    );
    let _ = std::fs::remove_file(&mapping);
}

// ------------------------------------------------------------------------------------------------ story

/// The prospect-to-cash story with the real parent flows: products come from F&O through products-to-sales
/// (whose links the documents resolve), then the demo quote and order go to F&O.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn story_quote_and_order_after_products_to_sales() {
    let env = Env::start(2).await;
    env.run(FlowName::AccountsToFno).await;
    let r = env.run(FlowName::ProductsToSales).await;
    assert_eq!(r.failed, 0, "{:?}", r.errors);
    settle(&env, FlowName::ContactsToFno).await;
    settle(&env, FlowName::QuotesToFno).await;
    settle(&env, FlowName::OrdersToFno).await;
    let story = env.sb.seed_story();

    let r = env.run(FlowName::QuotesToFno).await;
    assert_eq!((r.written, r.failed), (1, 0), "{r:?}");
    let r = env.run(FlowName::OrdersToFno).await;
    assert_eq!((r.written, r.failed), (1, 0), "{r:?}");
    let q = fno_rows_of(
        &env,
        "CDSSalesQuotationHeaders",
        "SalesQuotationNumber",
        &story.quote_number,
    );
    assert_eq!(q.len(), 1);
    assert_eq!(q[0]["RequestingCustomerAccountNumber"], story.account_number.as_str());
    let lines = fno_rows_of(
        &env,
        "CDSSalesQuotationLines",
        "SalesQuotationNumber",
        &story.quote_number,
    );
    let mut products: Vec<&str> = lines.iter().map(|l| l["ProductNumber"].as_str().unwrap()).collect();
    products.sort();
    assert_eq!(products, ["D0001", "D0002", "D0003"]);
    let d3 = lines.iter().find(|l| l["ProductNumber"] == "D0003").unwrap();
    assert_eq!(
        (d3["LineDiscountAmount"].as_f64(), d3["TotalChargesAmount"].as_f64()),
        (Some(3.33), Some(-0.01))
    );
    let o = fno_rows_of(&env, "CDSSalesOrderHeaders", "SalesOrderNumber", &story.order_number);
    assert_eq!(o.len(), 1);
    assert_eq!(o[0]["OrderingCustomerAccountNumber"], story.account_number.as_str());
    assert_eq!(
        fno_rows_of(&env, "CDSSalesOrderLines", "SalesOrderNumber", &story.order_number).len(),
        2
    );

    // No loop: F&O confirms the order, orders-to-sales writes it back into Sales, and Sales' change tracking
    // hands that write to orders-to-fno, which sends nothing to F&O.
    env.sb.fno_confirm_order("usmf", &story.order_number);
    let r = env.run(FlowName::OrdersToSales).await;
    assert_eq!(r.failed, 0, "{:?}", r.errors);
    assert!(r.written >= 1, "{r:?}");
    env.sb.reset_counters();
    let r = env.run(FlowName::OrdersToFno).await;
    assert_eq!((r.written, r.failed), (0, 0), "{r:?}");
    assert!(r.read >= 1, "the write-back is seen: {r:?}");
    assert_eq!(fno_writes(&env), 0, "{:?}", env.sb.requests());
}

/// Issue 12 in a document flow: a quote's ship-to city and name cleared in Sales clear the quotation's delivery
/// city and name in F&O (""), in one PATCH of the header; a later change to a column the templates do not map
/// finds the quote unchanged and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cleared_ship_to_city_and_name_clear_the_quotation_then_it_is_unchanged() {
    let env = Env::start(1).await;
    let fx = fixture(&env).await;
    settle(&env, FlowName::QuotesToFno).await;
    let p1 = product(&env, "D0001", true, true).await;
    let q = quote(&env, &fx, "QUO-3001", &fx.accounts[0].0, &[(&p1, 1.0, 250.0, 0.0)]);
    let r = env.run(FlowName::QuotesToFno).await;
    assert_eq!((r.written, r.created, r.failed), (1, 1, 0), "{:?}", r.errors);
    let h = &fno_rows_of(&env, "CDSSalesQuotationHeaders", "SalesQuotationNumber", &q.number)[0];
    assert_eq!(
        (&h["DeliveryAddressCity"], &h["DeliveryAddressName"]),
        (&json!("Redmond"), &json!("Receiving dock"))
    );

    env.sb
        .sales_update("quotes", &q.id, json!({"shipto_city": null, "shipto_name": ""}));
    env.sb.reset_counters();
    let r = env.run(FlowName::QuotesToFno).await;
    assert_eq!((r.read, r.written, r.updated, r.failed), (1, 1, 1, 0), "{:?}", r.errors);
    assert_eq!(fno_writes(&env), 1, "{:?}", env.sb.requests());
    let h = &fno_rows_of(&env, "CDSSalesQuotationHeaders", "SalesQuotationNumber", &q.number)[0];
    assert_eq!(
        (&h["DeliveryAddressCity"], &h["DeliveryAddressName"]),
        (&json!(""), &json!("")),
        "cleared to F&O's empty text"
    );
    assert_eq!(h["DeliveryAddressStreet"], "1 Main St", "nothing else changed");

    env.sb
        .sales_update("quotes", &q.id, json!({"description": "Called the buyer"}));
    env.sb.reset_counters();
    let r = env.run(FlowName::QuotesToFno).await;
    assert_eq!((r.read, r.written, r.failed), (1, 0, 0), "{r:?}");
    assert_eq!(fno_writes(&env), 0, "{:?}", env.sb.requests());
    let h = &fno_rows_of(&env, "CDSSalesQuotationHeaders", "SalesQuotationNumber", &q.number)[0];
    assert_eq!(h["DeliveryAddressCity"], "");
}

/// Issue 12 for contacts: a contact that is a customer has its fax and credit limit cleared in Sales; F&O's
/// customer gets "" and 0 in one PATCH (after reading F&O), and a contact person's cleared gender becomes F&O's
/// empty member. A value put back in F&O by hand is then drift that reconcile reports for contacts-to-fno.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleared_contact_fields_clear_fno_and_reconcile_reports_them_put_back() {
    let env = Env::start(1).await;
    let fx = fixture(&env).await;
    settle(&env, FlowName::ContactsToFno).await;
    let (acc_id, _) = fx.accounts[0].clone();
    let customer = env.sb.sales_insert(
        "contacts",
        json!({"firstname": "Jane", "lastname": "Doe", "msdynce_contactnumber": "CON-0101",
               "msdynce_isactivecustomer": true, "_owningbusinessunit_value": fx.bu,
               "_transactioncurrencyid_value": fx.usd, "creditlimit": 5000, "fax": "+1 555 0101"}),
    );
    let person = env.sb.sales_insert(
        "contacts",
        json!({"firstname": "John", "lastname": "Smith", "msdynce_contactnumber": "CON-0102",
               "msdynce_isactivecustomer": false, "msdynce_iscompanyanaccount": true,
               "_parentcustomerid_value": acc_id, "_owningbusinessunit_value": fx.bu, "gendercode": 1,
               "jobtitle": "Buyer", "statecode": 0}),
    );
    let r = env.run(FlowName::ContactsToFno).await;
    assert_eq!((r.written, r.failed), (2, 0), "{:?}", r.errors);

    env.sb
        .sales_update("contacts", &customer, json!({"fax": null, "creditlimit": null}));
    env.sb
        .sales_update("contacts", &person, json!({"gendercode": null, "jobtitle": ""}));
    env.sb.reset_counters();
    let r = env.run(FlowName::ContactsToFno).await;
    assert_eq!((r.read, r.written, r.updated, r.failed), (2, 2, 2, 0), "{:?}", r.errors);
    let c = &fno_rows_of(&env, "CustomersV2", "CustomerAccount", "CON-0101")[0];
    assert_eq!((&c["PrimaryContactFax"], &c["CreditLimit"]), (&json!(""), &json!(0)));
    assert_eq!(c["PersonLastName"], "Doe", "nothing else changed");
    let p = &fno_rows_of(&env, "CDSContactPersons", "ContactPersonPartyNumber", "CON-0102")[0];
    assert_eq!(
        (&p["Gender"], &p["EmploymentProfession"]),
        (&json!("Unknown"), &json!("")),
        "an enum clears to its first member"
    );

    // Quiet afterwards: a change to an unmapped column writes nothing.
    env.sb
        .sales_update("contacts", &customer, json!({"telephone2": "+1 555 0199"}));
    env.sb.reset_counters();
    let r = env.run(FlowName::ContactsToFno).await;
    assert_eq!((r.read, r.written), (1, 0), "{r:?}");
    assert_eq!(fno_writes(&env), 0, "{:?}", env.sb.requests());

    env.sb.fno_update(
        "CustomersV2",
        &[("dataAreaId", "usmf"), ("CustomerAccount", "CON-0101")],
        json!({"PrimaryContactFax": "+1 555 0101"}),
    );
    let rec = p2c_sync::ops::reconcile::reconcile(&env.deps, FlowName::ContactsToFno, "usmf", false)
        .await
        .unwrap();
    let m: Vec<(&str, &str, &Value, &Value)> = rec
        .mismatches
        .iter()
        .map(|m| (m.key.as_str(), m.field.as_str(), &m.expected, &m.actual))
        .collect();
    assert_eq!(
        m,
        [("CON-0101", "PrimaryContactFax", &json!(""), &json!("+1 555 0101"))]
    );
}
