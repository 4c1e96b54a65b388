//! Ownership end to end (spec/templates.md 3 and 4): what p2c creates in Sales is owned by the default team of the
//! company's business unit (an invoice by its order's owner), never by binding `owningbusinessunit`; and a company's
//! Sales records include those of the business units below its own, unless P2C_COMPANIES says `;exact`.

use aws_sdk_dynamodb::types::AttributeValue;
use p2c_e2e::Env;
use p2c_sandbox::SandboxConfig;
use p2c_sync::{FlowName, Skip, config::parse_companies};
use serde_json::{Value, json};

const ORDERS: FlowName = FlowName::OrdersToSales;
const INVOICES: FlowName = FlowName::InvoicesToSales;

fn row(env: &Env, set: &str, col: &str, value: &str) -> Value {
    env.sb
        .sales_rows(set)
        .into_iter()
        .find(|r| r[col] == value)
        .unwrap_or_else(|| panic!("{set} with {col} = {value}"))
}

/// (owner, owning team, owning user, owning business unit) of a Sales row.
fn owner(r: &Value) -> (Value, Value, Value, Value) {
    (
        r["_ownerid_value"].clone(),
        r["_owningteam_value"].clone(),
        r["_owninguser_value"].clone(),
        r["_owningbusinessunit_value"].clone(),
    )
}

fn team_owned(team: &str, unit: &str) -> (Value, Value, Value, Value) {
    (json!(team), json!(team), Value::Null, json!(unit))
}

/// The lines of the document `id` of `set` (`salesorderdetails` by `_salesorderid_value`...).
fn lines(env: &Env, set: &str, header_col: &str, id: &Value) -> Vec<Value> {
    let lines: Vec<Value> = env
        .sb
        .sales_rows(set)
        .into_iter()
        .filter(|l| &l[header_col] == id)
        .collect();
    assert!(!lines.is_empty(), "{set} of {id}");
    lines
}

/// Deletes the link of an F&O order to its Sales order, as if the run that created it had crashed before the
/// commit: the next run must find the order in Sales by its number.
async fn forget_order_link(env: &Env, order: &str) {
    aws_sdk_dynamodb::Client::new(&env.aws)
        .delete_item()
        .table_name(env.deps.state.table())
        .key(
            "pk",
            AttributeValue::S(p2c_state::store::link_pk("salesorder", "usmf", "fno", order)),
        )
        .key("sk", AttributeValue::S("LINK".into()))
        .send()
        .await
        .expect("delete link");
}

