//! Idempotent pushes: [`PushStamp`]s and the per-client dedup windows of a [`LocalPs`].
//!
//! A remote client retries a push whose reply did not arrive in time; if the first attempt did
//! reach the store, a plain push would be applied twice. A **stamped** push carries the
//! client's id (a random non-zero `u64` chosen when the client is created) and a sequence
//! number the client counts per store (per shard), from 1; a retry reuses the stamp. The store
//! remembers per client id the highest sequence number applied and, below it, which of the
//! last [`PUSH_WINDOW`] sequence numbers were applied (one `u128` bitmap), because one client
//! can have several pushes in flight to a store at once (a [`PsClient`](crate::PsClient) is
//! shared by the workers of a process, and they arrive in any order):
//!
//! - a sequence number above the highest is applied, and the window slides up to it;
//! - one inside the window is applied if its bit is clear, else it is a **duplicate**:
//!   acknowledged as a success without being applied, and counted
//!   ([`LocalPs::duplicate_pushes`]);
//! - one below the window is refused with [`Error::StalePush`] (applying nothing): the store
//!   cannot tell whether it was applied. A `PsClient` never has a push that old in flight: it
//!   does not hand out sequence number `n` to a shard while `n − PUSH_WINDOW + 1` or an older one
//!   is still in flight there, so only an attempt the client has already given up on can be
//!   refused.
//!
//! A duplicate is acknowledged at once, even while the first attempt is still being applied.
//! Unstamped pushes ([`LocalPs::push_now`], [`LocalPs::push_at`], old clients) are applied
//! every time, as before, and never touch the dedup table.
//!
//! **Snapshots.** The claim of a sequence number and its rows' update happen under a shared
//! gate that snapshots and restores take exclusively, so a snapshot holds a push's stamp if and
//! only if it holds its rows; a store restored from it refuses the replay of every push it
//! holds and applies the replay of any push it does not (the restore undid it).
//!
//! **Bound.** At most [`DedupConfig::max_clients`] clients are tracked (40 bytes each, plus the
//! hash table's overhead). Clients not heard from for [`DedupConfig::client_ttl`] are
//! forgotten by [`LocalPs::forget_idle_clients`] (a shard server calls it at every snapshot
//! tick) and whenever a new client finds the table full; if it is still full, the client heard
//! from least recently is forgotten. A forgotten client is a new client when it comes back,
//! so a retry it still had in flight could be applied twice: keep `client-ttl` well above the
//! clients' `retry_for` (the defaults are 1 hour and 60 s).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::{check_push, unix_ms, KeyHash, LocalPs};
use crate::error::{Error, Result};
use crate::snapshot;

/// How many sequence numbers below a client's highest the store tells apart (one `u128`).
pub const PUSH_WINDOW: u64 = 128;

/// Who sent a push, and its place in that sender's sequence of pushes to this store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PushStamp {
    /// The client's id: random, non-zero (0 is reserved for unstamped pushes on the wire).
    pub client: u64,
    /// The push's sequence number among the client's pushes to this store, from 1.
    pub seq: u64,
}

/// What a stamped push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// The gradients were applied.
    Applied,
    /// The stamp was applied before: nothing changed (counted in
    /// [`LocalPs::duplicate_pushes`]).
    Duplicate,
}

/// How many clients a store remembers for push dedup, and for how long.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct DedupConfig {
    /// A client not heard from for this long is forgotten (> 0). Default 1 hour; keep it well
    /// above the clients' retry time.
    #[serde(default = "default_client_ttl")]
    pub client_ttl: Duration,
    /// The most clients tracked at once (1..=16777216). Default 65536.
    #[serde(default = "default_max_clients")]
    pub max_clients: usize,
}

fn default_client_ttl() -> Duration {
    Duration::from_secs(3600)
}

fn default_max_clients() -> usize {
    1 << 16
}

impl Default for DedupConfig {
    fn default() -> Self {
        DedupConfig {
            client_ttl: default_client_ttl(),
            max_clients: default_max_clients(),
        }
    }
}

impl DedupConfig {
    /// Checks the fields, naming the first one out of range.
    pub(crate) fn check(&self) -> Result<()> {
        if self.client_ttl.is_zero() {
            return Err(Error::config("", "dedup.client-ttl", "must be > 0"));
        }
        if !(1..=1 << 24).contains(&self.max_clients) {
            return Err(Error::config(
                "",
                "dedup.max-clients",
                format!("{} is not in 1..=16777216", self.max_clients),
            ));
        }
        Ok(())
    }
}

