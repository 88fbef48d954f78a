//! The checks a replenishment must pass (the seed's step 303 and its authorization
//! paragraph), in two steps: [`read_request`] checks what the message says on its own
//! (processing code, amount, currency, account number form and range, location id);
//! [`check`] checks it against what the switch knows (the account, the location, the
//! day's velocity, the engine routing). Each failure is a [`Decline`] with its code.

use chrono::NaiveDate;

use crate::vocab::accounts::{Account, AccountStatus, Location, Usage};
use crate::vocab::codes::Decline;
use crate::vocab::confirmation::luhn_valid;
use crate::wire::iso8583::Message;

/// What the rules allow; built from the `[limits]` section of the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// Smallest amount per transaction, minor units.
    pub min_amount: u64,
    /// Largest amount per transaction, minor units.
    pub max_amount: u64,
    /// Approved transactions per account per UTC day.
    pub daily_count: u32,
    /// Approved amount per account per UTC day, minor units.
    pub daily_amount: u64,
    /// Accepted DE49 values.
    pub currencies: Vec<String>,
    /// Accepted first two digits of DE3.
    pub processing_codes: Vec<String>,
    /// Accepted account number ranges, inclusive, equal-length digit strings; empty
    /// accepts every account.
    pub account_ranges: Vec<(String, String)>,
    /// Whether the location is DE42/DE41 rather than DE42 alone.
    pub check_terminal: bool,
}

/// The processing code's family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// `28xxxx` prepaid load at a point of sale.
    PosLoad,
    /// `21xxxx` deposit at a point of sale.
    PosDeposit,
    /// `40xxxx` transfer from an ATM network: prepaid account in DE103.
    AtmTransfer,
    /// Any other accepted code.
    Other,
}

/// A replenishment request that passed the form checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replenishment {
    /// How it was made.
    pub channel: Channel,
    /// The prepaid account card number.
    pub account: String,
    /// Amount in minor units.
    pub amount: u64,
    /// DE49.
    pub currency: String,
    /// The location id checked against the authorized locations.
    pub location: String,
}

/// Checks what a request says on its own.
pub fn read_request(message: &Message, rules: &Rules) -> Result<Replenishment, Decline> {
    let text = |n| message.text(n).map(str::trim).unwrap_or("");
    let code = text(3);
    let family = code.get(..2).filter(|_| code.len() == 6);
    let channel = match family {
        Some(f) if rules.processing_codes.iter().any(|c| c == f) => channel_of(f),
        _ => return Err(Decline::UnsupportedProcessingCode),
    };
    let amount = amount(text(4), rules)?;
    let currency = text(49);
    if !rules.currencies.iter().any(|c| c == currency) {
        return Err(Decline::UnsupportedCurrency);
    }
    let account = account_of(message);
    if !luhn_valid(account.as_bytes()) {
        return Err(Decline::BadCheckDigit);
    }
    if !in_ranges(account, &rules.account_ranges) {
        return Err(Decline::OutOfRange);
    }
    Ok(Replenishment {
        channel,
        account: account.to_owned(),
        amount,
        currency: currency.to_owned(),
        location: location_of(message, rules),
    })
}

/// The location id a request is checked against: DE42, or DE42/DE41 when the rules
/// check terminals.
pub fn location_of(message: &Message, rules: &Rules) -> String {
    let text = |n| message.text(n).map(str::trim).unwrap_or("");
    match rules.check_terminal {
        true => format!("{}/{}", text(42), text(41)),
        false => text(42).to_owned(),
    }
}

/// The prepaid account a message names: DE103 for an ATM transfer (`40xxxx`), else DE2.
pub fn account_of(message: &Message) -> &str {
    let field = if message.text(3).is_some_and(|c| c.starts_with("40")) {
        103
    } else {
        2
    };
    message.text(field).map(str::trim).unwrap_or("")
}

/// DE4 as minor units, when it is a number.
pub fn amount_of(message: &Message) -> Option<u64> {
    message.text(4)?.trim().parse().ok()
}

fn channel_of(family: &str) -> Channel {
    match family {
        "28" => Channel::PosLoad,
        "21" => Channel::PosDeposit,
        "40" => Channel::AtmTransfer,
        _ => Channel::Other,
    }
}

fn amount(text: &str, rules: &Rules) -> Result<u64, Decline> {
    let value: u64 = text.parse().map_err(|_| Decline::BadAmount)?;
    if value == 0 || value < rules.min_amount {
        return Err(Decline::BadAmount);
    }
    if value > rules.max_amount {
        return Err(Decline::OverMaximum);
    }
    Ok(value)
}

/// Whether `account` lies in one of `ranges` (every account does when there are none).
pub fn in_ranges(account: &str, ranges: &[(String, String)]) -> bool {
    ranges.is_empty()
        || ranges.iter().any(|(from, to)| {
            account.len() == from.len() && from.as_str() <= account && account <= to.as_str()
        })
}

/// What the switch knows that a request is checked against.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The account, if known.
    pub account: Option<&'a Account>,
    /// The location, if known.
    pub location: Option<&'a Location>,
    /// The account's approved usage today.
    pub usage: Usage,
    /// Today (UTC).
    pub today: NaiveDate,
    /// Whether an engine serves the account's carrier.
    pub routed: bool,
}

