//! p2c-state: the sync's durable state in DynamoDB (watermarks, links, leases, run history) and its SQS
//! queues (one queue and one DLQ per flow), plus a local `moto_server` for tests and `p2c demo`.

mod error;
pub mod local;
pub mod queues;
pub mod store;

pub use error::StateError;
pub use local::{LocalAws, aws_config};
pub use queues::{QueuePair, Queues, Received};
pub use store::{Digest, Lease, Link, PauseMark, RunRecord, StateStore, Watermark};
