//! [`Queue`] in memory: an unbounded channel, with delays served by timer tasks.

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::ports::{PortError, Queue};

/// [`Queue`] over an unbounded tokio channel; delayed messages are sent from a timer task.
pub struct MemoryQueue<M> {
    sender: mpsc::UnboundedSender<M>,
}

impl<M> Clone for MemoryQueue<M> {
    fn clone(&self) -> Self {
        Self { sender: self.sender.clone() }
    }
}

impl<M: Send + 'static> MemoryQueue<M> {
    /// A queue and the receiving end its consumer polls.
    pub fn channel() -> (Self, mpsc::UnboundedReceiver<M>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        (Self { sender }, receiver)
    }
}

#[async_trait]
impl<M: Send + Sync + 'static> Queue<M> for MemoryQueue<M> {
    async fn send(&self, messages: Vec<M>, delay: Duration) -> Result<(), PortError> {
        let closed = || PortError::Unavailable { what: "memory queue", source: "the consumer has stopped".into() };
        if delay.is_zero() {
            for message in messages {
                self.sender.send(message).map_err(|_| closed())?;
            }
        } else {
            if self.sender.is_closed() {
                return Err(closed());
            }
            let sender = self.sender.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                for message in messages {
                    // The consumer stopping while a delayed message waits is a shutdown: drop it.
                    let _ = sender.send(message);
                }
            });
        }
        Ok(())
    }
}
