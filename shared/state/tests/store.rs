//! StateStore against a real DynamoDB API (moto_server).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue as AV, BillingMode, KeyType, TimeToLiveStatus};
use p2c_state::{Digest, Link, RunRecord, StateError, StateStore};

#[tokio::test]
async fn ensure_table_creates_the_documented_table_and_is_idempotent() {
    let (_aws, store, client) = common::store().await;
    // A second (and third, cloned) call must succeed and leave the table as it is.
    store.ensure_table().await.expect("second ensure_table");
    store.clone().ensure_table().await.expect("third ensure_table");

    let desc = client.describe_table().table_name(store.table()).send().await.unwrap();
    let table = desc.table().unwrap();
    let keys: Vec<(String, KeyType)> = table
        .key_schema()
        .iter()
        .map(|k| (k.attribute_name().to_owned(), k.key_type().clone()))
        .collect();
    assert_eq!(
        keys,
        vec![("pk".to_owned(), KeyType::Hash), ("sk".to_owned(), KeyType::Range)]
    );
    assert_eq!(
        table.billing_mode_summary().and_then(|b| b.billing_mode()),
        Some(&BillingMode::PayPerRequest)
    );
    let ttl = client
        .describe_time_to_live()
        .table_name(store.table())
        .send()
        .await
        .unwrap();
    let ttl = ttl.time_to_live_description().unwrap();
    assert_eq!(ttl.time_to_live_status(), Some(&TimeToLiveStatus::Enabled));
    assert_eq!(ttl.attribute_name(), Some("ttl"));

    let tables = client.list_tables().send().await.unwrap();
    assert_eq!(tables.table_names().iter().filter(|t| *t == store.table()).count(), 1);
}

#[tokio::test]
async fn missing_table_is_reported_as_such() {
    let (_aws, store, client) = common::store().await;
    let other = StateStore::new(client, "p2c-no-such-table");
    let err = other.watermark("accounts-to-fno", "usmf").await.unwrap_err();
    assert!(
        matches!(err, StateError::TableMissing { ref table, .. } if table == "p2c-no-such-table"),
        "{err:?}"
    );
    assert!(err.to_string().contains("p2c init"), "{err}");
    assert!(!err.is_transient());
    drop(store);
}

