//! Shared setup: each test gets its own moto_server, so tests stay independent and parallel.
#![allow(dead_code)]

use p2c_state::{LocalAws, Queues, StateStore};

/// A unique name suffix so nothing collides even if two tests shared an emulator.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

pub async fn store() -> (LocalAws, StateStore, aws_sdk_dynamodb::Client) {
    let aws = LocalAws::start().await.expect("moto_server should start");
    let config = aws.sdk_config().await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let store = StateStore::new(client.clone(), unique("p2c-state-test-"));
    store.ensure_table().await.expect("ensure_table");
    (aws, store, client)
}

pub async fn queues() -> (LocalAws, Queues, aws_sdk_sqs::Client) {
    let aws = LocalAws::start().await.expect("moto_server should start");
    let config = aws.sdk_config().await;
    let client = aws_sdk_sqs::Client::new(&config);
    let queues = Queues::new(client.clone(), unique("p2c-t-"));
    (aws, queues, client)
}
