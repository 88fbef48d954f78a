//! The decider of a data directory, made from the config: the `[limits]` rules, the
//! carriers each engine serves, the `[switch]` policy and the PIN products. `serve` makes one for its
//! sessions; the offline commands (exception resubmission, lookups) make one on the
//! data directory when no switch runs.

use super::decide::{Decider, Parts, Policy, Routes, SwitchError};
use super::validate::Rules;
use crate::config::{Config, OrphanReversal};
use crate::durable::datadir::DataDir;
use crate::engine::unsent::Unsent;
use crate::pins::catalog::Catalog;
use crate::vocab::codes::ResponseCode;
use crate::vocab::confirmation::ConfirmationNumbers;

/// The decider of a data directory, with the config's rules, routes and policy.
pub fn decider(config: &Config, data: &DataDir, unsent: Unsent) -> Result<Decider, SwitchError> {
    let policy = Policy {
        orphan_reversal: match config.switch.reversal_without_original {
            OrphanReversal::Approve => ResponseCode::Approved,
            OrphanReversal::Decline => ResponseCode::NoOriginal,
        },
        hold_expiry: config.switch.hold_expiry,
    };
    Decider::new(Parts {
        journal: data.journal.clone(),
        store: data.store.clone(),
        rules: rules(config),
        routes: Routes::new(
            config
                .engine
                .iter()
                .map(|e| (e.name.as_str(), e.carriers.as_slice())),
        ),
        numbers: ConfirmationNumbers::new(&data.confirmation_key()?),
        applied: data.applied.clone(),
        clock: chrono::Utc::now,
        unsent,
        policy,
        calendar: config.settlement.calendar(),
        catalog: Catalog::new(config)?,
    })
}

/// The rules of the `[limits]` section.
pub fn rules(config: &Config) -> Rules {
    let limits = &config.limits;
    Rules {
        min_amount: limits.min_amount,
        max_amount: limits.max_amount,
        daily_count: limits.daily_count,
        daily_amount: limits.daily_amount,
        currencies: limits.currencies.clone(),
        processing_codes: limits.processing_codes.clone(),
        account_ranges: limits
            .account_ranges
            .iter()
            .map(|r| (r.from.clone(), r.to.clone()))
            .collect(),
        check_terminal: limits.check_terminal,
    }
}
