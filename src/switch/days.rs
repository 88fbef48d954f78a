//! The business day decisions belong to (BACKOFFICE.md §1). There is always exactly one
//! open day; every decision records it. The day ends at its scheduled cutover (checked
//! on every decision, so a decision a millisecond after the cutover belongs to the next
//! day, and once a second while idle) or earlier by `replenish day close`. The close is
//! a journal record written under the decider's lock, so in the journal every decision
//! before it belongs to the closed day and every one after it to the next: a closed day
//! never takes another decision.

use chrono::{DateTime, Days, NaiveDate, Utc};

use super::decide::{Decider, State, SwitchError};
use crate::durable::record::{DayClose, Record};
use crate::durable::store::Store;
use crate::vocab::calendar::{self, Calendar};

/// The open business day as the decider holds it.
#[derive(Debug, Clone)]
pub(super) struct OpenDay {
    day: NaiveDate,
    /// The day as decisions write it.
    pub(super) label: String,
    /// Its scheduled cutover.
    ends: DateTime<Utc>,
}

impl Default for OpenDay {
    /// A placeholder until the decider restores the real one.
    fn default() -> OpenDay {
        OpenDay::new(NaiveDate::default(), &Calendar::default())
    }
}

impl OpenDay {
    fn new(day: NaiveDate, calendar: &Calendar) -> OpenDay {
        OpenDay {
            day,
            label: calendar::label(day),
            ends: calendar.end_of(day),
        }
    }

    /// The open day after a restart: the one the last close opened, or the calendar's
    /// day of `now` before any day was closed.
    pub(super) fn restore(
        store: &Store,
        calendar: &Calendar,
        now: DateTime<Utc>,
    ) -> Result<OpenDay, SwitchError> {
        let day = store
            .open_day()?
            .and_then(|open| calendar::parse_day(&open.day))
            .unwrap_or_else(|| calendar.day_of(now));
        Ok(OpenDay::new(day, calendar))
    }
}

/// A business day closed: what `day close` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    /// The day closed.
    pub day: String,
    /// The day open now.
    pub open: String,
    /// The journal position of the close (durable once the journal says so).
    pub seq: u64,
}

impl Decider {
    /// The open business day at `now`, closing the open one first when its scheduled
    /// cutover has passed. Called under the lock, before a decision is journaled.
    pub(super) fn business_day(
        &self,
        state: &mut State,
        now: DateTime<Utc>,
    ) -> Result<String, SwitchError> {
        if now >= state.open.ends {
            let next = self.calendar.day_of(now).max(following(state.open.day));
            self.close(state, now, next, "cutover")?;
        }
        Ok(state.open.label.clone())
    }

    /// Closes the open business day now (`replenish day close`): an early cutover when
    /// its scheduled one has not come yet.
    pub fn close_day(&self, by: &str) -> Result<Closed, SwitchError> {
        let mut state = self.lock();
        let now = (self.clock)();
        // A cutover that is due happens first: the operator closes the day after it.
        self.business_day(&mut state, now)?;
        let next = following(state.open.day);
        self.close(&mut state, now, next, by)
    }

    /// The scheduled cutover, while no decision comes to make it: closes the open day
    /// when its cutover has passed.
    pub fn cutover_if_due(&self) -> Result<Option<Closed>, SwitchError> {
        let mut state = self.lock();
        let now = (self.clock)();
        if now < state.open.ends {
            return Ok(None);
        }
        let next = self.calendar.day_of(now).max(following(state.open.day));
        self.close(&mut state, now, next, "cutover").map(Some)
    }

    /// Reads the open day again from the indexes with the decider's own clock.
    #[cfg(test)]
    pub(super) fn restore_open_day(&self) -> Result<(), SwitchError> {
        let open = OpenDay::restore(&self.store, &self.calendar, (self.clock)())?;
        self.lock().open = open;
        Ok(())
    }

    /// Journals back-office records (breaks, reconciliations, resolutions: nothing the
    /// decider remembers), waits until they are durable and, for a while, indexed;
    /// returns their journal positions.
    pub fn journal_records(&self, records: &[Record]) -> Result<Vec<u64>, SwitchError> {
        let seqs = crate::durable::datadir::append(&self.journal, records)?;
        self.wait_indexed(seqs.last().copied().unwrap_or(0));
        Ok(seqs)
    }

