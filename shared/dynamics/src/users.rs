//! The application users a service is called as, and which one takes the next request.
//!
//! Dataverse's service protection counts per user: 6,000 requests and 1,200 s of execution per 5 minutes, 52
//! concurrent (https://learn.microsoft.com/power-apps/developer/data-platform/api-limits). A deployment whose
//! load is beyond one user's share spreads it over several application users, each with its own tokens and its
//! own budget; every request goes as a user whose budget has room.

use std::{
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::auth::TokenCache;

/// A request budget shared by every process using one application user (service protection counts per user,
/// not per process). `reserve(n)` takes up to `n` requests from it: `Ok(granted)` (at least 1), or `Err(wait)`
/// when the budget is spent until `wait` has passed (then ask again).
pub trait Budget: Send + Sync {
    fn reserve(&self, n: u32) -> Pin<Box<dyn std::future::Future<Output = Result<u32, Duration>> + Send + '_>>;
}

/// Requests taken from a budget at a time: one budget call per this many requests.
pub const BUDGET_CHUNK: u32 = 20;

/// Waited when every user is spent and none said for how long (a budget that kept losing races).
const RECHECK: Duration = Duration::from_millis(20);

/// One application user: its tokens and, when the deployment shares one, its budget for this service.
pub struct AppUser {
    pub tokens: Arc<TokenCache>,
    budget: Option<Arc<dyn Budget>>,
}

impl AppUser {
    pub fn new(tokens: Arc<TokenCache>) -> AppUser {
        AppUser { tokens, budget: None }
    }

    /// Takes this user's requests from `budget` (shared with every other process of the deployment).
    pub fn with_budget(mut self, budget: Arc<dyn Budget>) -> AppUser {
        self.budget = Some(budget);
        self
    }

    pub fn client_id(&self) -> &str {
        self.tokens.client_id()
    }
}

/// What this process knows of each user: requests reserved and not used yet, and until when it is spent
/// (its budget said so, or the service throttled it).
#[derive(Default)]
struct Shares {
    reserved: Vec<u32>,
    spent_until: Vec<Option<Instant>>,
    /// Where the next search starts: chunks rotate over the users so the load shards evenly.
    next: usize,
}

/// The users of one service (at least one).
pub struct Users {
    users: Vec<AppUser>,
    shares: tokio::sync::Mutex<Shares>,
}

impl Users {
    /// `users` must not be empty (configuration guarantees at least one client id).
    pub fn new(users: Vec<AppUser>) -> Users {
        assert!(!users.is_empty(), "at least one application user");
        let n = users.len();
        Users {
            users,
            shares: tokio::sync::Mutex::new(Shares {
                reserved: vec![0; n],
                spent_until: vec![None; n],
                // Processes started together (a burst of Lambda instances) begin with different users.
                next: rand::random_range(0..n),
            }),
        }
    }

    pub fn one(tokens: Arc<TokenCache>) -> Users {
        Users::new(vec![AppUser::new(tokens)])
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    pub fn get(&self, i: usize) -> &AppUser {
        &self.users[i]
    }

    /// The user (index) the next request goes as: one with a request reserved, else one whose budget grants a
    /// chunk (starting after the last one granted), else — all spent — the wait until the first frees up.
    pub async fn take(&self) -> usize {
        loop {
            let mut shares = self.shares.lock().await;
            let now = Instant::now();
            if let Some(i) = self.on_hand(&mut shares, now) {
                return i;
            }
            let soonest = match self.reserve(&mut shares, now).await {
                Ok(i) => return i,
                Err(soonest) => soonest,
            };
            drop(shares);
            tokio::time::sleep_until(soonest.unwrap_or(now + RECHECK).into()).await;
        }
    }

    /// The service throttled user `i` anyway (its budget is shared with something p2c does not see): the others
    /// take the load until `wait` has passed.
    pub async fn throttled(&self, i: usize, wait: Duration) {
        let mut shares = self.shares.lock().await;
        let until = Instant::now() + wait;
        shares.reserved[i] = 0;
        if shares.spent_until[i].is_none_or(|t| t < until) {
            shares.spent_until[i] = Some(until);
        }
    }

    /// Users in search order: from `next`, round the list once.
    fn order(&self, next: usize) -> impl Iterator<Item = usize> + use<> {
        let n = self.users.len();
        (0..n).map(move |k| (next + k) % n)
    }

    /// A user that can go without asking a budget: one without a budget (rotating) or with requests reserved.
    fn on_hand(&self, shares: &mut Shares, now: Instant) -> Option<usize> {
        for i in self.order(shares.next) {
            if shares.spent_until[i].is_some_and(|t| t > now) {
                continue;
            }
            if self.users[i].budget.is_none() {
                shares.next = (i + 1) % self.users.len();
                return Some(i);
            }
            if shares.reserved[i] > 0 {
                shares.reserved[i] -= 1;
                return Some(i);
            }
        }
        None
    }

    /// Asks each user's budget in turn for a chunk; `Err` carries the soonest instant a user frees up.
    async fn reserve(&self, shares: &mut Shares, now: Instant) -> Result<usize, Option<Instant>> {
        let mut soonest: Option<Instant> = None;
        for i in self.order(shares.next) {
            if let Some(t) = shares.spent_until[i].filter(|t| *t > now) {
                soonest = Some(soonest.map_or(t, |s| s.min(t)));
                continue;
            }
            let Some(budget) = &self.users[i].budget else { continue };
            match budget.reserve(BUDGET_CHUNK).await {
                Ok(granted) => {
                    shares.reserved[i] = granted.max(1) - 1;
                    shares.spent_until[i] = None;
                    shares.next = (i + 1) % self.users.len();
                    return Ok(i);
                }
                Err(wait) => {
                    let t = now + wait.max(Duration::from_millis(1));
                    shares.spent_until[i] = Some(t);
                    soonest = Some(soonest.map_or(t, |s| s.min(t)));
                }
            }
        }
        Err(soonest)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::auth::{Credentials, Secret};

    /// A budget of `left` requests in all; spent, it answers "wait 30 ms".
    struct Fixed {
        left: AtomicU32,
        asked: AtomicU32,
    }

    impl Fixed {
        fn new(left: u32) -> Arc<Fixed> {
            Arc::new(Fixed {
                left: AtomicU32::new(left),
                asked: AtomicU32::new(0),
            })
        }
    }

    impl Budget for Fixed {
        fn reserve(&self, n: u32) -> Pin<Box<dyn std::future::Future<Output = Result<u32, Duration>> + Send + '_>> {
            self.asked.fetch_add(1, Ordering::Relaxed);
            let left = self.left.load(Ordering::Relaxed);
            let granted = n.min(left);
            self.left.store(left - granted, Ordering::Relaxed);
            Box::pin(async move {
                if granted == 0 {
                    Err(Duration::from_millis(30))
                } else {
                    Ok(granted)
                }
            })
        }
    }

    fn user(id: &str, budget: Option<Arc<Fixed>>) -> AppUser {
        let tokens = Arc::new(TokenCache::new(
            reqwest::Client::new(),
            Credentials {
                authority_url: "http://127.0.0.1:9".into(),
                tenant: "t".into(),
                client_id: id.into(),
                client_secret: Secret::new("s"),
            },
        ));
        let u = AppUser::new(tokens);
        match budget {
            Some(b) => u.with_budget(b),
            None => u,
        }
    }

    /// Requests per user over `n` takes.
    async fn takes(users: &Users, n: usize) -> Vec<usize> {
        let mut per = vec![0; users.len()];
        for _ in 0..n {
            per[users.take().await] += 1;
        }
        per
    }

    #[tokio::test]
    async fn chunks_rotate_so_the_load_shards_evenly() {
        let users = Users::new(vec![
            user("a", Some(Fixed::new(1000))),
            user("b", Some(Fixed::new(1000))),
        ]);
        assert_eq!(takes(&users, 4 * BUDGET_CHUNK as usize).await, vec![40, 40]);
    }

    #[tokio::test]
    async fn a_spent_user_is_passed_over_for_one_with_room() {
        let (a, b) = (Fixed::new(0), Fixed::new(1000));
        let users = Users::new(vec![user("a", Some(a.clone())), user("b", Some(b))]);
        assert_eq!(takes(&users, 100).await, vec![0, 100]);
        // Spent once, a is not asked again until its wait has passed: one budget call, not one per chunk.
        assert_eq!(a.asked.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn together_they_grant_their_sum_and_then_wait() {
        let users = Users::new(vec![user("a", Some(Fixed::new(30))), user("b", Some(Fixed::new(25)))]);
        assert_eq!(takes(&users, 55).await, vec![30, 25], "every request either has");
        let waited = tokio::time::timeout(Duration::from_millis(20), users.take()).await;
        assert!(waited.is_err(), "both spent: the next request waits");
    }

    #[tokio::test]
    async fn a_throttled_user_is_left_alone_until_its_wait_has_passed() {
        let users = Users::new(vec![user("a", None), user("b", None)]);
        assert_eq!(takes(&users, 10).await, vec![5, 5], "without budgets, users alternate");
        users.throttled(0, Duration::from_millis(50)).await;
        assert_eq!(takes(&users, 10).await, vec![0, 10]);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(takes(&users, 10).await, vec![5, 5]);
    }

    #[tokio::test]
    async fn one_user_without_a_budget_takes_everything() {
        let users = Users::new(vec![user("a", None)]);
        assert_eq!(takes(&users, 3).await, vec![3]);
    }
}
