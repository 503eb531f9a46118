//! The `RateLimiter` contract, for the memory and DynamoDB adapters alike. Time is a
//! [`ManualClock`] the suite moves, so waits are checked exactly and nothing sleeps.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chorus::domain::RateLimit;
use chorus::ports::{Acquired, Clock, RateLimiter};

/// A clock that moves only when told to; starts at the wall-clock time (so TTLs written
/// from it are sensible on a shared table).
pub struct ManualClock(Mutex<jiff::Timestamp>);

impl ManualClock {
    pub fn starting_now() -> Arc<Self> {
        Arc::new(Self(Mutex::new(jiff::Timestamp::now())))
    }

    pub fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap();
        *now = now.checked_add(by).unwrap();
    }
}

impl Clock for ManualClock {
    fn now(&self) -> jiff::Timestamp {
        *self.0.lock().unwrap()
    }
}

/// `make` returns a limiter reading `clock`; every limiter it returns shares one backend
/// (the same memory limiter, or new DynamoDB limiters on one table), as concurrent workers
/// do.
pub async fn check_rate_limiter<F>(clock: &ManualClock, make: F)
where
    F: Fn() -> Arc<dyn RateLimiter>,
{
    a_fresh_scope_grants_its_burst_then_waits_for_one_refill(clock, make()).await;
    scopes_are_independent(make()).await;
    waiting_the_wait_grants_one_more_and_no_sooner(clock, make()).await;
    a_long_idle_refills_to_the_burst_only(clock, make()).await;
    concurrent_acquirers_share_the_burst(make).await;
}

/// A scope of its own for each check: backends that share a table keep buckets across runs.
fn fresh_scope() -> String {
    format!("contract-{:016x}", fastrand::u64(..))
}

/// Acquires until told to wait: the grants, and the wait.
async fn drain(limiter: &dyn RateLimiter, scope: &str, limit: RateLimit) -> (u32, Duration) {
    let mut granted = 0;
    loop {
        match limiter.acquire(scope, limit).await.unwrap() {
            Acquired::Granted => granted += 1,
            Acquired::Wait(wait) => return (granted, wait),
        }
        assert!(granted <= limit.burst, "granted more than the burst of {}", limit.burst);
    }
}

async fn a_fresh_scope_grants_its_burst_then_waits_for_one_refill(clock: &ManualClock, limiter: Arc<dyn RateLimiter>) {
    let scope = fresh_scope();
    let limit = RateLimit { per_minute: 30, burst: 4 };
    let (granted, wait) = drain(&*limiter, &scope, limit).await;
    assert_eq!(granted, 4, "a fresh scope grants exactly its burst");
    assert_eq!(wait, Duration::from_secs(2), "then one token every 60/30 s");

    // Time passing shortens the wait; asking again takes nothing.
    clock.advance(Duration::from_millis(500));
    assert_eq!(limiter.acquire(&scope, limit).await.unwrap(), Acquired::Wait(Duration::from_millis(1500)));
    assert_eq!(limiter.acquire(&scope, limit).await.unwrap(), Acquired::Wait(Duration::from_millis(1500)));
}

async fn scopes_are_independent(limiter: Arc<dyn RateLimiter>) {
    let (openai, anthropic) = (fresh_scope(), fresh_scope());
    let limit = RateLimit { per_minute: 60, burst: 2 };
    assert_eq!(drain(&*limiter, &openai, limit).await.0, 2);
    assert_eq!(drain(&*limiter, &anthropic, limit).await.0, 2, "another scope has its own bucket");
}

async fn waiting_the_wait_grants_one_more_and_no_sooner(clock: &ManualClock, limiter: Arc<dyn RateLimiter>) {
    let scope = fresh_scope();
    // 1.5 s a token: waits that are not whole seconds.
    let limit = RateLimit { per_minute: 40, burst: 2 };
    let (_, mut wait) = drain(&*limiter, &scope, limit).await;
    for _ in 0..3 {
        clock.advance(wait - Duration::from_millis(1));
        assert_eq!(
            limiter.acquire(&scope, limit).await.unwrap(),
            Acquired::Wait(Duration::from_millis(1)),
            "one millisecond early is too early"
        );
        clock.advance(Duration::from_millis(1));
        assert_eq!(limiter.acquire(&scope, limit).await.unwrap(), Acquired::Granted, "after the wait, one token");
        let Acquired::Wait(next) = limiter.acquire(&scope, limit).await.unwrap() else {
            panic!("only one token refilled");
        };
        assert_eq!(next, Duration::from_millis(1500));
        wait = next;
    }
}

async fn a_long_idle_refills_to_the_burst_only(clock: &ManualClock, limiter: Arc<dyn RateLimiter>) {
    let scope = fresh_scope();
    let limit = RateLimit { per_minute: 600, burst: 3 };
    drain(&*limiter, &scope, limit).await;
    clock.advance(Duration::from_secs(3600));
    assert_eq!(drain(&*limiter, &scope, limit).await.0, 3, "an hour's refill is capped at the burst");
}

/// Two limiters (two workers) with ten tasks each, against a burst of five: five grants in
/// all, whoever gets them.
async fn concurrent_acquirers_share_the_burst<F>(make: F)
where
    F: Fn() -> Arc<dyn RateLimiter>,
{
    let scope = fresh_scope();
    let limit = RateLimit { per_minute: 1, burst: 5 };
    let mut tasks = Vec::new();
    for limiter in [make(), make()] {
        for _ in 0..10 {
            let (limiter, scope) = (limiter.clone(), scope.clone());
            tasks.push(tokio::spawn(async move { limiter.acquire(&scope, limit).await.unwrap() }));
        }
    }
    let mut granted = 0;
    for task in tasks {
        if task.await.unwrap() == Acquired::Granted {
            granted += 1;
        }
    }
    assert_eq!(granted, 5, "concurrent acquirers share one bucket of five");
    let fresh = make();
    assert!(matches!(fresh.acquire(&scope, limit).await.unwrap(), Acquired::Wait(_)), "the bucket is empty");
}