    /// Waits (at most 10 s) until the index has applied the journal up to `seq`: what
    /// a read of the indexes after a change needs (blocking).
    pub fn wait_indexed(&self, seq: u64) {
        for _ in 0..5000 {
            if self.applied.load(std::sync::atomic::Ordering::Acquire) >= seq {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }

    /// The last journal position the index has applied.
    pub fn indexed(&self) -> u64 {
        self.applied.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The open business day.
    pub fn open_day(&self) -> String {
        self.lock().open.label.clone()
    }

    fn close(
        &self,
        state: &mut State,
        now: DateTime<Utc>,
        next: NaiveDate,
        by: &str,
    ) -> Result<Closed, SwitchError> {
        let close = DayClose {
            day: state.open.label.clone(),
            next: calendar::label(next),
            at_ms: now.timestamp_millis(),
            by: by.to_owned(),
            early: now < state.open.ends,
        };
        let seq = self
            .journal
            .append(&Record::DayClosed(close.clone()).to_bytes())?;
        tracing::info!(
            "business day {} closed ({}); open: {}",
            close.day,
            if close.early { by } else { "scheduled cutover" },
            close.next
        );
        state.open = OpenDay::new(next, &self.calendar);
        Ok(Closed {
            day: close.day,
            open: close.next,
            seq,
        })
    }
}

fn following(day: NaiveDate) -> NaiveDate {
    day.checked_add_days(Days::new(1)).unwrap_or(day)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};

    use super::*;
    use crate::config::Config;
    use crate::durable::datadir::DataDir;
    use crate::durable::journal;
    use crate::switch::decide::Link;
    use crate::wire::iso8583::{Message, Mti};

    /// The test clock, milliseconds since the epoch.
    static NOW_MS: AtomicI64 = AtomicI64::new(0);
    /// The tests that set the clock run one at a time.
    static CLOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp_millis(NOW_MS.load(Ordering::SeqCst)).unwrap_or_default()
    }

    fn set_now(rfc3339: &str) {
        let at = DateTime::parse_from_rfc3339(rfc3339).expect("time");
        NOW_MS.store(at.timestamp_millis(), Ordering::SeqCst);
    }

    fn config(dir: &std::path::Path) -> Config {
        let text = format!(
            "data_dir = {:?}\n[[acquirer]]\nname = \"bank\"\nlisten = \"127.0.0.1:0\"\n\
             [settlement]\ncutover = \"22:00\"\n",
            dir.display().to_string()
        );
        Config::from_toml(&text, "test").expect("config")
    }

    fn test_decider(config: &Config, data: &DataDir) -> Decider {
        let mut decider =
            crate::switch::open::decider(config, data, Default::default()).expect("decider");
        // The test's clock instead of the system's.
        decider.clock = now;
        decider.restore_open_day().expect("open day");
        decider
    }

    fn request(stan: u32) -> Message {
        let mut m = Message::new(Mti::new(b"0200").expect("mti"));
        for (n, v) in [(2, "6034567890123456"), (3, "280000"), (4, "000000002500")] {
            m.set(n, v);
        }
        m.set(7, "1204215959");
        m.set(11, format!("{stan:06}"));
        m.set(41, "TERM0001");
        m.set(49, "840");
        m
    }

    /// Every decision's and close's business day, in journal order.
    fn days_in_journal(data: &DataDir, last: u64) -> Vec<String> {
        data.journal.wait_durable_blocking(last).expect("durable");
        let dir = data.path.join("journal");
        let mut days = Vec::new();
        for record in journal::read_from(&dir, 1).expect("read") {
            let body = record.expect("record").body;
            match Record::from_bytes(&body).expect("parse") {
                Record::Decided(d) => days.push(format!("decision {}", d.business_day)),
                Record::DayClosed(c) => days.push(format!("close {} -> {}", c.day, c.next)),
                _ => {}
            }
        }
        days
    }

    #[test]
    fn the_scheduled_cutover_moves_decisions_to_the_next_day_at_once() {
        let _clock = CLOCK.lock().unwrap_or_else(|p| p.into_inner());
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(dir.path());
        let data = DataDir::open(&config).expect("data");
        let link = Link {
            name: "bank".into(),
            acquirer_id: "00012345".into(),
        };
        set_now("2026-12-04T21:59:59.999Z");
        let decider = test_decider(&config, &data);
        decider.decide(&request(1), &link).expect("decide");
        // One millisecond after the 22:00 cutover: the 5th has begun.
        set_now("2026-12-04T22:00:00.000Z");
        decider.decide(&request(2), &link).expect("decide");
        assert_eq!(decider.cutover_if_due().expect("cutover"), None);
        // Idle through the next cutover: the timer closes the 5th.
        set_now("2026-12-05T22:00:01Z");
        let closed = decider.cutover_if_due().expect("cutover").expect("closed");
        assert_eq!(
            (closed.day.as_str(), closed.open.as_str()),
            ("2026-12-05", "2026-12-06")
        );
        let last = decider.decide(&request(3), &link).expect("decide").seq;
        assert_eq!(
            days_in_journal(&data, last),
            [
                "decision 2026-12-04",
                "close 2026-12-04 -> 2026-12-05",
                "decision 2026-12-05",
                "close 2026-12-05 -> 2026-12-06",
                "decision 2026-12-06",
            ]
        );
    }

    #[test]
    fn an_early_close_opens_the_next_day_and_a_restart_keeps_it() {
        let _clock = CLOCK.lock().unwrap_or_else(|p| p.into_inner());
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(dir.path());
        set_now("2026-12-04T10:00:00Z");
        let data = DataDir::open(&config).expect("data");
        let decider = test_decider(&config, &data);
        let closed = decider.close_day("alice").expect("close");
        assert_eq!(
            (closed.day.as_str(), closed.open.as_str()),
            ("2026-12-04", "2026-12-05")
        );
        // Its scheduled cutover passes: the 5th was opened early and stays open.
        set_now("2026-12-04T22:30:00Z");
        assert_eq!(decider.cutover_if_due().expect("cutover"), None);
        assert_eq!(decider.open_day(), "2026-12-05");
        drop(decider);
        data.close().expect("close");
        let data = DataDir::open(&config).expect("reopen");
        let decider = test_decider(&config, &data);
        assert_eq!(decider.open_day(), "2026-12-05");
        let days = data.store.closed_days().expect("days");
        assert_eq!(days.len(), 1);
        assert!(days[0].close.early && days[0].close.by == "alice");
    }
}
