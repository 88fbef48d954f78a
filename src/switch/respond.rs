//! Responses to acquirers: the response MTI, the request's fields echoed, DE39, and on
//! approval DE38 (approval code) and DE62 (confirmation number), and for a PIN sale
//! DE63 (the PIN) and DE73 (its expiry). A response is built from the request it
//! answers, so a repeat gets the same fields as its original.

use crate::wire::iso8583::Message;

use crate::vocab::codes::ResponseCode;

/// Request fields every response carries back when present.
pub const ECHOED: [u8; 15] = [2, 3, 4, 7, 11, 12, 13, 32, 37, 41, 42, 49, 90, 95, 103];

/// Fields an `0810` carries back.
const ECHOED_NETWORK: [u8; 3] = [7, 11, 70];

/// The response to `request` with `code`; `confirmation` on approvals. `None` when the
/// request is itself a response.
pub fn response(
    request: &Message,
    code: ResponseCode,
    confirmation: Option<&str>,
) -> Option<Message> {
    let mti = request.mti().response()?;
    let echoed: &[u8] = if mti.class() == 8 {
        &ECHOED_NETWORK
    } else {
        &ECHOED
    };
    let mut answer = Message::with_capacity(mti, echoed.len() + 3, request.masking());
    for &number in echoed {
        if let Some(value) = request.get_bytes(number) {
            answer.set(number, value);
        }
    }
    answer.set(39, code.as_str());
    if let Some(number) = confirmation.filter(|_| code == ResponseCode::Approved) {
        answer.set(38, approval_code(number).to_owned());
        answer.set(62, number.to_owned());
    }
    Some(answer)
}

/// Adds a sold PIN to the answer of its sale: DE63 the PIN, DE73 its expiry `YYMMDD`
/// (from `YYYY-MM-DD`) when it has one.
pub fn with_pin(answer: &mut Message, pin: &str, expiry: Option<&str>) {
    answer.set(63, pin.to_owned());
    let yymmdd = expiry
        .filter(|e| e.len() == 10)
        .map(|e| format!("{}{}{}", &e[2..4], &e[5..7], &e[8..10]));
    if let Some(date) = yymmdd {
        answer.set(73, date);
    }
}

/// DE38: the last 6 characters of the confirmation number.
pub fn approval_code(confirmation: &str) -> &str {
    &confirmation[confirmation.len().saturating_sub(6)..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::iso8583::Mti;

    #[test]
    fn approvals_echo_and_add_38_39_62() {
        let mut request = Message::new(Mti::new(b"0200").expect("mti"));
        for (n, v) in [
            (2, "4761739001010010"),
            (4, "000000002500"),
            (11, "000417"),
            (35, "secret=track"),
            (52, "PINBLOCK"),
        ] {
            request.set(n, v);
        }
        let answer =
            response(&request, ResponseCode::Approved, Some("123456789012")).expect("answer");
        assert_eq!(answer.mti().as_str(), "0210");
        assert_eq!(answer.text(39), Some("00"));
        assert_eq!(answer.text(38), Some("789012"));
        assert_eq!(answer.text(62), Some("123456789012"));
        assert_eq!(answer.text(11), Some("000417"));
        assert!(
            answer.get(35).is_none() && answer.get(52).is_none(),
            "secrets are never echoed"
        );
    }

    #[test]
    fn declines_carry_no_confirmation_and_echo_answers_network_fields() {
        let mut request = Message::new(Mti::new(b"0221").expect("mti"));
        request.set(11, "000001");
        let answer =
            response(&request, ResponseCode::InvalidAccount, Some("123456789012")).expect("answer");
        assert_eq!(
            (answer.mti().as_str(), answer.text(39), answer.get(62)),
            ("0230", Some("14"), None)
        );

        let mut echo = Message::new(Mti::new(b"0800").expect("mti"));
        echo.set(70, "301");
        echo.set(11, "000009");
        let answer = response(&echo, ResponseCode::Approved, None).expect("answer");
        assert_eq!(
            (answer.text(70), answer.text(39)),
            (Some("301"), Some("00"))
        );
        assert!(response(&answer, ResponseCode::Approved, None).is_none());
    }
}
