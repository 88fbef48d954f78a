//! Business days (BACKOFFICE.md §1): which business day an instant belongs to, given the
//! local time at which a day ends (`[settlement] cutover`) and the IANA time zone it is
//! read in (`[settlement] timezone`). With a cutover of `22:00`, business day
//! 2026-12-05 runs from 22:00 on the 4th to 22:00 on the 5th, local time; with `00:00`
//! it is the calendar day. A day closed early (`replenish day close`) is the
//! switch's affair, not the calendar's: the calendar only says when a day ends by
//! itself.

use chrono::{DateTime, Days, NaiveDate, NaiveTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;

/// The business-day calendar of `[settlement]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Calendar {
    /// Local time at which a business day ends.
    cutover: NaiveTime,
    /// The zone local times are read in.
    zone: Tz,
}

impl Default for Calendar {
    /// Cutover at midnight UTC: business days are UTC calendar days.
    fn default() -> Calendar {
        Calendar {
            cutover: NaiveTime::MIN,
            zone: Tz::UTC,
        }
    }
}

impl Calendar {
    /// The calendar of `cutover` (`HH:MM`, 24-hour) in `timezone` (an IANA name such
    /// as `UTC` or `America/New_York`); the error names what is wrong.
    pub fn parse(cutover: &str, timezone: &str) -> Result<Calendar, String> {
        let cutover = NaiveTime::parse_from_str(cutover, "%H:%M")
            .map_err(|_| format!("cutover: {cutover:?} is not a time of day HH:MM"))?;
        let zone = timezone
            .parse::<Tz>()
            .map_err(|_| format!("timezone: {timezone:?} is not an IANA time zone name"))?;
        Ok(Calendar { cutover, zone })
    }

    /// How far a local time is moved forward so that the cutover falls on midnight.
    fn shift(&self) -> TimeDelta {
        let after_midnight = self.cutover - NaiveTime::MIN;
        if after_midnight.is_zero() {
            TimeDelta::zero()
        } else {
            TimeDelta::days(1) - after_midnight
        }
    }

    /// The business day `at` belongs to.
    pub fn day_of(&self, at: DateTime<Utc>) -> NaiveDate {
        (at.with_timezone(&self.zone).naive_local() + self.shift()).date()
    }

    /// When business day `day` ends by itself: the first instant of the next day.
    /// Across a daylight-saving change a cutover that does not exist locally ends the
    /// day at the first local time after it; one that exists twice, at the first.
    pub fn end_of(&self, day: NaiveDate) -> DateTime<Utc> {
        let next = day.checked_add_days(Days::new(1)).unwrap_or(day);
        let mut local = next.and_time(NaiveTime::MIN) - self.shift();
        // A gap (spring forward) is at most a few hours: step over it by minutes.
        for _ in 0..(24 * 60) {
            if let Some(at) = self.zone.from_local_datetime(&local).earliest() {
                return at.with_timezone(&Utc);
            }
            local += TimeDelta::minutes(1);
        }
        Utc.from_utc_datetime(&local)
    }
}

/// A business day as records and reports write it, `YYYY-MM-DD`.
pub fn label(day: NaiveDate) -> String {
    day.format("%Y-%m-%d").to_string()
}

/// Parses a business day written `YYYY-MM-DD`.
pub fn parse_day(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("time")
            .with_timezone(&Utc)
    }

    fn day(text: &str) -> NaiveDate {
        parse_day(text).expect("day")
    }

    #[test]
    fn a_midnight_cutover_in_utc_gives_calendar_days() {
        let calendar = Calendar::default();
        assert_eq!(
            calendar.day_of(at("2026-12-04T23:59:59.999Z")),
            day("2026-12-04")
        );
        assert_eq!(
            calendar.day_of(at("2026-12-05T00:00:00Z")),
            day("2026-12-05")
        );
        assert_eq!(
            calendar.end_of(day("2026-12-04")),
            at("2026-12-05T00:00:00Z")
        );
    }

    #[test]
    fn after_an_evening_cutover_the_next_day_has_begun() {
        let calendar = Calendar::parse("22:00", "UTC").expect("calendar");
        assert_eq!(
            calendar.day_of(at("2026-12-04T21:59:59Z")),
            day("2026-12-04")
        );
        assert_eq!(
            calendar.day_of(at("2026-12-04T22:00:00Z")),
            day("2026-12-05")
        );
        assert_eq!(
            calendar.end_of(day("2026-12-05")),
            at("2026-12-05T22:00:00Z")
        );
    }

    #[test]
    fn local_time_is_read_in_the_zone_across_daylight_saving() {
        let calendar = Calendar::parse("00:00", "America/New_York").expect("calendar");
        // 23:30 in New York on the 4th (EST, UTC-5) is 04:30 UTC on the 5th.
        assert_eq!(
            calendar.day_of(at("2026-12-05T04:30:00Z")),
            day("2026-12-04")
        );
        assert_eq!(
            calendar.end_of(day("2026-12-04")),
            at("2026-12-05T05:00:00Z")
        );
        // Summer time (EDT, UTC-4).
        assert_eq!(
            calendar.end_of(day("2026-07-01")),
            at("2026-07-02T04:00:00Z")
        );
        // 02:30 does not exist on 2026-03-08 in New York: the day ends at 03:00 EDT.
        let early = Calendar::parse("02:30", "America/New_York").expect("calendar");
        assert_eq!(early.end_of(day("2026-03-08")), at("2026-03-08T07:00:00Z"));
    }

    #[test]
    fn every_instant_lies_before_the_end_of_its_day() {
        let calendar = Calendar::parse("17:45", "Europe/Berlin").expect("calendar");
        let mut t = at("2026-03-27T00:00:00Z");
        while t < at("2026-04-02T00:00:00Z") {
            let d = calendar.day_of(t);
            assert!(t < calendar.end_of(d), "{t} is not before the end of {d}");
            let previous = d.pred_opt().expect("previous");
            assert!(
                t >= calendar.end_of(previous),
                "{t} is before the end of {previous}"
            );
            t += TimeDelta::minutes(7);
        }
    }

    #[test]
    fn bad_settings_are_named() {
        assert!(
            Calendar::parse("25:00", "UTC")
                .unwrap_err()
                .contains("cutover")
        );
        assert!(
            Calendar::parse("00:00", "Mars/Olympus")
                .unwrap_err()
                .contains("timezone")
        );
    }
}
