//! Queues against a real SQS API (moto_server).

mod common;

use std::collections::BTreeSet;

use aws_sdk_sqs::types::QueueAttributeName;
use p2c_state::{Queues, Received, StateError};

async fn drain(queues: &Queues, url: &str) -> Vec<Received> {
    let mut all = Vec::new();
    loop {
        let got = queues.receive(url, 10, 0).await.unwrap();
        if got.is_empty() {
            return all;
        }
        all.extend(got);
    }
}

#[tokio::test]
async fn ensure_is_idempotent_and_wires_the_dlq() {
    let (_aws, queues, client) = common::queues().await;
    let first = queues.ensure("accounts-to-fno", 5, 120).await.unwrap();
    let second = queues.ensure("accounts-to-fno", 5, 120).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(queues.urls("accounts-to-fno").await.unwrap(), first);
    assert!(
        first.queue_url.ends_with(&queues.queue_name("accounts-to-fno")),
        "{}",
        first.queue_url
    );
    assert!(
        first.dlq_url.ends_with(&queues.dlq_name("accounts-to-fno")),
        "{}",
        first.dlq_url
    );
    assert!(
        first.dlq_arn.ends_with(&queues.dlq_name("accounts-to-fno")),
        "{}",
        first.dlq_arn
    );

    let attrs = client
        .get_queue_attributes()
        .queue_url(&first.queue_url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let attrs = attrs.attributes().unwrap();
    let redrive: serde_json::Value =
        serde_json::from_str(attrs.get(&QueueAttributeName::RedrivePolicy).unwrap()).unwrap();
    assert_eq!(redrive["deadLetterTargetArn"], first.dlq_arn.as_str());
    assert_eq!(redrive["maxReceiveCount"].to_string().trim_matches('"'), "5");
    assert_eq!(
        attrs.get(&QueueAttributeName::VisibilityTimeout).map(String::as_str),
        Some("120")
    );
    let dlq_attrs = client
        .get_queue_attributes()
        .queue_url(&first.dlq_url)
        .attribute_names(QueueAttributeName::MessageRetentionPeriod)
        .send()
        .await
        .unwrap();
    assert_eq!(
        dlq_attrs
            .attributes()
            .unwrap()
            .get(&QueueAttributeName::MessageRetentionPeriod)
            .map(String::as_str),
        Some("1209600")
    );

    let listed = client
        .list_queues()
        .queue_name_prefix(queues.queue_name("accounts-to-fno"))
        .send()
        .await
        .unwrap();
    assert_eq!(listed.queue_urls().len(), 2, "{:?}", listed.queue_urls());

    let err = queues.urls("never-created").await.unwrap_err();
    assert!(matches!(err, StateError::QueueMissing { .. }), "{err:?}");
    assert!(err.to_string().contains("p2c init"), "{err}");
    assert!(queues.request_count() > 0);
}

#[tokio::test]
async fn send_receive_delete_and_depth() {
    let (_aws, queues, _client) = common::queues().await;
    let pair = queues.ensure("contacts-to-fno", 5, 30).await.unwrap();
    let bodies: Vec<String> = (0..23).map(|i| format!(r#"{{"v":1,"keys":["c-{i}"]}}"#)).collect();
    queues.send(&pair.queue_url, &bodies).await.unwrap();
    assert_eq!(queues.depth(&pair.queue_url).await.unwrap(), (23, 0));

    let got = drain(&queues, &pair.queue_url).await;
    let got_bodies: BTreeSet<String> = got.iter().map(|m| m.body.clone()).collect();
    assert_eq!(got_bodies, bodies.iter().cloned().collect());
    assert_eq!(got.len(), 23);
    assert!(got.iter().all(|m| m.receive_count == 1 && !m.message_id.is_empty()));
    assert_eq!(queues.depth(&pair.queue_url).await.unwrap(), (0, 23));

    let handles: Vec<String> = got.iter().map(|m| m.receipt_handle.clone()).collect();
    queues.delete(&pair.queue_url, &handles).await.unwrap();
    assert_eq!(queues.depth(&pair.queue_url).await.unwrap(), (0, 0));

    queues.send(&pair.queue_url, &[]).await.unwrap();
    assert_eq!(queues.depth(&pair.queue_url).await.unwrap(), (0, 0));
}

#[tokio::test]
async fn message_received_past_the_limit_lands_in_the_dlq() {
    let (_aws, queues, _client) = common::queues().await;
    let pair = queues.ensure("orders-to-fno", 2, 0).await.unwrap();
    let body = r#"{"v":1,"flow":"orders-to-fno","company":"usmf","keys":["o-1"],"reason":"retry","attempt":1}"#;
    queues.send(&pair.queue_url, &[body.to_owned()]).await.unwrap();

    let first = queues.receive(&pair.queue_url, 10, 0).await.unwrap();
    assert_eq!(
        first
            .iter()
            .map(|m| (m.body.as_str(), m.receive_count))
            .collect::<Vec<_>>(),
        [(body, 1)]
    );
    let second = queues.receive(&pair.queue_url, 10, 0).await.unwrap();
    assert_eq!(
        second
            .iter()
            .map(|m| (m.body.as_str(), m.receive_count))
            .collect::<Vec<_>>(),
        [(body, 2)]
    );
    // Third receive: the redrive policy moves it instead of delivering it.
    let third = queues.receive(&pair.queue_url, 10, 0).await.unwrap();
    assert!(third.is_empty(), "{third:?}");

    assert_eq!(queues.depth(&pair.queue_url).await.unwrap(), (0, 0));
    assert_eq!(queues.depth(&pair.dlq_url).await.unwrap(), (1, 0));
    let dead = drain(&queues, &pair.dlq_url).await;
    assert_eq!(dead.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(), [body]);
}

#[tokio::test]
async fn move_messages_redrives_and_dry_run_moves_nothing() {
    let (_aws, queues, _client) = common::queues().await;
    let pair = queues.ensure("invoices-to-sales", 5, 30).await.unwrap();
    let bodies: Vec<String> = (0..15).map(|i| format!(r#"{{"v":1,"keys":["inv-{i}"]}}"#)).collect();
    queues.send(&pair.dlq_url, &bodies).await.unwrap();
    let all: BTreeSet<String> = bodies.iter().cloned().collect();

    let would = queues
        .move_messages(&pair.dlq_url, &pair.queue_url, None, true)
        .await
        .unwrap();
    assert_eq!(would.iter().cloned().collect::<BTreeSet<_>>(), all);
    assert_eq!(would.len(), 15);
    // Nothing moved, and nothing is left hidden.
    assert_eq!(queues.depth(&pair.dlq_url).await.unwrap(), (15, 0));
    assert_eq!(queues.depth(&pair.queue_url).await.unwrap(), (0, 0));

    let limited_dry = queues
        .move_messages(&pair.dlq_url, &pair.queue_url, Some(3), true)
        .await
        .unwrap();
    assert_eq!(limited_dry.len(), 3);
    assert_eq!(queues.depth(&pair.dlq_url).await.unwrap(), (15, 0));

    let first = queues
        .move_messages(&pair.dlq_url, &pair.queue_url, Some(4), false)
        .await
        .unwrap();
    assert_eq!(first.len(), 4);
    assert_eq!(queues.depth(&pair.dlq_url).await.unwrap(), (11, 0));
    assert_eq!(queues.depth(&pair.queue_url).await.unwrap(), (4, 0));

    let rest = queues
        .move_messages(&pair.dlq_url, &pair.queue_url, None, false)
        .await
        .unwrap();
    assert_eq!(rest.len(), 11);
    assert_eq!(queues.depth(&pair.dlq_url).await.unwrap(), (0, 0));

    let moved: BTreeSet<String> = first.iter().chain(&rest).cloned().collect();
    assert_eq!(moved, all);
    let in_queue = drain(&queues, &pair.queue_url).await;
    assert_eq!(in_queue.iter().map(|m| m.body.clone()).collect::<BTreeSet<_>>(), all);
    // Moved messages start over with a fresh receive count.
    assert!(in_queue.iter().all(|m| m.receive_count == 1));

    // Nothing left: a further move is a no-op.
    assert!(
        queues
            .move_messages(&pair.dlq_url, &pair.queue_url, None, false)
            .await
            .unwrap()
            .is_empty()
    );
    let err = queues
        .move_messages(&pair.dlq_url, &pair.dlq_url, None, false)
        .await
        .unwrap_err();
    assert!(matches!(err, StateError::Invalid { .. }), "{err:?}");
}
