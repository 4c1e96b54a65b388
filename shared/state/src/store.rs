//! One DynamoDB table (pk/sk strings) holding watermarks, links, leases and run history.
//!
//! | item      | pk                                              | sk                               |
//! |-----------|-------------------------------------------------|----------------------------------|
//! | watermark | `WM#<flow>#<company>`                           | `WM`                             |
//! | link      | `LINK#<entity>#<company>#<system>#<source_key>` | `LINK`                           |
//! | history   | `HIST#<entity>#<company>#<system>#<source_key>` | `<synced_at>#<target_hash>`      |
//! | lease     | `LEASE#<flow>#<company>`                        | `LEASE`                          |
//! | run       | `RUN#<flow>#<company>`                          | `<started_at, UTC ms>#<run_id>` |
//! | pause     | `PAUSE#<flow>#<company>`                        | `PAUSE`                          |

use std::collections::BTreeMap;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue as AV, BillingMode, KeySchemaElement, KeyType, KeysAndAttributes, PutRequest,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType, TableStatus, TimeToLiveSpecification, TimeToLiveStatus,
    WriteRequest,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::StateError;
use crate::error::dynamo_err;

mod digests;
pub use digests::{Digest, digest_pk};

type Item = HashMap<String, AV>;

/// Capacity units consumed (see [`StateStore::units`]).
#[derive(Debug, Default)]
struct Units {
    read_halves: AtomicU64,
    writes: AtomicU64,
}

/// An item's size as DynamoDB bills it: the UTF-8 length of every attribute name plus its value
/// (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html).
fn item_size(item: &Item) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

fn value_size(v: &AV) -> usize {
    match v {
        AV::S(s) => s.len(),
        // Numbers: about one byte per two significant digits, plus one.
        AV::N(n) => n.len().div_ceil(2) + 1,
        AV::B(b) => b.as_ref().len(),
        AV::Bool(_) | AV::Null(_) => 1,
        AV::M(m) => 3 + m.iter().map(|(k, v)| k.len() + value_size(v) + 1).sum::<usize>(),
        AV::L(l) => 3 + l.iter().map(|v| value_size(v) + 1).sum::<usize>(),
        AV::Ss(l) => l.iter().map(String::len).sum(),
        AV::Ns(l) => l.iter().map(|n| n.len().div_ceil(2) + 1).sum(),
        _ => 1,
    }
}

/// The attribute DynamoDB TTL is enabled on (epoch seconds).
pub const TTL_ATTRIBUTE: &str = "ttl";
/// How long run records are kept before TTL may delete them.
pub const RUN_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
/// How long the audit trail of a record's syncs is kept.
pub const HISTORY_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
/// BatchGetItem accepts at most 100 keys per call.
const GET_CHUNK: usize = 100;
/// BatchWriteItem accepts at most 25 requests per call.
const WRITE_CHUNK: usize = 25;
/// Attempts (first call included) before unprocessed batch items become an error.
const MAX_BATCH_ATTEMPTS: u32 = 8;
/// How long `ensure_table` waits for a new table to become ACTIVE.
const TABLE_ACTIVE_TIMEOUT: Duration = Duration::from_secs(120);

/// The sync position of one flow and company (delta link, timestamp or sweep cursor).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Watermark {
    pub value: String,
    /// Starts at 1 and grows by one per write; the optimistic-lock token for [`StateStore::put_watermark`].
    pub version: u64,
    /// RFC 3339 UTC time of the last write.
    pub updated_at: String,
}

/// One record's identity in both systems and the hashes of what was last synced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Link {
    pub entity: String,
    pub company: String,
    /// The side `source_key` belongs to: `"sales"` or `"fno"`.
    pub system: String,
    pub source_key: String,
    pub target_key: String,
    pub source_version: Option<String>,
    pub source_hash: Option<String>,
    pub target_hash: Option<String>,
    pub synced_at: String,
    /// The state this link replaced, as [`StateStore::get_links`] read it from the link item. Set by reads
    /// only (a link built by a flow leaves it `None`) and not compared by `==`.
    #[serde(skip)]
    pub previous: Option<Box<Replaced>>,
}

/// Two links are equal when they say the same about the record now; the trail behind them does not count.
impl PartialEq for Link {
    fn eq(&self, o: &Self) -> bool {
        // Every field named (no `..`): a field added to Link must be placed here or in the ignored trail.
        let Link {
            entity,
            company,
            system,
            source_key,
            target_key,
            source_version,
            source_hash,
            target_hash,
            synced_at,
            previous: _,
        } = self;
        (entity, company, system, source_key, target_key)
            == (&o.entity, &o.company, &o.system, &o.source_key, &o.target_key)
            && (source_version, source_hash, target_hash, synced_at)
                == (&o.source_version, &o.source_hash, &o.target_hash, &o.synced_at)
    }
}

/// A state a link replaced, kept in the link item itself (so a change costs one write, not two) until it is
/// replaced in turn and moves to a history item. Both are kept for [`HISTORY_RETENTION`] from the change.
#[derive(Debug, Clone, PartialEq)]
pub struct Replaced {
    pub state: Link,
    /// Epoch seconds: the entry is dropped from this second on.
    pub until: i64,
}

/// A held lease; only its owner may renew or release it.
#[derive(Debug, Clone)]
pub struct Lease {
    pub flow: String,
    pub company: String,
    pub owner: String,
    /// Epoch seconds; the lease is free from this second on.
    pub expires_at_epoch: i64,
}

impl Lease {
    /// True once the expiry second has been reached (the lease can be taken over).
    pub fn is_expired(&self) -> bool {
        self.expires_at_epoch <= now_epoch()
    }
}

/// The outcome of one run of a flow for one company.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct RunRecord {
    pub run_id: String,
    pub flow: String,
    pub company: String,
    pub trigger: String,
    /// RFC 3339; any offset is accepted, the sort key is derived in UTC.
    pub started_at: String,
    pub duration_ms: u64,
    pub read: u64,
    pub written: u64,
    pub skipped: u64,
    pub failed: u64,
    /// Absent in a stored run reads as none.
    #[serde(default)]
    pub first_errors: Vec<String>,
    /// Skipped records by reason (e.g. accounts without a number: "not synced").
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub skipped_by_reason: std::collections::BTreeMap<String, u64>,
    /// The run stopped before its Lambda deadline and the next invocation continues it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
    /// The Lambda request id of the invocation, for finding its logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// Key of the watermark item.
