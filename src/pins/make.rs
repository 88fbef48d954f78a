//! PINs made at sale time for `generated` products: digits drawn from the operating
//! system's CSPRNG (`ring`'s `SystemRandom`), each digit uniform (a byte of 250 or more
//! is drawn again, so no digit is favoured), with a Luhn check digit last when the
//! product asks for one.

use ring::rand::{SecureRandom, SystemRandom};

use crate::durable::vault::VaultError;
use crate::vocab::confirmation::luhn_check_digit;
use crate::vocab::products::{CheckDigit, Product};

/// A new PIN for `product`: `pin_length` digits, the check digit included.
pub fn generate(product: &Product) -> Result<String, VaultError> {
    let random = product.pin_length - usize::from(product.check_digit == CheckDigit::Luhn);
    let mut pin = String::with_capacity(product.pin_length);
    let rng = SystemRandom::new();
    let mut bytes = [0u8; 32];
    while pin.len() < random {
        rng.fill(&mut bytes).map_err(|_| VaultError::Random)?;
        for byte in bytes.iter().filter(|b| **b < 250) {
            if pin.len() == random {
                break;
            }
            pin.push(char::from(b'0' + byte % 10));
        }
    }
    if product.check_digit == CheckDigit::Luhn {
        pin.push(luhn_check_digit(pin.as_bytes()));
    }
    Ok(pin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::confirmation::luhn_valid;
    use crate::vocab::products::PinMode;

    fn product(length: usize, check_digit: CheckDigit) -> Product {
        Product {
            sku: "GEN".into(),
            carrier: "carrier-a".into(),
            value: 1000,
            currency: "840".into(),
            card_prefix: "6034999".into(),
            mode: PinMode::Generated,
            low_stock: 0,
            pin_length: length,
            check_digit,
        }
    }

    #[test]
    fn generated_pins_have_the_length_and_check_digit_asked() {
        for length in [4, 12, 19] {
            let pin = generate(&product(length, CheckDigit::Luhn)).expect("pin");
            assert_eq!(pin.len(), length);
            assert!(pin.bytes().all(|b| b.is_ascii_digit()));
            assert!(
                luhn_valid(pin.as_bytes()),
                "{length}: Luhn check digit last"
            );
        }
        let plain = generate(&product(12, CheckDigit::None)).expect("pin");
        assert_eq!(plain.len(), 12);
    }

    #[test]
    fn every_digit_is_drawn_evenly() {
        let mut counts = [0u32; 10];
        for _ in 0..2000 {
            for b in generate(&product(10, CheckDigit::None))
                .expect("pin")
                .bytes()
            {
                counts[usize::from(b - b'0')] += 1;
            }
        }
        // 20,000 digits: 2,000 expected each; 5 standard deviations is about 212.
        for (digit, count) in counts.iter().enumerate() {
            assert!((1788..=2212).contains(count), "digit {digit}: {count}");
        }
    }
}
