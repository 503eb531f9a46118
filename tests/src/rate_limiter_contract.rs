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

/// One test per clause against the limiters `$make` returns (an `async fn() ->
/// LimiterUnderTest`, called once per test), in `mod $adapter`; attributes after the factory
/// go on every test. Two worker threads, so concurrent acquirers really race.
#[macro_export]
macro_rules! rate_limiter_contract {
    ($adapter:ident, $make:path $(, #[$attr:meta])* $(,)?) => {
        $crate::contract_tests!(
            rate_limiter_contract,
            [tokio::test(flavor = "multi_thread", worker_threads = 2)],
            $adapter,
            $make,
            [$(#[$attr])*],
            [
                a_fresh_scope_grants_its_burst_then_waits_for_one_refill,
                scopes_are_independent,
                waiting_the_wait_grants_one_more_and_no_sooner,
                a_long_idle_refills_to_the_burst_only,
                concurrent_acquirers_share_the_burst,
            ]
        );
    };
}

/// Limiters reading `clock`. Every limiter `make` returns shares one backend (the same memory
/// limiter, or new DynamoDB limiters on one table), as concurrent workers do.
pub struct LimiterUnderTest {
    pub clock: Arc<ManualClock>,
    pub make: Box<dyn Fn() -> Arc<dyn RateLimiter> + Send + Sync>,
}

/// A scope of its own for each check: backends that share a table keep buckets across runs.
fn fresh_scope() -> String {
    format!("contract-{:016x}", fastrand::u64(..))
}

/// Acquires until told to wait: the grants, and the wait.
async fn drain(limiter: &dyn RateLimiter, scope: &str, limit: RateLimit) -> (u32, Duration) {
    for granted in 0..=limit.burst {
        if let Acquired::Wait(wait) = limiter.acquire(scope, limit).await.unwrap() {
            return (granted, wait);
        }
    }
    panic!("granted more than the burst of {}", limit.burst)
}

pub async fn a_fresh_scope_grants_its_burst_then_waits_for_one_refill(under_test: LimiterUnderTest) {
    let (clock, limiter) = (&under_test.clock, (under_test.make)());
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

pub async fn scopes_are_independent(under_test: LimiterUnderTest) {
    let limiter = (under_test.make)();
    let (openai, anthropic) = (fresh_scope(), fresh_scope());
    let limit = RateLimit { per_minute: 60, burst: 2 };
    assert_eq!(drain(&*limiter, &openai, limit).await.0, 2);
    assert_eq!(drain(&*limiter, &anthropic, limit).await.0, 2, "another scope has its own bucket");
}

pub async fn waiting_the_wait_grants_one_more_and_no_sooner(under_test: LimiterUnderTest) {
    let (clock, limiter) = (&under_test.clock, (under_test.make)());
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

pub async fn a_long_idle_refills_to_the_burst_only(under_test: LimiterUnderTest) {
    let (clock, limiter) = (&under_test.clock, (under_test.make)());
    let scope = fresh_scope();
    let limit = RateLimit { per_minute: 600, burst: 3 };
    drain(&*limiter, &scope, limit).await;
    clock.advance(Duration::from_secs(3600));
    assert_eq!(drain(&*limiter, &scope, limit).await.0, 3, "an hour's refill is capped at the burst");
}

/// Two limiters (two workers) with ten tasks each, against a burst of five: five grants in
/// all, whoever gets them.
pub async fn concurrent_acquirers_share_the_burst(under_test: LimiterUnderTest) {
    let make = &under_test.make;
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
