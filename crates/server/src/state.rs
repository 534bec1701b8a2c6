//! The exit config in force: validation (the NACK rules of docs/protocol.md), leases
//! and the fallback to the safe static config.
//!
//! One [`ConfigState`] is shared by the config streams (which apply updates) and the
//! inference worker (which reads the config once per batch, so every request of a
//! batch is decided by one version). Lease expiry is checked both by a watchdog task
//! and by the worker before each batch, so no batch ever runs on an expired config.

use std::{
    sync::Mutex,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use apparate_proto::v1;
use tokio::sync::{Notify, broadcast};

/// Why an update was rejected: the field path and a reason a person can act on.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub field: String,
    pub reason: String,
}

fn reject(field: impl Into<String>, reason: impl Into<String>) -> Rejection {
    Rejection {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Checks a ramp list: candidate ids, ascending, each once, thresholds in [0, 1],
/// at most `max_active` ramps. `prefix` names the list in errors (`config.ramps`).
pub fn validate_ramps(
    ramps: &[v1::RampThreshold],
    candidates: u32,
    max_active: u32,
    prefix: &str,
) -> Result<(), Rejection> {
    if ramps.len() > max_active as usize {
        return Err(reject(
            prefix,
            format!(
                "{} ramps, the server allows at most {max_active} active",
                ramps.len()
            ),
        ));
    }
    for (i, r) in ramps.iter().enumerate() {
        if r.ramp_id >= candidates {
            return Err(reject(
                format!("{prefix}[{i}].ramp_id"),
                format!(
                    "{} is not a candidate ramp (ids are 0..{candidates})",
                    r.ramp_id
                ),
            ));
        }
        if i > 0 && r.ramp_id <= ramps[i - 1].ramp_id {
            return Err(reject(
                format!("{prefix}[{i}].ramp_id"),
                format!(
                    "{} after {}: ramps must be listed once each, in ascending id order",
                    r.ramp_id,
                    ramps[i - 1].ramp_id
                ),
            ));
        }
        if !(0.0..=1.0).contains(&r.threshold) {
            return Err(reject(
                format!("{prefix}[{i}].threshold"),
                format!("{} is not in [0, 1]", r.threshold),
            ));
        }
    }
    Ok(())
}

/// What a valid update does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// A new version is in force.
    New,
    /// The same version and content: the lease restarts.
    Renewed,
}

/// A lease ran out: the safe config is in force now.
#[derive(Debug, Clone, PartialEq)]
pub struct Expired {
    pub expired_version: u64,
    pub fallback: v1::ExitConfig,
}

#[derive(Debug)]
struct Inner {
    active: v1::ExitConfig,
    is_fallback: bool,
    /// Highest version ever applied: later pushes must exceed it (or renew it).
    highest: u64,
    lease_deadline: Option<Instant>,
}

/// The config in force and everything that changes it.
#[derive(Debug)]
pub struct ConfigState {
    inner: Mutex<Inner>,
    safe: v1::ExitConfig,
    candidates: u32,
    max_active: u32,
    max_lease_ms: u32,
    /// Wakes the lease watchdog when a deadline changes.
    pub(crate) lease_changed: Notify,
    /// Unsolicited `LeaseExpired` notices for every open config stream.
    pub(crate) expired_tx: broadcast::Sender<Expired>,
}

impl ConfigState {
    /// Starts on `safe` (version 0), which must be valid for `candidates`.
    pub fn new(
        safe: v1::ExitConfig,
        candidates: u32,
        max_active: u32,
        max_lease_ms: u32,
    ) -> Result<Self, Rejection> {
        validate_ramps(&safe.ramps, candidates, max_active, "safe_config.ramps")?;
        Ok(Self {
            inner: Mutex::new(Inner {
                active: safe.clone(),
                is_fallback: true,
                highest: 0,
                lease_deadline: None,
            }),
            safe,
            candidates,
            max_active,
            max_lease_ms,
            lease_changed: Notify::new(),
            expired_tx: broadcast::channel(16).0,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The config in force and whether it is the safe fallback.
    pub fn active(&self) -> (v1::ExitConfig, bool) {
        let inner = self.lock();
        (inner.active.clone(), inner.is_fallback)
    }

    /// The config the next batch runs with, after expiring a lease that is due.
    pub fn for_batch(&self, now: Instant) -> v1::ExitConfig {
        self.expire_if_due(now);
        self.lock().active.clone()
    }

    /// Highest version ever applied (0: none yet).
    pub fn highest_version(&self) -> u64 {
        self.lock().highest
    }

    /// When the current lease ends, if there is one.
    pub fn lease_deadline(&self) -> Option<Instant> {
        self.lock().lease_deadline
    }

    /// Validates and applies `update`, or says why not (the config in force stays).
    /// Returns what happened and the version in force afterwards.
    pub fn apply(&self, update: &v1::ExitConfig, now: Instant) -> Result<Applied, Rejection> {
        self.expire_if_due(now);
        let mut inner = self.lock();
        let v = update.version;
        if v == 0 {
            return Err(reject(
                "config.version",
                "0 is reserved for the server's safe config",
            ));
        }
        let renewal = v == inner.highest;
        if v < inner.highest {
            return Err(reject(
                "config.version",
                format!(
                    "{v} is stale: version {} was already applied",
                    inner.highest
                ),
            ));
        }
        if renewal {
            if inner.is_fallback {
                return Err(reject(
                    "config.version",
                    format!("the lease of version {v} expired: push a higher version"),
                ));
            }
            if inner.active.ramps != update.ramps || inner.active.lease_ms != update.lease_ms {
                return Err(reject(
                    "config.version",
                    format!("{v} is in force with different content: bump the version"),
                ));
            }
        }
        validate_ramps(
            &update.ramps,
            self.candidates,
            self.max_active,
            "config.ramps",
        )?;
        if self.max_lease_ms > 0 && (update.lease_ms == 0 || update.lease_ms > self.max_lease_ms) {
            return Err(reject(
                "config.lease_ms",
                format!(
                    "{} ms: the server grants leases of 1..={} ms",
                    update.lease_ms, self.max_lease_ms
                ),
            ));
        }
        inner.active = update.clone();
        inner.is_fallback = false;
        inner.highest = v;
        inner.lease_deadline =
            (update.lease_ms > 0).then(|| now + Duration::from_millis(u64::from(update.lease_ms)));
        drop(inner);
        self.lease_changed.notify_one();
        Ok(if renewal {
            Applied::Renewed
        } else {
            Applied::New
        })
    }

    /// Falls back to the safe config if the lease has run out; says so once.
    pub fn expire_if_due(&self, now: Instant) -> Option<Expired> {
        let mut inner = self.lock();
        let due = inner.lease_deadline.is_some_and(|d| d <= now);
        if !due {
            return None;
        }
        let expired = Expired {
            expired_version: inner.active.version,
            fallback: self.safe.clone(),
        };
        inner.active = self.safe.clone();
        inner.is_fallback = true;
        inner.lease_deadline = None;
        drop(inner);
        tracing::warn!(
            expired_version = expired.expired_version,
            "lease expired without renewal: serving the safe config (version 0)"
        );
        crate::metrics::lease_expired();
        // No open config stream is fine: the notice is for whoever listens.
        let _ = self.expired_tx.send(expired.clone());
        Some(expired)
    }
}

/// Milliseconds since the Unix epoch of an `Instant` in the future (for `Ack`).
pub fn unix_ms(at: Instant, now: Instant) -> u64 {
    let wall = SystemTime::now() + at.saturating_duration_since(now);
    wall.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(version: u64, ramps: &[(u32, f32)], lease_ms: u32) -> v1::ExitConfig {
        v1::ExitConfig {
            version,
            ramps: ramps
                .iter()
                .map(|&(ramp_id, threshold)| v1::RampThreshold { ramp_id, threshold })
                .collect(),
            lease_ms,
        }
    }

    fn state() -> ConfigState {
        ConfigState::new(cfg(0, &[], 0), 4, 2, 10_000).unwrap()
    }

    #[test]
    fn nack_rules_name_the_field() {
        let s = state();
        let now = Instant::now();
        let cases = [
            (cfg(0, &[], 100), "config.version"),
            (cfg(1, &[(4, 0.5)], 100), "config.ramps[0].ramp_id"),
            (
                cfg(1, &[(1, 0.5), (1, 0.6)], 100),
                "config.ramps[1].ramp_id",
            ),
            (
                cfg(1, &[(2, 0.5), (1, 0.6)], 100),
                "config.ramps[1].ramp_id",
            ),
            (cfg(1, &[(1, f32::NAN)], 100), "config.ramps[0].threshold"),
            (cfg(1, &[(1, 1.5)], 100), "config.ramps[0].threshold"),
            (cfg(1, &[(0, 0.5), (1, 0.5), (2, 0.5)], 100), "config.ramps"),
            (cfg(1, &[(0, 0.5)], 20_000), "config.lease_ms"),
        ];
        for (update, field) in cases {
            let err = s.apply(&update, now).unwrap_err();
            assert_eq!(err.field, field, "{update:?}: {}", err.reason);
        }
        assert_eq!(s.active().0.version, 0, "rejections change nothing");
    }

    #[test]
    fn versions_must_grow_and_renewals_must_match() {
        let s = state();
        let now = Instant::now();
        assert_eq!(s.apply(&cfg(5, &[(1, 0.9)], 100), now), Ok(Applied::New));
        assert_eq!(
            s.apply(&cfg(5, &[(1, 0.9)], 100), now),
            Ok(Applied::Renewed)
        );
        assert_eq!(
            s.apply(&cfg(5, &[(1, 0.8)], 100), now).unwrap_err().field,
            "config.version"
        );
        assert_eq!(
            s.apply(&cfg(4, &[(1, 0.9)], 100), now).unwrap_err().field,
            "config.version"
        );
        assert_eq!(s.active().0.version, 5);
    }

    #[test]
    fn leases_fall_back_once_and_need_a_higher_version() {
        let s = state();
        let mut rx = s.expired_tx.subscribe();
        let t0 = Instant::now();
        s.apply(&cfg(3, &[(0, 0.7)], 100), t0).unwrap();
        assert_eq!(s.for_batch(t0 + Duration::from_millis(99)).version, 3);
        let after = t0 + Duration::from_millis(100);
        assert_eq!(s.for_batch(after).version, 0);
        assert!(s.active().1, "fallback");
        assert_eq!(rx.try_recv().unwrap().expired_version, 3);
        assert!(s.expire_if_due(after).is_none(), "expires once");
        assert_eq!(
            s.apply(&cfg(3, &[(0, 0.7)], 100), after).unwrap_err().field,
            "config.version"
        );
        assert_eq!(s.apply(&cfg(4, &[(0, 0.7)], 100), after), Ok(Applied::New));
    }
}