/// Checks a request against the account, location, velocity and routing.
pub fn check(request: &Replenishment, facts: &Facts<'_>, rules: &Rules) -> Result<(), Decline> {
    let account = facts.account.ok_or(Decline::UnknownAccount)?;
    match account.status {
        AccountStatus::Active => {}
        AccountStatus::Issued => return Err(Decline::NotActivated),
        AccountStatus::Blocked => return Err(Decline::Blocked),
    }
    if account.expired(facts.today) {
        return Err(Decline::Expired);
    }
    if account.min.is_empty() {
        return Err(Decline::NoMin);
    }
    if !facts.location.is_some_and(|l| l.authorized) {
        return Err(Decline::LocationNotAuthorized);
    }
    if facts.usage.count >= rules.daily_count {
        return Err(Decline::DailyCountExceeded);
    }
    if facts.usage.amount + request.amount > rules.daily_amount {
        return Err(Decline::DailyAmountExceeded);
    }
    if !facts.routed {
        return Err(Decline::NoEngine);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::iso8583::Mti;

    fn rules() -> Rules {
        Rules {
            min_amount: 100,
            max_amount: 50_000,
            daily_count: 3,
            daily_amount: 60_000,
            currencies: vec!["840".into()],
            processing_codes: vec!["28".into(), "21".into(), "40".into()],
            account_ranges: vec![("4761730000000000".into(), "4761739999999999".into())],
            check_terminal: false,
        }
    }

    fn request(changes: &[(u8, &str)]) -> Message {
        let mut m = Message::new(Mti::new(b"0200").expect("mti"));
        let base = [
            (2, "4761739001010010"),
            (3, "280000"),
            (4, "000000002500"),
            (41, "TERM0001"),
            (42, "LOC000000001234"),
            (49, "840"),
        ];
        for (n, v) in base.iter().chain(changes) {
            m.set(*n, v.to_string());
        }
        m
    }

    #[test]
    fn form_checks_map_to_their_declines() {
        let cases: [(&[(u8, &str)], Decline); 7] = [
            (&[(3, "010000")], Decline::UnsupportedProcessingCode),
            (&[(4, "000000000000")], Decline::BadAmount),
            (&[(4, "000000000099")], Decline::BadAmount),
            (&[(4, "000000050001")], Decline::OverMaximum),
            (&[(49, "978")], Decline::UnsupportedCurrency),
            (&[(2, "4761739001010011")], Decline::BadCheckDigit),
            (&[(2, "4111111111111111")], Decline::OutOfRange),
        ];
        for (changes, expected) in cases {
            assert_eq!(
                read_request(&request(changes), &rules()),
                Err(expected.clone()),
                "{changes:?}"
            );
        }
        let ok = read_request(&request(&[]), &rules()).expect("valid");
        assert_eq!(
            (ok.amount, ok.channel, ok.location.as_str()),
            (2500, Channel::PosLoad, "LOC000000001234")
        );
    }

    #[test]
    fn atm_transfers_credit_de103_not_the_debit_card() {
        let m = request(&[
            (3, "401000"),
            (2, "5413330089010012"),
            (103, "4761739001010010"),
        ]);
        let r = read_request(&m, &rules()).expect("valid");
        assert_eq!(
            (r.channel, r.account.as_str()),
            (Channel::AtmTransfer, "4761739001010010")
        );
    }

    fn account(status: AccountStatus, min: &str, expiry: Option<(i32, u32)>) -> Account {
        Account {
            number: "4761739001010010".into(),
            min: min.into(),
            carrier: "a".into(),
            status,
            expiry,
        }
    }

    #[test]
    fn facts_checks_map_to_their_declines() {
        let r = read_request(&request(&[]), &rules()).expect("valid");
        let today = NaiveDate::from_ymd_opt(2026, 11, 23).expect("date");
        let here = Location {
            id: "LOC000000001234".into(),
            name: "n".into(),
            retailer: "r".into(),
            authorized: true,
        };
        let banned = Location {
            authorized: false,
            ..here.clone()
        };
        let active = account(AccountStatus::Active, "2065550100", Some((2030, 1)));
        let facts = |account, location, usage, routed| Facts {
            account,
            location,
            usage,
            today,
            routed,
        };
        let (issued, blocked) = (
            account(AccountStatus::Issued, "1", None),
            account(AccountStatus::Blocked, "1", None),
        );
        let (old, no_min) = (
            account(AccountStatus::Active, "1", Some((2026, 10))),
            account(AccountStatus::Active, "", None),
        );
        let full = Usage {
            count: 3,
            amount: 0,
        };
        let rich = Usage {
            count: 1,
            amount: 58_000,
        };
        let cases = [
            (
                facts(None, Some(&here), Usage::default(), true),
                Decline::UnknownAccount,
            ),
            (
                facts(Some(&issued), Some(&here), Usage::default(), true),
                Decline::NotActivated,
            ),
            (
                facts(Some(&blocked), Some(&here), Usage::default(), true),
                Decline::Blocked,
            ),
            (
                facts(Some(&old), Some(&here), Usage::default(), true),
                Decline::Expired,
            ),
            (
                facts(Some(&no_min), Some(&here), Usage::default(), true),
                Decline::NoMin,
            ),
            (
                facts(Some(&active), Some(&banned), Usage::default(), true),
                Decline::LocationNotAuthorized,
            ),
            (
                facts(Some(&active), None, Usage::default(), true),
                Decline::LocationNotAuthorized,
            ),
            (
                facts(Some(&active), Some(&here), full, true),
                Decline::DailyCountExceeded,
            ),
            (
                facts(Some(&active), Some(&here), rich, true),
                Decline::DailyAmountExceeded,
            ),
            (
                facts(Some(&active), Some(&here), Usage::default(), false),
                Decline::NoEngine,
            ),
        ];
        for (facts, expected) in cases {
            assert_eq!(check(&r, &facts, &rules()), Err(expected));
        }
        assert_eq!(
            check(
                &r,
                &facts(Some(&active), Some(&here), Usage::default(), true),
                &rules()
            ),
            Ok(())
        );
    }
}