/// One client's dedup window: bit `d` of `bits` set ⇔ sequence number `high − d` applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    high: u64,
    bits: u128,
    /// When the client last pushed (Unix ms, the store's clock).
    seen_ms: u64,
}

/// What the window says about a sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    New,
    Duplicate,
    Stale { oldest: u64 },
}

impl Window {
    const EMPTY: Window = Window {
        high: 0,
        bits: 0,
        seen_ms: 0,
    };

    /// Classifies `seq` (>= 1), marking it applied when it is new.
    fn mark(&mut self, seq: u64) -> Verdict {
        if seq > self.high {
            let shift = seq - self.high;
            self.bits = if shift >= PUSH_WINDOW {
                0
            } else {
                self.bits << shift
            };
            self.bits |= 1;
            self.high = seq;
            return Verdict::New;
        }
        let d = self.high - seq;
        if d >= PUSH_WINDOW {
            return Verdict::Stale {
                oldest: self.high - (PUSH_WINDOW - 1),
            };
        }
        let bit = 1u128 << d;
        if self.bits & bit != 0 {
            Verdict::Duplicate
        } else {
            self.bits |= bit;
            Verdict::New
        }
    }
}

type Clients = HashMap<u64, Window, KeyHash>;

/// A store's dedup state.
#[derive(Debug)]
pub(super) struct Dedup {
    cfg: DedupConfig,
    /// Held shared by a stamped push from its claim until its rows are written, exclusively
    /// by snapshot and restore.
    pub(super) gate: std::sync::RwLock<()>,
    clients: Mutex<Clients>,
    duplicates: AtomicU64,
}

impl Dedup {
    pub(super) fn new(cfg: DedupConfig) -> Self {
        Dedup {
            cfg,
            gate: std::sync::RwLock::new(()),
            clients: Mutex::default(),
            duplicates: AtomicU64::new(0),
        }
    }

    fn clients(&self) -> MutexGuard<'_, Clients> {
        self.clients.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks `stamp` applied (`Applied`: the caller applies it now) or counts a duplicate.
    fn claim(&self, stamp: PushStamp, now_ms: u64) -> Result<PushOutcome> {
        let mut clients = self.clients();
        if !clients.contains_key(&stamp.client) && clients.len() >= self.cfg.max_clients {
            self.make_room(&mut clients, now_ms);
        }
        let w = clients.entry(stamp.client).or_insert(Window::EMPTY);
        w.seen_ms = w.seen_ms.max(now_ms);
        match w.mark(stamp.seq) {
            Verdict::New => Ok(PushOutcome::Applied),
            Verdict::Duplicate => {
                self.duplicates.fetch_add(1, Ordering::Relaxed);
                Ok(PushOutcome::Duplicate)
            }
            Verdict::Stale { oldest } => Err(Error::StalePush {
                client: stamp.client,
                seq: stamp.seq,
                oldest,
            }),
        }
    }

    /// Forgets idle clients, then the least recently heard from while the table is full.
    fn make_room(&self, clients: &mut Clients, now_ms: u64) {
        self.forget_idle(clients, now_ms);
        while clients.len() >= self.cfg.max_clients {
            let Some(oldest) = clients
                .iter()
                .min_by_key(|(id, w)| (w.seen_ms, **id))
                .map(|(id, _)| *id)
            else {
                return;
            };
            clients.remove(&oldest);
        }
    }

    fn forget_idle(&self, clients: &mut Clients, now_ms: u64) -> usize {
        let ttl = self.cfg.client_ttl.as_millis() as u64;
        let before = clients.len();
        clients.retain(|_, w| now_ms.saturating_sub(w.seen_ms) <= ttl);
        before - clients.len()
    }

    /// Appends the dedup table, by client id:
    /// `clients u64, per client: id u64 | high u64 | bits (low u64, high u64) | seen_ms u64`.
    pub(super) fn write(&self, w: &mut snapshot::Writer) {
        let clients = self.clients();
        let mut sorted: Vec<(&u64, &Window)> = clients.iter().collect();
        sorted.sort_unstable_by_key(|(id, _)| **id);
        w.u64(sorted.len() as u64);
        for (id, win) in sorted {
            w.u64(*id);
            w.u64(win.high);
            w.u64(win.bits as u64);
            w.u64((win.bits >> 64) as u64);
            w.u64(win.seen_ms);
        }
    }

