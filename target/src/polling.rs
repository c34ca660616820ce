//! How a poll group waits for input: whether it polls or parks in `epoll_wait`, and which
//! connections it reads without asking epoll first.
//!
//! A group polls (`epoll_wait` with timeout 0) while it has work and for `park_after` after its
//! last work (`[target] park_after_us`, 1 ms by default), then parks: a host at queue depth 1
//! sends its next command right after the last response, and waking a parked thread costs more
//! than the command. Where a round trip takes longer than the window (an emulated machine, a
//! slow host), the group parks between commands; a longer window is the setting for that.
//! Work is what was outstanding at the start of a round *or done during it*: a RAM namespace
//! completes a read in the round that received it, so nothing is ever outstanding at the start
//! of the next one, and a group that counted only outstanding work parked after every command
//! (one `epoll_wait` sleep and wake-up per command at queue depth 1).
//!
//! While a poll group polls, each round used to start with `epoll_wait(0)`, and a command that
//! arrived cost that call and then the read: two system calls before any work. A connection
//! that brought bytes recently is likely to bring more soon, so the group reads it directly,
//! and asks epoll only every `EPOLL_EVERY` rounds (for the other connections, new ones, the
//! wake-up eventfd). An idle round then costs one failed read per hot connection instead of one
//! `epoll_wait`; an arrival costs one read. At most `MAX_HOT` connections are hot: beyond that
//! one `epoll_wait` is cheaper than reading each. A connection stops being hot when it has
//! brought nothing for `COOL_AFTER`. Epoll stays level-triggered, so nothing is missed: a hot
//! connection's socket is still in epoll, and reading a slot whose connection went away (or
//! was replaced) reads nothing harmful.
//!
//! Its own file because it is a policy apart from the group's ownership and teardown: plain
//! state, a fixed array, no allocation, no lock.

use std::time::{Duration, Instant};

/// Connections read directly at most.
const MAX_HOT: usize = 4;
/// While connections are hot, one round in this many asks epoll.
const EPOLL_EVERY: u32 = 16;
/// A connection that brought nothing for this long goes back to epoll only.
const COOL_AFTER: Duration = Duration::from_millis(1);

#[derive(Debug)]
pub struct Polling {
    /// How long the group keeps polling after its last work before it parks in `epoll_wait`.
    park_after: Duration,
    /// When the group last had or did work.
    last_work: Instant,
    /// Connection slots, and when each last brought bytes.
    hot: [(usize, Instant); MAX_HOT],
    len: usize,
    /// Rounds since the last `epoll_wait`.
    direct_rounds: u32,
}

impl Polling {
    pub fn new(now: Instant, park_after: Duration) -> Self {
        Self {
            park_after,
            last_work: now,
            hot: [(0, now); MAX_HOT],
            len: 0,
            direct_rounds: 0,
        }
    }

    /// The group had work outstanding, or did some (read bytes, completed commands), at `now`.
    pub fn worked(&mut self, now: Instant) {
        self.last_work = now;
    }

    /// Whether the group polls rather than parks: it had or did work less than `park_after`
    /// ago.
    pub fn is_polling(&self, now: Instant) -> bool {
        now.duration_since(self.last_work) < self.park_after
    }

    /// Whether this round reads the hot connections directly rather than asking epoll: only
    /// while the group polls (an idle group sleeps in `epoll_wait`), and not every round.
    pub fn skip_epoll(&mut self, now: Instant) -> bool {
        if self.is_polling(now) && self.len > 0 && self.direct_rounds + 1 < EPOLL_EVERY {
            self.direct_rounds += 1;
            true
        } else {
            self.direct_rounds = 0;
            false
        }
    }

    /// The hot connections' slots (a copy: the caller may update `self` meanwhile).
    pub fn slots(&self) -> impl Iterator<Item = usize> {
        let hot = self.hot;
        (0..self.len).map(move |index| hot[index].0)
    }

    /// Connection `slot` brought bytes at `now`: it is hot (if there is room).
    pub fn received(&mut self, slot: usize, now: Instant) {
        if let Some(entry) = self.hot[..self.len].iter_mut().find(|(s, _)| *s == slot) {
            entry.1 = now;
        } else if self.len < MAX_HOT {
            self.hot[self.len] = (slot, now);
            self.len += 1;
        }
    }

    /// Connections quiet since `COOL_AFTER` before `now` are no longer read directly.
    pub fn cool(&mut self, now: Instant) {
        let mut kept = 0;
        for index in 0..self.len {
            if now.duration_since(self.hot[index].1) < COOL_AFTER {
                self.hot[kept] = self.hot[index];
                kept += 1;
            }
        }
        self.len = kept;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default window (`[target] park_after_us`).
    fn default_window() -> Duration {
        crate::config::TargetConfig::default().park_after
    }

    #[test]
    fn work_done_in_a_round_keeps_the_group_polling_until_park_after() {
        let start = Instant::now();
        let mut polling = Polling::new(start, default_window());
        let later = start + default_window() * 10;
        assert!(!polling.is_polling(later), "idle since the start: parks");
        // A read received and completed within one round: nothing outstanding at the start of
        // the next, but the group did work.
        polling.worked(later);
        assert!(polling.is_polling(later + default_window() / 2));
        assert!(!polling.is_polling(later + default_window()));
    }

    #[test]
    fn a_longer_window_keeps_the_group_polling_longer() {
        let start = Instant::now();
        let window = Duration::from_millis(50);
        let mut polling = Polling::new(start, window);
        polling.worked(start);
        assert!(polling.is_polling(start + default_window() * 10));
        assert!(!polling.is_polling(start + window));
        let mut parks_at_once = Polling::new(start, Duration::ZERO);
        parks_at_once.worked(start);
        assert!(!parks_at_once.is_polling(start));
    }

    #[test]
    fn hot_connections_skip_epoll_except_every_epoll_every_rounds() {
        let now = Instant::now();
        let mut direct = Polling::new(now, default_window());
        assert!(!direct.skip_epoll(now), "nothing is hot yet");
        direct.received(3, now);
        let skipped = (0..EPOLL_EVERY).filter(|_| direct.skip_epoll(now)).count();
        assert_eq!(skipped as u32, EPOLL_EVERY - 1);
        assert!(
            !direct.skip_epoll(now + default_window()),
            "an idle group waits in epoll"
        );
        assert_eq!(direct.slots().collect::<Vec<_>>(), [3]);
    }

    #[test]
    fn at_most_max_hot_and_quiet_ones_cool_down() {
        let start = Instant::now();
        let mut direct = Polling::new(start, default_window());
        for slot in 0..MAX_HOT + 2 {
            direct.received(slot, start);
        }
        direct.received(1, start + COOL_AFTER);
        assert_eq!(direct.slots().count(), MAX_HOT);
        direct.cool(start + COOL_AFTER);
        assert_eq!(direct.slots().collect::<Vec<_>>(), [1]);
    }
}
