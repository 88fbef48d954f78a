//! What the decider knows of PIN sales: the products (`[[product]]`), the vault that
//! seals and opens their PINs, what a reversed sale does with its PIN (`[pins]
//! reversed`) and who is told when a product runs low (`[notify.email] to`).

use std::sync::Arc;

use crate::config::Config;
use crate::durable::record::{Notification, Voucher};
use crate::durable::vault::{Vault, VaultError};
use crate::vocab::products::{PinMode, Product, Reversed};

use super::shelf::LowStock;

/// The PIN products and their keys. Empty (no products) on a switch that sells none.
#[derive(Default)]
pub struct Catalog {
    products: Vec<Product>,
    vault: Option<Arc<Vault>>,
    reversed: Reversed,
    alert_to: Vec<String>,
}

impl Catalog {
    /// The catalog of `config`; the vault is opened (its key made on first use) only
    /// when there are products.
    pub fn new(config: &Config) -> Result<Catalog, VaultError> {
        if config.product.is_empty() {
            return Ok(Catalog::default());
        }
        Ok(Catalog {
            products: config.product.clone(),
            vault: Some(Arc::new(Vault::open_or_create(&config.pin_key_file())?)),
            reversed: config.pins.reversed,
            alert_to: (config.notify.email.iter())
                .flat_map(|e| e.to.clone())
                .collect(),
        })
    }

    /// Whether any product is sold.
    pub fn is_empty(&self) -> bool {
        self.products.is_empty()
    }

    /// Every product.
    pub fn products(&self) -> &[Product] {
        &self.products
    }

    /// The product whose cards start `pan`.
    pub fn product_of(&self, pan: &str) -> Option<&Product> {
        self.products.iter().find(|p| p.issued(pan))
    }

    /// The vault (present whenever there are products).
    pub fn vault(&self) -> Option<&Arc<Vault>> {
        self.vault.as_ref()
    }

    /// Whether a reversed sale of `voucher` puts its PIN back in stock (never a
    /// generated PIN: it was made for that sale).
    pub fn restocks(&self, voucher: &Voucher) -> bool {
        self.reversed == Reversed::Restock
            && !voucher.generated
            && (self.products.iter()).any(|p| p.sku == voucher.sku && p.mode == PinMode::Bucket)
    }

    /// The PIN of `voucher`, in clear, for the answer to its sale.
    pub fn open(&self, voucher: &Voucher) -> Result<String, VaultError> {
        let vault = self.vault.as_ref().ok_or_else(|| VaultError::Sealed {
            serial: voucher.serial.clone(),
            reason: "no PIN products are configured, so no PIN key is open".into(),
        })?;
        vault.open(&voucher.serial, &voucher.pin)
    }

    /// The email telling of a low-stock crossing, when `[notify.email]` is configured.
    pub fn alert(&self, low: &LowStock, at_ms: i64) -> Option<Notification> {
        if self.alert_to.is_empty() {
            return None;
        }
        Some(Notification {
            identity: format!("low-stock/{}/{at_ms}", low.sku),
            channel: "email".into(),
            to: self.alert_to.clone(),
            subject: format!(
                "replenish: {} low on PINs ({} left)",
                low.sku, low.available
            ),
            body: format!(
                "Product {} has {} PIN(s) in stock, at or below its low_stock level of {}.\n\
                 Import more with: replenish pins import FILE --sku {}\n",
                low.sku, low.available, low.level, low.sku
            ),
            attachment: None,
            at_ms,
        })
    }
}
