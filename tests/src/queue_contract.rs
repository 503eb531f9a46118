//! The `Queue` contract, for the memory and SQS adapters alike: what is sent arrives, in
//! batches of any size, and a delayed message stays hidden until its delay has passed.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::future::Future;
use std::time::{Duration, Instant};

use chorus::domain::{RunId, StepId};
use chorus::ports::{Queue, StepMessage};

use crate::poll;

/// One test per clause against the queues `$make` returns (an `async fn() -> impl
/// QueueUnderTest`, called once per test, so each test has a queue of its own), in
/// `mod $adapter`; attributes after the factory go on every test.
#[macro_export]
macro_rules! queue_contract {
    ($adapter:ident, $make:path $(, #[$attr:meta])* $(,)?) => {
        $crate::contract_tests!(queue_contract, [tokio::test], $adapter, $make, [$(#[$attr])*], [
            every_message_of_a_large_batch_arrives_once,
            a_delayed_message_is_hidden_until_its_delay_has_passed,
        ]);
    };
}

/// A queue of one test's own, and the consumer's side of it.
pub trait QueueUnderTest {
    fn queue(&self) -> &dyn Queue<StepMessage>;

    /// What became visible within `wait`, taken off the queue.
    fn receive(&self, wait: Duration) -> impl Future<Output = Vec<StepMessage>>;

    /// Removes what the factory created (an emulator's queue).
    fn delete(self) -> impl Future<Output = ()>;
}

pub async fn every_message_of_a_large_batch_arrives_once(under_test: impl QueueUnderTest) {
    let run_id = RunId::generate(jiff::Timestamp::now());
    let messages: Vec<StepMessage> = (0..23)
        .map(|i| StepMessage { run_id: run_id.clone(), step_id: StepId::parse(&format!("s{i}")).unwrap() })
        .collect();
    under_test.queue().send(messages.clone(), Duration::ZERO).await.unwrap();
    let received = receive_all(&under_test, messages.len(), Duration::from_secs(10)).await;
    assert_eq!(received, messages.into_iter().collect::<BTreeSet<_>>(), "every message of a large batch arrives once");
    under_test.delete().await;
}

pub async fn a_delayed_message_is_hidden_until_its_delay_has_passed(under_test: impl QueueUnderTest) {
    let run_id = RunId::generate(jiff::Timestamp::now());
    let delayed = StepMessage { run_id, step_id: StepId::parse("later").unwrap() };
    let sent_at = Instant::now();
    under_test.queue().send(vec![delayed.clone()], Duration::from_secs(2)).await.unwrap();
    assert!(under_test.receive(Duration::from_millis(500)).await.is_empty(), "a delayed message is hidden at first");
    let received = receive_all(&under_test, 1, Duration::from_secs(10)).await;
    assert_eq!(received, BTreeSet::from([delayed]));
    assert!(sent_at.elapsed() >= Duration::from_secs(2), "the delay was honoured");
    under_test.delete().await;
}

/// Receives until `count` messages arrived, failing if that takes longer than `within`, or if
/// one arrives twice.
async fn receive_all(under_test: &impl QueueUnderTest, count: usize, within: Duration) -> BTreeSet<StepMessage> {
    let received = RefCell::new(BTreeSet::new());
    let seen = &received;
    poll::until(&format!("{count} messages arrive"), within, Duration::ZERO, || async move {
        for message in under_test.receive(Duration::from_secs(1)).await {
            assert!(seen.borrow_mut().insert(message.clone()), "{message:?} arrived twice");
        }
        let arrived = seen.borrow().len();
        if arrived < count { Err(format!("{arrived} arrived")) } else { Ok(()) }
    })
    .await;
    received.into_inner()
}