pub fn watermark_pk(flow: &str, company: &str) -> String {
    format!("WM#{flow}#{company}")
}
/// Key of a link item.
/// Partition of a record's sync history: `HIST#<entity>#<company>#<system>#<source_key>`.
pub fn history_pk(entity: &str, company: &str, system: &str, source_key: &str) -> String {
    format!("HIST#{entity}#{company}#{system}#{source_key}")
}

pub fn link_pk(entity: &str, company: &str, system: &str, source_key: &str) -> String {
    format!("LINK#{entity}#{company}#{system}#{source_key}")
}
/// Key of the lease item.
pub fn lease_pk(flow: &str, company: &str) -> String {
    format!("LEASE#{flow}#{company}")
}
/// Partition key of a flow and company's run records.
pub fn run_pk(flow: &str, company: &str) -> String {
    format!("RUN#{flow}#{company}")
}
/// Key of a flow and company's pause mark.
pub fn pause_pk(flow: &str, company: &str) -> String {
    format!("PAUSE#{flow}#{company}")
}

/// Left by `p2c pause`: scheduled runs of the flow and company do nothing while it is there, whatever state a
/// deploy gives the schedule; `p2c resume` removes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PauseMark {
    /// RFC 3339 UTC time of the pause.
    pub since: String,
    /// Who paused it (the caller's AWS identity, as the CLI knows it).
    pub by: String,
}

/// DynamoDB access for p2c's state. Clones share the client and the request counter.
#[derive(Debug, Clone)]
pub struct StateStore {
    client: Client,
    table: String,
    requests: Arc<AtomicU64>,
    /// Capacity units consumed, as DynamoDB on demand bills them: reads in half read request units (an
    /// eventually consistent read of up to 4 KB is half a unit, a strongly consistent one a whole), writes in
    /// write request units (1 KB each). Estimated from item sizes
    /// (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html).
    units: Arc<Units>,
    /// Dry run: reads happen, writes are skipped (and leases always granted), so nothing changes.
    dry_run: bool,
}

