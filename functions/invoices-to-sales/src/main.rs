//! F&O invoices of externally maintained customers → Sales invoices. Thin by design: build the clients once, hand every event to the shared handler.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use p2c_sync::{Deps, FlowName, handle_lambda};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let deps = Deps::from_env().await?;
    let deps = &deps;
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<Value>| async move {
        handle_lambda(deps, FlowName::InvoicesToSales, ev).await
    }))
    .await
}