/// A business unit `name` below `parent`, as an administrator makes it (its default team comes with it).
fn child_unit(env: &Env, name: &str, parent: &str) -> String {
    env.sb.sales_insert(
        "businessunits",
        json!({"name": name, "_parentbusinessunitid_value": parent}),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_are_owned_by_the_default_team_and_invoices_by_their_orders_owner() {
    let env = Env::start(2).await;
    let usmf = env.sb.business_unit_id("usmf").unwrap();
    let team = env.sb.default_team_id(&usmf).expect("usmf has its default team");
    let customer = env.sb.sales_rows("accounts")[0]["accountnumber"]
        .as_str()
        .unwrap()
        .to_string();
    env.run(FlowName::AccountsToFno).await;
    env.run(FlowName::ProductsToSales).await;
    let kept = env.sb.fno_create_order("usmf", &customer, &[("D0001", 3.0)]);
    let moved = env
        .sb
        .fno_create_order("usmf", &customer, &[("D0001", 1.0), ("D0003", 2.0)]);
    for so in [&kept, &moved] {
        env.sb.fno_confirm_order("usmf", so);
    }
    env.sb.reset_counters();
    let r = env.run(ORDERS).await;
    assert_eq!((r.created, r.failed), (5, 0), "{:?}", r.errors);
    assert_eq!(
        env.sb.requests().get("sales GET teams"),
        Some(&1),
        "the default team is read once"
    );

    // Created by p2c: owned by usmf's default team, in usmf; lines as their order.
    for so in [&kept, &moved] {
        let o = row(&env, "salesorders", "ordernumber", so);
        assert_eq!(owner(&o), team_owned(&team, &usmf), "order {so}");
        for l in lines(&env, "salesorderdetails", "_salesorderid_value", &o["salesorderid"]) {
            assert_eq!(owner(&l), team_owned(&team, &usmf), "a line of {so}");
        }
    }

    // In Sales, one order is assigned to the team of a unit below usmf (and p2c lost its link to it).
    let east = child_unit(&env, "usmf-east", &usmf);
    let east_team = env.sb.default_team_id(&east).unwrap();
    let moved_id = row(&env, "salesorders", "ordernumber", &moved)["salesorderid"].clone();
    env.sb.sales_update(
        "salesorders",
        moved_id.as_str().unwrap(),
        json!({"_ownerid_value": east_team}),
    );
    forget_order_link(&env, &moved).await;

    // F&O invoices both orders: each invoice is owned by its order's owner, its lines as their invoice.
    let invoices = [
        (env.sb.fno_invoice_order("usmf", &kept), team_owned(&team, &usmf)),
        (env.sb.fno_invoice_order("usmf", &moved), team_owned(&east_team, &east)),
    ];
    let r = env.run(ORDERS).await;
    assert_eq!(r.failed, 0, "{:?}", r.errors);
    assert_eq!(
        owner(&row(&env, "salesorders", "ordernumber", &moved)),
        team_owned(&east_team, &east),
        "orders-to-sales finds the order by number in the unit below, updates it and leaves its owner"
    );
    assert_eq!(env.sb.sales_rows("salesorders").len(), 2, "no order created twice");
    let r = env.run(INVOICES).await;
    assert_eq!(
        (r.failed, env.sb.sales_rows("invoices").len()),
        (0, 2),
        "{:?}",
        r.errors
    );
    for (number, expected) in invoices {
        let inv = row(&env, "invoices", "invoicenumber", &number);
        assert_eq!(owner(&inv), expected, "invoice {number}");
        for l in lines(&env, "invoicedetails", "_invoiceid_value", &inv["invoiceid"]) {
            assert_eq!(owner(&l), expected, "a line of {number}");
        }
    }
}

/// usmf's unit with a child and a grandchild, a unit beside it, and one account owned by each.
struct Units {
    usmf: String,
    east: String,
    new_york: String,
    other: String,
}

fn units_with_accounts(env: &Env) -> Units {
    let usmf = env.sb.business_unit_id("usmf").unwrap();
    let root = env.sb.business_unit_id("contoso").unwrap();
    let east = child_unit(env, "usmf-east", &usmf);
    let new_york = child_unit(env, "usmf-east-ny", &east);
    let other = child_unit(env, "retail", &root);
    for (unit, number) in [
        (&usmf, "ACC-USMF"),
        (&east, "ACC-EAST"),
        (&new_york, "ACC-NY"),
        (&other, "ACC-RETAIL"),
    ] {
        env.sb.sales_insert(
            "accounts",
            json!({"name": format!("{number} Inc."), "accountnumber": number, "_owningbusinessunit_value": unit}),
        );
    }
    Units {
        usmf,
        east,
        new_york,
        other,
    }
}

fn customer_numbers(env: &Env) -> Vec<String> {
    let mut n: Vec<String> = env
        .customers("usmf")
        .iter()
        .filter_map(|c| c["CustomerAccount"].as_str().map(str::to_string))
        .collect();
    n.sort();
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_of_units_below_the_companys_sync_to_fno() {
    let env = Env::start(0).await;
    let u = units_with_accounts(&env);
    let east_account = row(&env, "accounts", "accountnumber", "ACC-EAST");
    assert_eq!(east_account["_owningbusinessunit_value"], json!(u.east));
    assert_ne!(u.usmf, u.new_york);
    // The unit's id by name is read once per process (an earlier invocation did); count the rest.
    env.deps.business_unit_id("usmf").await.unwrap();
    env.sb.reset_counters();

    let r = env.run(FlowName::AccountsToFno).await;
    assert_eq!((r.written, r.failed), (3, 0), "{:?}", r.errors);
    assert_eq!(r.skipped_by_reason.get(&Skip::OtherBusinessUnit), Some(&1), "{r:?}");
    assert_eq!(customer_numbers(&env), ["ACC-EAST", "ACC-NY", "ACC-USMF"]);
    assert_eq!(
        env.sb.requests().get("sales GET businessunits"),
        Some(&1),
        "the hierarchy is read once per run"
    );

    // A run with nothing to check does not read the hierarchy.
    env.sb.reset_counters();
    let r = env.run(FlowName::AccountsToFno).await;
    assert_eq!(r.read, 0, "{r:?}");
    assert_eq!(env.sb.requests().get("sales GET businessunits"), None);
    assert!(
        !customer_numbers(&env).contains(&"ACC-RETAIL".to_string()),
        "{}",
        u.other
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_exact_only_the_companys_own_unit_syncs() {
    let env = Env::start_with(SandboxConfig::default(), 0, |cfg| {
        cfg.companies = parse_companies("usmf=usmf;exact").expect("P2C_COMPANIES");
    })
    .await;
    let _ = units_with_accounts(&env);
    env.deps.business_unit_id("usmf").await.unwrap();
    env.sb.reset_counters();

    let r = env.run(FlowName::AccountsToFno).await;
    assert_eq!((r.written, r.failed), (1, 0), "{:?}", r.errors);
    assert_eq!(r.skipped_by_reason.get(&Skip::OtherBusinessUnit), Some(&3), "{r:?}");
    assert_eq!(customer_numbers(&env), ["ACC-USMF"]);
    assert_eq!(
        env.sb.requests().get("sales GET businessunits"),
        None,
        "no hierarchy to read"
    );
}