#[tokio::test]
async fn watermark_uses_optimistic_versions() {
    let (_aws, store, client) = common::store().await;
    let (flow, co) = ("accounts-to-fno", "usmf");
    assert_eq!(store.watermark(flow, co).await.unwrap(), None);

    let w1 = store.put_watermark(flow, co, "delta-1", None).await.unwrap();
    assert_eq!((w1.value.as_str(), w1.version), ("delta-1", 1));
    assert_eq!(store.watermark(flow, co).await.unwrap(), Some(w1.clone()));

    // "Absent" expected but present → conflict.
    let err = store.put_watermark(flow, co, "delta-x", None).await.unwrap_err();
    assert!(err.is_conflict() && !err.is_transient(), "{err:?}");
    assert!(err.to_string().contains("WM#accounts-to-fno#usmf"), "{err}");

    let w2 = store.put_watermark(flow, co, "delta-2", Some(1)).await.unwrap();
    assert_eq!((w2.value.as_str(), w2.version), ("delta-2", 2));

    // A stale writer (still believing version 1) loses and changes nothing.
    let err = store.put_watermark(flow, co, "stale", Some(1)).await.unwrap_err();
    match &err {
        StateError::Conflict {
            what,
            key,
            expected,
            found,
        } => {
            assert_eq!(*what, "watermark");
            assert_eq!(key, "WM#accounts-to-fno#usmf");
            assert_eq!(expected, "version 1");
            assert!(found.contains('2'), "found should name the current version: {found}");
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(store.watermark(flow, co).await.unwrap(), Some(w2.clone()));

    // Other companies and flows are separate items.
    assert_eq!(store.watermark(flow, "demf").await.unwrap(), None);
    assert_eq!(store.watermark("contacts-to-fno", co).await.unwrap(), None);

    // The stored item has the documented layout.
    let item = client
        .get_item()
        .table_name(store.table())
        .key("pk", AV::S("WM#accounts-to-fno#usmf".into()))
        .key("sk", AV::S("WM".into()))
        .send()
        .await
        .unwrap()
        .item
        .expect("watermark item");
    assert_eq!(item.get("value"), Some(&AV::S("delta-2".into())));
    assert_eq!(item.get("version"), Some(&AV::N("2".into())));

    // Full resync: the watermark goes away and the next first write starts at version 1 again.
    store.delete_watermark(flow, co).await.unwrap();
    assert_eq!(store.watermark(flow, co).await.unwrap(), None);
    assert_eq!(store.put_watermark(flow, co, "fresh", None).await.unwrap().version, 1);

    // Key parts may not contain the separator.
    let err = store.watermark("a#b", co).await.unwrap_err();
    assert!(matches!(err, StateError::Invalid { .. }), "{err:?}");
}

fn link(i: usize) -> Link {
    Link {
        entity: "account".into(),
        company: "usmf".into(),
        system: "sales".into(),
        source_key: format!("00000000-0000-0000-0000-{i:012}"),
        target_key: format!("US-{i:04}"),
        source_version: i.is_multiple_of(2).then(|| format!("{}", 1000 + i)),
        source_hash: (!i.is_multiple_of(3)).then(|| format!("sh{i}")),
        target_hash: (!i.is_multiple_of(5)).then(|| format!("th{i}")),
        synced_at: "2026-11-25T21:15:00Z".into(),
        previous: None,
    }
}

#[tokio::test]
async fn links_round_trip_in_batches_and_count_requests() {
    let (_aws, store, _client) = common::store().await;
    let links: Vec<Link> = (0..250).map(link).collect();
    // Same source key on the other side / company must stay separate.
    let mut decoy = link(7);
    decoy.system = "fno".into();
    decoy.target_key = "decoy".into();
    let mut decoy2 = link(8);
    decoy2.company = "demf".into();
    decoy2.target_key = "decoy2".into();

    let before = store.request_count();
    store.put_links(&links, &[]).await.unwrap();
    // New links replace nothing: 250 items = 10 BatchWriteItem calls of 25 (moto never returns unprocessed items).
    assert_eq!(store.request_count() - before, 10);
    // The trail of a new link is the link itself.
    let hist = store
        .history("account", "usmf", "sales", &links[4].source_key, 10)
        .await
        .unwrap();
    assert_eq!(hist, vec![links[4].clone()]);
    store.put_links(&[decoy.clone(), decoy2.clone()], &[]).await.unwrap();

    let mut keys: Vec<String> = links.iter().map(|l| l.source_key.clone()).collect();
    keys.push("not-linked-1".into());
    keys.push("not-linked-2".into());
    keys.push(links[3].source_key.clone()); // duplicates are allowed
    let before = store.request_count();
    let got = store.get_links("account", "usmf", "sales", &keys).await.unwrap();
    // 252 distinct keys → 3 BatchGetItem calls of ≤100.
    assert_eq!(store.request_count() - before, 3);
    let expected: HashMap<String, Link> = links.iter().map(|l| (l.source_key.clone(), l.clone())).collect();
    assert_eq!(got, expected);

    let fno = store
        .get_links("account", "usmf", "fno", &[decoy.source_key.clone()])
        .await
        .unwrap();
    assert_eq!(fno.get(&decoy.source_key), Some(&decoy));
    assert_eq!(fno.len(), 1);

    // A later commit replaces the link; within one call the last duplicate wins.
    let mut changed = links[42].clone();
    changed.target_hash = Some("new-hash".into());
    changed.source_version = None;
    let mut older = links[42].clone();
    older.target_hash = Some("older".into());
    changed.synced_at = "2026-11-25T22:00:00Z".into();
    let before = store.request_count();
    store.put_links(&[older, changed.clone()], &[&got]).await.unwrap();
    assert_eq!(
        store.request_count() - before,
        1,
        "the link and the state it replaced in one call"
    );
    let now = store
        .get_links("account", "usmf", "sales", &[changed.source_key.clone()])
        .await
        .unwrap();
    assert_eq!(now.get(&changed.source_key), Some(&changed));
    // The replaced state went to the history, behind the link as it stands.
    let hist = store
        .history("account", "usmf", "sales", &changed.source_key, 10)
        .await
        .unwrap();
    assert_eq!(hist, vec![changed.clone(), links[42].clone()]);
    // Writing the same link again replaces nothing new: no second history entry.
    store.put_links(&[changed.clone()], &[&now]).await.unwrap();
    let hist = store
        .history("account", "usmf", "sales", &changed.source_key, 10)
        .await
        .unwrap();
    assert_eq!(hist.len(), 2);

    let all = store.scan_links("account", "usmf", Some("sales")).await.unwrap();
    assert_eq!(all.len(), 250);
    assert!(all.iter().all(|l| l.system == "sales" && l.company == "usmf"));
    assert_eq!(store.scan_links("account", "usmf", None).await.unwrap().len(), 251);

    assert!(
        store
            .get_links("account", "usmf", "sales", &[])
            .await
            .unwrap()
            .is_empty()
    );

    // Clones share the counter, so a run can report one figure.
    let clone = store.clone();
    let before = store.request_count();
    clone.watermark("f", "usmf").await.unwrap();
    assert_eq!(store.request_count(), before + 1);
}

#[tokio::test]
async fn concurrent_acquire_has_exactly_one_winner() {
    let (_aws, store, _client) = common::store().await;
    let ttl = Duration::from_secs(60);
    let (a, b) = tokio::join!(
        store.acquire_lease("accounts-to-fno", "usmf", "run-a", ttl),
        store.acquire_lease("accounts-to-fno", "usmf", "run-b", ttl),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a.is_some() != b.is_some(), "exactly one must win: a={a:?} b={b:?}");
    let winner = a.or(b).unwrap();
    let loser_owner = if winner.owner == "run-a" { "run-b" } else { "run-a" };
    assert!(winner.expires_at_epoch >= time::OffsetDateTime::now_utc().unix_timestamp() + 59);

    let holder = store
        .lease_holder("accounts-to-fno", "usmf")
        .await
        .unwrap()
        .expect("held");
    assert_eq!(holder.owner, winner.owner);

    // The loser can neither renew nor release the winner's lease.
    let fake = p2c_state::Lease {
        owner: loser_owner.into(),
        ..winner.clone()
    };
    assert!(!store.renew_lease(&fake, ttl).await.unwrap());
    store.release_lease(&fake).await.unwrap();
    assert_eq!(
        store
            .lease_holder("accounts-to-fno", "usmf")
            .await
            .unwrap()
            .unwrap()
            .owner,
        winner.owner
    );
    assert!(
        store
            .acquire_lease("accounts-to-fno", "usmf", loser_owner, ttl)
            .await
            .unwrap()
            .is_none()
    );

    // Another company is an independent lease.
    assert!(
        store
            .acquire_lease("accounts-to-fno", "demf", loser_owner, ttl)
            .await
            .unwrap()
            .is_some()
    );

    // The holder may re-acquire and renew; after release the lease is free for the other.
    assert!(
        store
            .acquire_lease("accounts-to-fno", "usmf", &winner.owner, ttl)
            .await
            .unwrap()
            .is_some()
    );
    assert!(store.renew_lease(&winner, ttl).await.unwrap());
    store.release_lease(&winner).await.unwrap();
    assert!(store.lease_holder("accounts-to-fno", "usmf").await.unwrap().is_none());
    let next = store
        .acquire_lease("accounts-to-fno", "usmf", loser_owner, ttl)
        .await
        .unwrap();
    assert_eq!(next.map(|l| l.owner), Some(loser_owner.to_owned()));
}

#[tokio::test]
async fn expired_lease_can_be_taken_over() {
    let (_aws, store, _client) = common::store().await;
    let crashed = store
        .acquire_lease("products-to-sales", "usmf", "crashed-run", Duration::from_secs(1))
        .await
        .unwrap()
        .expect("free lease");
    assert!(
        store
            .acquire_lease("products-to-sales", "usmf", "next-run", Duration::from_secs(60))
            .await
            .unwrap()
            .is_none()
    );

    // Expiry is in whole seconds, rounded up: at most ~2 s for a 1 s lease.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while store.lease_holder("products-to-sales", "usmf").await.unwrap().is_some() {
        assert!(std::time::Instant::now() < deadline, "lease did not expire");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(crashed.is_expired());

    let next = store
        .acquire_lease("products-to-sales", "usmf", "next-run", Duration::from_secs(60))
        .await
        .unwrap()
        .expect("expired lease is free");
    assert_eq!(next.owner, "next-run");
    // The crashed holder, coming back, has lost it and cannot remove the new holder's lease.
    assert!(!store.renew_lease(&crashed, Duration::from_secs(60)).await.unwrap());
    store.release_lease(&crashed).await.unwrap();
    assert_eq!(
        store
            .lease_holder("products-to-sales", "usmf")
            .await
            .unwrap()
            .unwrap()
            .owner,
        "next-run"
    );
}

fn run(id: &str, company: &str, started_at: &str, read: u64) -> RunRecord {
    RunRecord {
        run_id: id.into(),
        flow: "accounts-to-fno".into(),
        company: company.into(),
        trigger: "schedule".into(),
        started_at: started_at.into(),
        duration_ms: 1234,
        read,
        written: read / 2,
        skipped: read - read / 2 - 1,
        failed: 1,
        first_errors: vec![format!("account {id}: parent missing")],
        skipped_by_reason: Default::default(),
        interrupted: false,
        request_id: None,
    }
}

#[tokio::test]
async fn runs_come_back_newest_first_and_expired_ones_are_hidden() {
    let (_aws, store, client) = common::store().await;
    // Inserted out of order, with fractional seconds and an offset that plain string order gets wrong.
    let runs = [
        run("r2", "usmf", "2026-11-25T10:00:00Z", 20),
        run("r4", "usmf", "2026-11-25T10:00:00.500Z", 40),
        run("r1", "usmf", "2026-11-25T09:59:59Z", 10),
        run("r5", "usmf", "2026-11-25T11:30:00+01:00", 50), // 10:30 UTC
        run("r3", "usmf", "2026-11-25T10:00:00.250Z", 30),
        run("other", "demf", "2026-11-25T12:00:00Z", 99),
    ];
    for r in &runs {
        store.put_run(r).await.unwrap();
    }
    let mut empty_errors = run("r0", "usmf", "2026-11-24T00:00:00Z", 5);
    empty_errors.first_errors.clear();
    store.put_run(&empty_errors).await.unwrap();

    let top3 = store.recent_runs("accounts-to-fno", "usmf", 3).await.unwrap();
    let ids: Vec<&str> = top3.iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!(ids, ["r5", "r4", "r3"]);
    assert_eq!(top3[0], runs[3]); // every field round-trips

    let all = store.recent_runs("accounts-to-fno", "usmf", 50).await.unwrap();
    let ids: Vec<&str> = all.iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!(ids, ["r5", "r4", "r3", "r2", "r1", "r0"]);
    assert_eq!(all[5], empty_errors);

    // Rewriting a run (same start and id) replaces it instead of adding one.
    let mut final_r5 = runs[3].clone();
    final_r5.written = 49;
    store.put_run(&final_r5).await.unwrap();
    let top = store.recent_runs("accounts-to-fno", "usmf", 1).await.unwrap();
    assert_eq!(top, vec![final_r5]);
    assert_eq!(store.recent_runs("accounts-to-fno", "usmf", 50).await.unwrap().len(), 6);

    // Stored runs carry a TTL ~30 days ahead.
    let q = client
        .query()
        .table_name(store.table())
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AV::S("RUN#accounts-to-fno#demf".into()))
        .send()
        .await
        .unwrap();
    let ttl: i64 = q.items()[0].get("ttl").unwrap().as_n().unwrap().parse().unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!((now + 29 * 86_400..=now + 31 * 86_400).contains(&ttl), "ttl {ttl}");

    // An item past its TTL that DynamoDB has not deleted yet (moto never does) is not returned.
    let mut stale = HashMap::new();
    for (k, v) in q.items()[0].iter() {
        stale.insert(k.clone(), v.clone());
    }
    stale.insert("pk".into(), AV::S("RUN#accounts-to-fno#usmf".into()));
    stale.insert("sk".into(), AV::S("2026-11-25T23:59:59.000Z#expired".into()));
    stale.insert("run_id".into(), AV::S("expired".into()));
    stale.insert("company".into(), AV::S("usmf".into()));
    stale.insert("ttl".into(), AV::N((now - 10).to_string()));
    client
        .put_item()
        .table_name(store.table())
        .set_item(Some(stale))
        .send()
        .await
        .unwrap();
    let top = store.recent_runs("accounts-to-fno", "usmf", 2).await.unwrap();
    let ids: Vec<&str> = top.iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!(ids, ["r5", "r4"]);

    assert!(
        store
            .recent_runs("accounts-to-fno", "usmf", 0)
            .await
            .unwrap()
            .is_empty()
    );
    let err = store.put_run(&run("bad", "usmf", "yesterday", 1)).await.unwrap_err();
    assert!(
        matches!(err, StateError::Invalid { .. }) && err.to_string().contains("RFC 3339"),
        "{err}"
    );
}

/// The raw items every writer produces: attribute names, S vs N, key formats. Data written by earlier releases
/// must stay readable, so this pins the layout independent of how the items are encoded.
#[tokio::test]
async fn stored_items_keep_their_layout() {
    let (_aws, store, client) = common::store().await;
    let s = |v: &str| AV::S(v.into());
    let n = |v: &str| AV::N(v.into());
    let raw = |pk: &str, sk: &str| {
        let (client, table) = (client.clone(), store.table().to_owned());
        let (pk, sk) = (pk.to_owned(), sk.to_owned());
        async move {
            client
                .get_item()
                .table_name(table)
                .key("pk", AV::S(pk.clone()))
                .key("sk", AV::S(sk.clone()))
                .send()
                .await
                .unwrap()
                .item
                .unwrap_or_else(|| panic!("no item {pk} / {sk}"))
        }
    };
    // Attributes holding the current time: only their type is pinned, then they are dropped.
    let take_n = |item: &mut HashMap<String, AV>, name: &str| {
        let v = item.remove(name).unwrap_or_else(|| panic!("no `{name}`"));
        v.as_n()
            .unwrap_or_else(|_| panic!("`{name}` not N: {v:?}"))
            .parse::<i64>()
            .unwrap()
    };
    let take_s = |item: &mut HashMap<String, AV>, name: &str| {
        let v = item.remove(name).unwrap_or_else(|| panic!("no `{name}`"));
        v.as_s().unwrap_or_else(|_| panic!("`{name}` not S: {v:?}")).clone()
    };

    store
        .put_watermark("accounts-to-fno", "usmf", "delta-1", None)
        .await
        .unwrap();
    let mut wm = raw("WM#accounts-to-fno#usmf", "WM").await;
    take_s(&mut wm, "updated_at");
    assert_eq!(
        wm,
        HashMap::from([
            ("pk".into(), s("WM#accounts-to-fno#usmf")),
            ("sk".into(), s("WM")),
            ("flow".into(), s("accounts-to-fno")),
            ("company".into(), s("usmf")),
            ("value".into(), s("delta-1")),
            ("version".into(), n("1")),
        ])
    );

    let full = Link {
        source_key: "k1".into(),
        target_key: "US-1".into(),
        source_version: Some("7".into()),
        source_hash: Some("sh".into()),
        target_hash: Some("th".into()),
        ..link(1)
    };
    let bare = Link {
        source_key: "k2".into(),
        target_key: "US-2".into(),
        source_version: None,
        source_hash: None,
        target_hash: None,
        ..link(2)
    };
    store.put_links(&[full.clone(), bare.clone()], &[]).await.unwrap();
    assert_eq!(
        raw("LINK#account#usmf#sales#k1", "LINK").await,
        HashMap::from([
            ("pk".into(), s("LINK#account#usmf#sales#k1")),
            ("sk".into(), s("LINK")),
            ("target_key".into(), s("US-1")),
            ("source_version".into(), s("7")),
            ("source_hash".into(), s("sh")),
            ("target_hash".into(), s("th")),
            ("synced_at".into(), s("2026-11-25T21:15:00Z")),
        ])
    );
    // Absent optionals are left out, not stored as NULL.
    assert_eq!(
        raw("LINK#account#usmf#sales#k2", "LINK").await,
        HashMap::from([
            ("pk".into(), s("LINK#account#usmf#sales#k2")),
            ("sk".into(), s("LINK")),
            ("target_key".into(), s("US-2")),
            ("synced_at".into(), s("2026-11-25T21:15:00Z")),
        ])
    );
    // Replacing both keeps their old states in the link items: one item, one write unit each.
    let before = store
        .get_links("account", "usmf", "sales", &["k1".into(), "k2".into()])
        .await
        .unwrap();
    let newer = |l: &Link, hash: &str, at: &str| Link {
        target_hash: Some(hash.into()),
        synced_at: at.into(),
        ..l.clone()
    };
    let (full2, bare2) = (
        newer(&full, "th2", "2026-11-26T08:00:00Z"),
        newer(&bare, "th2", "2026-11-26T08:00:00Z"),
    );
    let (_, wru) = store.units();
    store
        .put_links(&[full2.clone(), bare2.clone()], &[&before])
        .await
        .unwrap();
    assert_eq!(store.units().1 - wru, 2, "a changed link is one item of one write unit");
    let mut item = raw("LINK#account#usmf#sales#k1", "LINK").await;
    let Some(AV::M(mut prev)) = item.remove("prev") else {
        panic!("no prev map in {item:?}")
    };
    let until = take_n(&mut prev, "ttl");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(
        (now + 29 * 86_400..=now + 31 * 86_400).contains(&until),
        "until {until}"
    );
    assert_eq!(
        prev,
        HashMap::from([
            ("target_key".into(), s("US-1")),
            ("source_version".into(), s("7")),
            ("source_hash".into(), s("sh")),
            ("target_hash".into(), s("th")),
            ("synced_at".into(), s("2026-11-25T21:15:00Z")),
        ])
    );
    assert_eq!(item.get("target_hash"), Some(&s("th2")));
    let trail = store.history("account", "usmf", "sales", "k2", 10).await.unwrap();
    assert_eq!(trail, vec![bare2.clone(), bare.clone()]);

    // A second change moves the first replaced state to a history item, with the expiry it had.
    let before = store
        .get_links("account", "usmf", "sales", &["k1".into()])
        .await
        .unwrap();
    let full3 = newer(&full, "th3", "2026-11-27T08:00:00Z");
    store.put_links(std::slice::from_ref(&full3), &[&before]).await.unwrap();
    let mut hist = raw("HIST#account#usmf#sales#k1", "2026-11-25T21:15:00Z#th").await;
    assert_eq!(take_n(&mut hist, "ttl"), until);
    assert_eq!(
        hist,
        HashMap::from([
            ("pk".into(), s("HIST#account#usmf#sales#k1")),
            ("sk".into(), s("2026-11-25T21:15:00Z#th")),
            ("target_key".into(), s("US-1")),
            ("source_version".into(), s("7")),
            ("source_hash".into(), s("sh")),
            ("target_hash".into(), s("th")),
            ("synced_at".into(), s("2026-11-25T21:15:00Z")),
        ])
    );
    let trail = store.history("account", "usmf", "sales", "k1", 10).await.unwrap();
    assert_eq!(trail, vec![full3.clone(), full2.clone(), full.clone()]);
    let trail = store.history("account", "usmf", "sales", "k1", 2).await.unwrap();
    assert_eq!(trail, vec![full3.clone(), full2.clone()]);
    // Writing the link unchanged keeps the state it replaced.
    let before = store
        .get_links("account", "usmf", "sales", &["k1".into()])
        .await
        .unwrap();
    store.put_links(std::slice::from_ref(&full3), &[&before]).await.unwrap();
    let trail = store.history("account", "usmf", "sales", "k1", 10).await.unwrap();
    assert_eq!(trail, vec![full3, full2, full]);

    let lease = store
        .acquire_lease("accounts-to-fno", "usmf", "run-1", Duration::from_secs(60))
        .await
        .unwrap()
        .expect("free lease");
    let mut item = raw("LEASE#accounts-to-fno#usmf", "LEASE").await;
    assert_eq!(take_n(&mut item, "expires_at"), lease.expires_at_epoch);
    assert_eq!(take_n(&mut item, "ttl"), lease.expires_at_epoch + 86_400);
    take_s(&mut item, "acquired_at");
    assert_eq!(
        item,
        HashMap::from([
            ("pk".into(), s("LEASE#accounts-to-fno#usmf")),
            ("sk".into(), s("LEASE")),
            ("flow".into(), s("accounts-to-fno")),
            ("company".into(), s("usmf")),
            ("owner".into(), s("run-1")),
        ])
    );

    let mut r = run("r1", "usmf", "2026-11-25T11:30:00.5+01:00", 10);
    r.first_errors.push("second".into());
    store.put_run(&r).await.unwrap();
    let mut item = raw("RUN#accounts-to-fno#usmf", "2026-11-25T10:30:00.500Z#r1").await;
    take_n(&mut item, "ttl");
    assert_eq!(
        item,
        HashMap::from([
            ("pk".into(), s("RUN#accounts-to-fno#usmf")),
            ("sk".into(), s("2026-11-25T10:30:00.500Z#r1")),
            ("run_id".into(), s("r1")),
            ("flow".into(), s("accounts-to-fno")),
            ("company".into(), s("usmf")),
            ("trigger".into(), s("schedule")),
            ("started_at".into(), s("2026-11-25T11:30:00.5+01:00")),
            ("duration_ms".into(), n("1234")),
            ("read".into(), n("10")),
            ("written".into(), n("5")),
            ("skipped".into(), n("4")),
            ("failed".into(), n("1")),
            (
                "first_errors".into(),
                AV::L(vec![s("account r1: parent missing"), s("second")])
            ),
        ])
    );
}

/// Items as earlier releases (or an operator) may have left them still read back: optional attributes absent
/// or NULL, a run without `first_errors`, unknown extra attributes.
#[tokio::test]
async fn sparse_and_extra_attributes_are_read() {
    let (_aws, store, client) = common::store().await;
    let put = |pairs: Vec<(&str, AV)>| {
        let (client, table) = (client.clone(), store.table().to_owned());
        let item: HashMap<String, AV> = pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        async move {
            client
                .put_item()
                .table_name(table)
                .set_item(Some(item))
                .send()
                .await
                .unwrap()
        }
    };
    let s = |v: &str| AV::S(v.into());
    put(vec![
        ("pk", s("LINK#account#usmf#fno#US-9")),
        ("sk", s("LINK")),
        ("target_key", s("guid-9")),
        ("source_version", AV::Null(true)),
        ("source_hash", s("sh")),
        ("synced_at", s("2026-11-25T21:15:00Z")),
        ("note", s("extra")),
    ])
    .await;
    let got = store
        .get_links("account", "usmf", "fno", &["US-9".into()])
        .await
        .unwrap();
    assert_eq!(
        got.get("US-9"),
        Some(&Link {
            entity: "account".into(),
            company: "usmf".into(),
            system: "fno".into(),
            source_key: "US-9".into(),
            target_key: "guid-9".into(),
            source_version: None,
            source_hash: Some("sh".into()),
            target_hash: None,
            synced_at: "2026-11-25T21:15:00Z".into(),
            previous: None,
        })
    );

    put(vec![
        ("pk", s("RUN#accounts-to-fno#usmf")),
        ("sk", s("2026-11-25T10:00:00.000Z#old")),
        ("run_id", s("old")),
        ("flow", s("accounts-to-fno")),
        ("company", s("usmf")),
        ("trigger", s("manual")),
        ("started_at", s("2026-11-25T10:00:00Z")),
        ("duration_ms", AV::N("5".into())),
        ("read", AV::N("1".into())),
        ("written", AV::N("1".into())),
        ("skipped", AV::N("0".into())),
        ("failed", AV::N("0".into())),
    ])
    .await;
    let runs = store.recent_runs("accounts-to-fno", "usmf", 5).await.unwrap();
    assert_eq!(
        runs,
        vec![RunRecord {
            run_id: "old".into(),
            flow: "accounts-to-fno".into(),
            company: "usmf".into(),
            trigger: "manual".into(),
            started_at: "2026-11-25T10:00:00Z".into(),
            duration_ms: 5,
            read: 1,
            written: 1,
            skipped: 0,
            failed: 0,
            first_errors: vec![],
            skipped_by_reason: Default::default(),
            interrupted: false,
            request_id: None,
        }]
    );

    // A broken item is reported as corrupt, naming the item (a missing attribute is named too; serde_dynamo's
    // type mismatches only say e.g. "Expected string").
    put(vec![
        ("pk", s("LINK#account#usmf#fno#US-8")),
        ("sk", s("LINK")),
        ("target_key", AV::N("8".into())),
        ("synced_at", s("2026-11-25T21:15:00Z")),
    ])
    .await;
    let err = store
        .get_links("account", "usmf", "fno", &["US-8".into()])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StateError::Corrupt { key, .. } if key == "LINK#account#usmf#fno#US-8"),
        "{err:?}"
    );
    put(vec![
        ("pk", s("LINK#account#usmf#fno#US-7")),
        ("sk", s("LINK")),
        ("synced_at", s("2026-11-25T21:15:00Z")),
    ])
    .await;
    let err = store
        .get_links("account", "usmf", "fno", &["US-7".into()])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StateError::Corrupt { key, detail, .. } if key == "LINK#account#usmf#fno#US-7" && detail.contains("target_key")),
        "{err:?}"
    );
}

/// Digests come back whole, by first key, in Query pages of 1,000 (a run holds one page of the SDK's decoded
/// items, not all of them); another flow's or company's digests are not among them.
#[tokio::test]
async fn digests_round_trip_in_pages_of_a_thousand() {
    let (_aws, store, _client) = common::store().await;
    let digest = |i: usize| Digest {
        first: format!("P-{i:05}"),
        last: format!("P-{i:05}-z"),
        hash: format!("h{i}"),
        count: 16,
    };
    let digests: Vec<Digest> = (0..2_500).map(digest).collect();
    store.put_digests("products-to-sales", "usmf", &digests).await.unwrap();
    store
        .put_digests("products-to-sales", "demf", &[digest(1)])
        .await
        .unwrap();
    let before = store.request_count();
    let got = store.digests("products-to-sales", "usmf").await.unwrap();
    assert_eq!(store.request_count() - before, 3, "2,500 digests in three pages");
    assert_eq!(got.len(), 2_500);
    assert_eq!(got.get("P-01234"), Some(&digest(1234)));
    assert!(store.digests("orders-to-sales", "usmf").await.unwrap().is_empty());
}
