//! Kubernetes-style events kept in a bounded ring; repeats are folded into `count`.

use std::collections::VecDeque;
use std::time::SystemTime;

use crate::status::Event;

pub const DEFAULT_CAPACITY: usize = 1000;

#[derive(Debug)]
pub struct EventRing {
    cap: usize,
    events: VecDeque<Event>,
}

impl EventRing {
    pub fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            events: VecDeque::new(),
        }
    }

    /// Record an event; an identical (object, reason, message) as the newest is folded.
    pub fn record(&mut self, ev: EventInput<'_>, now: SystemTime) {
        if let Some(last) = self.events.iter_mut().rev().take(16).find(|e| {
            e.kind == ev.kind
                && e.namespace == ev.namespace
                && e.name == ev.name
                && e.reason == ev.reason
                && e.message == ev.message
        }) {
            last.count += 1;
            last.last_time = now;
            return;
        }
        if self.events.len() == self.cap {
            self.events.pop_front();
        }
        self.events.push_back(Event {
            type_: if ev.warning { "Warning" } else { "Normal" }.to_string(),
            reason: ev.reason.to_string(),
            message: ev.message.to_string(),
            kind: ev.kind.to_string(),
            namespace: ev.namespace.to_string(),
            name: ev.name.to_string(),
            first_time: now,
            last_time: now,
            count: 1,
        });
    }

    pub fn to_vec(&self) -> Vec<Event> {
        self.events.iter().cloned().collect()
    }
}

/// Borrowed event fields.
#[derive(Debug, Clone, Copy)]
pub struct EventInput<'a> {
    pub warning: bool,
    pub kind: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub reason: &'a str,
    pub message: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev<'a>(name: &'a str, reason: &'a str) -> EventInput<'a> {
        EventInput {
            warning: false,
            kind: "Pod",
            namespace: "default",
            name,
            reason,
            message: "m",
        }
    }

    #[test]
    fn bounded_and_folded() {
        let mut r = EventRing::new(2);
        let t = SystemTime::UNIX_EPOCH;
        r.record(ev("a", "Pulled"), t);
        r.record(ev("a", "Pulled"), t);
        assert_eq!(r.to_vec().len(), 1);
        assert_eq!(r.to_vec()[0].count, 2);
        r.record(ev("b", "Started"), t);
        r.record(ev("c", "Started"), t);
        let v = r.to_vec();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].name, "b");
        assert_eq!(v[1].name, "c");
    }
}
