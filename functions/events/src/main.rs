//! The events ingress behind a Lambda Function URL: Dataverse webhooks and F&O business events → the flows'
//! queues. Thin by design: load the configuration and keys once, hand every request to the shared handler.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use p2c_sync::{Ingress, entry::events::lambda::handle_function_url};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let ingress = Ingress::from_env().await?;
    let ingress = &ingress;
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<Value>| async move {
        Ok::<Value, Error>(handle_function_url(ingress, ev.payload).await)
    }))
    .await
}