impl StateStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        StateStore {
            client,
            table: table.into(),
            requests: Arc::new(AtomicU64::new(0)),
            units: Arc::new(Units::default()),
            dry_run: false,
        }
    }

    /// A store that reads but never writes (`p2c run --dry-run`).
    pub fn dry_run(mut self) -> Self {
        self.dry_run = true;
        self
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// DynamoDB API calls made through this store and its clones (each retry of unprocessed items counts;
    /// the SDK's own transparent retries do not).
    pub fn request_count(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    fn bump(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Read and write request units consumed through this store and its clones: (RRU, WRU).
    pub fn units(&self) -> (f64, u64) {
        (
            self.units.read_halves.load(Ordering::Relaxed) as f64 / 2.0,
            self.units.writes.load(Ordering::Relaxed),
        )
    }

    /// A read of `bytes` (at least one item's minimum): strongly consistent or not.
    fn read_units(&self, bytes: usize, consistent: bool) {
        let units = bytes.max(1).div_ceil(4096) as u64;
        let halves = if consistent { units * 2 } else { units };
        self.units.read_halves.fetch_add(halves, Ordering::Relaxed);
    }

    /// A write of one item of `bytes` (a delete or conditional update of a small item: 1 unit).
    fn write_units(&self, bytes: usize) {
        self.units
            .writes
            .fetch_add(bytes.max(1).div_ceil(1024) as u64, Ordering::Relaxed);
    }

    // ---------------------------------------------------------------- table

    /// Create the table if it is missing (pk S HASH, sk S RANGE, on demand, TTL on `ttl`) and wait until it
    /// is ACTIVE. Safe to call any number of times, also concurrently.
    pub async fn ensure_table(&self) -> Result<(), StateError> {
        let t = &self.table;
        self.bump();
        let exists = match self.client.describe_table().table_name(t).send().await {
            Ok(_) => true,
            Err(e) => match dynamo_err("DescribeTable", t, t.as_str(), e) {
                StateError::TableMissing { .. } => false,
                other => return Err(other),
            },
        };
        if !exists {
            let attr = |name: &str| {
                AttributeDefinition::builder()
                    .attribute_name(name)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(|e| invalid("table definition", e))
            };
            let key = |name: &str, kt: KeyType| {
                KeySchemaElement::builder()
                    .attribute_name(name)
                    .key_type(kt)
                    .build()
                    .map_err(|e| invalid("key schema", e))
            };
            self.bump();
            let created = self
                .client
                .create_table()
                .table_name(t)
                .attribute_definitions(attr("pk")?)
                .attribute_definitions(attr("sk")?)
                .key_schema(key("pk", KeyType::Hash)?)
                .key_schema(key("sk", KeyType::Range)?)
                .billing_mode(BillingMode::PayPerRequest)
                .send()
                .await;
            if let Err(e) = created {
                // Another `p2c init` (or the stack) created it between our describe and create: fine.
                let in_use = e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception());
                if !in_use {
                    return Err(dynamo_err("CreateTable", t, t.as_str(), e));
                }
            }
            tracing::info!(table = %t, "created DynamoDB table");
        }
        self.wait_active().await?;
        self.ensure_ttl().await
    }

    async fn wait_active(&self) -> Result<(), StateError> {
        let t = &self.table;
        let deadline = std::time::Instant::now() + TABLE_ACTIVE_TIMEOUT;
        loop {
            self.bump();
            let out = self
                .client
                .describe_table()
                .table_name(t)
                .send()
                .await
                .map_err(|e| dynamo_err("DescribeTable", t, t.as_str(), e))?;
            if out.table().and_then(|d| d.table_status()) == Some(&TableStatus::Active) {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                return Err(StateError::Timeout {
                    what: format!("DynamoDB table `{t}` to become ACTIVE"),
                    secs: TABLE_ACTIVE_TIMEOUT.as_secs(),
                    action: "check the table in the AWS console; rerun `p2c init` once it is ACTIVE",
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn ensure_ttl(&self) -> Result<(), StateError> {
        let t = &self.table;
        self.bump();
        let out = self
            .client
            .describe_time_to_live()
            .table_name(t)
            .send()
            .await
            .map_err(|e| dynamo_err("DescribeTimeToLive", t, t.as_str(), e))?;
        let desc = out.time_to_live_description();
        let status = desc.and_then(|d| d.time_to_live_status());
        if matches!(status, Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)) {
            let attr = desc.and_then(|d| d.attribute_name()).unwrap_or_default();
            if attr != TTL_ATTRIBUTE {
                // Only one TTL attribute per table; run records would then never expire.
                tracing::warn!(table = %t, attribute = attr, "table has TTL on another attribute; run records will not expire");
            }
            return Ok(());
        }
        // Enabling TTL twice is a ValidationException on AWS, hence the describe above.
        let spec = TimeToLiveSpecification::builder()
            .enabled(true)
            .attribute_name(TTL_ATTRIBUTE)
            .build()
            .map_err(|e| invalid("TTL specification", e))?;
        self.bump();
        self.client
            .update_time_to_live()
            .table_name(t)
            .time_to_live_specification(spec)
            .send()
            .await
            .map_err(|e| dynamo_err("UpdateTimeToLive", t, t.as_str(), e))?;
        Ok(())
    }

    // ------------------------------------------------------------ watermark

    /// The watermark of a flow and company, or `None` before the first run (or after a reset).
    pub async fn watermark(&self, flow: &str, company: &str) -> Result<Option<Watermark>, StateError> {
        check_part("flow", flow)?;
        check_part("company", company)?;
        let pk = watermark_pk(flow, company);
        match self.get(&pk, "WM", "GetItem (watermark)").await? {
            Some(item) => self.decode(item, &pk).map(Some),
            None => Ok(None),
        }
    }

    /// Write a watermark if nobody else moved it: `expected_version` must equal the stored version
    /// (`None`: no watermark may exist yet), else [`StateError::Conflict`]. Returns the new watermark
    /// (version + 1).
    ///
    /// Ordering rule for callers: commit the links of every record up to this watermark with
    /// [`StateStore::put_links`] *before* calling this. A crash between the two then makes the next run redo
    /// the uncommitted tail instead of skipping it.
    pub async fn put_watermark(
        &self,
        flow: &str,
        company: &str,
        value: &str,
        expected_version: Option<u64>,
    ) -> Result<Watermark, StateError> {
        check_part("flow", flow)?;
        check_part("company", company)?;
        let pk = watermark_pk(flow, company);
        let version = expected_version.map_or(1, |v| v + 1);
        let wm = Watermark {
            value: value.to_owned(),
            version,
            updated_at: now_rfc3339(),
        };
        if self.dry_run {
            return Ok(wm);
        }
        let item = encode(WatermarkItem {
            pk: &pk,
            sk: "WM",
            flow,
            company,
            watermark: &wm,
        })?;
        let wm_size = item_size(&item);
        let mut req = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        req = match expected_version {
            None => req.condition_expression("attribute_not_exists(pk)"),
            Some(v) => req
                .condition_expression("#v = :expected")
                .expression_attribute_names("#v", "version")
                .expression_attribute_values(":expected", n(v)),
        };
        self.bump();
        self.write_units(wm_size);
        match req.send().await {
            Ok(_) => Ok(wm),
            Err(e) => {
                if let Some(ccf) = e.as_service_error().and_then(|s| match s {
                    aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c) => Some(c),
                    _ => None,
                }) {
                    let found = match ccf.item().and_then(|i| i.get("version")).and_then(|v| v.as_n().ok()) {
                        Some(v) => format!("version {v}"),
                        None if ccf.item().is_some() => "an item without a version".to_owned(),
                        // AWS returns no item when it was absent; moto may omit it either way.
                        None => "no watermark or a different version".to_owned(),
                    };
                    let expected = expected_version.map_or("no watermark".to_owned(), |v| format!("version {v}"));
                    return Err(StateError::Conflict {
                        what: "watermark",
                        key: pk,
                        expected,
                        found,
                    });
                }
                Err(dynamo_err("PutItem (watermark)", &self.table, pk, e))
            }
        }
    }

    /// Remove the watermark so the next run starts from scratch (full resync / backfill).
    pub async fn delete_watermark(&self, flow: &str, company: &str) -> Result<(), StateError> {
        if self.dry_run {
            return Ok(());
        }
        check_part("flow", flow)?;
        check_part("company", company)?;
        let pk = watermark_pk(flow, company);
        self.bump();
        self.write_units(0);
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(&pk))
            .key("sk", s("WM"))
            .send()
            .await
            .map_err(|e| dynamo_err("DeleteItem (watermark)", &self.table, pk, e))?;
        Ok(())
    }

    // ---------------------------------------------------------------- links

    /// Look up the links of `keys` (source keys on side `system`). Missing keys are simply absent from the
    /// map; duplicates in `keys` are fine. Reads are strongly consistent so a retry right after a commit
    /// sees it.
    pub async fn get_links(
        &self,
        entity: &str,
        company: &str,
        system: &str,
        keys: &[String],
    ) -> Result<HashMap<String, Link>, StateError> {
        check_part("entity", entity)?;
        check_part("company", company)?;
        check_part("system", system)?;
        // BatchGetItem rejects a request that names the same key twice.
        let mut seen = HashSet::new();
        let unique: Vec<&String> = keys.iter().filter(|k| seen.insert(k.as_str())).collect();
        let mut out = HashMap::with_capacity(unique.len());
        for chunk in unique.chunks(GET_CHUNK) {
            let mut pending = chunk
                .iter()
                .map(|k| key_item(&link_pk(entity, company, system, k), "LINK"))
                .collect::<Vec<_>>();
            let mut attempt = 1;
            loop {
                let first_key = first_pk(&pending);
                let ka_len = pending.len();
                let ka = KeysAndAttributes::builder()
                    .set_keys(Some(pending))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| invalid("BatchGetItem request", e))?;
                self.bump();
                let mut resp = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, ka)
                    .send()
                    .await
                    .map_err(|e| dynamo_err("BatchGetItem (links)", &self.table, first_key.clone(), e))?;
                let found = resp.responses.as_mut().and_then(|r| r.remove(&self.table));
                let found = found.unwrap_or_default();
                // A key that is not there still costs the minimum read.
                let asked = ka_len
                    - resp
                        .unprocessed_keys()
                        .and_then(|u| u.get(&self.table))
                        .map_or(0, |k| k.keys().len());
                for _ in found.len()..asked {
                    self.read_units(0, true);
                }
                for item in found {
                    self.read_units(item_size(&item), true);
                    let link = self.link_from_item(item)?;
                    out.insert(link.source_key.clone(), link);
                }
                let left: Vec<Item> = resp
                    .unprocessed_keys()
                    .and_then(|u| u.get(&self.table))
                    .map(|ka| ka.keys().to_vec())
                    .unwrap_or_default();
                if left.is_empty() {
                    break;
                }
                if attempt >= MAX_BATCH_ATTEMPTS {
                    return Err(StateError::Unprocessed {
                        op: "BatchGetItem (links)",
                        table: self.table.clone(),
                        remaining: left.len(),
                        attempts: attempt,
                        first_key: first_pk(&left),
                    });
                }
                backoff(attempt).await;
                attempt += 1;
                pending = left;
            }
        }
        Ok(out)
    }

    /// Store links (insert or replace). When the same link appears twice the last one wins. `before` holds the
    /// links as the caller read them ahead of this write (`get_links` maps); a link found there that differs from
    /// its replacement is kept in the new link item as the state it replaced, and the state that item held
    /// before moves to a history item. So a first sync and a first change cost one item each; a record changed
    /// again within [`HISTORY_RETENTION`] costs two. Without `before` nothing is recorded of what was replaced.
    pub async fn put_links(&self, links: &[Link], before: &[&HashMap<String, Link>]) -> Result<(), StateError> {
        if self.dry_run {
            return Ok(());
        }
        // BatchWriteItem rejects a batch that names the same key twice: keep the last occurrence.
        let mut index: HashMap<String, usize> = HashMap::with_capacity(links.len());
        let mut unique: Vec<(String, &Link)> = Vec::with_capacity(links.len());
        for link in links {
            check_part("entity", &link.entity)?;
            check_part("company", &link.company)?;
            check_part("system", &link.system)?;
            if link.source_key.is_empty() {
                return Err(StateError::Invalid {
                    what: "link",
                    detail: format!(
                        "empty source_key for entity `{}`, company `{}`",
                        link.entity, link.company
                    ),
                });
            }
            let pk = link_pk(&link.entity, &link.company, &link.system, &link.source_key);
            match index.get(&pk) {
                Some(&i) => unique[i].1 = link,
                None => {
                    index.insert(pk.clone(), unique.len());
                    unique.push((pk, link));
                }
            }
        }
        let now = now_epoch();
        let items: Vec<Item> = unique
            .iter()
            .map(|(pk, link)| {
                let old = before.iter().find_map(|m| m.get(&link.source_key)).filter(|old| {
                    old.entity == link.entity && old.company == link.company && old.system == link.system
                });
                trail_items(pk, link, old, now)
            })
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .collect();
        for chunk in items.chunks(WRITE_CHUNK) {
            let pending = chunk
                .iter()
                .map(|item| {
                    self.write_units(item_size(item));
                    PutRequest::builder()
                        .set_item(Some(item.clone()))
                        .build()
                        .map(|p| WriteRequest::builder().put_request(p).build())
                        .map_err(|e| invalid("BatchWriteItem request", e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            self.write_batch(pending, "BatchWriteItem (links)").await?;
        }
        Ok(())
    }

    /// Every link of an entity and company (optionally one side only), for operators (`p2c links`,
    /// reconcile). This is a Scan of the whole table: fine for tooling, not for the sync path.
    pub async fn scan_links(&self, entity: &str, company: &str, system: Option<&str>) -> Result<Vec<Link>, StateError> {
        check_part("entity", entity)?;
        check_part("company", company)?;
        let prefix = match system {
            Some(sys) => {
                check_part("system", sys)?;
                format!("LINK#{entity}#{company}#{sys}#")
            }
            None => format!("LINK#{entity}#{company}#"),
        };
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            self.bump();
            self.read_units(0, false);
            let mut resp = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("begins_with(pk, :prefix) AND sk = :sk")
                .expression_attribute_values(":prefix", s(&prefix))
                .expression_attribute_values(":sk", s("LINK"))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| dynamo_err("Scan (links)", &self.table, prefix.clone(), e))?;
            for item in resp.items.take().unwrap_or_default() {
                out.push(self.link_from_item(item)?);
            }
            match resp.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        out.sort_by(|a, b| (&a.system, &a.source_key).cmp(&(&b.system, &b.source_key)));
        Ok(out)
    }

    fn link_from_item(&self, item: Item) -> Result<Link, StateError> {
        let pk = item.get("pk").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
        let stored: LinkItem<String> = self.decode(item, &pk)?;
        // `<LINK|HIST>#<entity>#<company>#<system>#<source key>`: the parts before the key cannot hold `#`.
        let parts: Vec<&str> = pk.splitn(5, '#').collect();
        let [_, entity, company, system, source_key] = parts[..] else {
            return Err(self.corrupt(&pk, format!("key `{pk}` is not <LINK|HIST>#entity#company#system#key")));
        };
        let scope = Link {
            entity: entity.into(),
            company: company.into(),
            system: system.into(),
            source_key: source_key.into(),
            target_key: String::new(),
            source_version: None,
            source_hash: None,
            target_hash: None,
            synced_at: String::new(),
            previous: None,
        };
        let previous = stored.prev.and_then(|p| {
            let until = p.ttl?;
            Some(Box::new(Replaced {
                state: p.into_link(&scope),
                until,
            }))
        });
        Ok(Link {
            previous,
            ..stored.state.into_link(&scope)
        })
    }

    // ---------------------------------------------------------------- lease

    /// Take the lease of a flow and company for `ttl`. Succeeds when nobody holds it, the holder's lease has
    /// expired (a crashed run), or `owner` already holds it (re-entry). `None`: someone else holds it.
    pub async fn acquire_lease(
        &self,
        flow: &str,
        company: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, StateError> {
        check_part("flow", flow)?;
        check_part("company", company)?;
        if owner.is_empty() {
            return Err(StateError::Invalid {
                what: "lease owner",
                detail: "must not be empty".into(),
            });
        }
        let pk = lease_pk(flow, company);
        let now = now_epoch();
        let expires = expiry(ttl);
        if self.dry_run {
            return Ok(Some(Lease {
                flow: flow.into(),
                company: company.into(),
                owner: owner.into(),
                expires_at_epoch: expires,
            }));
        }
        let item = encode(LeaseItem {
            pk: &pk,
            sk: "LEASE",
            flow,
            company,
            owner,
            expires_at: expires,
            acquired_at: now_rfc3339(),
            // Lets DynamoDB clean up leases of flows that stopped running; an expired lease is free anyway.
            ttl: expires + 86_400,
        })?;
        self.bump();
        self.write_units(item_size(&item));
        let res = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR #exp <= :now OR #o = :owner")
            .expression_attribute_names("#exp", "expires_at")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":owner", s(owner))
            .send()
            .await;
        match res {
            Ok(_) => Ok(Some(Lease {
                flow: flow.to_owned(),
                company: company.to_owned(),
                owner: owner.to_owned(),
                expires_at_epoch: expires,
            })),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(dynamo_err("PutItem (lease)", &self.table, pk, e)),
        }
    }

    /// Extend a held lease by `ttl` from now. `false`: the lease was taken over (or released) meanwhile —
    /// stop writing and let the new holder finish.
    /// A shared request budget's counters: requests used per time slot (`s<slot>` attributes) and the item's
    /// version, for [`StateStore::budget_take`].
    pub async fn budget_counts(&self, key: &str) -> Result<(BTreeMap<u64, u64>, u64), StateError> {
        let pk = format!("BUDGET#{key}");
        let Some(item) = self.get(&pk, "BUDGET", "GetItem (budget)").await? else {
            return Ok((BTreeMap::new(), 0));
        };
        let num = |v: &AV| v.as_n().ok().and_then(|n| n.parse::<u64>().ok());
        let version = item.get("version").and_then(num).unwrap_or(0);
        let counts = item
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix('s')?.parse::<u64>().ok()?, num(v)?)))
            .collect();
        Ok((counts, version))
    }

    /// Adds `take` requests to `slot` if the budget item is still at `version` (another process may have
    /// taken some since it was read: `Ok(false)`, read again), dropping the counters of `expired` slots.
    pub async fn budget_take(
        &self,
        key: &str,
        slot: u64,
        take: u64,
        version: u64,
        expired: &[u64],
    ) -> Result<bool, StateError> {
        let pk = format!("BUDGET#{key}");
        let mut update = "SET #cur = if_not_exists(#cur, :zero) + :n, #ver = :next, #ttl = :ttl".to_string();
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&pk))
            .key("sk", s("BUDGET"))
            .condition_expression("attribute_not_exists(#ver) OR #ver = :ver")
            .expression_attribute_names("#cur", format!("s{slot}"))
            .expression_attribute_names("#ver", "version")
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":n", n(take))
            .expression_attribute_values(":ver", n(version))
            .expression_attribute_values(":next", n(version + 1))
            .expression_attribute_values(":ttl", n(expiry(Duration::from_secs(86_400))));
        if !expired.is_empty() {
            let names: Vec<String> = (0..expired.len()).map(|i| format!("#old{i}")).collect();
            update.push_str(&format!(" REMOVE {}", names.join(", ")));
            for (name, slot) in names.iter().zip(expired) {
                req = req.expression_attribute_names(name, format!("s{slot}"));
            }
        }
        self.bump();
        self.write_units(0);
        match req.update_expression(update).send().await {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(dynamo_err("UpdateItem (budget)", &self.table, pk, e)),
        }
    }

    pub async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> Result<bool, StateError> {
        if self.dry_run {
            return Ok(true);
        }
        let pk = lease_pk(&lease.flow, &lease.company);
        let expires = expiry(ttl);
        self.bump();
        self.write_units(0);
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&pk))
            .key("sk", s("LEASE"))
            .update_expression("SET #exp = :exp, #ttl = :ttl")
            .condition_expression("#o = :owner")
            .expression_attribute_names("#exp", "expires_at")
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_names("#o", "owner")
            .expression_attribute_values(":exp", n(expires))
            .expression_attribute_values(":ttl", n(expires + 86_400))
            .expression_attribute_values(":owner", s(&lease.owner))
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(dynamo_err("UpdateItem (lease)", &self.table, pk, e)),
        }
    }

    /// Give the lease up. If someone else has taken it over meanwhile, their lease is left alone and this
    /// returns `Ok` with a warning (the run's watermark write is what guards against overlapping work).
    pub async fn release_lease(&self, lease: &Lease) -> Result<(), StateError> {
        if self.dry_run {
            return Ok(());
        }
        let pk = lease_pk(&lease.flow, &lease.company);
        self.bump();
        self.write_units(0);
        let res = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(&pk))
            .key("sk", s("LEASE"))
            .condition_expression("#o = :owner")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_values(":owner", s(&lease.owner))
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                tracing::warn!(flow = %lease.flow, company = %lease.company, owner = %lease.owner,
                    "lease was no longer ours when releasing it (expired and taken over, or already released)");
                Ok(())
            }
            Err(e) => Err(dynamo_err("DeleteItem (lease)", &self.table, pk, e)),
        }
    }

    /// Who holds the lease now; `None` when nobody does or the stored lease has expired.
    pub async fn lease_holder(&self, flow: &str, company: &str) -> Result<Option<Lease>, StateError> {
        check_part("flow", flow)?;
        check_part("company", company)?;
        let pk = lease_pk(flow, company);
        let Some(item) = self.get(&pk, "LEASE", "GetItem (lease)").await? else {
            return Ok(None);
        };
        let LeaseHolder { owner, expires_at } = self.decode(item, &pk)?;
        let lease = Lease {
            flow: flow.to_owned(),
            company: company.to_owned(),
            owner,
            expires_at_epoch: expires_at,
        };
        Ok((!lease.is_expired()).then_some(lease))
    }

    // --------------------------------------------------------------- pauses

    /// The pause mark of a flow and company, if there is one.
    pub async fn pause_mark(&self, flow: &str, company: &str) -> Result<Option<PauseMark>, StateError> {
        check_part("flow", flow)?;
        check_part("company", company)?;
        let pk = pause_pk(flow, company);
        match self.get(&pk, "PAUSE", "GetItem (pause)").await? {
            Some(item) => Ok(Some(self.decode(item, &pk)?)),
            None => Ok(None),
        }
    }

    /// Leave (or renew) the pause mark of a flow and company.
    pub async fn put_pause_mark(&self, flow: &str, company: &str, by: &str) -> Result<(), StateError> {
        check_part("flow", flow)?;
        check_part("company", company)?;
        if self.dry_run {
            return Ok(());
        }
        let pk = pause_pk(flow, company);
        let item = encode(PauseItem {
            pk: &pk,
            sk: "PAUSE",
            mark: PauseMark {
                since: now_rfc3339(),
                by: by.to_owned(),
            },
        })?;
        self.bump();
        self.write_units(0);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| dynamo_err("PutItem (pause)", &self.table, pk, e))?;
        Ok(())
    }

    /// Remove the pause mark of a flow and company (none there is fine).
    pub async fn delete_pause_mark(&self, flow: &str, company: &str) -> Result<(), StateError> {
        check_part("flow", flow)?;
        check_part("company", company)?;
        if self.dry_run {
            return Ok(());
        }
        let pk = pause_pk(flow, company);
        self.bump();
        self.write_units(0);
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(&pk))
            .key("sk", s("PAUSE"))
            .send()
            .await
            .map_err(|e| dynamo_err("DeleteItem (pause)", &self.table, pk, e))?;
        Ok(())
    }

    // ----------------------------------------------------------------- runs

    /// Store a run record (kept 30 days through TTL). Writing the same `started_at` and `run_id` again
    /// replaces the record, so a run may write a provisional record at start and the final one at the end.
    pub async fn put_run(&self, run: &RunRecord) -> Result<(), StateError> {
        if self.dry_run {
            return Ok(());
        }
        check_part("flow", &run.flow)?;
        check_part("company", &run.company)?;
        if run.run_id.is_empty() {
            return Err(StateError::Invalid {
                what: "run record",
                detail: "empty run_id".into(),
            });
        }
        let pk = run_pk(&run.flow, &run.company);
        let sk = format!("{}#{}", sort_time(&run.started_at)?, run.run_id);
        let item = encode(RunItem {
            pk: &pk,
            sk: &sk,
            run,
            ttl: now_epoch() + RUN_RETENTION.as_secs() as i64,
        })?;
        self.bump();
        self.write_units(item_size(&item));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| dynamo_err("PutItem (run)", &self.table, format!("{pk} / {sk}"), e))?;
        Ok(())
    }

    /// The audit trail of one record's syncs, newest first (at most `limit` entries): the link as it stands,
    /// then the states it replaced in the last 30 days.
    pub async fn history(
        &self,
        entity: &str,
        company: &str,
        system: &str,
        source_key: &str,
        limit: i32,
    ) -> Result<Vec<Link>, StateError> {
        check_part("entity", entity)?;
        check_part("company", company)?;
        check_part("system", system)?;
        let now = now_epoch();
        let mut out = Vec::new();
        for mut link in self
            .get_links(entity, company, system, &[source_key.to_string()])
            .await?
            .into_values()
        {
            let previous = link.previous.take().filter(|p| p.until > now);
            out.push(link);
            out.extend(previous.map(|p| p.state));
        }
        let pk = history_pk(entity, company, system, source_key);
        let q = PkQuery {
            pk: &pk,
            op: "Query (history)",
            newest_first: true,
            consistent: false,
            limit: Some(limit.max(1)),
        };
        for item in self.query_page(&q, None).await?.0 {
            out.push(self.link_from_item(item)?);
        }
        out.truncate(limit.max(1) as usize);
        Ok(out)
    }

    /// The newest `limit` run records of a flow and company, newest first. Records past their TTL are
    /// skipped even if DynamoDB has not deleted them yet (it does so lazily; moto never does).
    pub async fn recent_runs(&self, flow: &str, company: &str, limit: i32) -> Result<Vec<RunRecord>, StateError> {
        check_part("flow", flow)?;
        check_part("company", company)?;
        let want = usize::try_from(limit).unwrap_or(0);
        if want == 0 {
            return Ok(Vec::new());
        }
        let pk = run_pk(flow, company);
        let now = now_epoch();
        let mut out = Vec::with_capacity(want);
        let q = PkQuery {
            pk: &pk,
            op: "Query (runs)",
            newest_first: true,
            consistent: true,
            limit: Some(limit),
        };
        let mut start: Option<Item> = None;
        loop {
            let (items, next) = self.query_page(&q, start.take()).await?;
            for item in items {
                let key = format!(
                    "{pk} / {}",
                    item.get("sk").and_then(|v| v.as_s().ok()).map_or("?", |s| s)
                );
                let StoredRun { run, ttl } = self.decode(item, &key)?;
                if ttl.is_some_and(|ttl| ttl <= now) {
                    continue;
                }
                out.push(run);
                if out.len() == want {
                    return Ok(out);
                }
            }
            match next {
                Some(k) => start = Some(k),
                None => return Ok(out),
            }
        }
    }

    // -------------------------------------------------------------- helpers

    /// One BatchWriteItem of at most [`WRITE_CHUNK`] requests, the unprocessed ones retried with backoff. The
    /// caller counts the write units (DynamoDB bills each item once, when it is processed).
    async fn write_batch(&self, mut pending: Vec<WriteRequest>, op: &'static str) -> Result<(), StateError> {
        let mut attempt = 1;
        loop {
            let first_key = first_write_pk(&pending);
            self.bump();
            let resp = self
                .client
                .batch_write_item()
                .request_items(&self.table, pending)
                .send()
                .await
                .map_err(|e| dynamo_err(op, &self.table, first_key, e))?;
            let left: Vec<WriteRequest> = resp
                .unprocessed_items()
                .and_then(|u| u.get(&self.table))
                .cloned()
                .unwrap_or_default();
            if left.is_empty() {
                return Ok(());
            }
            if attempt >= MAX_BATCH_ATTEMPTS {
                return Err(StateError::Unprocessed {
                    op,
                    table: self.table.clone(),
                    remaining: left.len(),
                    attempts: attempt,
                    first_key: first_write_pk(&left),
                });
            }
            backoff(attempt).await;
            attempt += 1;
            pending = left;
        }
    }

    /// One page of partition `q.pk` from `start`, and where the next page starts. Counts the request and its
    /// read units: a query is billed on the total size it returns, rounded up to 4 KB once.
    async fn query_page(&self, q: &PkQuery<'_>, start: Option<Item>) -> Result<(Vec<Item>, Option<Item>), StateError> {
        self.bump();
        let mut resp = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(q.pk))
            .scan_index_forward(!q.newest_first)
            .consistent_read(q.consistent)
            .set_limit(q.limit)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| dynamo_err(q.op, &self.table, q.pk, e))?;
        let items = resp.items.take().unwrap_or_default();
        self.read_units(items.iter().map(item_size).sum(), q.consistent);
        let next = resp.last_evaluated_key.filter(|k| !k.is_empty());
        Ok((items, next))
    }

    async fn get(&self, pk: &str, sk: &str, op: &'static str) -> Result<Option<Item>, StateError> {
        self.bump();
        self.read_units(0, true);
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            // State decisions (lease, watermark) must see the latest write.
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| dynamo_err(op, &self.table, pk, e))?;
        Ok(out.item)
    }

    /// Read an item into `T` (extra attributes are ignored); a mismatch is a [`StateError::Corrupt`] naming it.
    fn decode<T: DeserializeOwned>(&self, item: Item, key: &str) -> Result<T, StateError> {
        serde_dynamo::from_item(item).map_err(|e| self.corrupt(key, e))
    }

    fn corrupt(&self, key: &str, detail: impl std::fmt::Display) -> StateError {
        StateError::Corrupt {
            table: self.table.clone(),
            key: key.to_owned(),
            detail: detail.to_string(),
        }
    }
}

