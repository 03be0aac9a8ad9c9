//! A commit ticket: completes once a store batch is as durable as it asked. Connection writers wait on
//! tickets before sending what depends on them (DESIGN.md: `sync` acknowledgements and forwards happen
//! only after the fsync).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use holdfast_store::{Completion, StoreError};
use parking_lot::Mutex;
use tokio::sync::Notify;

const PENDING: u8 = 0;
const DONE: u8 = 1;
const FAILED: u8 = 2;

#[derive(Debug, Default)]
pub struct Ticket {
    state: AtomicU8,
    error: Mutex<Option<StoreError>>,
    notify: Notify,
}

impl Ticket {
    pub fn new() -> Arc<Ticket> {
        Arc::new(Ticket::default())
    }

    /// A ticket that is already complete (nothing to wait for).
    pub fn done() -> Arc<Ticket> {
        let t = Ticket::new();
        t.complete(Ok(()));
        t
    }

    /// The store's completion callback for this ticket.
    pub fn completion(self: &Arc<Self>) -> Completion {
        let t = self.clone();
        Box::new(move |r| t.complete(r))
    }

    pub fn complete(&self, result: Result<(), StoreError>) {
        match result {
            Ok(()) => self.state.store(DONE, Ordering::Release),
            Err(e) => {
                *self.error.lock() = Some(e);
                self.state.store(FAILED, Ordering::Release);
            }
        }
        self.notify.notify_waiters();
    }

    pub fn is_pending(&self) -> bool {
        self.state.load(Ordering::Acquire) == PENDING
    }

    /// Completed successfully: nothing to wait for.
    pub fn is_done_ok(&self) -> bool {
        self.state.load(Ordering::Acquire) == DONE
    }

    pub async fn wait(&self) -> Result<(), StoreError> {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Register before looking, so a completion in between is not missed.
            notified.as_mut().enable();
            match self.state.load(Ordering::Acquire) {
                DONE => return Ok(()),
                FAILED => return Err(self.error.lock().clone().unwrap_or(StoreError::Closed)),
                _ => notified.await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_wake_on_completion() {
        let t = Ticket::new();
        let waiter = tokio::spawn({
            let t = t.clone();
            async move { t.wait().await }
        });
        tokio::task::yield_now().await;
        (t.completion())(Err(StoreError::Io("disk gone".into())));
        assert!(matches!(waiter.await.unwrap(), Err(StoreError::Io(_))));
        assert!(Ticket::done().wait().await.is_ok());
    }
}