    /// Reads what [`write`](Dedup::write) wrote (nothing from a version-1 snapshot).
    pub(super) fn read(r: &mut snapshot::Reader<'_>) -> Result<DedupTable> {
        let mut clients = Clients::default();
        if r.version() < 2 {
            return Ok(DedupTable(clients));
        }
        for _ in 0..r.count(40)? {
            let id = r.u64()?;
            let high = r.u64()?;
            let bits = u128::from(r.u64()?) | (u128::from(r.u64()?) << 64);
            let seen_ms = r.u64()?;
            if id == 0
                || clients
                    .insert(
                        id,
                        Window {
                            high,
                            bits,
                            seen_ms,
                        },
                    )
                    .is_some()
            {
                return Err(Error::Snapshot(format!(
                    "dedup client {id}: id 0, or listed twice"
                )));
            }
        }
        Ok(DedupTable(clients))
    }

    /// Replaces the table with a restored one, trimmed to `max_clients` (the most recently
    /// heard from are kept).
    pub(super) fn replace(&self, table: DedupTable) {
        let mut fresh = table.0;
        if fresh.len() > self.cfg.max_clients {
            let mut by_age: Vec<(u64, u64)> =
                fresh.iter().map(|(id, w)| (w.seen_ms, *id)).collect();
            by_age.sort_unstable();
            for (_, id) in &by_age[..fresh.len() - self.cfg.max_clients] {
                fresh.remove(id);
            }
        }
        *self.clients() = fresh;
    }
}

/// A decoded dedup table, ready for [`Dedup::replace`].
pub(super) struct DedupTable(Clients);

impl LocalPs {
    /// [`push_at`](LocalPs::push_at) with a [`PushStamp`]: applied once per stamp (see the
    /// [module docs](self)). The shapes and the stamp are checked first; a duplicate answers
    /// [`PushOutcome::Duplicate`] and changes nothing, a stamp older than the client's window is
    /// refused with [`Error::StalePush`]. `now` stamps the rows (for expiry); the client's
    /// last-heard time is the store's own clock.
    pub fn push_stamped(
        &self,
        table: &str,
        keys: &[u64],
        grads: &[f32],
        xs: Option<&[f32]>,
        now: SystemTime,
        stamp: PushStamp,
    ) -> Result<PushOutcome> {
        let t = self.table(table)?;
        check_push(table, t.cfg.dim(), keys, grads, xs)?;
        if stamp.client == 0 || stamp.seq == 0 {
            return Err(Error::shape(
                table,
                "a push stamp needs a non-zero client id and a sequence number from 1",
            ));
        }
        let _shared = self
            .dedup
            .gate
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let outcome = self.dedup.claim(stamp, unix_ms(SystemTime::now()))?;
        if outcome == PushOutcome::Applied {
            self.push_checked(t, keys, grads, xs, unix_ms(now));
        }
        Ok(outcome)
    }

    /// Stamped pushes answered as duplicates since the store was built (not persisted).
    pub fn duplicate_pushes(&self) -> u64 {
        self.dedup.duplicates.load(Ordering::Relaxed)
    }

    /// The clients the dedup table tracks.
    pub fn dedup_clients(&self) -> usize {
        self.dedup.clients().len()
    }