// ---------------------------------------------------------------- items
//
// The stored items, written and read through serde_dynamo: a `String` is S, an integer N, a `Vec<String>` an
// L of S, a field name the attribute name. The key strings (pk/sk) are built by the `*_pk` functions. Keys for
// Get/Delete/BatchGet and condition or update values stay hand-built: they are not whole items.

fn encode(value: impl Serialize) -> Result<Item, StateError> {
    serde_dynamo::to_item(value).map_err(|e| invalid("DynamoDB item", e))
}

/// The watermark item: its key and scope next to the [`Watermark`] fields (which read back on their own).
#[derive(Serialize)]
struct WatermarkItem<'a> {
    pk: &'a str,
    sk: &'a str,
    flow: &'a str,
    company: &'a str,
    #[serde(flatten)]
    watermark: &'a Watermark,
}

/// A query of one partition (`pk = :pk`), as [`StateStore::query_page`] sends it.
struct PkQuery<'a> {
    pk: &'a str,
    /// Named in errors: `Query (runs)`.
    op: &'static str,
    /// Descending sort key.
    newest_first: bool,
    consistent: bool,
    limit: Option<i32>,
}

/// A link item, or with a `ttl` a history entry; `S` is `&str` for writing and `String` for reading. Not
/// [`Link`] itself: its entity, company, system and source key live only in `pk` (items stay small, cheaper
/// writes) and must be parsed back out of it, and absent optionals are left out rather than stored as NULL.
#[derive(Serialize, Deserialize)]
struct LinkItem<S> {
    pk: S,
    sk: S,
    #[serde(flatten)]
    state: StateItem<S>,
    /// A link item's [`Replaced`] state, a map attribute; its `ttl` is when the entry lapses.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    prev: Option<StateItem<S>>,
}

