//! Fan-out of feedback records to any number of subscribers, without ever making
//! serving wait: each subscriber has a bounded buffer; when it is full the oldest
//! records are dropped and counted.

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use apparate_proto::v1;
use tokio::sync::Notify;

/// Largest `FeedbackBatch` sent in one stream message.
const MAX_RECORDS_PER_MESSAGE: usize = 1024;

/// One subscriber's buffer.
#[derive(Debug)]
pub struct Subscriber {
    pub name: String,
    capacity: usize,
    buffer: Mutex<VecDeque<v1::FeedbackRecord>>,
    dropped: AtomicU64,
    ready: Notify,
    closed: AtomicBool,
}

impl Subscriber {
    /// Waits for records (or for the subscription to close) and takes up to one
    /// message's worth. `None` once closed.
    pub async fn next_batch(&self) -> Option<v1::FeedbackBatch> {
        loop {
            if self.closed.load(Ordering::Acquire) {
                return None;
            }
            {
                let mut buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
                if !buffer.is_empty() {
                    let n = buffer.len().min(MAX_RECORDS_PER_MESSAGE);
                    return Some(v1::FeedbackBatch {
                        records: buffer.drain(..n).collect(),
                        dropped_total: self.dropped.load(Ordering::Relaxed),
                    });
                }
            }
            // A notify_one() before this point leaves a permit, so no wake-up is lost.
            self.ready.notified().await;
        }
    }

    /// Records dropped for this subscriber so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// All current subscribers.
#[derive(Debug, Default)]
pub struct FeedbackHub {
    subscribers: Mutex<Vec<Arc<Subscriber>>>,
    dropped_total: AtomicU64,
}

impl FeedbackHub {
    /// Adds a subscriber buffering at most `capacity` records.
    pub fn subscribe(&self, name: String, capacity: usize) -> Arc<Subscriber> {
        let sub = Arc::new(Subscriber {
            name,
            capacity: capacity.max(1),
            buffer: Mutex::new(VecDeque::new()),
            dropped: AtomicU64::new(0),
            ready: Notify::new(),
            closed: AtomicBool::new(false),
        });
        self.lock().push(Arc::clone(&sub));
        sub
    }

    /// Removes a subscriber (its stream ended).
    pub fn unsubscribe(&self, sub: &Arc<Subscriber>) {
        self.lock().retain(|s| !Arc::ptr_eq(s, sub));
    }

    /// Ends every subscription (server shutdown).
    pub fn close_all(&self) {
        for sub in self.lock().drain(..) {
            sub.closed.store(true, Ordering::Release);
            sub.ready.notify_one();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Subscriber>>> {
        self.subscribers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands `records` to every subscriber. Never waits on a subscriber.
    pub fn publish(&self, records: &[v1::FeedbackRecord]) {
        if records.is_empty() {
            return;
        }
        for sub in self.lock().iter() {
            let mut buffer = sub.buffer.lock().unwrap_or_else(|e| e.into_inner());
            buffer.extend(records.iter().cloned());
            let over = buffer.len().saturating_sub(sub.capacity);
            if over > 0 {
                buffer.drain(..over);
                sub.dropped.fetch_add(over as u64, Ordering::Relaxed);
                self.dropped_total.fetch_add(over as u64, Ordering::Relaxed);
                crate::metrics::feedback_dropped(over as u64, &sub.name);
            }
            drop(buffer);
            sub.ready.notify_one();
        }
    }

    /// Records dropped over all subscribers since start.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_total.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(ids: std::ops::Range<u64>) -> Vec<v1::FeedbackRecord> {
        ids.map(|request_id| v1::FeedbackRecord {
            request_id,
            ..Default::default()
        })
        .collect()
    }

    #[tokio::test]
    async fn a_full_buffer_drops_the_oldest_and_counts() {
        let hub = FeedbackHub::default();
        let slow = hub.subscribe("slow".into(), 3);
        let fast = hub.subscribe("fast".into(), 100);
        hub.publish(&records(0..5));
        let batch = slow.next_batch().await.unwrap();
        let ids: Vec<u64> = batch.records.iter().map(|r| r.request_id).collect();
        assert_eq!(ids, [2, 3, 4]);
        assert_eq!(batch.dropped_total, 2);
        assert_eq!(fast.next_batch().await.unwrap().records.len(), 5);
        assert_eq!(hub.dropped_total(), 2);
        hub.close_all();
        assert!(slow.next_batch().await.is_none());
    }
}
