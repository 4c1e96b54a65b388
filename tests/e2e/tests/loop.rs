//! No loop between the two order flows: one change crosses once each way, then both directions fall silent.

use p2c_e2e::Env;
use p2c_e2e::expect::{assert_document_to_sales, fno_find, num};
use p2c_sync::{FlowName, RunReport, Skip};
use serde_json::json;

/// Requests to a service that change something (anything but GET).
fn writes(env: &Env, service: &str) -> u64 {
    let prefix = format!("{service} ");
    env.sb
        .requests()
        .iter()
        .filter(|(k, _)| k.starts_with(&prefix) && !k.starts_with(&format!("{service} GET")))
        .map(|(_, v)| v)
        .sum()
}

/// One run and the non-GET requests it made to the service it writes.
async fn run(env: &Env, flow: FlowName, target: &str) -> (RunReport, u64) {
    let before = writes(env, target);
    let r = env.run(flow).await;
    assert_eq!(r.failed, 0, "{flow}: {:?}", r.errors);
    (r.clone(), writes(env, target) - before)
}

/// A confirmed order synced both ways (the story up to orders-to-sales, and orders-to-fno has seen that write
/// come back). Then ONE change: F&O, which owns the confirmed order, raises the quantity of a line and its totals
/// batch recalculates the line and the order. orders-to-fno and orders-to-sales then run alternately, five times
/// each. The change crosses once each way: orders-to-sales writes it to Sales; Sales change tracking hands that
/// write (and Sales' recalculation of the order) to orders-to-fno, which reads it and writes nothing. From then
/// on neither direction reads or writes anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_change_crosses_once_each_way_then_both_directions_are_quiet() {
    let env = Env::start(2).await;
    for f in [FlowName::ProductsToSales, FlowName::AccountsToFno] {
        assert_eq!(env.run(f).await.failed, 0);
    }
    let story = env.sb.seed_story();
    // The Sales order as Sales made it: what a row kept when blank would leave alone (every other row follows F&O,
    // a blank in F&O clearing Sales' value).
    let mut as_made = vec![env.sb.sales_get("salesorders", &story.order_id).unwrap()];
    as_made.extend(
        env.sb
            .sales_rows("salesorderdetails")
            .into_iter()
            .filter(|l| l["_salesorderid_value"] == story.order_id.as_str()),
    );
    let r = env.run(FlowName::OrdersToFno).await;
    assert_eq!((r.written, r.failed), (1, 0), "{r:?}");
    env.sb.fno_confirm_order("usmf", &story.order_number);
    let r = env.run(FlowName::OrdersToSales).await;
    assert_eq!((r.written, r.failed), (3, 0), "{r:?}");
    let r = env.run(FlowName::OrdersToFno).await;
    assert_eq!(
        (r.written, r.failed),
        (0, 0),
        "the write-back comes back and stops: {r:?}"
    );

    // The one change, in F&O: line 1 (D0004) from 2 to 3, then "Calculate sales totals".
    let key = [
        ("dataAreaId", "usmf"),
        ("SalesOrderNumber", story.order_number.as_str()),
        ("LineCreationSequenceNumber", "1"),
    ];
    assert_eq!(
        env.sb.fno_get("CDSSalesOrderLines", &key).unwrap()["ProductNumber"],
        "D0004"
    );
    env.sb
        .fno_update("CDSSalesOrderLines", &key, json!({"OrderedSalesQuantity": 3}));
    env.sb.fno_confirm_order("usmf", &story.order_number);

    println!("round  orders-to-fno: read written F&O-writes   orders-to-sales: read written Sales-writes");
    let mut rounds = Vec::new();
    for round in 1..=5 {
        let (to_fno, fno_writes) = run(&env, FlowName::OrdersToFno, "fno").await;
        let (to_sales, sales_writes) = run(&env, FlowName::OrdersToSales, "sales").await;
        println!(
            "{round:>5}  {:>20} {:>7} {:>10}   {:>22} {:>7} {:>12}",
            to_fno.read, to_fno.written, fno_writes, to_sales.read, to_sales.written, sales_writes
        );
        rounds.push((to_fno, fno_writes, to_sales, sales_writes));
    }
    // Round 1: nothing changed in Sales yet; F&O's change goes to Sales: the line (the header's mapped fields
    // are all calculated by Sales or unchanged, so it is an echo), in one $batch.
    let (to_fno, fno_writes, to_sales, sales_writes) = &rounds[0];
    assert_eq!((to_fno.read, to_fno.written, *fno_writes), (0, 0, 0), "{to_fno:?}");
    assert_eq!(
        (to_sales.written, to_sales.updated, *sales_writes),
        (1, 1, 1),
        "{to_sales:?}"
    );
    assert_eq!(
        to_sales.skipped_by_reason.get(&Skip::Echo),
        Some(&1),
        "the header: {to_sales:?}"
    );
    // Round 2: the Sales write comes back to orders-to-fno and stops there (F&O owns the confirmed order).
    let (to_fno, fno_writes, to_sales, sales_writes) = &rounds[1];
    assert!(to_fno.read >= 1, "the change reaches orders-to-fno: {to_fno:?}");
    assert_eq!((to_fno.written, *fno_writes), (0, 0), "{to_fno:?}");
    assert_eq!(
        to_fno.skipped_by_reason.get(&Skip::Filtered),
        Some(&to_fno.read),
        "Confirmed in F&O: {to_fno:?}"
    );
    assert_eq!((to_sales.written, *sales_writes), (0, 0), "{to_sales:?}");
    // Rounds 3 to 5: silence, both ways.
    for (i, (to_fno, fno_writes, to_sales, sales_writes)) in rounds.iter().enumerate().skip(2) {
        assert_eq!(
            (to_fno.read, to_fno.written, *fno_writes),
            (0, 0, 0),
            "round {}: {to_fno:?}",
            i + 1
        );
        assert_eq!(
            (to_sales.written, *sales_writes),
            (0, 0),
            "round {}: {to_sales:?}",
            i + 1
        );
        assert_eq!(to_sales.skipped_by_reason.get(&Skip::Unchanged), Some(&to_sales.read));
    }
    let total_fno: u64 = rounds.iter().map(|r| r.0.written).sum();
    let total_sales: u64 = rounds.iter().map(|r| r.2.written).sum();
    println!("writes in five rounds: to F&O {total_fno}, to Sales {total_sales}");

    // Both sides agree: Sales holds F&O's order, quantity and totals included.
    let (_, order) = assert_document_to_sales(&env, FlowName::OrdersToSales, &story.order_number, &as_made).await;
    let fno_order = fno_find(
        &env.sb,
        "CDSSalesOrderHeaders",
        &[("SalesOrderNumber", json!(story.order_number))],
    )
    .unwrap();
    assert_eq!(num(&order["totalamount"]), num(&fno_order["OrderTotalAmount"]));
    let line = env
        .sb
        .sales_rows("salesorderdetails")
        .into_iter()
        .find(|l| l["_salesorderid_value"] == story.order_id.as_str() && l["sequencenumber"] == 1)
        .unwrap();
    assert_eq!(num(&line["quantity"]), 3.0);
}