/// What a link says at one sync.
#[derive(Serialize, Deserialize)]
struct StateItem<S> {
    target_key: S,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    source_version: Option<S>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    source_hash: Option<S>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    target_hash: Option<S>,
    synced_at: S,
    /// [`TTL_ATTRIBUTE`].
    #[serde(skip_serializing_if = "Option::is_none", default)]
    ttl: Option<i64>,
}

impl<'a> StateItem<&'a str> {
    fn of(link: &'a Link, ttl: Option<i64>) -> Self {
        StateItem {
            target_key: &link.target_key,
            source_version: link.source_version.as_deref(),
            source_hash: link.source_hash.as_deref(),
            target_hash: link.target_hash.as_deref(),
            synced_at: &link.synced_at,
            ttl,
        }
    }
}

impl StateItem<String> {
    /// The link of `scope` (entity, company, system, source key) in this state, with no trail.
    fn into_link(self, scope: &Link) -> Link {
        Link {
            target_key: self.target_key,
            source_version: self.source_version,
            source_hash: self.source_hash,
            target_hash: self.target_hash,
            synced_at: self.synced_at,
            previous: None,
            ..scope.clone()
        }
    }
}

/// The lease item. Not [`Lease`], whose expiry field is named differently (`expires_at` on the wire).
#[derive(Serialize)]
struct LeaseItem<'a> {
    pk: &'a str,
    sk: &'a str,
    flow: &'a str,
    company: &'a str,
    owner: &'a str,
    expires_at: i64,
    acquired_at: String,
    /// [`TTL_ATTRIBUTE`].
    ttl: i64,
}

