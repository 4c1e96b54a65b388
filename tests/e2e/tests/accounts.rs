//! Sales accounts → F&O customers, end to end through the handler, against the sandbox and moto.

use std::time::Duration;

use p2c_e2e::{Env, sqs_event};
use p2c_sandbox::{Fault, FaultKind, SandboxConfig, Service};
use p2c_sync::{FlowName, Message, Reason, Skip, handle_event, handle_sqs};
use serde_json::{Value, json};

const FLOW: FlowName = FlowName::AccountsToFno;

/// The F&O customer that the template makes of a Sales account, as stored by F&O.
fn expected_customer(env: &Env, account: &Value) -> serde_json::Map<String, Value> {
    let mut row = account.as_object().unwrap().clone();
    let currency = env
        .sb
        .sales_rows("transactioncurrencies")
        .into_iter()
        .find(|c| c["transactioncurrencyid"] == row["_transactioncurrencyid_value"])
        .map(|c| c["isocurrencycode"].clone());
    if let Some(c) = currency {
        row.insert("transactioncurrencyid.isocurrencycode".into(), c);
    }
    env.deps.templates(FLOW)[0].map(&row).expect("maps")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_accounts_then_ten_changes_then_nothing_then_duplicate_message() {
    let env = Env::start(1000).await;
    let accounts = env.sb.sales_rows("accounts");
    assert_eq!(accounts.len(), 1000);
    env.sb.reset_counters();

    // First run: every account becomes a customer with the mapped fields.
    let r = env.run(FLOW).await;
    assert_eq!(
        (r.read, r.written, r.created, r.failed),
        (1000, 1000, 1000, 0),
        "{:?}",
        r.errors
    );
    let customers = env.customers("usmf");
    assert_eq!(customers.len(), 1000);
    for a in &accounts {
        let want = expected_customer(&env, a);
        let got = customers
            .iter()
            .find(|c| c["CustomerAccount"] == a["accountnumber"])
            .unwrap_or_else(|| panic!("customer for {}", a["accountnumber"]));
        for (k, v) in &want {
            assert_eq!(&got[k], v, "field {k} of customer {}", a["accountnumber"]);
        }
        assert_eq!(got["dataAreaId"], "usmf");
        assert_eq!(got["IsExternallyMaintained"], "Yes");
        assert_eq!(got["PartyNumber"], a["accountnumber"]);
    }
    let requests = env.sb.requests();
    println!("first run of 1,000 accounts: sandbox requests {requests:?}");
    println!("first run of 1,000 accounts: client requests {:?}", r.dynamics_requests);
    println!("first run of 1,000 accounts: DynamoDB requests {}", r.dynamodb_requests);
    // About one request per page read and one per batch written.
    assert!(env.sb.total_requests("sales") <= 6, "{requests:?}");
    assert!(env.sb.total_requests("fno") <= 20, "{requests:?}");
    // A first sync writes one link item per record (40 BatchWriteItem of 25) and no history.
    assert!(r.dynamodb_requests <= 70, "{}", r.dynamodb_requests);

    // Ten changed accounts: exactly those ten are written.
    let changed: Vec<&Value> = accounts.iter().step_by(97).take(10).collect();
    for (i, a) in changed.iter().enumerate() {
        let id = a["accountid"].as_str().unwrap();
        env.sb.sales_update(
            "accounts",
            id,
            json!({"telephone1": format!("+1 555 01{i:02}"), "address1_city": "Fargo"}),
        );
    }
    env.sb.reset_counters();
    let r = env.run(FLOW).await;
    assert_eq!((r.read, r.written, r.updated, r.created), (10, 10, 10, 0), "{r:?}");
    for (i, a) in changed.iter().enumerate() {
        let c = env
            .customers("usmf")
            .into_iter()
            .find(|c| c["CustomerAccount"] == a["accountnumber"])
            .unwrap();
        assert_eq!(c["PrimaryContactPhone"], format!("+1 555 01{i:02}"));
        assert_eq!(c["AddressCity"], "Fargo");
    }
    let writes = env
        .sb
        .requests()
        .iter()
        .filter(|(k, _)| k.starts_with("fno") && !k.contains("GET"))
        .map(|(_, v)| v)
        .sum::<u64>();
    assert_eq!(writes, 1, "ten changes fit in one $batch: {:?}", env.sb.requests());
    // The trail of a changed account: its link now, then the state the change replaced; an unchanged one has
    // only its link.
    let id_of = |a: &Value| a["accountid"].as_str().unwrap().to_string();
    let state = &env.deps.state;
    let hist = state
        .history("account", "usmf", "sales", &id_of(changed[0]), 10)
        .await
        .unwrap();
    assert_eq!(hist.len(), 2, "{hist:?}");
    assert_ne!(hist[0].target_hash, hist[1].target_hash, "{hist:?}");
    assert_eq!(hist[1].target_key, changed[0]["accountnumber"].as_str().unwrap());
    let unchanged = state
        .history("account", "usmf", "sales", &id_of(&accounts[1]), 10)
        .await
        .unwrap();
    assert_eq!(unchanged.len(), 1, "{unchanged:?}");

    // No changes: nothing read, nothing written.
    env.sb.reset_counters();
    let r = env.run(FLOW).await;
    assert_eq!((r.read, r.written), (0, 0));
    assert_eq!(env.sb.total_requests("fno"), 0, "{:?}", env.sb.requests());

    // A change touching only a field the template does not map is read and skipped as unchanged.
    let id = accounts[0]["accountid"].as_str().unwrap();
    env.sb.sales_update("accounts", id, json!({"revenue": 12345}));
    let r = env.run(FLOW).await;
    assert_eq!((r.read, r.written, r.skipped), (1, 0, 1));
    assert_eq!(r.skipped_by_reason.get(&Skip::Unchanged), Some(&1));

    // The same SQS message delivered twice creates no duplicate.
    let a = &accounts[5];
    env.sb.sales_update(
        "accounts",
        a["accountid"].as_str().unwrap(),
        json!({"name": "Renamed Ltd"}),
    );
    let body = Message::new(
        FLOW.as_str(),
        "usmf",
        vec![a["accountid"].as_str().unwrap().into()],
        Reason::Change,
    )
    .to_body();
    let resp = handle_sqs(&env.deps, FLOW, sqs_event(&[body.clone(), body.clone()])).await;
    assert!(resp.batch_item_failures.is_empty());
    let resp = handle_sqs(&env.deps, FLOW, sqs_event(&[body])).await;
    assert!(resp.batch_item_failures.is_empty());
    let customers = env.customers("usmf");
    assert_eq!(customers.len(), 1000);
    let matching: Vec<&Value> = customers
        .iter()
        .filter(|c| c["CustomerAccount"] == a["accountnumber"])
        .collect();
    assert_eq!(matching.len(), 1);
    assert_eq!(matching[0]["OrganizationName"], "Renamed Ltd");
    // The links table holds one link per account.
    let ids: Vec<String> = accounts
        .iter()
        .map(|a| a["accountid"].as_str().unwrap().to_string())
        .collect();
    let links = env
        .deps
        .state
        .get_links("account", "usmf", "sales", &ids)
        .await
        .unwrap();
    assert_eq!(links.len(), 1000);
    assert_eq!(
        links[a["accountid"].as_str().unwrap()].target_key,
        a["accountnumber"].as_str().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_storm_and_expired_token_lose_nothing() {
    let env = Env::start(300).await;
    env.sb.inject(Fault {
        service: Service::Fno,
        kind: FaultKind::TooManyRequests { retry_after_secs: 1 },
        times: 3,
        path_contains: Some("$batch".into()),
    });
    env.sb.inject(Fault {
        service: Service::Sales,
        kind: FaultKind::TooManyRequests { retry_after_secs: 1 },
        times: 2,
        path_contains: None,
    });
    env.sb.inject(Fault {
        service: Service::Fno,
        kind: FaultKind::ServerError,
        times: 2,
        path_contains: None,
    });
    let r = env.run(FLOW).await;
    assert_eq!((r.written, r.failed), (300, 0), "{:?}", r.errors);
    assert!(r.dynamics_requests.throttled >= 5, "{:?}", r.dynamics_requests);

    // Tokens the client still believes valid are refused: it fetches new ones and carries on.
    for a in env.sb.sales_rows("accounts").iter().take(20) {
        env.sb.sales_update(
            "accounts",
            a["accountid"].as_str().unwrap(),
            json!({"fax": "+1 555 0199"}),
        );
    }
    env.sb.expire_all_tokens();
    let before = env.sb.requests().get("token POST").copied().unwrap_or(0);
    let r = env.run(FLOW).await;
    assert_eq!((r.written, r.failed), (20, 0), "{:?}", r.errors);
    assert!(
        env.sb.requests().get("token POST").copied().unwrap_or(0) >= before + 2,
        "a new token per service"
    );
    let customers = env.customers("usmf");
    assert_eq!(customers.len(), 300);
    assert_eq!(
        customers
            .iter()
            .filter(|c| c["PrimaryContactFax"] == "+1 555 0199")
            .count(),
        20
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_message_fails_alone_and_an_account_without_number_is_not_synced() {
    let env = Env::start(50).await;
    let bu = env.sb.business_unit_id("usmf").unwrap();
    let orphan = env.sb.sales_insert(
        "accounts",
        json!({"name": "No Number Inc", "_owningbusinessunit_value": bu, "address1_city": "Oslo"}),
    );
    // The Data Integrator's rule: an account without a number is "not synced" — counted, not a failure.
    let r = env.run(FLOW).await;
    assert_eq!(
        (r.read, r.written, r.skipped, r.failed),
        (51, 50, 1, 0),
        "{:?}",
        r.errors
    );
    assert_eq!(r.skipped_by_reason.get(&Skip::NoNumber), Some(&1));
    assert_eq!(env.customers("usmf").len(), 50);
    assert!(
        !env.customers("usmf")
            .iter()
            .any(|c| c["OrganizationName"] == "No Number Inc")
    );
    let (queued, dead) = env.queued(FLOW).await;
    assert!(
        queued.is_empty() && dead.is_empty(),
        "nothing fills the DLQ: {queued:?} {dead:?}"
    );
    // Visible in the run history `p2c status` prints.
    let runs = env.deps.state.recent_runs(FLOW.as_str(), "usmf", 1).await.unwrap();
    assert_eq!(runs[0].skipped_by_reason.get(Skip::NoNumber.as_str()), Some(&1));
    // Given a number, it syncs.
    env.sb
        .sales_update("accounts", &orphan, json!({"accountnumber": "ACC-LATE-NUMBER"}));
    let r = env.run(FLOW).await;
    assert_eq!(r.written, 1);
    assert!(
        env.customers("usmf")
            .iter()
            .any(|c| c["CustomerAccount"] == "ACC-LATE-NUMBER")
    );
    // The same for an active customer contact without a contact number.
    env.sb.sales_insert(
        "contacts",
        json!({"lastname": "Nameless", "msdynce_isactivecustomer": true, "_owningbusinessunit_value": bu}),
    );
    let before = env.customers("usmf").len();
    let r = env.run(FlowName::ContactsToFno).await;
    assert_eq!(
        (r.failed, r.skipped_by_reason.get(&Skip::NoNumber)),
        (0, Some(&1)),
        "{r:?}"
    );
    assert_eq!(
        env.customers("usmf").len(),
        before + 2,
        "the two demo customer contacts, not the nameless one"
    );

    // An SQS batch: garbage, a wrong version, a wrong flow, and one good message. Only the bad ones fail.
    let accounts = env.sb.sales_rows("accounts");
    let good = accounts.iter().find(|a| a["accountnumber"].is_string()).unwrap();
    env.sb.sales_update(
        "accounts",
        good["accountid"].as_str().unwrap(),
        json!({"name": "Good Message Co"}),
    );
    let good_body = Message::new(
        FLOW.as_str(),
        "usmf",
        vec![good["accountid"].as_str().unwrap().into()],
        Reason::Change,
    )
    .to_body();
    let bodies = vec![
        "{not json".to_string(),
        r#"{"v":9,"flow":"accounts-to-fno","company":"usmf","keys":["x"],"reason":"change"}"#.to_string(),
        r#"{"v":1,"flow":"orders-to-sales","company":"usmf","keys":["x"],"reason":"change"}"#.to_string(),
        good_body,
    ];
    let out = handle_event(&env.deps, FLOW, serde_json::to_value(sqs_event(&bodies)).unwrap())
        .await
        .unwrap();
    let failed: Vec<&str> = out["batchItemFailures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap())
        .collect();
    assert_eq!(failed, vec!["m0", "m1", "m2"]);
    let c = env
        .customers("usmf")
        .into_iter()
        .find(|c| c["CustomerAccount"] == good["accountnumber"])
        .unwrap();
    assert_eq!(c["OrganizationName"], "Good Message Co");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_scheduled_runs_write_each_record_once() {
    let cfg = SandboxConfig {
        latency: Duration::from_millis(30),
        ..Default::default()
    };
    let env = Env::start_with(cfg, 400, |_| {}).await;
    let other = env.another_instance().await;
    let event = json!({"flow": "accounts-to-fno", "company": "usmf"});
    let (a, b) = tokio::join!(handle_event(&env.deps, FLOW, event.clone()), async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        handle_event(&other, FLOW, event.clone()).await
    });
    let (a, b) = (a.unwrap(), b.unwrap());
    let runs: Vec<&Value> = [&a, &b].iter().map(|v| &v["runs"][0]).collect();
    let held: Vec<&&Value> = runs.iter().filter(|r| r.get("lease_held_by").is_some()).collect();
    assert_eq!(held.len(), 1, "exactly one run found the lease taken: {runs:?}");
    let written: u64 = runs.iter().map(|r| r["written"].as_u64().unwrap()).sum();
    assert_eq!(written, 400);
    assert_eq!(env.customers("usmf").len(), 400);
    let posts: u64 = env
        .sb
        .requests()
        .iter()
        .filter(|(k, _)| k.as_str() == "fno POST $batch")
        .map(|(_, v)| *v)
        .sum();
    assert!(posts >= 1);
    // And a third run afterwards finds nothing left to do.
    let r = env.run(FLOW).await;
    assert_eq!(r.written, 0);
}

/// P2C_MAPPING of this test: account category 2 names customer group 90, which F&O does not have, so F&O itself
/// refuses those customers (HTTP 500, AxODataWriteException), as it refuses a duplicate.
const GROUP_90: &str = r#"
[[accounts-to-fno.fields]]
source = "accountcategorycode"
target = "CustomerGroupId"
transform = "value_map"
map = { "" = "10", "1" = "20", "2" = "90" }
replace = true
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn already_exists_is_confirmed_by_a_read_in_any_language_and_a_refusal_is_never_an_update() {
    let mapping = std::env::temp_dir().join(format!("p2c-exists-{}.toml", std::process::id()));
    std::fs::write(&mapping, GROUP_90).unwrap();
    // F&O's API user works in German: "Der Datensatz ist bereits vorhanden", not "already exists".
    let cfg = SandboxConfig {
        fno_language: "de".into(),
        ..Default::default()
    };
    let env = Env::start_with(cfg, 3, |c| c.mapping = Some(mapping.clone())).await;
    let accounts = env.sb.sales_rows("accounts");
    let (known, refused) = (&accounts[0], &accounts[1]);
    let number = |a: &Value| a["accountnumber"].as_str().unwrap().to_string();
    // Already in F&O (entered there before p2c ran): no link, so p2c creates and F&O refuses, in German.
    env.sb.fno_insert(
        "CustomersV2",
        json!({"dataAreaId": "usmf", "CustomerAccount": number(known), "OrganizationName": "Old Name Ltd",
               "CustomerGroupId": "10", "SalesCurrencyCode": "USD", "PartyType": "Organization"}),
    );
    env.sb.sales_update(
        "accounts",
        refused["accountid"].as_str().unwrap(),
        json!({"accountcategorycode": 2}),
    );

    let r = env.run(FLOW).await;
    let rows = |n: &str| -> Vec<Value> {
        env.customers("usmf")
            .into_iter()
            .filter(|c| c["CustomerAccount"] == n)
            .collect()
    };
    // The customer F&O held is updated to Sales' values: a read by key confirmed "exists".
    let k = rows(&number(known));
    assert_eq!(k.len(), 1);
    assert_eq!(k[0]["OrganizationName"], known["name"]);
    // The refusal stands: no customer, a permanent failure with F&O's reason, not an update of anything.
    assert!(rows(&number(refused)).is_empty());
    assert_eq!((r.written, r.failed, r.dead_lettered), (2, 1, 1), "{:?}", r.errors);
    assert_eq!(r.errors[0].key, number(refused));
    assert!(r.errors[0].reason.contains("90"), "{}", r.errors[0].reason);
    assert_eq!(env.customers("usmf").len(), 2);
    let _ = std::fs::remove_file(&mapping);
}

/// The F&O customer of a Sales account, as F&O holds it now.
fn customer_of(env: &Env, account: &Value) -> Value {
    env.customers("usmf")
        .into_iter()
        .find(|c| c["CustomerAccount"] == account["accountnumber"])
        .expect("the customer is in F&O")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_and_deactivated_accounts_are_reported_and_marked_and_held_only_when_asked() {
    for hold in [false, true] {
        let env = Env::start_with(SandboxConfig::default(), 3, |c| {
            if hold {
                c.deactivate_targets = vec![FLOW];
            }
        })
        .await;
        env.run(FLOW).await;
        let accounts = env.sb.sales_rows("accounts");
        let (deleted, inactive) = (&accounts[0], &accounts[1]);
        let id = |a: &Value| a["accountid"].as_str().unwrap().to_string();
        env.sb.sales_delete("accounts", &id(deleted));
        env.sb
            .sales_update("accounts", &id(inactive), json!({"statecode": 1, "statuscode": 2}));

        let r = env.run(FLOW).await;
        assert_eq!((r.read, r.failed), (2, 0), "{r:?}");
        let links = env
            .deps
            .state
            .get_links("account", "usmf", "sales", &[id(deleted), id(inactive)])
            .await
            .unwrap();
        assert_eq!(links[&id(deleted)].source_version.as_deref(), Some("gone:deleted"));
        assert_eq!(links[&id(inactive)].source_version.as_deref(), Some("gone:inactive"));
        let held = if hold { json!("All") } else { json!(null) };
        for a in [deleted, inactive] {
            let c = customer_of(&env, a);
            assert_eq!(
                c["OnHoldStatus"].as_str().filter(|s| *s != "No"),
                held.as_str(),
                "hold={hold}: {c}"
            );
        }
        if hold {
            assert_eq!(r.written, 2, "{r:?}");
        } else {
            assert_eq!(
                (
                    r.skipped_by_reason.get(&Skip::DeletedInSales),
                    r.skipped_by_reason.get(&Skip::Inactive)
                ),
                (Some(&1), Some(&1))
            );
        }
        // Reported once: the next run is quiet.
        let r = env.run(FLOW).await;
        assert_eq!(r.written, 0, "{r:?}");

        // Active again (and renamed): the customer follows, and comes off hold.
        env.sb.sales_update(
            "accounts",
            &id(inactive),
            json!({"statecode": 0, "statuscode": 1, "name": "Back Again Ltd"}),
        );
        let r = env.run(FLOW).await;
        assert_eq!(r.written, 1, "{r:?}");
        let c = customer_of(&env, inactive);
        assert_eq!(c["OrganizationName"], "Back Again Ltd");
        assert_ne!(c["OnHoldStatus"], "All", "{c}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_contacts_are_reported_and_marked_and_their_customers_held_when_asked() {
    for hold in [false, true] {
        let env = Env::start_with(SandboxConfig::default(), 3, |c| {
            if hold {
                c.deactivate_targets = vec![FlowName::ContactsToFno];
            }
        })
        .await;
        env.run(FLOW).await;
        env.run(FlowName::ContactsToFno).await;
        let contacts = env.sb.sales_rows("contacts");
        let customer = contacts.iter().find(|c| c["msdynce_isactivecustomer"] == true).unwrap();
        let person = contacts
            .iter()
            .find(|c| c["msdynce_isactivecustomer"] != true && c["_parentcustomerid_value"].is_string())
            .unwrap();
        let id = |c: &Value| c["contactid"].as_str().unwrap().to_ascii_lowercase();
        env.sb.sales_delete("contacts", &id(customer));
        env.sb.sales_delete("contacts", &id(person));
        let persons_before = env.sb.fno_rows("CDSContactPersons").len();

        let r = env.run(FlowName::ContactsToFno).await;
        assert_eq!((r.read, r.failed), (2, 0), "{r:?}");
        let as_customer = env
            .deps
            .state
            .get_links("contact", "usmf", "sales", &[id(customer)])
            .await
            .unwrap();
        let as_person = env
            .deps
            .state
            .get_links("contactperson", "usmf", "sales", &[id(person)])
            .await
            .unwrap();
        assert_eq!(
            as_customer[&id(customer)].source_version.as_deref(),
            Some("gone:deleted")
        );
        assert_eq!(as_person[&id(person)].source_version.as_deref(), Some("gone:deleted"));
        let c = env
            .customers("usmf")
            .into_iter()
            .find(|c| c["CustomerAccount"] == customer["msdynce_contactnumber"])
            .unwrap();
        assert_eq!(c["OnHoldStatus"] == "All", hold, "hold={hold}: {}", c["OnHoldStatus"]);
        assert_eq!(
            env.sb.fno_rows("CDSContactPersons").len(),
            persons_before,
            "F&O parties are never deleted"
        );
        let r = env.run(FlowName::ContactsToFno).await;
        assert_eq!(r.written, 0, "reported once: {r:?}");
    }
}

/// The F&O customer of `number` in usmf.
fn customer(env: &Env, number: &str) -> Value {
    env.customers("usmf")
        .into_iter()
        .find(|c| c["CustomerAccount"] == number)
        .unwrap_or_else(|| panic!("F&O customer {number}"))
}

/// A synced account holding a fax and a number of employees: (accountid, accountnumber).
async fn account_with_fax_and_staff(env: &Env) -> (String, String) {
    let a = env.sb.sales_rows("accounts")[0].clone();
    let (id, number) = (
        a["accountid"].as_str().unwrap().to_string(),
        a["accountnumber"].as_str().unwrap().to_string(),
    );
    env.sb.sales_update(
        "accounts",
        &id,
        json!({"fax": "+1 425 555 0199", "numberofemployees": 120}),
    );
    let r = env.run(FLOW).await;
    assert_eq!(r.failed, 0, "{:?}", r.errors);
    let c = customer(env, &number);
    assert_eq!(
        (&c["PrimaryContactFax"], &c["OrganizationNumberOfEmployees"]),
        (&json!("+1 425 555 0199"), &json!(120))
    );
    (id, number)
}

/// Issue 12: a fax and a number of employees cleared in Sales are cleared in F&O (text "" and 0: neither is
/// nullable in F&O), in one PATCH; the next run that reads the account finds it unchanged and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleared_fax_and_employees_clear_the_customer_once_then_it_is_unchanged() {
    let env = Env::start(3).await;
    let (id, number) = account_with_fax_and_staff(&env).await;
    let name = customer(&env, &number)["OrganizationName"].clone();

    env.sb
        .sales_update("accounts", &id, json!({"fax": null, "numberofemployees": null}));
    env.sb.reset_counters();
    let r = env.run(FLOW).await;
    assert_eq!((r.read, r.written, r.updated, r.failed), (1, 1, 1, 0), "{r:?}");
    let c = customer(&env, &number);
    assert_eq!(c["PrimaryContactFax"], "", "F&O text has no null: cleared to \"\"");
    assert_eq!(
        c["OrganizationNumberOfEmployees"], 0,
        "a non-nullable Int32 clears to 0"
    );
    assert_eq!(c["OrganizationName"], name, "nothing else changed");
    assert_eq!(
        env.sb.requests().get("fno POST $batch"),
        Some(&1),
        "{:?}",
        env.sb.requests()
    );

    // A change to a column the template does not map: the account is read, its mapped content (clears included)
    // hashes as last written, so it is skipped and F&O gets nothing.
    env.sb.sales_update("accounts", &id, json!({"revenue": 5}));
    env.sb.reset_counters();
    let r = env.run(FLOW).await;
    assert_eq!((r.read, r.written, r.skipped), (1, 0, 1), "{r:?}");
    assert_eq!(r.skipped_by_reason.get(&Skip::Unchanged), Some(&1));
    assert_eq!(env.sb.total_requests("fno"), 0, "{:?}", env.sb.requests());
    let c = customer(&env, &number);
    assert_eq!(
        (&c["PrimaryContactFax"], &c["OrganizationNumberOfEmployees"]),
        (&json!(""), &json!(0))
    );
}

/// A row marked `keep_when_blank` in P2C_MAPPING keeps F&O's value when the source is cleared; the other
/// cleared field is still cleared, and reconcile does not count the kept value as drift.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_kept_when_blank_keeps_the_fno_value() {
    let dir = std::env::temp_dir().join(format!("p2c-e2e-keep-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("mapping.toml");
    std::fs::write(&path, "[accounts-to-fno]\nkeep_when_blank = [\"PrimaryContactFax\"]\n").unwrap();
    let env = Env::start_with(SandboxConfig::default(), 3, |cfg| cfg.mapping = Some(path.clone())).await;
    let (id, number) = account_with_fax_and_staff(&env).await;

    env.sb
        .sales_update("accounts", &id, json!({"fax": null, "numberofemployees": null}));
    let r = env.run(FLOW).await;
    assert_eq!((r.read, r.written, r.failed), (1, 1, 0), "{r:?}");
    let c = customer(&env, &number);
    assert_eq!(
        c["PrimaryContactFax"], "+1 425 555 0199",
        "kept: the row opts out of clears"
    );
    assert_eq!(c["OrganizationNumberOfEmployees"], 0, "cleared as usual");

    let rec = p2c_sync::ops::reconcile::reconcile(&env.deps, FLOW, "usmf", false)
        .await
        .unwrap();
    assert!(rec.mismatches.is_empty(), "{:?}", rec.mismatches);
    std::fs::remove_dir_all(&dir).ok();
}

/// Whether F&O honours `Prefer: odata.continue-on-error` is undocumented; under either behaviour a refused
/// customer in the middle of a `$batch` loses none of its neighbours: those F&O did not run come back as
/// transient failures, are retried, and land. The change read returns rows in the order they changed, so the
/// refused record is the first of its `$batch` (a full read's order is the service's, not ours to assume).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_record_mid_batch_loses_no_neighbour_whether_or_not_fno_stops_at_it() {
    for stops in [false, true] {
        let mapping = std::env::temp_dir().join(format!("p2c-stops-{}-{stops}.toml", std::process::id()));
        std::fs::write(&mapping, GROUP_90).unwrap();
        let cfg = SandboxConfig {
            fno_batch_stops_at_first_failure: stops,
            ..Default::default()
        };
        let env = Env::start_with(cfg, 20, |c| c.mapping = Some(mapping.clone())).await;
        let first = env.run(FLOW).await;
        assert_eq!((first.written, first.failed), (20, 0), "{first:?}");
        let mut accounts = env.sb.sales_rows("accounts");
        accounts.sort_by(|a, b| a["accountnumber"].as_str().cmp(&b["accountnumber"].as_str()));
        let refused = &accounts[5];
        env.sb.sales_update(
            "accounts",
            refused["accountid"].as_str().unwrap(),
            json!({"accountcategorycode": 2}),
        );
        // Ten accounts changed after it: they follow it in the change read, so they share its `$batch`.
        let neighbours: Vec<&Value> = accounts.iter().skip(6).take(10).collect();
        for a in &neighbours {
            env.sb.sales_update(
                "accounts",
                a["accountid"].as_str().unwrap(),
                json!({"telephone1": "+1 555 0100"}),
            );
        }
        let r = env.run(FLOW).await;
        if stops {
            assert!(
                r.written < 10 && r.retry_queued > 0,
                "F&O ran nothing after the refusal: {r:?}"
            );
        } else {
            assert_eq!((r.written, r.failed), (10, 1), "{r:?}");
        }
        env.drain(FLOW).await;
        let customers = env.customers("usmf");
        assert_eq!(customers.len(), 20, "stops={stops}: nothing created twice");
        let by_number = |n: &Value| customers.iter().find(|c| &c["CustomerAccount"] == n).unwrap();
        for a in &neighbours {
            assert_eq!(
                by_number(&a["accountnumber"])["PrimaryContactPhone"],
                "+1 555 0100",
                "stops={stops}: every neighbour's change lands"
            );
        }
        assert_ne!(by_number(&refused["accountnumber"])["CustomerGroupId"], "90");
        let (queued, dead) = env.queued(FLOW).await;
        assert!(queued.is_empty(), "stops={stops}");
        assert_eq!(dead.len(), 1, "stops={stops}: only the refused one is dead-lettered");
        let _ = std::fs::remove_file(&mapping);
    }
}
