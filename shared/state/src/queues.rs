//! One SQS queue and one dead-letter queue per flow: `<prefix><flow>` and `<prefix><flow>-dlq`.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    BatchResultErrorEntry, ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    MessageSystemAttributeName, QueueAttributeName, SendMessageBatchRequestEntry,
};

use crate::StateError;
use crate::error::sqs_err;

/// SQS batch calls take at most 10 entries.
/// SQS's longest message delay.
pub const MAX_DELAY_SECONDS: u32 = 900;
const BATCH: usize = 10;
/// The longest retention SQS allows (14 days), so dead letters wait for an operator as long as possible.
const DLQ_RETENTION_SECS: u32 = 14 * 24 * 3600;
/// How long `move_messages` hides the messages it is working on, so one pass never sees a message twice.
const MOVE_VISIBILITY_SECS: i32 = 60;

/// The URLs of a flow's queue and DLQ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuePair {
    pub queue_url: String,
    pub dlq_url: String,
    pub dlq_arn: String,
}

/// One received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
    /// `ApproximateReceiveCount`: 1 on the first delivery.
    pub receive_count: u32,
}

/// SQS access for the flows' queues. Clones share the client and the request counter.
#[derive(Debug, Clone)]
pub struct Queues {
    client: Client,
    prefix: String,
    requests: Arc<AtomicU64>,
    /// Dry run: nothing is sent.
    dry_run: bool,
}

impl Queues {
    pub fn new(client: Client, prefix: impl Into<String>) -> Self {
        Queues {
            client,
            prefix: prefix.into(),
            requests: Arc::new(AtomicU64::new(0)),
            dry_run: false,
        }
    }

    /// The queue name prefix (e.g. `p2c-`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<prefix><flow>`.
    pub fn queue_name(&self, flow: &str) -> String {
        format!("{}{flow}", self.prefix)
    }

    /// `<prefix><flow>-dlq`.
    pub fn dlq_name(&self, flow: &str) -> String {
        format!("{}{flow}-dlq", self.prefix)
    }