/// A pause item: key and the [`PauseMark`].
#[derive(Serialize)]
struct PauseItem<'a> {
    pk: &'a str,
    sk: &'a str,
    #[serde(flatten)]
    mark: PauseMark,
}

/// What [`StateStore::lease_holder`] needs of a lease item.
#[derive(Deserialize)]
struct LeaseHolder {
    owner: String,
    expires_at: i64,
}

/// A run item: key, the [`RunRecord`] fields and the expiry ([`TTL_ATTRIBUTE`]).
#[derive(Serialize)]
struct RunItem<'a> {
    pk: &'a str,
    sk: &'a str,
    #[serde(flatten)]
    run: &'a RunRecord,
    ttl: i64,
}

#[derive(Deserialize)]
struct StoredRun {
    #[serde(flatten)]
    run: RunRecord,
    ttl: Option<i64>,
}

/// The items that store `link` over `old` (as read before the write): the link item, holding the state it
/// replaces (or, unchanged, the one it held); and the state that one held before, which moves to the history.
fn trail_items(pk: &str, link: &Link, old: Option<&Link>, now: i64) -> Result<Vec<Item>, StateError> {
    let live = |r: &Option<Box<Replaced>>| r.as_deref().filter(|r| r.until > now).cloned();
    let (prev, spilled) = match old {
        Some(old) if old != link => {
            let state = Link {
                previous: None,
                ..old.clone()
            };
            let until = now + HISTORY_RETENTION.as_secs() as i64;
            (Some(Replaced { state, until }), live(&old.previous))
        }
        Some(old) => (live(&old.previous), None),
        None => (None, None),
    };
    let mut items = vec![link_item(pk, link, prev.as_ref())?];
    if let Some(spilled) = spilled {
        items.push(history_item(&spilled)?);
    }
    Ok(items)
}

