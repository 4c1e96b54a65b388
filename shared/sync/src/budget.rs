//! One service-protection budget for the whole deployment: Dataverse counts requests per application user
//! (6,000 per 5 minutes, in a sliding window), not per process, so every invocation of every flow takes its
//! requests from one item in the DynamoDB table, a chunk at a time (see `p2c_dynamics::Budget`).
//!
//! The item keeps the requests taken per tenth of the window. A chunk is granted while the current slot and the
//! ten before it — every slot a sliding window can touch — hold at most 95 % of the limit together: so a burst
//! may use nearly the whole window's budget at once, as the service allows, and no sliding window goes over.

use std::{
    future::Future,
    pin::Pin,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use p2c_dynamics::Budget;
use p2c_state::StateStore;

/// Slots per window.
const SLOTS: u64 = 10;
/// The share of the limit p2c lets itself use in any window (the rest absorbs clock skew between processes).
const SHARE: f64 = 0.95;
/// Reads and conditional writes before a reservation gives up for now (another process kept winning).
const TRIES: u32 = 5;

pub struct SharedBudget {
    store: StateStore,
    key: String,
    slot_ms: u64,
    cap: u64,
}

impl SharedBudget {
    /// `requests` per `window` for `service` and the application user `client_id`.
    pub fn new(store: StateStore, service: &str, client_id: &str, requests: u32, window: Duration) -> SharedBudget {
        SharedBudget {
            store,
            key: format!("{service}#{client_id}"),
            slot_ms: (window.as_millis() as u64 / SLOTS).max(1),
            cap: ((f64::from(requests) * SHARE).floor() as u64).max(1),
        }
    }

    /// One read-decide-write round: `Ok(Ok(n))` granted, `Ok(Err(wait))` spent, `Err(())` lost a race.
    async fn try_take(&self, n: u64) -> Result<Result<u32, Duration>, p2c_state::StateError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let slot = now / self.slot_ms;
        let (counts, version) = self.store.budget_counts(&self.key).await?;
        let oldest = slot.saturating_sub(SLOTS);
        let used: u64 = counts.range(oldest..=slot).map(|(_, v)| v).sum();
        if used + n > self.cap {
            // Spent: wait for the next slot, when the oldest counted one leaves the window.
            return Ok(Err(Duration::from_millis(self.slot_ms - now % self.slot_ms + now % 53)));
        }
        let expired: Vec<u64> = counts.keys().copied().filter(|s| *s < oldest).collect();
        if self.store.budget_take(&self.key, slot, n, version, &expired).await? {
            Ok(Ok(n as u32))
        } else {
            Ok(Err(Duration::ZERO))
        }
    }
}

impl Budget for SharedBudget {
    fn reserve(&self, n: u32) -> Pin<Box<dyn Future<Output = Result<u32, Duration>> + Send + '_>> {
        let n = u64::from(n).clamp(1, self.cap);
        Box::pin(async move {
            for _ in 0..TRIES {
                match self.try_take(n).await {
                    Ok(Ok(granted)) => return Ok(granted),
                    Ok(Err(wait)) if wait > Duration::ZERO => return Err(wait),
                    Ok(Err(_)) => continue, // another process took some first: read again
                    Err(e) => {
                        // The budget must not stop the sync: the local limiter and 429 handling remain.
                        tracing::warn!(error = %e, "the shared request budget is unreachable; going on without it");
                        return Ok(n as u32);
                    }
                }
            }
            Err(Duration::from_millis(20))
        })
    }
}
