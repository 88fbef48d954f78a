//! How one transaction's money is split (BACKOFFICE.md §3, seed step 313): each fee is
//! `(amount × bp + 5000) / 10000` in integer arithmetic (half up, per transaction) plus
//! its fixed part; the service provider's first, then the retailer's (none for an ATM
//! transfer, `40xxxx`, or a location without a retailer), then the bank's (none for an
//! adjustment, which no bank acquired), each at most what is left; the carrier gets the
//! rest. So the parts are never negative and always add up to the amount, to the minor
//! unit. A partial reversal splits what remains; a full one splits nothing.

use serde::{Deserialize, Serialize};

/// The fee schedule (`[fees]`), per replenishment, on the amount net of reversals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// Basis points to the service provider. Default 0.
    #[serde(default)]
    pub provider_bp: u32,
    /// Minor units per transaction to the service provider. Default 0.
    #[serde(default)]
    pub provider_fixed: u64,
    /// Basis points to the location's retailer. Default 0.
    #[serde(default)]
    pub retailer_bp: u32,
    /// Minor units per transaction to the retailer. Default 0.
    #[serde(default)]
    pub retailer_fixed: u64,
    /// Basis points to the acquiring bank. Default 0.
    #[serde(default)]
    pub bank_bp: u32,
    /// Minor units per transaction to the bank. Default 0.
    #[serde(default)]
    pub bank_fixed: u64,
}

/// One transaction's parts, minor units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    /// The service provider's.
    pub provider: u64,
    /// The retailer's.
    pub retailer: u64,
    /// The bank's.
    pub bank: u64,
    /// The carrier's: the rest.
    pub carrier: u64,
}

impl Split {
    /// The parts added up: always the amount split.
    pub fn total(&self) -> u64 {
        self.provider + self.retailer + self.bank + self.carrier
    }
}

/// Who takes part in a transaction besides the provider and the carrier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parties {
    /// A retailer is paid (a point of sale with a retailer, not an ATM transfer).
    pub retailer: bool,
    /// A bank is paid (not an adjustment).
    pub bank: bool,
}

/// One fee on `amount`: half up, then the fixed part.
fn fee(amount: u64, bp: u32, fixed: u64) -> u64 {
    let proportional = (u128::from(amount) * u128::from(bp) + 5000) / 10_000;
    u64::try_from(proportional)
        .unwrap_or(u64::MAX)
        .saturating_add(fixed)
}

/// Splits `amount` (net of reversals) by `schedule`.
pub fn split(amount: u64, schedule: &Schedule, parties: Parties) -> Split {
    let mut left = amount;
    let mut take = |wanted: u64| {
        let part = wanted.min(left);
        left -= part;
        part
    };
    let provider = take(fee(amount, schedule.provider_bp, schedule.provider_fixed));
    let retailer = match parties.retailer {
        true => take(fee(amount, schedule.retailer_bp, schedule.retailer_fixed)),
        false => 0,
    };
    let bank = match parties.bank {
        true => take(fee(amount, schedule.bank_bp, schedule.bank_fixed)),
        false => 0,
    };
    Split {
        provider,
        retailer,
        bank,
        carrier: left,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const EXAMPLE: Schedule = Schedule {
        provider_bp: 150,
        provider_fixed: 0,
        retailer_bp: 200,
        retailer_fixed: 0,
        bank_bp: 50,
        bank_fixed: 10,
    };

    const ALL: Parties = Parties {
        retailer: true,
        bank: true,
    };

    #[test]
    fn the_worked_example_of_the_readme() {
        // 25.00: provider 2500×150 = 375000 → (375000+5000)/10000 = 38; retailer
        // 2500×200 → 50; bank 2500×50 = 125000 → 13, + 10 = 23; carrier 2500-38-50-23.
        assert_eq!(
            split(2500, &EXAMPLE, ALL),
            Split {
                provider: 38,
                retailer: 50,
                bank: 23,
                carrier: 2389
            }
        );
        // An ATM transfer pays no retailer; an adjustment no bank either.
        let atm = Parties {
            retailer: false,
            bank: true,
        };
        assert_eq!(
            split(2500, &EXAMPLE, atm),
            Split {
                provider: 38,
                retailer: 0,
                bank: 23,
                carrier: 2439
            }
        );
        let adjustment = Parties {
            retailer: false,
            bank: false,
        };
        assert_eq!(split(2500, &EXAMPLE, adjustment).carrier, 2462);
    }

    #[test]
    fn half_rounds_up_per_transaction() {
        let schedule = Schedule {
            provider_bp: 50,
            ..Schedule::default()
        };
        // 100 × 50 bp = 0.5 → 1; 99 × 50 bp = 0.495 → 0.
        assert_eq!(split(100, &schedule, ALL).provider, 1);
        assert_eq!(split(99, &schedule, ALL).provider, 0);
    }

    #[test]
    fn fees_larger_than_the_amount_take_what_is_left_in_order() {
        let schedule = Schedule {
            provider_fixed: 7,
            bank_fixed: 10,
            ..Schedule::default()
        };
        assert_eq!(
            split(12, &schedule, ALL),
            Split {
                provider: 7,
                retailer: 0,
                bank: 5,
                carrier: 0
            }
        );
        assert_eq!(split(0, &EXAMPLE, ALL), Split::default());
    }

    proptest! {
        #[test]
        fn parts_are_never_negative_and_add_up_to_the_amount(
            amount in 0u64..=u64::MAX / 2,
            provider_bp in 0u32..=20_000, retailer_bp in 0u32..=20_000, bank_bp in 0u32..=20_000,
            provider_fixed in 0u64..=100_000, retailer_fixed in 0u64..=100_000, bank_fixed in 0u64..=100_000,
            retailer in any::<bool>(), bank in any::<bool>(),
        ) {
            let schedule = Schedule { provider_bp, provider_fixed, retailer_bp, retailer_fixed, bank_bp, bank_fixed };
            let parts = split(amount, &schedule, Parties { retailer, bank });
            prop_assert_eq!(parts.total(), amount);
            prop_assert!(retailer || parts.retailer == 0);
            prop_assert!(bank || parts.bank == 0);
            // Within the amount, each fee is exactly the formula.
            let wanted = fee(amount, provider_bp, provider_fixed);
            prop_assert_eq!(parts.provider, wanted.min(amount));
        }
    }
}