/// A link item, with the state it replaced when there is one.
fn link_item(pk: &str, link: &Link, prev: Option<&Replaced>) -> Result<Item, StateError> {
    encode(LinkItem {
        pk,
        sk: "LINK",
        state: StateItem::of(link, None),
        prev: prev.map(|p| StateItem::of(&p.state, Some(p.until))),
    })
}

/// An audit entry: a replaced state that left its link item, kept until its own expiry.
fn history_item(old: &Replaced) -> Result<Item, StateError> {
    let l = &old.state;
    let pk = history_pk(&l.entity, &l.company, &l.system, &l.source_key);
    let sk = format!("{}#{}", l.synced_at, l.target_hash.as_deref().unwrap_or("-"));
    encode(LinkItem {
        pk: pk.as_str(),
        sk: sk.as_str(),
        state: StateItem::of(l, Some(old.until)),
        prev: None,
    })
}

fn key_item(pk: &str, sk: &str) -> Item {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

fn first_pk(items: &[Item]) -> String {
    let first = items
        .first()
        .and_then(|i| i.get("pk"))
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default();
    if items.len() > 1 {
        format!("{first} (+{} more)", items.len() - 1)
    } else {
        first
    }
}

fn first_write_pk(reqs: &[WriteRequest]) -> String {
    let items: Vec<Item> = reqs
        .iter()
        .filter_map(|r| {
            r.put_request()
                .map(|p| p.item().clone())
                .or_else(|| r.delete_request().map(|d| d.key().clone()))
        })
        .collect();
    first_pk(&items)
}

fn s(v: impl Into<String>) -> AV {
    AV::S(v.into())
}

fn n(v: impl ToString) -> AV {
    AV::N(v.to_string())
}

fn invalid(what: &'static str, e: impl std::fmt::Display) -> StateError {
    StateError::Invalid {
        what,
        detail: e.to_string(),
    }
}

/// Key parts are joined with `#`, so a `#` inside one would let two different keys collide.
fn check_part(what: &'static str, value: &str) -> Result<(), StateError> {
    if value.is_empty() || value.contains('#') {
        return Err(StateError::Invalid {
            what,
            detail: format!("`{value}` must be non-empty and must not contain `#` (it is part of a DynamoDB key)"),
        });
    }
    Ok(())
}

fn now_epoch() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_else(|_| now_epoch().to_string())
}

