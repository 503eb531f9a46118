//! The `Queue` contract, for the memory and SQS adapters alike: what is sent arrives, in
//! batches of any size, and a delayed message stays hidden until its delay has passed.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::{Duration, Instant};

use chorus::domain::{RunId, StepId};
use chorus::ports::{Queue, StepMessage};

/// Runs every check. `receive(wait)` returns what became visible within `wait` (and takes
/// it off the queue).
pub async fn check_queue<R, F>(queue: &dyn Queue<StepMessage>, mut receive: R)
where
    R: FnMut(Duration) -> F,
    F: Future<Output = Vec<StepMessage>>,
{
    let run_id = RunId::generate(jiff::Timestamp::now());
    let messages: Vec<StepMessage> = (0..23)
        .map(|i| StepMessage { run_id: run_id.clone(), step_id: StepId::parse(&format!("s{i}")).unwrap() })
        .collect();
    queue.send(messages.clone(), Duration::ZERO).await.unwrap();
    let received = receive_all(&mut receive, messages.len(), Duration::from_secs(10)).await;
    assert_eq!(received, messages.into_iter().collect::<BTreeSet<_>>(), "every message of a large batch arrives once");

    let delayed = StepMessage { run_id, step_id: StepId::parse("later").unwrap() };
    let sent_at = Instant::now();
    queue.send(vec![delayed.clone()], Duration::from_secs(2)).await.unwrap();
    assert!(receive(Duration::from_millis(500)).await.is_empty(), "a delayed message is hidden at first");
    let received = receive_all(&mut receive, 1, Duration::from_secs(10)).await;
    assert_eq!(received, BTreeSet::from([delayed]));
    assert!(sent_at.elapsed() >= Duration::from_secs(2), "the delay was honoured");
}

async fn receive_all<R, F>(receive: &mut R, count: usize, within: Duration) -> BTreeSet<StepMessage>
where
    R: FnMut(Duration) -> F,
    F: Future<Output = Vec<StepMessage>>,
{
    let deadline = Instant::now() + within;
    let mut received = BTreeSet::new();
    while received.len() < count && Instant::now() < deadline {
        for message in receive(Duration::from_secs(1)).await {
            assert!(received.insert(message.clone()), "{message:?} arrived twice");
        }
    }
    received
}
