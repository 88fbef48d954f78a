//! What a channel request asks for (BACKOFFICE.md §6): the three bodies of `POST
//! /api/v1/replenishments` read into one [`Asked`] — who (a MIN, or a prepaid account),
//! how much, and the PIN given. The web names the amount; a dialed feature code
//! (`*25` + PIN) and a called IVR number stand for theirs (`[[feature_code]]`,
//! `[[ivr_number]]`). Anything else is a bad body, answered `422 {"error"}` with a
//! reason that never repeats the PIN.

use serde::Deserialize;

use crate::config::Config;

/// The channel a request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// The web or PC site.
    Web,
    /// A dialed feature code, posted by the carrier's gateway.
    Wireless,
    /// A call to an IVR number.
    Ivr,
}

impl Channel {
    /// Its name in bodies and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Web => "web",
            Channel::Wireless => "wireless",
            Channel::Ivr => "ivr",
        }
    }
}

/// Who is replenished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subscriber {
    /// By MIN (the wireless gateway and the IVR's ANI always; the web may).
    Min(String),
    /// By prepaid account number (the web may).
    Account(String),
}

/// A channel request read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asked {
    /// Where it came from.
    pub channel: Channel,
    /// Who.
    pub subscriber: Subscriber,
    /// Minor units.
    pub amount: u64,
    /// The PIN given (checked against the enrolment, never kept).
    pub pin: String,
}

/// A body that does not say what to do: `422 {"error": reason}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadBody(pub String);

#[derive(Deserialize)]
#[serde(tag = "channel", rename_all = "lowercase", deny_unknown_fields)]
enum Body {
    Web {
        #[serde(default)]
        min: Option<String>,
        #[serde(default)]
        account: Option<String>,
        pin: String,
        amount: u64,
    },
    Wireless {
        min: String,
        dialed: String,
    },
    Ivr {
        ani: String,
        dialed_number: String,
        pin: String,
    },
}

/// Reads a request body as `config`'s feature codes and IVR numbers say.
pub fn read(body: &[u8], config: &Config) -> Result<Asked, BadBody> {
    let body: Body = serde_json::from_slice(body).map_err(|e| BadBody(shape(&e)))?;
    let asked = match body {
        Body::Web {
            min,
            account,
            pin,
            amount,
        } => Asked {
            channel: Channel::Web,
            subscriber: web_subscriber(min, account)?,
            amount,
            pin,
        },
        Body::Wireless { min, dialed } => {
            let (amount, pin) = feature_code(&dialed, config)?;
            Asked {
                channel: Channel::Wireless,
                subscriber: Subscriber::Min(min),
                amount,
                pin,
            }
        }
        Body::Ivr {
            ani,
            dialed_number,
            pin,
        } => Asked {
            channel: Channel::Ivr,
            amount: ivr_amount(&dialed_number, config)?,
            subscriber: Subscriber::Min(ani),
            pin,
        },
    };
    check(&asked)?;
    Ok(asked)
}

/// The error of a body that does not parse, without its content (it may hold a PIN).
fn shape(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let kind = text.split(" at line ").next().unwrap_or("malformed");
    format!("bad body: {kind}")
}

fn web_subscriber(min: Option<String>, account: Option<String>) -> Result<Subscriber, BadBody> {
    match (min, account) {
        (Some(min), None) => Ok(Subscriber::Min(min)),
        (None, Some(account)) => Ok(Subscriber::Account(account)),
        _ => Err(BadBody(
            "a web request names \"min\" or \"account\", one of them".into(),
        )),
    }
}

/// `*25` + PIN: the longest configured code the dialed digits start with, and the PIN
/// after it.
fn feature_code(dialed: &str, config: &Config) -> Result<(u64, String), BadBody> {
    let code = (config.feature_code.iter())
        .filter(|c| dialed.starts_with(&c.code))
        .max_by_key(|c| c.code.len())
        .ok_or_else(|| BadBody("unknown feature code".into()))?;
    Ok((code.amount, dialed[code.code.len()..].to_owned()))
}

fn ivr_amount(number: &str, config: &Config) -> Result<u64, BadBody> {
    (config.ivr_number.iter())
        .find(|n| n.number == number)
        .map(|n| n.amount)
        .ok_or_else(|| BadBody("unknown IVR number".into()))
}

