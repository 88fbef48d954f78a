//! Money as people read it: integer minor units written with the decimals of their ISO
//! 4217 currency (what a pain.001 file and an SMS receipt both show).

/// The decimals of ISO 4217 currency `numeric` (e.g. `"840"` → 2), if it is one with
/// a minor unit.
pub fn exponent_of(numeric: &str) -> Option<u32> {
    let number: u16 = numeric.trim().parse().ok()?;
    let currency = iso_currency::Currency::from_numeric(number)?;
    currency.exponent().map(u32::from)
}

/// Minor units as a decimal with `exponent` digits after the point (at most 6).
pub fn decimal(minor: u64, exponent: u32) -> String {
    let exponent = exponent.min(6);
    if exponent == 0 {
        return minor.to_string();
    }
    let scale = 10u64.pow(exponent);
    format!(
        "{}.{:0width$}",
        minor / scale,
        minor % scale,
        width = exponent as usize
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_take_their_currencys_decimals() {
        assert_eq!(exponent_of("840"), Some(2));
        assert_eq!(exponent_of("392"), Some(0));
        assert_eq!(exponent_of("048"), Some(3));
        assert_eq!(exponent_of("999999"), None);
        assert_eq!(decimal(2500, 2), "25.00");
        assert_eq!(decimal(5, 3), "0.005");
        assert_eq!(decimal(500, 0), "500");
    }
}
