//! Response codes (DE39) of the replenishment profile and the reasons behind them.
//! A reason is what the exception log records; the code is what the bank sees.

use std::fmt;

/// DE39 values the switch answers with (specs/PROFILE.md). Serialized as the two
/// characters of DE39.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum ResponseCode {
    /// `00` approved.
    Approved,
    /// `12` MTI or processing code not supported.
    InvalidTransaction,
    /// `13` amount missing, zero, under the minimum; currency not supported.
    InvalidAmount,
    /// `14` bad check digit, out of range, unknown account.
    InvalidAccount,
    /// `25` original not found (reversals, when configured).
    NoOriginal,
    /// `30` format error.
    FormatError,
    /// `54` account expired.
    Expired,
    /// `57` not activated, blocked, no MIN.
    NotPermitted,
    /// `58` location not authorized for replenishment.
    LocationNotAuthorized,
    /// `61` over an amount limit.
    OverAmountLimit,
    /// `65` over the daily count limit.
    OverFrequencyLimit,
    /// `91` engine or switch unavailable.
    Unavailable,
    /// `94` duplicate key with different content.
    Duplicate,
    /// `96` system malfunction.
    Malfunction,
    /// `N1` the product's PINs are sold out (PIN sales; a private-use code: ISO
    /// 8583:1987 has none for stock).
    OutOfStock,
}

impl ResponseCode {
    /// A few words for people reading a summary.
    pub fn meaning(self) -> &'static str {
        match self {
            ResponseCode::Approved => "approved",
            ResponseCode::InvalidTransaction => "invalid transaction",
            ResponseCode::InvalidAmount => "invalid amount or currency",
            ResponseCode::InvalidAccount => "unknown account or bad check digit",
            ResponseCode::NoOriginal => "original not found",
            ResponseCode::FormatError => "format error",
            ResponseCode::Expired => "account expired",
            ResponseCode::NotPermitted => "not activated, blocked or no MIN",
            ResponseCode::LocationNotAuthorized => "location not authorized",
            ResponseCode::OverAmountLimit => "over the amount limit",
            ResponseCode::OverFrequencyLimit => "over the daily count",
            ResponseCode::Unavailable => "no engine for the carrier",
            ResponseCode::Duplicate => "key reused with other content",
            ResponseCode::Malfunction => "system malfunction",
            ResponseCode::OutOfStock => "product out of stock",
        }
    }

    /// The two characters of DE39.
    pub fn as_str(self) -> &'static str {
        match self {
            ResponseCode::Approved => "00",
            ResponseCode::InvalidTransaction => "12",
            ResponseCode::InvalidAmount => "13",
            ResponseCode::InvalidAccount => "14",
            ResponseCode::NoOriginal => "25",
            ResponseCode::FormatError => "30",
            ResponseCode::Expired => "54",
            ResponseCode::NotPermitted => "57",
            ResponseCode::LocationNotAuthorized => "58",
            ResponseCode::OverAmountLimit => "61",
            ResponseCode::OverFrequencyLimit => "65",
            ResponseCode::Unavailable => "91",
            ResponseCode::Duplicate => "94",
            ResponseCode::Malfunction => "96",
            ResponseCode::OutOfStock => "N1",
        }
    }
}

impl ResponseCode {
    /// Every code, for parsing.
    const ALL: [ResponseCode; 15] = [
        ResponseCode::Approved,
        ResponseCode::InvalidTransaction,
        ResponseCode::InvalidAmount,
        ResponseCode::InvalidAccount,
        ResponseCode::NoOriginal,
        ResponseCode::FormatError,
        ResponseCode::Expired,
        ResponseCode::NotPermitted,
        ResponseCode::LocationNotAuthorized,
        ResponseCode::OverAmountLimit,
        ResponseCode::OverFrequencyLimit,
        ResponseCode::Unavailable,
        ResponseCode::Duplicate,
        ResponseCode::Malfunction,
        ResponseCode::OutOfStock,
    ];
}

impl From<ResponseCode> for String {
    fn from(code: ResponseCode) -> String {
        code.as_str().to_owned()
    }
}

impl TryFrom<String> for ResponseCode {
    type Error = String;

    fn try_from(text: String) -> Result<ResponseCode, String> {
        ResponseCode::ALL
            .into_iter()
            .find(|c| c.as_str() == text)
            .ok_or_else(|| format!("unknown response code {text:?}"))
    }
}

impl fmt::Display for ResponseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a transaction was declined: one line in the exception log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Decline {
    /// The MTI is not one the profile handles.
    UnsupportedMessage,
    /// DE3 missing or its first two digits not allowed.
    UnsupportedProcessingCode,
    /// DE4 missing, not a number, zero or under the minimum.
    BadAmount,
    /// DE49 not in the configured currencies.
    UnsupportedCurrency,
    /// The account number is missing or fails its Luhn check digit.
    BadCheckDigit,
    /// The account number is outside every configured range.
    OutOfRange,
    /// No such account.
    UnknownAccount,
    /// The account was issued but never activated.
    NotActivated,
    /// The account is blocked.
    Blocked,
    /// The account has no MIN, so no engine account to credit.
    NoMin,
    /// The account's expiry month has passed.
    Expired,
    /// DE42 (and DE41 when configured) is not an authorized location.
    LocationNotAuthorized,
    /// Over the per-transaction maximum.
    OverMaximum,
    /// Over the account's daily count.
    DailyCountExceeded,
    /// Over the account's daily amount.
    DailyAmountExceeded,
    /// No engine serves the account's carrier.
    NoEngine,
    /// A reversal of this transaction arrived before it did: it is never credited.
    ReversedBeforeArrival,
    /// A PIN sale whose product has no PIN left to sell.
    OutOfStock,
}

impl Decline {
    /// The response code this decline is answered with.
    pub fn code(&self) -> ResponseCode {
        match self {
            Decline::UnsupportedMessage | Decline::UnsupportedProcessingCode => {
                ResponseCode::InvalidTransaction
            }
            Decline::BadAmount | Decline::UnsupportedCurrency => ResponseCode::InvalidAmount,
            Decline::BadCheckDigit | Decline::OutOfRange | Decline::UnknownAccount => {
                ResponseCode::InvalidAccount
            }
            Decline::NotActivated | Decline::Blocked | Decline::NoMin => ResponseCode::NotPermitted,
            Decline::Expired => ResponseCode::Expired,
            Decline::LocationNotAuthorized => ResponseCode::LocationNotAuthorized,
            Decline::OverMaximum | Decline::DailyAmountExceeded => ResponseCode::OverAmountLimit,
            Decline::DailyCountExceeded => ResponseCode::OverFrequencyLimit,
            Decline::NoEngine => ResponseCode::Unavailable,
            Decline::ReversedBeforeArrival => ResponseCode::InvalidTransaction,
            Decline::OutOfStock => ResponseCode::OutOfStock,
        }
    }

    /// Whether this decline suggests fraud (goes to the fraud log as well).
    pub fn is_suspect(&self) -> bool {
        matches!(
            self,
            Decline::DailyCountExceeded
                | Decline::DailyAmountExceeded
                | Decline::LocationNotAuthorized
        )
    }
}
