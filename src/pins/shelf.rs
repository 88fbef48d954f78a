//! The shelf: each bucket product's PINs in stock, as the decider draws them. It is
//! loaded from the index when the switch starts (after replay, so it holds exactly the
//! PINs no durable sale has drawn) and changed only under the decider's lock, in the
//! order decisions are journaled: a PIN leaves the shelf in the decision that journals
//! it, so no two sales ever draw one PIN. Serials only are kept in memory (a million
//! PINs is some tens of MiB); the sealed PIN is read from the index at the draw.
//!
//! The shelf also knows each product's low-stock level and says when a draw crosses it
//! (once per crossing: stock put back above the level arms it again), and keeps the
//! `replenish_pins_available{sku}` gauge.

use std::collections::{HashMap, HashSet, VecDeque};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::durable::store::{PinItem, PinState, Store, StoreError};
use crate::vocab::products::{PinMode, Product};

/// Labels of the stock gauge.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SkuLabels {
    sku: String,
}

/// The `replenish_pins_available{sku}` gauge family (cheap to clone: shared).
#[derive(Debug, Clone, Default)]
pub struct Available {
    family: Family<SkuLabels, Gauge>,
}

impl Available {
    /// The gauge family, for a registry.
    pub fn family(&self) -> Family<SkuLabels, Gauge> {
        self.family.clone()
    }

    fn gauge(&self, sku: &str) -> Gauge {
        self.family
            .get_or_create(&SkuLabels {
                sku: sku.to_owned(),
            })
            .clone()
    }
}

/// One bucket product's PINs in stock.
#[derive(Debug, Default)]
struct Bin {
    serials: VecDeque<String>,
    low_stock: u64,
    /// At or below `low_stock` since the last alert.
    low: bool,
    /// Sold out since the last warning (one warning per time it runs out, not one per
    /// declined sale).
    out: bool,
    gauge: Gauge,
}

impl Bin {
    fn count(&self) -> u64 {
        self.serials.len() as u64
    }

    fn show(&self) {
        self.gauge
            .set(i64::try_from(self.serials.len()).unwrap_or(i64::MAX));
    }
}

/// A low-stock crossing: the product and what is left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LowStock {
    /// The product.
    pub sku: String,
    /// PINs left.
    pub available: u64,
    /// Its level.
    pub level: u64,
}

/// The PINs in stock of every bucket product.
#[derive(Debug, Default)]
pub struct Shelf {
    bins: HashMap<String, Bin>,
    /// Digests of PINs generated since the start and perhaps not indexed yet.
    generated: HashSet<String>,
}

impl Shelf {
    /// The stock of `products` as the index holds it (which must be complete).
    pub fn load(store: &Store, products: &[Product]) -> Result<Shelf, StoreError> {
        let mut shelf = Shelf::default();
        for product in products.iter().filter(|p| p.mode == PinMode::Bucket) {
            let serials: VecDeque<String> = (store.pins(&product.sku)?.into_iter())
                .filter(|item| item.state == PinState::Available)
                .map(|item| item.serial)
                .collect();
            let bin = Bin {
                low: product.low_stock > 0 && serials.len() as u64 <= product.low_stock,
                out: false,
                low_stock: product.low_stock,
                serials,
                gauge: Gauge::default(),
            };
            shelf.bins.insert(product.sku.clone(), bin);
        }
        Ok(shelf)
    }

    /// Shows each product's stock in `available` from now on.
    pub fn watch(&mut self, available: &Available) {
        for (sku, bin) in &mut self.bins {
            bin.gauge = available.gauge(sku);
            bin.show();
        }
    }

    /// Takes the next PIN of `sku` that has not expired by `today` (`YYYY-MM-DD`):
    /// the PIN as the index holds it, and a low-stock crossing if this draw made one.
    /// Expired PINs met on the way are left out of the shelf (they stay `available`
    /// in the index, for an operator to see). `None` when the product has none left.
    pub fn draw(
        &mut self,
        store: &Store,
        sku: &str,
        today: &str,
    ) -> Result<Option<(PinItem, Option<LowStock>)>, StoreError> {
        let Some(bin) = self.bins.get_mut(sku) else {
            return Ok(None);
        };
        let mut drawn = None;
        while let Some(serial) = bin.serials.front() {
            let item: Option<PinItem> = store.pin(sku, serial)?;
            let Some(serial) = bin.serials.pop_front() else {
                break;
            };
            match item {
                Some(item) if item.expiry.as_deref().is_none_or(|e| e >= today) => {
                    drawn = Some(item);
                    break;
                }
                Some(_) => tracing::warn!(sku, serial, "expired PIN left out of the stock"),
                None => tracing::error!(sku, serial, "PIN of the stock missing from the index"),
            }
        }
        bin.show();
        let Some(item) = drawn else {
            if !bin.out {
                tracing::warn!(
                    sku,
                    "out of stock: PIN sales are declined N1 until an import"
                );
            }
            bin.out = true;
            return Ok(None);
        };
        let crossed = !bin.low && bin.low_stock > 0 && bin.count() <= bin.low_stock;
        bin.low |= crossed;
        let low = crossed.then(|| LowStock {
            sku: sku.to_owned(),
            available: bin.count(),
            level: bin.low_stock,
        });
        Ok(Some((item, low)))
    }

    /// Puts a PIN back on the shelf (a reversed sale with `reversed = "restock"`): it
    /// is drawn next.
    pub fn put_back(&mut self, sku: &str, serial: &str) {
        if let Some(bin) = self.bins.get_mut(sku) {
            bin.serials.push_front(serial.to_owned());
            bin.low &= bin.count() <= bin.low_stock;
            bin.out = false;
            bin.show();
        }
    }

    /// Puts newly imported PINs of `sku` at the back of the shelf (imported while the
    /// switch runs, once their record is durable and indexed); re-arms the low-stock
    /// alert when the stock is above its level again. Returns the PINs on the shelf.
    pub fn stock_up(&mut self, sku: &str, serials: impl IntoIterator<Item = String>) -> u64 {
        let Some(bin) = self.bins.get_mut(sku) else {
            return 0;
        };
        bin.serials.extend(serials);
        bin.low &= bin.count() <= bin.low_stock;
        bin.out = bin.serials.is_empty();
        bin.show();
        bin.count()
    }

    /// PINs of `sku` on the shelf.
    pub fn available(&self, sku: &str) -> u64 {
        self.bins.get(sku).map_or(0, Bin::count)
    }

    /// Remembers a generated PIN's digest; false when it was generated before (since
    /// the start: earlier ones are in the index).
    pub fn fresh(&mut self, digest: &str) -> bool {
        self.generated.insert(digest.to_owned())
    }
}
