//! The voucher PINs' indexes: each PIN by product and serial (`pn/SKU/SERIAL`, sealed,
//! with its state), the product of each serial (`px/SERIAL`, serials are unique across
//! products) and the serial of each PIN digest (`pd/DIGEST`, a PIN is in stock once).

use serde::{Deserialize, Serialize};

use super::{BatchBuilder, Store, StoreError, key};
use crate::durable::record::{PinBatch, PinMove, Resealed, Voucher};
use crate::durable::vault::Sealed;

/// Where a PIN stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PinState {
    /// In stock.
    Available,
    /// Sold.
    Sold,
    /// Its sale was reversed: never sold again.
    Voided,
}

/// A PIN as the index keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinItem {
    /// The product.
    pub sku: String,
    /// The voucher's serial.
    pub serial: String,
    /// The PIN, sealed.
    pub sealed: Sealed,
    /// Last valid day, when it has one.
    #[serde(default)]
    pub expiry: Option<String>,
    /// Where it stands.
    pub state: PinState,
}

/// A product's stock: every imported PIN is in exactly one of the three.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stock {
    /// The product.
    pub sku: String,
    /// In stock.
    pub available: u64,
    /// Sold.
    pub sold: u64,
    /// Voided.
    pub voided: u64,
}

impl Store {
    /// The product a serial is stocked under, if it is.
    pub fn pin_sku(&self, serial: &str) -> Result<Option<String>, StoreError> {
        self.get_json(&key("px/", serial))
    }

    /// The serial of the PIN with `digest`, if that PIN is in stock.
    pub fn pin_by_digest(&self, digest: &str) -> Result<Option<String>, StoreError> {
        self.get_json(&key("pd/", digest))
    }

    /// The PIN of `sku` with `serial`.
    pub fn pin(&self, sku: &str, serial: &str) -> Result<Option<PinItem>, StoreError> {
        self.get_json(&key("pn/", &format!("{sku}/{serial}")))
    }

    /// Every PIN of `sku`, by serial.
    pub fn pins(&self, sku: &str) -> Result<Vec<PinItem>, StoreError> {
        self.scan(&key("pn/", &format!("{sku}/")))
    }

    /// Each of `skus`' stock.
    pub fn stock(&self, skus: &[&str]) -> Result<Vec<Stock>, StoreError> {
        let mut stock = Vec::with_capacity(skus.len());
        for sku in skus {
            let mut line = Stock {
                sku: (*sku).to_owned(),
                ..Stock::default()
            };
            for item in self.pins(sku)? {
                match item.state {
                    PinState::Available => line.available += 1,
                    PinState::Sold => line.sold += 1,
                    PinState::Voided => line.voided += 1,
                }
            }
            stock.push(line);
        }
        Ok(stock)
    }
}

impl BatchBuilder<'_> {
    /// A PIN sold, voided or put back; a generated PIN comes into the index sold, with
    /// its digest (no PIN is answered twice).
    pub(super) fn pin_moved(
        &mut self,
        moved: &PinMove,
        voucher: Option<&Voucher>,
    ) -> Result<(), StoreError> {
        let k = key("pn/", &format!("{}/{}", moved.sku, moved.serial));
        let item = match (self.pin_item(&k)?, voucher) {
            (Some(item), _) => PinItem {
                state: moved.to,
                ..item
            },
            (None, Some(voucher)) if voucher.generated => {
                self.put("px/", &voucher.serial, &voucher.sku);
                self.put("pd/", &voucher.digest, &voucher.serial);
                PinItem {
                    sku: voucher.sku.clone(),
                    serial: voucher.serial.clone(),
                    sealed: voucher.pin.clone(),
                    expiry: voucher.expiry.clone(),
                    state: moved.to,
                }
            }
            (None, _) => return Ok(()),
        };
        self.put_raw(k, super::json(&item));
        Ok(())
    }

    pub(super) fn pins_resealed(&mut self, resealed: &Resealed) -> Result<(), StoreError> {
        for pin in &resealed.pins {
            let k = key("pn/", &format!("{}/{}", pin.sku, pin.serial));
            if let Some(mut item) = self.pin_item(&k)? {
                item.sealed = pin.sealed.clone();
                self.put_raw(k, super::json(&item));
            }
        }
        Ok(())
    }

    /// The PIN at `k` as this batch leaves it.
    fn pin_item(&self, k: &[u8]) -> Result<Option<PinItem>, StoreError> {
        match self.writes.get(k) {
            Some(Some(bytes)) => Ok(Some(super::parse(k, bytes)?)),
            Some(None) => Ok(None),
            None => self.store.get_json(k),
        }
    }

    pub(super) fn pins_imported(&mut self, batch: &PinBatch) {
        for pin in &batch.pins {
            let item = PinItem {
                sku: batch.sku.clone(),
                serial: pin.serial.clone(),
                sealed: pin.sealed.clone(),
                expiry: pin.expiry.clone(),
                state: PinState::Available,
            };
            self.put("pn/", &format!("{}/{}", batch.sku, pin.serial), &item);
            self.put("px/", &pin.serial, &batch.sku);
            self.put("pd/", &pin.digest, &pin.serial);
        }
    }
}
