//! Scale-out for large initial loads: a backfill split into segments of keys, enqueued to the flow's queue and
//! processed by as many Lambda invocations at once as the event source's maximum concurrency allows. Each
//! segment is an ordinary message, so a failed segment is retried, then dead-lettered, and replayable.

use crate::{
    deps::Deps,
    error::SyncError,
    flow_name::FlowName,
    message::{MAX_KEYS, Message, Reason},
};

/// Lists the company's source records and enqueues them in messages of `keys_per_message`. Returns the number
/// of records enqueued. The watermark is left alone: the next scheduled run still reads changes as usual.
pub async fn enqueue_backfill(
    deps: &Deps,
    flow: FlowName,
    company: &str,
    keys_per_message: usize,
) -> Result<usize, SyncError> {
    if flow != FlowName::AccountsToFno {
        return Err(SyncError::Unsupported(format!(
            "a segmented backfill is built for accounts-to-fno only, not {flow}; run `p2c backfill {flow}` instead"
        )));
    }
    let company = deps.legal_entity(company)?;
    let t = deps
        .templates(flow)
        .first()
        .ok_or_else(|| SyncError::Mapping(format!("flow {flow} has no template")))?;
    // The company's accounts: those of its business unit and (unless restricted) the units below it.
    let scope = deps.business_unit_scope(&company).await?;
    let select = [t.source_id.clone(), "_owningbusinessunit_value".into()];
    let rows = deps
        .sales
        .list(&t.source_entity, &select, scope.filter().as_deref())
        .await?;
    let ids: Vec<String> = rows
        .iter()
        .filter(|r| scope.owns(r))
        .filter_map(|r| r.get(&t.source_id).and_then(|v| v.as_str()).map(str::to_string))
        .collect();
    let bodies: Vec<String> = ids
        .chunks(keys_per_message.clamp(1, MAX_KEYS))
        .map(|c| Message::new(flow.as_str(), &company, c.to_vec(), Reason::Backfill).to_body())
        .collect();
    let pair = deps.queue_pair(flow).await?;
    deps.queues.send(&pair.queue_url, &bodies).await?;
    Ok(ids.len())
}
