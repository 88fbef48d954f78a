//! PIN sales at the point of sale (BACKOFFICE.md §5, the second seed): a `0200` with
//! DE3 `000000` naming a product's reusable card in DE2 and its value in DE4. A product
//! card is not a prepaid account, so the account rules (ranges, activation, daily
//! limits) do not apply; the location, currency and routing rules do. The PIN is drawn
//! from the product's shelf (or made, for a `generated` product) under the decider's
//! lock and journaled sealed in the decision, before anything is answered: no PIN is
//! ever answered for two sales, and a repeat is answered the PIN of its original. The
//! sale is a credit like any other for the outbox (the carrier's engine is told of it
//! with a `0220`); its reversal voids the PIN or puts it back ([`super::reverse`]).

use super::decide::{Decider, Draft, State, SwitchError};
use super::validate;
use crate::durable::record::{Credit, PinBatch, PinMove, Voucher};
use crate::durable::store::{PinState, StoreError};
use crate::pins::make;
use crate::vocab::accounts::Location;
use crate::vocab::codes::Decline;
use crate::vocab::products::{PinMode, Product};
use crate::wire::iso8583::Message;

/// DE3 of a PIN sale.
pub const SALE: &str = "000000";

/// How often a generated PIN is made again when it equals one already answered.
const GENERATE_TRIES: usize = 16;

/// Why a sale is not approved.
enum Refusal {
    Declined(Decline),
    Failed(SwitchError),
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Refusal {
        Refusal::Failed(SwitchError::Store(e))
    }
}

impl Decider {
    /// Whether `message` is a PIN sale: DE3 `000000` on a switch that sells products.
    pub(super) fn is_sale(&self, message: &Message) -> bool {
        !self.catalog.is_empty() && message.text(3).map(str::trim) == Some(SALE)
    }

    /// The location a sale is made at, read before the lock like a request's.
    pub(super) fn sale_location(&self, message: &Message) -> Result<Option<Location>, StoreError> {
        self.store
            .location(&validate::location_of(message, &self.rules))
    }

    /// Puts a batch imported while the switch runs on its product's shelf: called once
    /// its record is durable and indexed, so a sale never draws a PIN the switch could
    /// forget. Returns the PINs of the product on the shelf.
    pub fn stock_up(&self, batch: &PinBatch) -> u64 {
        let serials = batch.pins.iter().map(|p| p.serial.clone());
        self.lock().shelf.stock_up(&batch.sku, serials)
    }

    /// Decides a sale: approved with a PIN, or declined.
    pub(super) fn sell(
        &self,
        state: &mut State,
        message: &Message,
        location: Result<Option<Location>, StoreError>,
        draft: &mut Draft,
    ) -> Result<(), SwitchError> {
        let card = message.text(2).map(str::trim).unwrap_or("");
        let Some(product) = self.catalog.product_of(card).filter(|_| !card.is_empty()) else {
            draft.decline(Decline::OutOfRange, None);
            return Ok(());
        };
        match self.sale(state, message, product, location, draft) {
            Ok(()) => Ok(()),
            Err(Refusal::Declined(decline)) => {
                draft.decline(decline, Some(card.to_owned()));
                Ok(())
            }
            Err(Refusal::Failed(e)) => Err(e),
        }
    }

    fn sale(
        &self,
        state: &mut State,
        message: &Message,
        product: &Product,
        location: Result<Option<Location>, StoreError>,
        draft: &mut Draft,
    ) -> Result<(), Refusal> {
        let text = |n| message.text(n).map(str::trim).unwrap_or("");
        if text(49) != product.currency {
            return Err(Refusal::Declined(Decline::UnsupportedCurrency));
        }
        if validate::amount_of(message) != Some(product.value) {
            return Err(Refusal::Declined(Decline::BadAmount));
        }
        if !location?.is_some_and(|l| l.authorized) {
            return Err(Refusal::Declined(Decline::LocationNotAuthorized));
        }
        let engine = (self.routes.engine_for(&product.carrier))
            .ok_or(Refusal::Declined(Decline::NoEngine))?
            .to_owned();
        let drawn = match product.mode {
            PinMode::Bucket => Some(
                self.draw(state, product, draft)?
                    .ok_or(Refusal::Declined(Decline::OutOfStock))?,
            ),
            PinMode::Generated => None,
        };
        let approval = self.number(state);
        let voucher = match drawn {
            Some(voucher) => voucher,
            None => self.generate(state, product, &approval.confirmation)?,
        };
        let decision = &mut draft.decision;
        decision.account = Some(text(2).to_owned());
        decision.pin = Some(PinMove {
            sku: product.sku.clone(),
            serial: voucher.serial.clone(),
            to: PinState::Sold,
        });
        decision.credit = Some(Credit {
            engine,
            min: String::new(),
            amount: product.value,
            currency: product.currency.clone(),
            confirmation: approval.confirmation.clone(),
            processing_code: SALE.to_owned(),
            rrn: decision.summary.rrn.clone(),
            voucher: Some(Box::new(voucher)),
        });
        decision.approval = Some(approval);
        Ok(())
    }

    /// The next PIN of a bucket product, with a low-stock alert if this draw crosses
    /// the product's level (logged here, emailed through the journal with the sale).
    fn draw(
        &self,
        state: &mut State,
        product: &Product,
        draft: &mut Draft,
    ) -> Result<Option<Voucher>, Refusal> {
        let today = draft.decision.day.clone();
        let Some((item, low)) = state.shelf.draw(&self.store, &product.sku, &today)? else {
            return Ok(None);
        };
        if let Some(low) = low {
            tracing::warn!(
                sku = low.sku,
                available = low.available,
                level = low.level,
                "PIN stock low: import more with replenish pins import"
            );
            draft.alert = self.catalog.alert(&low, draft.decision.at_ms);
        }
        Ok(Some(Voucher {
            sku: item.sku,
            serial: item.serial,
            pin: item.sealed,
            expiry: item.expiry,
            generated: false,
            digest: String::new(),
        }))
    }

    /// A new PIN for a generated product, sealed under the sale's confirmation number
    /// (its serial); never one answered before (its digest is checked against every
    /// PIN in the index and every PIN made since the start).
    fn generate(
        &self,
        state: &mut State,
        product: &Product,
        serial: &str,
    ) -> Result<Voucher, Refusal> {
        let vault = (self.catalog.vault()).ok_or(Refusal::Declined(Decline::OutOfStock))?;
        let failed = |e| {
            tracing::error!("PIN not made: {e}");
            Refusal::Declined(Decline::OutOfStock)
        };
        for _ in 0..GENERATE_TRIES {
            let pin = make::generate(product).map_err(failed)?;
            let digest = vault.digest(&pin);
            if self.store.pin_by_digest(&digest)?.is_some() || !state.shelf.fresh(&digest) {
                continue;
            }
            return Ok(Voucher {
                sku: product.sku.clone(),
                serial: serial.to_owned(),
                pin: vault.seal(serial, &pin).map_err(failed)?,
                expiry: None,
                generated: true,
                digest,
            });
        }
        tracing::warn!(
            sku = product.sku,
            "PIN sale declined: no new PIN of this length in {GENERATE_TRIES} tries"
        );
        Err(Refusal::Declined(Decline::OutOfStock))
    }
}
