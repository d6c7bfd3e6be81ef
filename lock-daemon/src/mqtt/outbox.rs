//! Events waiting for the broker: a bounded queue (the oldest are dropped, and counted,
//! when it is full) delivered one at a time with QoS 1. An event leaves the queue only
//! when the broker has acknowledged it, so events produced while the broker is away, and
//! an event whose acknowledgement was lost with the connection, are sent after the next
//! connect. Delivery is at least once: an event can arrive twice after a reconnect.
//!
//! Events are the only QoS 1 messages the lock publishes, so a non-zero packet id in the
//! client's "publish written" notification is always the event in flight.

use std::collections::VecDeque;

/// Events kept while the broker is away.
pub const OUTBOX_DEPTH: usize = 256;
/// Connections an event may be in flight on before it is dropped (and counted): a broker
/// that drops the connection on one message must not stop every later one.
pub const MAX_ATTEMPTS: u32 = 3;

/// One message to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flight {
    /// Nothing handed to the client.
    Idle,
    /// The head was handed to the client; its packet id is not known yet.
    Handed,
    /// The head was written with this packet id; waiting for its acknowledgement.
    Written(u16),
}

#[derive(Debug)]
pub struct Outbox {
    queue: VecDeque<Message>,
    capacity: usize,
    dropped: u64,
    flight: Flight,
    /// Connections the head event was lost with.
    attempts: u32,
}

impl Default for Outbox {
    fn default() -> Self {
        Outbox::new(OUTBOX_DEPTH)
    }
}

impl Outbox {
    pub fn new(capacity: usize) -> Outbox {
        Outbox {
            queue: VecDeque::new(),
            capacity: capacity.max(1),
            dropped: 0,
            flight: Flight::Idle,
            attempts: 0,
        }
    }

    /// Queues an event; drops the oldest waiting one (not the one in flight) when full.
    pub fn push(&mut self, message: Message) {
        if self.queue.len() >= self.capacity {
            let in_flight = usize::from(self.flight != Flight::Idle);
            if self.queue.len() > in_flight {
                self.queue.remove(in_flight);
            } else {
                self.queue.pop_front();
                self.flight = Flight::Idle;
                self.attempts = 0;
            }
            self.dropped += 1;
        }
        self.queue.push_back(message);
    }

    /// Events dropped since the start.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The event to hand to the client now, if none is in flight.
    pub fn due(&mut self) -> Option<&Message> {
        if self.flight != Flight::Idle {
            return None;
        }
        self.queue.front()
    }

    /// The client took the event [`due`](Outbox::due) returned.
    pub fn handed(&mut self) {
        if !self.queue.is_empty() {
            self.flight = Flight::Handed;
        }
    }

    /// The client wrote a publish with packet id `pkid` (0: a QoS 0 message, not ours).
    pub fn written(&mut self, pkid: u16) {
        if pkid != 0 && self.flight == Flight::Handed {
            self.flight = Flight::Written(pkid);
        }
    }

    /// The broker acknowledged `pkid`; true when that delivered the event in flight.
    pub fn acknowledged(&mut self, pkid: u16) -> bool {
        if self.flight == Flight::Written(pkid) {
            self.queue.pop_front();
            self.flight = Flight::Idle;
            self.attempts = 0;
            return true;
        }
        false
    }

    /// The connection was lost: the event in flight is sent again after the next connect,
    /// unless it has been lost with [`MAX_ATTEMPTS`] connections (then it is dropped).
    pub fn disconnected(&mut self) {
        if self.flight != Flight::Idle {
            self.attempts += 1;
            if self.attempts >= MAX_ATTEMPTS {
                self.queue.pop_front();
                self.dropped += 1;
                self.attempts = 0;
            }
        }
        self.flight = Flight::Idle;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(n: u32) -> Message {
        Message {
            topic: "t".into(),
            payload: n.to_string().into_bytes(),
        }
    }

    #[test]
    fn events_go_one_at_a_time_and_leave_only_when_acknowledged() {
        let mut outbox = Outbox::new(8);
        outbox.push(m(1));
        outbox.push(m(2));
        assert_eq!(outbox.due(), Some(&m(1)));
        outbox.handed();
        assert_eq!(outbox.due(), None, "one in flight at a time");
        outbox.written(0); // a state message, not ours
        outbox.written(7);
        assert!(!outbox.acknowledged(6));
        assert!(outbox.acknowledged(7));
        assert_eq!(outbox.due(), Some(&m(2)));
    }

    #[test]
    fn an_event_whose_acknowledgement_was_lost_is_sent_again_after_a_reconnect() {
        let mut outbox = Outbox::new(8);
        outbox.push(m(1));
        outbox.due();
        outbox.handed();
        outbox.written(3);
        outbox.disconnected();
        assert!(!outbox.acknowledged(3), "an ack from the old connection");
        assert_eq!(outbox.due(), Some(&m(1)));
    }

    #[test]
    fn an_event_the_broker_keeps_refusing_is_dropped_after_three_connections() {
        let mut outbox = Outbox::new(8);
        outbox.push(m(1));
        outbox.push(m(2));
        for _ in 0..MAX_ATTEMPTS {
            assert_eq!(outbox.due(), Some(&m(1)));
            outbox.handed();
            outbox.disconnected();
        }
        assert_eq!(outbox.dropped(), 1);
        assert_eq!(outbox.due(), Some(&m(2)));
    }

    #[test]
    fn a_full_outbox_drops_the_oldest_waiting_event_and_counts_it() {
        let mut outbox = Outbox::new(3);
        for n in 1..=3 {
            outbox.push(m(n));
        }
        outbox.due();
        outbox.handed();
        outbox.push(m(4));
        outbox.push(m(5));
        assert_eq!(outbox.dropped(), 2);
        assert_eq!(outbox.len(), 3);
        outbox.written(1);
        assert!(outbox.acknowledged(1));
        // 1 was in flight and delivered; 2 and 3 were dropped.
        assert_eq!(outbox.due(), Some(&m(4)));
    }
}
