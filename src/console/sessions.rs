//! Console sessions: signed-in users by session id, with a CSRF token each, idle and
//! absolute timeouts, and sign-in throttling. Sessions live in memory only (a restart
//! signs everyone out, which costs a sign-in and keeps no session secret on disk), and
//! even there only the SHA-256 of a session id is kept: a memory dump does not give
//! away a usable cookie. Every sign-in makes a new id, so an id planted before sign-in
//! (session fixation) is worth nothing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::secrets;
use crate::config::ConsoleConfig;

/// The session cookie's name.
pub const COOKIE: &str = "replenish_session";

/// Failed sign-ins in a row after which a user is refused for a while.
pub const MAX_FAILURES: u32 = 5;

/// Names with failed sign-ins kept at most (beyond it, only locked ones are kept).
pub const MAX_TRACKED: usize = 10_000;

/// A session found by its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The user.
    pub user: String,
    /// The token `X-CSRF-Token` must carry on every change.
    pub csrf: String,
}

/// A session made at sign-in: the cookie's id and the CSRF token (both shown once).
#[derive(Debug, Clone)]
pub struct Opened {
    /// The session id (the cookie's value).
    pub id: String,
    /// The CSRF token.
    pub csrf: String,
}

struct Session {
    user: String,
    csrf: String,
    opened: Instant,
    used: Instant,
}

#[derive(Default)]
struct Failures {
    count: u32,
    locked_until: Option<Instant>,
}

/// The sessions and sign-in failures of a running console.
pub struct Sessions {
    idle: Duration,
    absolute: Duration,
    lockout: Duration,
    sessions: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<String, Failures>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Sessions {
    /// Sessions with `config`'s timeouts.
    pub fn new(config: &ConsoleConfig) -> Sessions {
        Sessions {
            idle: config.idle_timeout,
            absolute: config.absolute_timeout,
            lockout: config.lockout,
            sessions: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `user` is refused for now after too many failures in a row.
    pub fn throttled(&self, user: &str, now: Instant) -> bool {
        let mut failures = lock(&self.failures);
        let Some(entry) = failures.get_mut(user) else {
            return false;
        };
        match entry.locked_until {
            Some(until) if now < until => true,
            Some(_) => {
                failures.remove(user);
                false
            }
            None => false,
        }
    }

    /// Counts a failed sign-in of `user`; the fifth in a row locks them out. Names are
    /// counted whether they exist or not (so a lockout does not tell which do); the
    /// table forgets unlocked names when it grows past [`MAX_TRACKED`].
    pub fn failed(&self, user: &str, now: Instant) {
        let mut failures = lock(&self.failures);
        if failures.len() >= MAX_TRACKED {
            failures.retain(|_, f| f.locked_until.is_some_and(|until| now < until));
        }
        let entry = failures.entry(user.to_owned()).or_default();
        entry.count += 1;
        if entry.count >= MAX_FAILURES {
            entry.locked_until = Some(now + self.lockout);
        }
    }

    /// Opens a session for `user` (a good sign-in also clears their failures).
    pub fn open(&self, user: &str, now: Instant) -> Result<Opened, secrets::SecretError> {
        lock(&self.failures).remove(user);
        let opened = Opened {
            id: secrets::token()?,
            csrf: secrets::token()?,
        };
        let session = Session {
            user: user.to_owned(),
            csrf: opened.csrf.clone(),
            opened: now,
            used: now,
        };
        let mut sessions = lock(&self.sessions);
        sessions.retain(|_, s| self.alive(s, now));
        sessions.insert(secrets::digest_hex(&opened.id), session);
        Ok(opened)
    }

    /// The session with cookie value `id`, if it is alive (using it keeps it so).
    pub fn find(&self, id: &str, now: Instant) -> Option<Found> {
        let digest = secrets::digest_hex(id);
        let mut sessions = lock(&self.sessions);
        let session = sessions.get_mut(&digest)?;
        if !self.alive(session, now) {
            sessions.remove(&digest);
            return None;
        }
        session.used = now;
        Some(Found {
            user: session.user.clone(),
            csrf: session.csrf.clone(),
        })
    }

    /// Ends the session with cookie value `id`.
    pub fn close(&self, id: &str) {
        lock(&self.sessions).remove(&secrets::digest_hex(id));
    }

    /// Ends every session of `user` (disabled).
    pub fn close_user(&self, user: &str) {
        lock(&self.sessions).retain(|_, s| s.user != user);
    }

    fn alive(&self, session: &Session, now: Instant) -> bool {
        now.duration_since(session.used) < self.idle
            && now.duration_since(session.opened) < self.absolute
    }
}

/// The session id in a `Cookie` header, if any.
pub fn cookie_value(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
}

/// The `Set-Cookie` value that carries `id` (`Secure` over HTTPS).
pub fn set_cookie(id: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict{secure}")
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie(secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions() -> Sessions {
        Sessions::new(&ConsoleConfig {
            idle_timeout: Duration::from_secs(60),
            absolute_timeout: Duration::from_secs(300),
            lockout: Duration::from_secs(120),
            ..ConsoleConfig::default()
        })
    }

    #[test]
    fn sessions_end_when_idle_or_old_and_at_sign_out() {
        let sessions = sessions();
        let t0 = Instant::now();
        let opened = sessions.open("ana", t0).expect("opens");
        let found = sessions.find(&opened.id, t0 + Duration::from_secs(59));
        assert_eq!(found.map(|f| f.user).as_deref(), Some("ana"));
        assert!(
            sessions
                .find(&opened.id, t0 + Duration::from_secs(119))
                .is_none()
        );

        let other = sessions.open("ana", t0).expect("opens");
        for minute in 1..5 {
            let at = t0 + Duration::from_secs(minute * 59);
            assert!(sessions.find(&other.id, at).is_some(), "used within idle");
        }
        assert!(
            sessions
                .find(&other.id, t0 + Duration::from_secs(300))
                .is_none()
        );

        let third = sessions.open("ana", t0).expect("opens");
        sessions.close(&third.id);
        assert!(sessions.find(&third.id, t0).is_none());
        assert!(sessions.find("forged", t0).is_none());
    }

    #[test]
    fn five_failures_in_a_row_lock_for_a_while() {
        let sessions = sessions();
        let t0 = Instant::now();
        for _ in 0..4 {
            sessions.failed("ana", t0);
        }
        assert!(!sessions.throttled("ana", t0));
        sessions
            .open("ana", t0)
            .expect("a good sign-in clears them");
        for _ in 0..5 {
            sessions.failed("ana", t0);
        }
        assert!(sessions.throttled("ana", t0 + Duration::from_secs(119)));
        assert!(!sessions.throttled("bob", t0));
        assert!(!sessions.throttled("ana", t0 + Duration::from_secs(120)));
    }

    #[test]
    fn cookies_carry_their_flags() {
        assert_eq!(cookie_value("a=1; replenish_session=abc; b=2"), Some("abc"));
        assert_eq!(cookie_value("a=1"), None);
        let set = set_cookie("abc", true);
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"));
        assert!(set.ends_with("Secure") && !set_cookie("abc", false).contains("Secure"));
    }
}
