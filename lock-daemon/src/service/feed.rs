//! The door loop's records as they are written, for front-ends that push events (MQTT):
//! the event half of the status snapshot. The door loop appends without waiting on any
//! reader (a short lock, no I/O); readers keep a cursor and read what is new. A reader that
//! falls more than [`FEED_DEPTH`] records behind is told how many it missed.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use crate::audit::Record;

/// Records kept for readers.
pub const FEED_DEPTH: usize = 256;

#[derive(Debug, Default)]
struct Ring {
    /// The sequence number of `records[0]`; numbers start at 1.
    first: u64,
    records: VecDeque<Record>,
}

/// The shared feed: written by the door loop, read by front-ends.
#[derive(Debug, Clone, Default)]
pub struct EventFeed(Arc<Mutex<Ring>>);

/// What a reader got: the records after its cursor, and how many it missed.
#[derive(Debug, Default, PartialEq)]
pub struct Batch {
    pub records: Vec<Record>,
    pub missed: u64,
}

impl EventFeed {
    pub(crate) fn push(&self, record: Record) {
        let mut ring = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if ring.first == 0 {
            ring.first = 1;
        }
        if ring.records.len() == FEED_DEPTH {
            ring.records.pop_front();
            ring.first += 1;
        }
        ring.records.push_back(record);
    }

    /// The sequence number the next record will get: a cursor that reads only what comes
    /// after now.
    pub fn end(&self) -> u64 {
        let ring = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        ring.first.max(1) + ring.records.len() as u64
    }

    /// The records from sequence number `*cursor` on; moves the cursor past them.
    pub fn read(&self, cursor: &mut u64) -> Batch {
        let ring = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let first = ring.first.max(1);
        let end = first + ring.records.len() as u64;
        let from = (*cursor).max(first);
        let missed = from - (*cursor).min(from);
        let records = ring
            .records
            .iter()
            .skip((from - first) as usize)
            .cloned()
            .collect();
        *cursor = end;
        Batch { records, missed }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Event;

    fn record(n: usize) -> Record {
        Record::new(Event::Exit).message(n.to_string())
    }

    fn messages(batch: &Batch) -> Vec<String> {
        batch
            .records
            .iter()
            .map(|r| r.message.clone().unwrap())
            .collect()
    }

    #[test]
    fn a_reader_gets_each_record_once_in_order() {
        let feed = EventFeed::default();
        let mut cursor = feed.end();
        feed.push(record(1));
        feed.push(record(2));
        let batch = feed.read(&mut cursor);
        assert_eq!(batch.missed, 0);
        assert_eq!(messages(&batch), ["1", "2"]);
        assert!(feed.read(&mut cursor).records.is_empty());
        feed.push(record(3));
        assert_eq!(messages(&feed.read(&mut cursor)), ["3"]);
    }

    #[test]
    fn a_reader_that_falls_behind_is_told_how_many_it_missed() {
        let feed = EventFeed::default();
        let mut cursor = feed.end();
        for n in 0..FEED_DEPTH + 10 {
            feed.push(record(n));
        }
        let batch = feed.read(&mut cursor);
        assert_eq!(batch.missed, 10);
        assert_eq!(batch.records.len(), FEED_DEPTH);
        assert_eq!(messages(&batch)[0], "10");
    }
}
