//! Sweep digests: per key range of an F&O sweep, a hash of the (key, content hash) list of its records as last
//! committed. A sweep reads them all in one query and reads per-record links only for ranges whose digest
//! differs, so an unchanged sweep costs a handful of requests instead of one read per record.
//!
//! Item: `pk = DIGEST#<flow>#<company>`, `sk = <first key of the range>`, `last` (last key), `hash`, `count`.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{DeleteRequest, PutRequest, WriteRequest};

use super::{Item, PkQuery, StateStore, WRITE_CHUNK, check_part, invalid, item_size, n, s};
use crate::StateError;

/// Digests per Query page. DynamoDB would return 1 MB (about 6,000 digests) at once; the SDK's decoded form of
/// that is several times larger and is held while the sweep holds its first F&O page, so the run's peak memory
/// pays for it. Pages of 1,000 cost a few more requests and the same read units.
const QUERY_PAGE: i32 = 1_000;

/// The digest of one key range of a sweep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Digest {
    pub first: String,
    pub last: String,
    /// Hash of the range's (key, content hash) list, in the sweep's order.
    pub hash: String,
    pub count: u64,
}

pub fn digest_pk(flow: &str, company: &str) -> String {
    format!("DIGEST#{flow}#{company}")
}

impl StateStore {
    /// Every digest of a flow and company, by first key. Strongly consistent: a digest read stale could match
    /// content the links have moved on from.
    pub async fn digests(&self, flow: &str, company: &str) -> Result<HashMap<String, Digest>, StateError> {
        check_part("flow", flow)?;
        check_part("company", company)?;
        let pk = digest_pk(flow, company);
        let q = PkQuery {
            pk: &pk,
            op: "Query (digests)",
            newest_first: false,
            consistent: true,
            limit: Some(QUERY_PAGE),
        };
        let mut out = HashMap::new();
        let mut start: Option<Item> = None;
        loop {
            let (items, next) = self.query_page(&q, start.take()).await?;
            out.extend(items.iter().filter_map(decode).map(|d| (d.first.clone(), d)));
            match next {
                Some(k) => start = Some(k),
                None => return Ok(out),
            }
        }
    }

    /// Stores digests (insert or replace), in batches of 25.
    pub async fn put_digests(&self, flow: &str, company: &str, digests: &[Digest]) -> Result<(), StateError> {
        if self.dry_run || digests.is_empty() {
            return Ok(());
        }
        check_part("flow", flow)?;
        check_part("company", company)?;
        let pk = digest_pk(flow, company);
        for chunk in digests.chunks(WRITE_CHUNK) {
            let mut pending = Vec::with_capacity(chunk.len());
            for d in chunk {
                let item: Item = HashMap::from([
                    ("pk".to_owned(), s(&pk)),
                    ("sk".to_owned(), s(&d.first)),
                    ("last".to_owned(), s(&d.last)),
                    ("hash".to_owned(), s(&d.hash)),
                    ("count".to_owned(), n(d.count)),
                ]);
                self.write_units(item_size(&item));
                let put = PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .map_err(|e| invalid("BatchWriteItem request", e))?;
                pending.push(WriteRequest::builder().put_request(put).build());
            }
            self.write_batch(pending, "BatchWriteItem (digests)").await?;
        }
        Ok(())
    }

    /// Deletes every digest of a flow and company: the next sweep reads the links of every range again.
    pub async fn clear_digests(&self, flow: &str, company: &str) -> Result<(), StateError> {
        if self.dry_run {
            return Ok(());
        }
        let pk = digest_pk(flow, company);
        let firsts: Vec<String> = self.digests(flow, company).await?.into_keys().collect();
        for chunk in firsts.chunks(WRITE_CHUNK) {
            let mut pending = Vec::with_capacity(chunk.len());
            for first in chunk {
                let del = DeleteRequest::builder()
                    .key("pk", s(&pk))
                    .key("sk", s(first))
                    .build()
                    .map_err(|e| invalid("BatchWriteItem request", e))?;
                pending.push(WriteRequest::builder().delete_request(del).build());
            }
            self.write_batch(pending, "BatchWriteItem (digests)").await?;
        }
        Ok(())
    }
}

fn decode(item: &Item) -> Option<Digest> {
    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    Some(Digest {
        first: text("sk")?,
        last: text("last")?,
        hash: text("hash")?,
        count: item.get("count").and_then(|v| v.as_n().ok())?.parse().ok()?,
    })
}