/// Expiry in whole epoch seconds, rounded up so a lease never lasts less than `ttl`.
fn expiry(ttl: Duration) -> i64 {
    let now = OffsetDateTime::now_utc();
    let end = now.unix_timestamp_nanos() + ttl.as_nanos() as i128;
    let secs = end.div_euclid(1_000_000_000);
    let rem = end.rem_euclid(1_000_000_000);
    (secs + i128::from(rem > 0)) as i64
}

/// A fixed-width UTC form of an RFC 3339 time. Raw RFC 3339 strings do not sort by time
/// (`…:00Z` > `…:00.5Z`, offsets differ), and the run sort key must.
fn sort_time(started_at: &str) -> Result<String, StateError> {
    let t = OffsetDateTime::parse(started_at, &Rfc3339).map_err(|e| StateError::Invalid {
        what: "run started_at",
        detail: format!("`{started_at}` is not an RFC 3339 time ({e}); pass e.g. 2026-11-25T21:15:00Z"),
    })?;
    let t = t.to_offset(time::UtcOffset::UTC);
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    t.format(&fmt).map_err(|e| StateError::Invalid {
        what: "run started_at",
        detail: e.to_string(),
    })
}

/// Exponential backoff with a little jitter for unprocessed batch items: 50 ms, 100 ms, … up to 2 s.
async fn backoff(attempt: u32) {
    let base = 50u64.saturating_mul(1 << attempt.min(6)).min(2_000);
    let jitter = u64::from(OffsetDateTime::now_utc().nanosecond()) % 50;
    tokio::time::sleep(Duration::from_millis(base + jitter)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_time_orders_by_instant() {
        let a = sort_time("2026-11-25T21:15:00Z").unwrap();
        let b = sort_time("2026-11-25T21:15:00.5Z").unwrap();
        let c = sort_time("2026-11-25T22:14:00+01:00").unwrap(); // 21:14 UTC
        assert_eq!(a, "2026-11-25T21:15:00.000Z");
        assert!(a < b);
        assert!(c < a);
        assert!(sort_time("yesterday").is_err());
    }

    #[test]
    fn key_parts_reject_separator() {
        assert!(check_part("flow", "accounts-to-fno").is_ok());
        assert!(check_part("flow", "a#b").is_err());
        assert!(check_part("flow", "").is_err());
    }

    #[test]
    fn expiry_rounds_up() {
        let now = now_epoch();
        let e = expiry(Duration::from_millis(1));
        assert!(e >= now && e <= now + 1);
        assert!(expiry(Duration::from_secs(60)) >= now + 60);
    }
}
