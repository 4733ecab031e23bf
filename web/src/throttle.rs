//! Failed sign-ins, counted so that guessing is slow and nobody else can lock a user out.
//!
//! Failures are counted per (user name, client address) and per client address, within [`WINDOW`]:
//! - [`PAIR_FAILURES`] wrong passwords for one name from one address make that pair wait [`LOCKOUT`], so
//!   guessing one account is slow, while the real user at another address is not locked out by it;
//! - [`ADDRESS_FAILURES`] failures from one address, for any names, make the address wait [`LOCKOUT`], so a
//!   flood of made-up names from one client stops early;
//! - both tables hold at most [`MAX_RECORDS`] records each, and a record is never dropped before its window
//!   has passed: when a table is full, a failure that cannot be recorded puts sign-ins without a record on
//!   hold until space frees up (fail closed), instead of forgetting the failures that matter.
//!
//! Attempts that can never succeed (a password or name over the length limits) are refused without a hash
//! and without being counted, so they cannot be used to lock anyone out. Sign-in through OpenID Connect does
//! not pass through here.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures for one name from one address before that pair waits.
pub const PAIR_FAILURES: u32 = 5;
/// Failures from one address (any names) before the address waits.
pub const ADDRESS_FAILURES: u32 = 50;
/// How long failures are remembered.
pub const WINDOW: Duration = Duration::from_secs(600);
/// How long a throttled pair or address waits.
pub const LOCKOUT: Duration = Duration::from_secs(60);
/// The most records per table.
pub const MAX_RECORDS: usize = 10_000;

/// Why an attempt must wait, and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wait {
    /// Too many failures for this name from this address.
    Name(u64),
    /// Too many failures from this address.
    Address(u64),
    /// The tables are full of recent failures: attempts without a record wait for them to expire.
    Everyone(u64),
}

