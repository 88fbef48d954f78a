//! What a message is, from its MTI (and DE70 for network management): the first
//! decision of the switch, before any key or rule.

use crate::wire::iso8583::{Message, Mti};

/// The kinds of message the profile handles (specs/PROFILE.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `0800`: sign-on, sign-off or echo.
    NetworkManagement(NetworkAction),
    /// `0100`: validate and hold.
    Authorization,
    /// `0120` / `0121`: an authorization the bank already approved.
    AuthorizationAdvice,
    /// `0200`: replenish now.
    Financial,
    /// `0220` / `0221`: a financial transaction the bank already approved.
    FinancialAdvice,
    /// `0400` / `0401` / `0420` / `0421`.
    Reversal,
    /// A request type the profile does not handle (answered `12`).
    Unsupported,
    /// A response or anything else that gets no answer.
    NoAnswer,
}

/// DE70 of an `0800`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkAction {
    /// `001`.
    SignOn,
    /// `002`.
    SignOff,
    /// `301`.
    Echo,
    /// Any other code: answered `00` and logged.
    Other,
}

/// Classifies a decoded message.
pub fn classify(message: &Message) -> Kind {
    let mti = message.mti();
    if mti.response().is_none() {
        return Kind::NoAnswer;
    }
    match (mti.class(), mti.original().as_bytes()[2]) {
        (8, _) => Kind::NetworkManagement(network_action(message)),
        (1, b'0') => Kind::Authorization,
        (1, b'2') => Kind::AuthorizationAdvice,
        (2, b'0') => Kind::Financial,
        (2, b'2') => Kind::FinancialAdvice,
        (4, b'0' | b'2') => Kind::Reversal,
        _ => Kind::Unsupported,
    }
}

fn network_action(message: &Message) -> NetworkAction {
    match message.text(70) {
        Some("001") => NetworkAction::SignOn,
        Some("002") => NetworkAction::SignOff,
        Some("301") => NetworkAction::Echo,
        _ => NetworkAction::Other,
    }
}

/// Whether an MTI is one the switch answers at all (requests and advices).
pub fn expects_answer(mti: Mti) -> bool {
    mti.response().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(mti: &str, de70: Option<&str>) -> Kind {
        let mut m = Message::new(mti.parse().expect("mti"));
        if let Some(code) = de70 {
            m.set(70, code.to_owned());
        }
        classify(&m)
    }

    #[test]
    fn mtis_map_to_kinds() {
        assert_eq!(
            kind("0800", Some("301")),
            Kind::NetworkManagement(NetworkAction::Echo)
        );
        assert_eq!(
            kind("0800", Some("001")),
            Kind::NetworkManagement(NetworkAction::SignOn)
        );
        assert_eq!(kind("0200", None), Kind::Financial);
        assert_eq!(kind("0221", None), Kind::FinancialAdvice);
        assert_eq!(kind("0121", None), Kind::AuthorizationAdvice);
        assert_eq!(kind("0100", None), Kind::Authorization);
        assert_eq!(kind("0421", None), Kind::Reversal);
        assert_eq!(kind("0401", None), Kind::Reversal);
        assert_eq!(kind("0300", None), Kind::Unsupported);
        assert_eq!(kind("0210", None), Kind::NoAnswer);
    }
}