    /// SQS API calls made through these queues and their clones.
    pub fn request_count(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    fn bump(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Create the flow's DLQ (14-day retention) and then its queue, whose RedrivePolicy sends a message to
    /// the DLQ after `max_receive_count` receives. Queues that already exist are returned as they are (their
    /// attributes are not changed — the deployed stack may own them).
    pub async fn ensure(
        &self,
        flow: &str,
        max_receive_count: u32,
        visibility_timeout_secs: u32,
    ) -> Result<QueuePair, StateError> {
        let queue = self.queue_name(flow);
        let dlq = self.dlq_name(flow);
        check_queue_name(&dlq)?; // the longer of the two
        check_queue_name(&queue)?;
        if max_receive_count == 0 {
            return Err(StateError::Invalid {
                what: "max_receive_count",
                detail: "must be at least 1".into(),
            });
        }
        // The DLQ must exist before a RedrivePolicy can point at it.
        let dlq_url = match self.lookup(&dlq).await? {
            Some(url) => url,
            None => {
                self.create(
                    &dlq,
                    vec![(
                        QueueAttributeName::MessageRetentionPeriod,
                        DLQ_RETENTION_SECS.to_string(),
                    )],
                )
                .await?
            }
        };
        let dlq_arn = self.arn(&dlq_url).await?;
        let queue_url = match self.lookup(&queue).await? {
            Some(url) => url,
            None => {
                let redrive = serde_json::json!({
                    "deadLetterTargetArn": dlq_arn,
                    "maxReceiveCount": max_receive_count.to_string(),
                })
                .to_string();
                self.create(
                    &queue,
                    vec![
                        (QueueAttributeName::RedrivePolicy, redrive),
                        (
                            QueueAttributeName::VisibilityTimeout,
                            visibility_timeout_secs.to_string(),
                        ),
                    ],
                )
                .await?
            }
        };
        Ok(QueuePair {
            queue_url,
            dlq_url,
            dlq_arn,
        })
    }

    /// The URLs of an existing flow's queues; [`StateError::QueueMissing`] if `ensure` never ran.
    pub async fn urls(&self, flow: &str) -> Result<QueuePair, StateError> {
        let queue = self.queue_name(flow);
        let dlq = self.dlq_name(flow);
        let queue_url = self.lookup(&queue).await?.ok_or(StateError::QueueMissing {
            op: "GetQueueUrl",
            queue,
        })?;
        let dlq_url = self.lookup(&dlq).await?.ok_or(StateError::QueueMissing {
            op: "GetQueueUrl",
            queue: dlq,
        })?;
        let dlq_arn = self.arn(&dlq_url).await?;
        Ok(QueuePair {
            queue_url,
            dlq_url,
            dlq_arn,
        })
    }

    /// Send message bodies in batches of 10. Entries SQS rejects are retried once; an entry failing twice
    /// is an error that names it (earlier entries have been sent by then).
    /// Queues that never send (`p2c run --dry-run`).
    pub fn dry_run(mut self) -> Self {
        self.dry_run = true;
        self
    }

    pub async fn send(&self, queue_url: &str, bodies: &[String]) -> Result<(), StateError> {
        let delayed: Vec<(String, u32)> = bodies.iter().map(|b| (b.clone(), 0)).collect();
        self.send_delayed(queue_url, &delayed).await
    }

    /// As [`Queues::send`], each body with its own `DelaySeconds` (capped at SQS's 900).
    pub async fn send_delayed(&self, queue_url: &str, bodies: &[(String, u32)]) -> Result<(), StateError> {
        if self.dry_run {
            return Ok(());
        }
        let indexed: Vec<(usize, &str, u32)> = bodies
            .iter()
            .enumerate()
            .map(|(i, (b, d))| (i, b.as_str(), (*d).min(MAX_DELAY_SECONDS)))
            .collect();
        for chunk in indexed.chunks(BATCH) {
            let mut failed = self.send_chunk(queue_url, chunk).await?;
            if !failed.is_empty() {
                let retry: Vec<(usize, &str, u32)> = failed.iter().map(|(i, _)| indexed[*i]).collect();
                failed = self.send_chunk(queue_url, &retry).await?;
            }
            if let Some((i, e)) = failed.into_iter().next() {
                return Err(entry_error(
                    "SendMessageBatch",
                    queue_url,
                    format!("#{i} ({})", preview(&bodies[i].0)),
                    &e,
                ));
            }
        }
        Ok(())
    }

    /// Receive up to `max` (1–10) messages, long-polling up to `wait_secs` (0–20).
    pub async fn receive(&self, queue_url: &str, max: i32, wait_secs: i32) -> Result<Vec<Received>, StateError> {
        self.receive_inner(queue_url, max, wait_secs, None).await
    }

    /// Delete received messages by receipt handle, in batches of 10; a failed entry is retried once when SQS
    /// says it was its own fault, otherwise reported.
    pub async fn delete(&self, queue_url: &str, receipt_handles: &[String]) -> Result<(), StateError> {
        let indexed: Vec<(usize, &str)> = receipt_handles.iter().map(String::as_str).enumerate().collect();
        for chunk in indexed.chunks(BATCH) {
            let mut failed = self.delete_chunk(queue_url, chunk).await?;
            // A sender fault (expired/invalid handle) will not change on retry.
            if failed.iter().any(|(_, e)| !e.sender_fault()) {
                let retry: Vec<(usize, &str)> =
                    failed.iter().map(|(i, _)| (*i, receipt_handles[*i].as_str())).collect();
                failed = self.delete_chunk(queue_url, &retry).await?;
            }
            if let Some((i, e)) = failed.into_iter().next() {
                return Err(entry_error(
                    "DeleteMessageBatch",
                    queue_url,
                    format!("#{i} (receipt handle)"),
                    &e,
                ));
            }
        }
        Ok(())
    }

    /// Approximate (visible, in flight) message counts.
    pub async fn depth(&self, queue_url: &str) -> Result<(u64, u64), StateError> {
        self.bump();
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(|e| sqs_err("GetQueueAttributes", queue_url, e))?;
        let get = |name: &QueueAttributeName| -> u64 {
            out.attributes()
                .and_then(|a| a.get(name))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Ok((
            get(&QueueAttributeName::ApproximateNumberOfMessages),
            get(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        ))
    }

    /// Manual redrive (moto has no StartMessageMoveTask): receive up to 10 at a time from `from_url`, send
    /// them to `to_url`, delete from `from_url` only what `to_url` accepted; stop when `from_url` is empty or
    /// `limit` messages have moved. Returns the moved bodies in order.
    ///
    /// With `dry_run` nothing is sent or deleted: the messages are received, hidden for the duration of the
    /// pass so none is counted twice, and made visible again at the end; their bodies are returned.
    /// Only bodies are carried over (p2c messages have no message attributes). A message that moves is a
    /// new message in `to_url` with a fresh receive count.
    pub async fn move_messages(
        &self,
        from_url: &str,
        to_url: &str,
        limit: Option<usize>,
        dry_run: bool,
    ) -> Result<Vec<String>, StateError> {
        self.move_messages_where(from_url, to_url, limit, dry_run, |_| true)
            .await
    }

    /// As [`Queues::move_messages`], moving only the messages whose body `keep` accepts (e.g. one company's);
    /// the others stay in the source queue, visible again at the end of the pass.
    pub async fn move_messages_where(
        &self,
        from_url: &str,
        to_url: &str,
        limit: Option<usize>,
        dry_run: bool,
        keep: impl Fn(&str) -> bool,
    ) -> Result<Vec<String>, StateError> {
        if from_url == to_url {
            return Err(StateError::Invalid {
                what: "redrive",
                detail: format!("source and target are the same queue `{from_url}`"),
            });
        }
        let mut moved = Vec::new();
        let mut hidden: Vec<String> = Vec::new(); // dry run: receipt handles to make visible again
        let mut seen = HashSet::new();
        let result = async {
            loop {
                let remaining = limit.map_or(BATCH, |l| l.saturating_sub(moved.len()).min(BATCH));
                if remaining == 0 {
                    break;
                }
                // A 1 s long poll: short polls may miss messages on real SQS (they sample servers).
                let batch = self
                    .receive_inner(from_url, remaining as i32, 1, Some(MOVE_VISIBILITY_SECS))
                    .await?;
                // Only this pass hides messages, so a repeat means the pass outlived the visibility timeout.
                let batch: Vec<Received> = batch
                    .into_iter()
                    .filter(|m| seen.insert(m.message_id.clone()))
                    .collect();
                if batch.is_empty() {
                    break;
                }
                let (batch, others): (Vec<Received>, Vec<Received>) = batch.into_iter().partition(|m| keep(&m.body));
                hidden.extend(others.into_iter().map(|m| m.receipt_handle));
                if batch.is_empty() {
                    continue;
                }
                if dry_run {
                    hidden.extend(batch.iter().map(|m| m.receipt_handle.clone()));
                    moved.extend(batch.into_iter().map(|m| m.body));
                    continue;
                }
                let indexed: Vec<(usize, &str, u32)> =
                    batch.iter().enumerate().map(|(i, m)| (i, m.body.as_str(), 0)).collect();
                let mut failed = self.send_chunk(to_url, &indexed).await?;
                if !failed.is_empty() {
                    let retry: Vec<(usize, &str, u32)> =
                        failed.iter().map(|(i, _)| (*i, batch[*i].body.as_str(), 0)).collect();
                    failed = self.send_chunk(to_url, &retry).await?;
                }
                let failed_idx: HashSet<usize> = failed.iter().map(|(i, _)| *i).collect();
                let accepted: Vec<&Received> = batch
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !failed_idx.contains(i))
                    .map(|(_, m)| m)
                    .collect();
                let handles: Vec<String> = accepted.iter().map(|m| m.receipt_handle.clone()).collect();
                self.delete(from_url, &handles).await?;
                moved.extend(accepted.iter().map(|m| m.body.clone()));
                if let Some((i, e)) = failed.into_iter().next() {
                    // Put the rejected ones back at once instead of after the visibility timeout.
                    let back: Vec<String> = failed_idx.iter().map(|&i| batch[i].receipt_handle.clone()).collect();
                    self.make_visible(from_url, &back).await?;
                    return Err(entry_error(
                        "SendMessageBatch (redrive)",
                        to_url,
                        format!(
                            "message {} ({}); {} message(s) were moved before it",
                            batch[i].message_id,
                            preview(&batch[i].body),
                            moved.len()
                        ),
                        &e,
                    ));
                }
            }
            Ok(())
        }
        .await;
        if !hidden.is_empty() {
            self.make_visible(from_url, &hidden).await?;
        }
        result.map(|()| moved)
    }

    // -------------------------------------------------------------- helpers

    async fn lookup(&self, name: &str) -> Result<Option<String>, StateError> {
        self.bump();
        match self.client.get_queue_url().queue_name(name).send().await {
            Ok(out) => Ok(out.queue_url().map(str::to_owned)),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_queue_does_not_exist()) => Ok(None),
            Err(e) => match sqs_err("GetQueueUrl", name, e) {
                StateError::QueueMissing { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn create(&self, name: &str, attributes: Vec<(QueueAttributeName, String)>) -> Result<String, StateError> {
        let mut req = self.client.create_queue().queue_name(name);
        for (k, v) in attributes {
            req = req.attributes(k, v);
        }
        self.bump();
        match req.send().await {
            Ok(out) => {
                tracing::info!(queue = name, "created SQS queue");
                out.queue_url().map(str::to_owned).ok_or_else(|| StateError::Sqs {
                    op: "CreateQueue",
                    queue: name.to_owned(),
                    code: None,
                    message: "the response carried no queue URL".into(),
                    transient: true,
                })
            }
            // Created concurrently by someone else (possibly with other attributes): use theirs.
            Err(e) if e.as_service_error().is_some_and(|s| s.is_queue_name_exists()) => {
                self.lookup(name).await?.ok_or_else(|| StateError::QueueMissing {
                    op: "CreateQueue",
                    queue: name.to_owned(),
                })
            }
            Err(e) => Err(sqs_err("CreateQueue", name, e)),
        }
    }

    async fn arn(&self, queue_url: &str) -> Result<String, StateError> {
        self.bump();
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| sqs_err("GetQueueAttributes", queue_url, e))?;
        out.attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn))
            .cloned()
            .ok_or_else(|| StateError::Sqs {
                op: "GetQueueAttributes",
                queue: queue_url.to_owned(),
                code: None,
                message: "the response carried no QueueArn".into(),
                transient: false,
            })
    }

    async fn receive_inner(
        &self,
        queue_url: &str,
        max: i32,
        wait_secs: i32,
        visibility: Option<i32>,
    ) -> Result<Vec<Received>, StateError> {
        self.bump();
        let out = self
            .client
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(max.clamp(1, 10))
            .wait_time_seconds(wait_secs.clamp(0, 20))
            .set_visibility_timeout(visibility)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| sqs_err("ReceiveMessage", queue_url, e))?;
        Ok(out
            .messages()
            .iter()
            .map(|m| Received {
                message_id: m.message_id().unwrap_or_default().to_owned(),
                receipt_handle: m.receipt_handle().unwrap_or_default().to_owned(),
                body: m.body().unwrap_or_default().to_owned(),
                receive_count: m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1),
            })
            .collect())
    }

    /// One SendMessageBatch call; returns the rejected entries as (caller index, error).
    async fn send_chunk(
        &self,
        queue_url: &str,
        entries: &[(usize, &str, u32)],
    ) -> Result<Vec<(usize, BatchResultErrorEntry)>, StateError> {
        let built = entries
            .iter()
            .map(|(i, body, delay)| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(*body)
                    .delay_seconds(*delay as i32)
                    .build()
                    .map_err(|e| StateError::Invalid {
                        what: "SQS batch entry",
                        detail: e.to_string(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.bump();
        let out = self
            .client
            .send_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(built))
            .send()
            .await
            .map_err(|e| sqs_err("SendMessageBatch", queue_url, e))?;
        Ok(by_index(out.failed()))
    }

    async fn delete_chunk(
        &self,
        queue_url: &str,
        entries: &[(usize, &str)],
    ) -> Result<Vec<(usize, BatchResultErrorEntry)>, StateError> {
        let built = entries
            .iter()
            .map(|(i, handle)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(*handle)
                    .build()
                    .map_err(|e| StateError::Invalid {
                        what: "SQS batch entry",
                        detail: e.to_string(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.bump();
        let out = self
            .client
            .delete_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(built))
            .send()
            .await
            .map_err(|e| sqs_err("DeleteMessageBatch", queue_url, e))?;
        Ok(by_index(out.failed()))
    }

    /// Visibility timeout 0: the messages can be received again right away.
    async fn make_visible(&self, queue_url: &str, receipt_handles: &[String]) -> Result<(), StateError> {
        for (c, chunk) in receipt_handles.chunks(BATCH).enumerate() {
            let built = chunk
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(h)
                        .visibility_timeout(0)
                        .build()
                        .map_err(|e| StateError::Invalid {
                            what: "SQS batch entry",
                            detail: e.to_string(),
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            self.bump();
            let out = self
                .client
                .change_message_visibility_batch()
                .queue_url(queue_url)
                .set_entries(Some(built))
                .send()
                .await
                .map_err(|e| sqs_err("ChangeMessageVisibilityBatch", queue_url, e))?;
            if let Some(e) = out.failed().first() {
                let idx = c * BATCH + e.id().parse::<usize>().unwrap_or(0);
                // Not fatal for the data: the message becomes visible anyway when its timeout ends.
                tracing::warn!(
                    queue = queue_url,
                    entry = idx,
                    code = e.code(),
                    "could not make a message visible again; it reappears after {MOVE_VISIBILITY_SECS}s"
                );
            }
        }
        Ok(())
    }
}

fn by_index(failed: &[BatchResultErrorEntry]) -> Vec<(usize, BatchResultErrorEntry)> {
    failed
        .iter()
        .map(|e| (e.id().parse().unwrap_or(usize::MAX), e.clone()))
        .collect()
}

fn entry_error(op: &'static str, queue: &str, entry: String, e: &BatchResultErrorEntry) -> StateError {
    StateError::BatchEntry {
        op,
        queue: queue.to_owned(),
        entry,
        code: e.code().to_owned(),
        message: e.message().unwrap_or("no message").to_owned(),
        sender_fault: e.sender_fault(),
    }
}

/// The start of a body for error messages (bodies hold keys, never record payloads or secrets).
fn preview(body: &str) -> String {
    let mut p: String = body.chars().take(80).collect();
    if p.len() < body.len() {
        p.push('…');
    }
    format!("body `{p}`")
}

/// SQS queue names: 1–80 characters of letters, digits, `-` and `_`.
fn check_queue_name(name: &str) -> Result<(), StateError> {
    let ok =
        !name.is_empty() && name.len() <= 80 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(StateError::Invalid {
            what: "queue name",
            detail: format!("`{name}` must be 1–80 letters, digits, `-` or `_` (check the queue prefix and flow name)"),
        })
    }
}