    /// Forgets the clients not heard from for `client-ttl` before `now`; returns how many.
    pub fn forget_idle_clients(&self, now: SystemTime) -> usize {
        let mut clients = self.dedup.clients();
        self.dedup.forget_idle(&mut clients, unix_ms(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dedup(max_clients: usize) -> Dedup {
        Dedup::new(DedupConfig {
            client_ttl: Duration::from_secs(10),
            max_clients,
        })
    }

    fn stamp(client: u64, seq: u64) -> PushStamp {
        PushStamp { client, seq }
    }

    #[test]
    fn the_window_tells_new_duplicate_and_stale_apart() {
        let mut w = Window::EMPTY;
        assert_eq!(w.mark(5), Verdict::New);
        assert_eq!(w.mark(5), Verdict::Duplicate);
        assert_eq!(w.mark(3), Verdict::New, "out of order, inside the window");
        assert_eq!(w.mark(3), Verdict::Duplicate);
        assert_eq!(w.mark(4), Verdict::New);
        let top = 5 + PUSH_WINDOW - 1;
        assert_eq!(w.mark(top), Verdict::New, "5 is the oldest tracked");
        assert_eq!(w.mark(5), Verdict::Duplicate);
        assert_eq!(
            w.mark(6),
            Verdict::New,
            "never applied: a late first attempt"
        );
        assert_eq!(w.mark(4), Verdict::Stale { oldest: 5 });
        assert_eq!(w.mark(top + 1), Verdict::New);
        assert_eq!(w.mark(5), Verdict::Stale { oldest: 6 });
        assert_eq!(w.mark(6), Verdict::Duplicate);
        // a jump past the whole window forgets every bit
        assert_eq!(w.mark(top + 1 + 10 * PUSH_WINDOW), Verdict::New);
        assert_eq!(w.mark(top + 10 * PUSH_WINDOW + 2), Verdict::New);
        assert!(matches!(w.mark(top + 1), Verdict::Stale { .. }));
    }

    #[test]
    fn the_window_agrees_with_a_set_on_random_orders() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let mut w = Window::EMPTY;
        let mut applied = std::collections::BTreeSet::new();
        for _ in 0..20_000 {
            let seq = rng.random_range(1..3000);
            let want = if w.high >= PUSH_WINDOW && seq <= w.high - PUSH_WINDOW {
                Verdict::Stale {
                    oldest: w.high - PUSH_WINDOW + 1,
                }
            } else if applied.contains(&seq) {
                Verdict::Duplicate
            } else {
                Verdict::New
            };
            let got = w.mark(seq);
            assert_eq!(got, want, "seq {seq}, high {}", w.high);
            if got == Verdict::New {
                applied.insert(seq);
            }
        }
    }

    #[test]
    fn idle_clients_are_forgotten_and_a_full_table_evicts_the_least_recent() {
        let d = dedup(2);
        d.claim(stamp(1, 1), 1_000).unwrap();
        d.claim(stamp(2, 1), 2_000).unwrap();
        assert_eq!(d.claim(stamp(1, 1), 3_000).unwrap(), PushOutcome::Duplicate);
        // full: client 2 (heard from at 2 s) is the least recent, so a third evicts it
        d.claim(stamp(3, 1), 4_000).unwrap();
        assert_eq!(d.clients().len(), 2);
        assert_eq!(d.claim(stamp(1, 1), 4_500).unwrap(), PushOutcome::Duplicate);
        // now client 3 (4 s) is the least recent
        assert_eq!(
            d.claim(stamp(2, 1), 5_000).unwrap(),
            PushOutcome::Applied,
            "client 2 was forgotten: its stamp is new again"
        );
        assert_eq!(d.duplicates.load(Ordering::Relaxed), 2);
        assert!(!d.clients().contains_key(&3));
        // the ttl is 10 s: client 1 (4.5 s) is kept at 14.5 s and forgotten at 14.6 s
        let mut c = d.clients();
        assert_eq!(d.forget_idle(&mut c, 14_500), 0);
        assert_eq!(d.forget_idle(&mut c, 14_600), 1);
        assert_eq!(c.keys().copied().collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn the_table_round_trips_through_a_snapshot_and_is_trimmed_on_restore() {
        let d = dedup(8);
        for (c, seq) in [(7, 3), (9, 200), (7, 1), (4, 2)] {
            d.claim(stamp(c, seq), 1_000 + c).unwrap();
        }
        let mut w = snapshot::Writer::new();
        d.write(&mut w);
        let bytes = w.finish();
        let mut r = snapshot::open(&bytes).unwrap();
        let table = Dedup::read(&mut r).unwrap();
        r.end().unwrap();
        assert_eq!(table.0, *d.clients());
        let small = dedup(2);
        small.replace(table);
        let mut kept: Vec<u64> = small.clients().keys().copied().collect();
        kept.sort_unstable();
        assert_eq!(kept, vec![7, 9], "the two heard from most recently");
        assert_eq!(small.claim(stamp(7, 1), 0).unwrap(), PushOutcome::Duplicate);
        assert_eq!(small.claim(stamp(7, 2), 0).unwrap(), PushOutcome::Applied);
    }
}
