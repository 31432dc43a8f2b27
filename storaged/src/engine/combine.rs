//! Combining writers: whoever finds nobody committing runs every queued write transaction in one
//! go, then hands the role on and waits for the fsync that covers them.
//!
//! With many writers, taking turns at the tree lock costs two context switches per commit (sleep
//! on the lock, then on the fsync), which on a small machine costs more than the commit itself.
//! Here a writer queues its transaction and sleeps once: the combiner runs it, and wakes its
//! owner when its record is durable (or it failed). The combiner runs one batch only: if more
//! transactions queued meanwhile, it wakes the owner of the first one to combine them, and
//! goes on to wait for its own batch's fsync, so running transactions and syncing the log
//! overlap as in plain group commit.

use crate::engine::error::{Error, StorageError};
use crate::engine::sync::lock;
use crate::engine::txn::Txn;
use std::sync::{Arc, Condvar, Mutex};

/// A write transaction's body, run by whichever writer combines (so it owns its inputs).
pub(crate) type Body = Box<dyn FnMut(&mut Txn<'_>) -> Result<(), Error> + Send>;

pub(crate) struct Job {
    pub(crate) summary: String,
    pub(crate) body: Body,
    pub(crate) done: Arc<Done>,
}

/// What a queued writer is woken with.
pub(crate) enum Outcome {
    /// Its transaction is durable at this LSN.
    Committed(u64),
    Failed(Error),
    /// Nobody is combining and its job is queued: it must combine.
    Combine,
}

/// One writer's wake-up slot.
#[derive(Default)]
pub(crate) struct Done {
    outcome: Mutex<Option<Outcome>>,
    ready: Condvar,
}

impl Done {
    pub(crate) fn finish(&self, outcome: Outcome) {
        *lock(&self.outcome) = Some(outcome);
        // Notified after the lock is released, so the woken writer does not sleep on it again.
        self.ready.notify_one();
    }

    pub(crate) fn wait(&self) -> Outcome {
        let mut slot = lock(&self.outcome);
        loop {
            if let Some(outcome) = slot.take() {
                return outcome;
            }
            slot = self.ready.wait(slot).unwrap_or_else(|e| e.into_inner());
        }
    }
}

#[derive(Default)]
pub(crate) struct Queue {
    state: Mutex<QueueState>,
}

#[derive(Default)]
struct QueueState {
    jobs: Vec<Job>,
    /// A writer is running a batch (or has been told to).
    combining: bool,
}

impl Queue {
    /// Queues a job; returns true if the caller must combine (nobody else is).
    pub(crate) fn push(&self, job: Job) -> bool {
        let mut state = lock(&self.state);
        state.jobs.push(job);
        !std::mem::replace(&mut state.combining, true)
    }

    /// The combiner's batch: everything queued so far.
    pub(crate) fn take(&self) -> Vec<Job> {
        std::mem::take(&mut lock(&self.state).jobs)
    }

    /// Ends a batch: the role passes to the owner of the first job queued since, if any.
    pub(crate) fn hand_on(&self) {
        let mut state = lock(&self.state);
        match state.jobs.first() {
            Some(next) => next.done.finish(Outcome::Combine),
            None => state.combining = false,
        }
    }
}

/// The error each job of a batch gets when the batch's fsync failed: the first sees the cause,
/// the rest that the engine already stopped (as separate waiters on one failed fsync would).
pub(crate) fn batch_errors(first: StorageError) -> impl Iterator<Item = Error> {
    std::iter::once(first.into()).chain(std::iter::repeat_with(|| StorageError::PreviousIo.into()))
}
