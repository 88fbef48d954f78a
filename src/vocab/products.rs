//! The products of PIN sales at the point of sale (BACKOFFICE.md §5, the second seed):
//! a SKU of a carrier sold at a fixed value on reusable cards whose numbers start with
//! the product's prefix, each sale drawing a PIN from the SKU's bucket (imported) or
//! making one (generated); and what a reversed sale does with its PIN.

use serde::{Deserialize, Serialize};

/// Where a product's PINs come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PinMode {
    /// Imported with `replenish pins import`, each sold once.
    #[default]
    Bucket,
    /// Made at sale time from a CSPRNG.
    Generated,
}

/// The check digit a generated PIN ends with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckDigit {
    /// None: every digit is random.
    #[default]
    None,
    /// A Luhn check digit last.
    Luhn,
}

/// What a reversed sale does with its PIN (`[pins] reversed`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reversed {
    /// Never sold again.
    #[default]
    Void,
    /// Back in stock.
    Restock,
}

/// One product (`[[product]]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Product {
    /// The SKU: 1 to 32 of `A-Z a-z 0-9 - _ .`. Required, unique.
    pub sku: String,
    /// The carrier whose engine is advised of each sale. Required.
    pub carrier: String,
    /// The value in minor units: a sale's DE4 must equal it. Required, positive.
    pub value: u64,
    /// DE49, three digits. Required.
    pub currency: String,
    /// The DE2 prefix of this product's cards: 4 to 11 digits, none the start of
    /// another product's. Required.
    pub card_prefix: String,
    /// `bucket` (default) or `generated`.
    #[serde(default)]
    pub mode: PinMode,
    /// The stock at which a low-stock alert goes out. Default 0 (none).
    #[serde(default)]
    pub low_stock: u64,
    /// A generated PIN's digits, check digit included. Default 12 (4 to 19).
    #[serde(default = "default_pin_length")]
    pub pin_length: usize,
    /// A generated PIN's check digit: `none` (default) or `luhn`.
    #[serde(default)]
    pub check_digit: CheckDigit,
}

fn default_pin_length() -> usize {
    12
}

impl Product {
    /// Checks what the types cannot; the message names the key at fault.
    pub fn validate(&self) -> Result<(), String> {
        let sku_ok = (1..=32).contains(&self.sku.len())
            && (self.sku.bytes()).all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !sku_ok {
            return Err("sku: 1 to 32 letters, digits, '-', '_' or '.'".into());
        }
        if self.carrier.trim().is_empty() {
            return Err("carrier: empty".into());
        }
        if self.value == 0 {
            return Err("value: must be positive (minor units)".into());
        }
        if self.currency.len() != 3 || !self.currency.bytes().all(|b| b.is_ascii_digit()) {
            return Err("currency: three digits (ISO 4217 numeric, as DE49)".into());
        }
        let prefix = &self.card_prefix;
        if !(4..=11).contains(&prefix.len()) || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err("card_prefix: 4 to 11 digits".into());
        }
        if !(4..=19).contains(&self.pin_length) {
            return Err("pin_length: 4 to 19 digits".into());
        }
        Ok(())
    }

    /// Whether `pan` is one of this product's cards.
    pub fn issued(&self, pan: &str) -> bool {
        pan.starts_with(&self.card_prefix)
    }
}

/// The PIN settings (`[pins]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinsConfig {
    /// `void` (default) or `restock`.
    #[serde(default)]
    pub reversed: Reversed,
    /// The PIN key file. Default: `pin.key` in the data directory.
    #[serde(default)]
    pub key_file: Option<std::path::PathBuf>,
}

/// The first pair of products of which one's card prefix starts the other's.
pub fn overlapping(products: &[Product]) -> Option<(&Product, &Product)> {
    products.iter().enumerate().find_map(|(i, a)| {
        products[i + 1..].iter().find_map(|b| {
            let overlap = a.card_prefix.starts_with(&b.card_prefix)
                || b.card_prefix.starts_with(&a.card_prefix);
            overlap.then_some((a, b))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(sku: &str, prefix: &str) -> Product {
        Product {
            sku: sku.into(),
            carrier: "carrier-a".into(),
            value: 2500,
            currency: "840".into(),
            card_prefix: prefix.into(),
            mode: PinMode::Bucket,
            low_stock: 10,
            pin_length: 12,
            check_digit: CheckDigit::None,
        }
    }

    #[test]
    fn products_are_checked_key_by_key() {
        assert!(product("CARD-A-25", "6034567").validate().is_ok());
        let bad = [
            (product("", "6034567"), "sku"),
            (product("CARD A", "6034567"), "sku"),
            (product("CARD-A", "603"), "card_prefix"),
            (product("CARD-A", "60345X7"), "card_prefix"),
            (
                Product {
                    value: 0,
                    ..product("CARD-A", "6034567")
                },
                "value",
            ),
            (
                Product {
                    currency: "USD".into(),
                    ..product("CARD-A", "6034567")
                },
                "currency",
            ),
            (
                Product {
                    pin_length: 3,
                    ..product("CARD-A", "6034567")
                },
                "pin_length",
            ),
        ];
        for (product, key) in bad {
            let error = product.validate().expect_err("refused");
            assert!(error.starts_with(key), "{error}");
        }
    }

    #[test]
    fn one_card_prefix_may_not_start_another() {
        let distinct = [product("A", "6034567"), product("B", "6034568")];
        assert!(overlapping(&distinct).is_none());
        let nested = [product("A", "603456"), product("B", "6034567")];
        let (a, b) = overlapping(&nested).expect("overlap");
        assert_eq!((a.sku.as_str(), b.sku.as_str()), ("A", "B"));
        assert!(nested[1].issued("6034567000000001"));
    }
}
