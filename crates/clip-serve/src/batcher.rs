//! Dynamic batching: requests from many clients wait in one bounded queue and a worker thread runs them through
//! the model together, up to `max_batch` items, waiting at most `max_wait` after the first item for others to
//! arrive (Infinity's scheme). A full queue refuses at once (the caller answers 429) instead of growing memory.
//! Each row's result does not depend on the other rows of its batch (the kernels compute rows independently),
//! so a batched answer equals the one-by-one answer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::metrics::Metrics;

struct Job<I, O> {
    input: I,
    reply: oneshot::Sender<Result<O, String>>,
}

/// Places taken in a queue by [`Batcher::reserve`].
pub struct Reservation<'a, I, O> {
    batcher: &'a Batcher<I, O>,
    places: usize,
}

impl<I, O> Reservation<'_, I, O> {
    /// Queues `inputs` in the places taken (at most that many).
    pub fn submit(
        mut self,
        inputs: Vec<I>,
    ) -> Result<Vec<oneshot::Receiver<Result<O, String>>>, usize> {
        let batcher = self.batcher;
        let extra = inputs.len().saturating_sub(self.places);
        if extra > 0 {
            return Err(batcher.depth.load(Ordering::Relaxed));
        }
        // Places not used are given back now; the rest belong to the queued jobs (the worker gives them back).
        let unused = self.places - inputs.len();
        batcher.depth.fetch_sub(unused, Ordering::Relaxed);
        self.places = 0;
        let n = inputs.len();
        let mut receivers = Vec::with_capacity(n);
        for (i, input) in inputs.into_iter().enumerate() {
            let (reply, receiver) = oneshot::channel();
            match batcher.sender.try_send(Job { input, reply }) {
                Ok(()) => receivers.push(receiver),
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                    // Those not sent were never queued; those sent are computed and dropped.
                    batcher.depth.fetch_sub(n - i, Ordering::Relaxed);
                    return Err(batcher.depth.load(Ordering::Relaxed));
                }
            }
        }
        Ok(receivers)
    }
}

impl<I, O> Drop for Reservation<'_, I, O> {
    fn drop(&mut self) {
        self.batcher.depth.fetch_sub(self.places, Ordering::Relaxed);
    }
}

/// The queue of one kind of input (images or texts) and its worker thread.
pub struct Batcher<I, O> {
    sender: SyncSender<Job<I, O>>,
    depth: Arc<AtomicUsize>,
    capacity: usize,
}

#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub max_batch: usize,
    pub max_wait: Duration,
    pub capacity: usize,
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// Starts the worker; `run` maps a batch of inputs to one result per input, in order.
    pub fn start(
        kind: &'static str,
        limits: BatchLimits,
        metrics: Arc<Metrics>,
        run: impl Fn(Vec<I>) -> Vec<Result<O, String>> + Send + 'static,
    ) -> Self {
        let (sender, receiver) = sync_channel::<Job<I, O>>(limits.capacity.max(1));
        let depth = Arc::new(AtomicUsize::new(0));
        let worker_depth = Arc::clone(&depth);
        std::thread::Builder::new()
            .name(format!("clip-serve-{kind}"))
            .spawn(move || {
                while let Ok(first) = receiver.recv() {
                    let deadline = Instant::now() + limits.max_wait;
                    let mut jobs = vec![first];
                    while jobs.len() < limits.max_batch {
                        let left = deadline.saturating_duration_since(Instant::now());
                        match receiver.recv_timeout(left) {
                            Ok(job) => jobs.push(job),
                            Err(RecvTimeoutError::Timeout) => break,
                            Err(RecvTimeoutError::Disconnected) => break,
                        }
                    }
                    worker_depth.fetch_sub(jobs.len(), Ordering::Relaxed);
                    // A client that went away (timeout, closed connection) is not computed for.
                    jobs.retain(|job| !job.reply.is_closed());
                    if jobs.is_empty() {
                        continue;
                    }
                    let (inputs, replies): (Vec<I>, Vec<_>) =
                        jobs.into_iter().map(|j| (j.input, j.reply)).unzip();
                    let size = inputs.len();
                    let start = Instant::now();
                    let mut outputs = run(inputs);
                    metrics.observe_batch(kind, size, start.elapsed());
                    outputs.resize_with(size, || Err("the model returned too few rows".into()));
                    for (reply, output) in replies.into_iter().zip(outputs) {
                        let _ = reply.send(output);
                    }
                }
            })
            .expect("the operating system refused to start the batching thread");
        Self {
            sender,
            depth,
            capacity: limits.capacity,
        }
    }

    /// Takes `n` places in the queue before the inputs exist (images are decoded after this), so that a full
    /// queue refuses a request before any work is done for it; `Err(waiting)` when there is no room. The places
    /// return when the reservation is dropped unused.
    pub fn reserve(&self, n: usize) -> Result<Reservation<'_, I, O>, usize> {
        let waiting = self.depth.fetch_add(n, Ordering::Relaxed);
        if waiting + n > self.capacity {
            self.depth.fetch_sub(n, Ordering::Relaxed);
            return Err(waiting);
        }
        Ok(Reservation {
            batcher: self,
            places: n,
        })
    }

    /// Queues `inputs` (all or none, as far as the bound allows), returning where each result will arrive;
    /// `Err(waiting)` when the queue has no room for them.
    pub fn submit(
        &self,
        inputs: Vec<I>,
    ) -> Result<Vec<oneshot::Receiver<Result<O, String>>>, usize> {
        let reservation = self.reserve(inputs.len())?;
        reservation.submit(inputs)
    }

    /// Items waiting for the worker.
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }
}