impl Wait {
    pub fn message(&self, username: &str) -> String {
        match self {
            Wait::Name(s) => format!("too many failed sign-ins for `{username}`; try again in {s} s"),
            Wait::Address(s) => format!("too many failed sign-ins from this address; try again in {s} s"),
            Wait::Everyone(s) => format!("too many failed sign-ins overall; try again in {s} s"),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    first: Instant,
    last: Instant,
}

impl Record {
    fn expired(&self, now: Instant) -> bool {
        now.duration_since(self.first) >= WINDOW && now.duration_since(self.last) >= LOCKOUT
    }

    /// Seconds left to wait, when `limit` failures were reached and the lockout has not passed.
    fn wait(&self, limit: u32, now: Instant) -> Option<u64> {
        let since = now.duration_since(self.last);
        (self.failures >= limit && since < LOCKOUT).then(|| (LOCKOUT - since).as_secs().max(1))
    }
}

#[derive(Default)]
struct Tables {
    pairs: HashMap<(String, Option<IpAddr>), Record>,
    addresses: HashMap<Option<IpAddr>, Record>,
    /// Until when attempts without a record wait, after a failure could not be recorded.
    hold_until: Option<Instant>,
}

/// The sign-in throttle of one web server.
#[derive(Default)]
pub struct Throttle {
    tables: Mutex<Tables>,
}

fn count<K: std::hash::Hash + Eq>(table: &mut HashMap<K, Record>, key: K, now: Instant) -> bool {
    if let Some(record) = table.get_mut(&key) {
        if record.expired(now) {
            *record = Record {
                failures: 0,
                first: now,
                last: now,
            };
        }
        record.failures += 1;
        record.last = now;
        return true;
    }
    if table.len() >= MAX_RECORDS {
        table.retain(|_, r| !r.expired(now));
    }
    if table.len() >= MAX_RECORDS {
        return false;
    }
    table.insert(
        key,
        Record {
            failures: 1,
            first: now,
            last: now,
        },
    );
    true
}

impl Throttle {
    /// Whether a sign-in as `username` from `client` must wait, and why.
    pub fn wait(&self, username: &str, client: Option<IpAddr>) -> Option<Wait> {
        self.wait_at(username, client, Instant::now())
    }

    fn wait_at(&self, username: &str, client: Option<IpAddr>, now: Instant) -> Option<Wait> {
        let tables = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        let pair = tables.pairs.get(&(username.to_lowercase(), client));
        if let Some(seconds) = pair.and_then(|r| r.wait(PAIR_FAILURES, now)) {
            return Some(Wait::Name(seconds));
        }
        let address = tables.addresses.get(&client);
        if let Some(seconds) = address.and_then(|r| r.wait(ADDRESS_FAILURES, now)) {
            return Some(Wait::Address(seconds));
        }
        match tables.hold_until {
            Some(until) if until > now && pair.is_none() && address.is_none() => {
                Some(Wait::Everyone((until - now).as_secs().max(1)))
            }
            _ => None,
        }
    }

    /// Counts a wrong password (or an unknown name) for `username` from `client`.
    pub fn failed(&self, username: &str, client: Option<IpAddr>) {
        self.failed_at(username, client, Instant::now())
    }

    fn failed_at(&self, username: &str, client: Option<IpAddr>, now: Instant) {
        let mut tables = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        let paired = count(&mut tables.pairs, (username.to_lowercase(), client), now);
        let addressed = count(&mut tables.addresses, client, now);
        if !paired || !addressed {
            tables.hold_until = Some(now + LOCKOUT);
        }
    }

    /// A right password: the pair's failures are forgotten (the address's are not: one success must not
    /// reset a flood of guesses at other names).
    pub fn succeeded(&self, username: &str, client: Option<IpAddr>) {
        let mut tables = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        tables.pairs.remove(&(username.to_lowercase(), client));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn a_pair_waits_after_its_failures_and_others_do_not() {
        let throttle = Throttle::default();
        let now = Instant::now();
        for _ in 0..PAIR_FAILURES {
            assert_eq!(throttle.wait_at("admin", ip("10.0.0.1"), now), None);
            throttle.failed_at("admin", ip("10.0.0.1"), now);
        }
        assert!(matches!(
            throttle.wait_at("ADMIN", ip("10.0.0.1"), now),
            Some(Wait::Name(60))
        ));
        assert_eq!(
            throttle.wait_at("admin", ip("10.0.0.2"), now),
            None,
            "the real user elsewhere"
        );
        assert_eq!(throttle.wait_at("other", ip("10.0.0.1"), now), None);
        assert_eq!(throttle.wait_at("admin", ip("10.0.0.1"), now + LOCKOUT), None);
    }

    #[test]
    fn an_address_flooding_names_waits() {
        let throttle = Throttle::default();
        let now = Instant::now();
        for i in 0..ADDRESS_FAILURES {
            throttle.failed_at(&format!("made-up-{i}"), ip("10.0.0.9"), now);
        }
        assert!(matches!(
            throttle.wait_at("admin", ip("10.0.0.9"), now),
            Some(Wait::Address(_))
        ));
        assert_eq!(throttle.wait_at("admin", ip("10.0.0.1"), now), None);
    }

    #[test]
    fn full_tables_hold_new_attempts_instead_of_forgetting() {
        let throttle = Throttle::default();
        let now = Instant::now();
        // A victim's guesser has four failures on record...
        for _ in 0..PAIR_FAILURES - 1 {
            throttle.failed_at("admin", ip("10.0.0.1"), now);
        }
        // ...then many addresses fill the tables with made-up names (one failure each, under every limit).
        for i in 0..MAX_RECORDS as u32 {
            let address = Some(IpAddr::from(std::net::Ipv4Addr::from(0x0b00_0000 + i)));
            throttle.failed_at(&format!("x{i}"), address, now);
        }
        // The guesser's record was kept: its fifth failure still counts.
        throttle.failed_at("admin", ip("10.0.0.1"), now);
        assert!(matches!(
            throttle.wait_at("admin", ip("10.0.0.1"), now),
            Some(Wait::Name(_))
        ));
        // A newcomer waits while the tables are full of recent failures, and not once they have expired.
        assert!(matches!(
            throttle.wait_at("someone", ip("10.0.0.7"), now),
            Some(Wait::Everyone(_))
        ));
        let later = now + WINDOW + LOCKOUT;
        throttle.failed_at("someone", ip("10.0.0.7"), later);
        assert_eq!(throttle.wait_at("someone", ip("10.0.0.8"), later), None);
        let tables = throttle.tables.lock().unwrap();
        assert!(tables.pairs.len() <= MAX_RECORDS && tables.addresses.len() <= MAX_RECORDS);
    }
}