/// The form of what was read: digits where digits belong, a positive amount.
fn check(asked: &Asked) -> Result<(), BadBody> {
    let digits = |text: &str, range: std::ops::RangeInclusive<usize>| {
        range.contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit())
    };
    if asked.amount == 0 {
        return Err(BadBody("amount: a positive number of minor units".into()));
    }
    if !digits(&asked.pin, 4..=12) {
        return Err(BadBody("pin: 4 to 12 digits".into()));
    }
    match &asked.subscriber {
        Subscriber::Min(min) if !digits(min, 10..=10) => Err(BadBody("min: 10 digits".into())),
        Subscriber::Account(account) if !digits(account, 12..=19) => {
            Err(BadBody("account: 12 to 19 digits".into()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let text = include_str!("../../fixtures/configs/channels.toml");
        Config::from_toml(text, "channels.toml").expect("config")
    }

    fn read_json(body: serde_json::Value) -> Result<Asked, BadBody> {
        read(body.to_string().as_bytes(), &config())
    }

    #[test]
    fn the_three_bodies_read_into_one_request() {
        let web = read_json(serde_json::json!({
            "channel": "web", "min": "2065550101", "pin": "4321", "amount": 1500
        }));
        assert_eq!(
            web,
            Ok(Asked {
                channel: Channel::Web,
                subscriber: Subscriber::Min("2065550101".into()),
                amount: 1500,
                pin: "4321".into(),
            })
        );
        let by_account = read_json(serde_json::json!({
            "channel": "web", "account": "4761739001010010", "pin": "4321", "amount": 1500
        }));
        assert_eq!(
            by_account.map(|a| a.subscriber),
            Ok(Subscriber::Account("4761739001010010".into()))
        );
        let dialed = read_json(serde_json::json!({
            "channel": "wireless", "min": "2065550101", "dialed": "*254321"
        }))
        .expect("wireless");
        assert_eq!((dialed.amount, dialed.pin.as_str()), (2500, "4321"));
        let called = read_json(serde_json::json!({
            "channel": "ivr", "ani": "2065550101", "dialed_number": "18005552525", "pin": "4321"
        }))
        .expect("ivr");
        assert_eq!(
            (called.amount, called.subscriber),
            (2500, Subscriber::Min("2065550101".into()))
        );
    }

    #[test]
    fn the_openapi_document_describes_the_bodies_read_here() {
        let doc: serde_json::Value =
            serde_json::from_str(include_str!("../../specs/channels.openapi.json"))
                .expect("the OpenAPI document is JSON");
        let samples = [
            ("min", "2065550101"),
            ("account", "4761739001010010"),
            ("pin", "4321"),
            ("dialed", "*254321"),
            ("ani", "2065550101"),
            ("dialed_number", "18005552525"),
        ];
        for (name, channel) in [("Web", "web"), ("Wireless", "wireless"), ("Ivr", "ivr")] {
            let schema = &doc["components"]["schemas"][name];
            let mut body = serde_json::json!({"channel": channel});
            for field in schema["required"].as_array().expect("required") {
                let field = field.as_str().expect("name");
                let value = match field {
                    "channel" => continue,
                    "amount" => serde_json::json!(1500),
                    other => {
                        let sample = samples.iter().find(|(n, _)| *n == other);
                        serde_json::json!(sample.expect("a sample per field").1)
                    }
                };
                body[field] = value;
            }
            if channel == "web" {
                body["min"] = serde_json::json!("2065550101");
            }
            let asked = read_json(body.clone()).unwrap_or_else(|e| panic!("{body}: {e}"));
            assert_eq!(asked.channel.as_str(), channel);
        }
    }

    #[test]
    fn bad_bodies_say_why_without_the_pin() {
        let cases = [
            (serde_json::json!({"channel": "fax"}), "bad body"),
            (
                serde_json::json!({"channel": "wireless", "min": "2065550101", "dialed": "*994321"}),
                "unknown feature code",
            ),
            (
                serde_json::json!({"channel": "ivr", "ani": "2065550101",
                                   "dialed_number": "18000000000", "pin": "4321"}),
                "unknown IVR number",
            ),
            (
                serde_json::json!({"channel": "web", "min": "2065550101", "account": "4761739001010010",
                                   "pin": "4321", "amount": 100}),
                "one of them",
            ),
            (
                serde_json::json!({"channel": "web", "min": "2065550101", "pin": "43x1", "amount": 100}),
                "pin: 4 to 12 digits",
            ),
            (
                serde_json::json!({"channel": "web", "min": "20655501", "pin": "4321", "amount": 100}),
                "min: 10 digits",
            ),
            (
                serde_json::json!({"channel": "web", "min": "2065550101", "pin": "4321", "amount": 0}),
                "amount",
            ),
            (
                serde_json::json!({"channel": "web", "min": "2065550101", "pin": "9876",
                                   "amount": 100, "extra": 1}),
                "bad body",
            ),
        ];
        for (body, why) in cases {
            let error = read_json(body.clone()).expect_err("refused");
            assert!(error.0.contains(why), "{body}: {error}");
            assert!(
                !error.0.contains("4321") && !error.0.contains("9876"),
                "{error}"
            );
        }
        assert!(read(b"{not json", &config()).is_err());
    }
}
