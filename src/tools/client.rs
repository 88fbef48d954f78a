//! `replenish send`: a one-shot acquirer client. It builds a request from the reference
//! `0200` (DESIGN.md §4) or from JSON, stamps a fresh DE7 and DE11 unless they are given
//! and derives DE37 from them (so two sends are two transactions, and the same DE7 and
//! DE11 again make a repeat),
//! sends it over one framed connection and returns the response.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use crate::wire::framing::{Frame, FrameCodec};
use crate::wire::iso8583::{self, Message, Mti, Spec};

/// Why no response came back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Connecting or talking to the switch.
    #[error("{target}: {reason}")]
    Link {
        /// The address.
        target: SocketAddr,
        /// What failed.
        reason: String,
    },
    /// The request does not encode, or the response does not decode.
    #[error("{0}")]
    Message(String),
}

/// What to change in the template.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// The MTI.
    pub mti: Option<String>,
    /// `(field, value)` pairs, applied in order.
    pub fields: Vec<(u8, String)>,
}

/// The request: `template` with `overrides`, and DE7/DE11/DE37 fresh where not given.
pub fn build(template: &Message, overrides: &Overrides) -> Result<Message, ClientError> {
    let mut message = template.clone();
    if let Some(mti) = &overrides.mti {
        let mti = Mti::new(mti.as_bytes())
            .ok_or_else(|| ClientError::Message(format!("MTI {mti:?}: 4 digits expected")))?;
        message.set_mti(mti);
    }
    let now = chrono::Utc::now();
    let stan = (now.timestamp_subsec_micros() ^ now.timestamp() as u32) % 1_000_000;
    message.set(7, now.format("%m%d%H%M%S").to_string());
    message.set(11, format!("{stan:06}"));
    for (number, value) in &overrides.fields {
        message.set(*number, value.clone());
    }
    if !overrides.fields.iter().any(|(n, _)| *n == 37) {
        // DE37 from DE7 (MMDDhh) and DE11, so that a repeat (same DE7 and DE11) is
        // the same transaction.
        let (de7, de11) = (
            message.text(7).unwrap_or(""),
            message.text(11).unwrap_or(""),
        );
        let rrn = format!("{}{de11}", de7.get(..6).unwrap_or(de7));
        message.set(37, rrn);
    }
    Ok(message)
}

/// Sends `request` to `target` and waits up to `timeout` for the response with its DE11.
pub async fn exchange(
    target: SocketAddr,
    spec: &Spec,
    codec: FrameCodec,
    request: &Message,
    timeout: Duration,
) -> Result<Message, ClientError> {
    let link = |reason: String| ClientError::Link { target, reason };
    let body =
        iso8583::encode_to_bytes(spec, request).map_err(|e| ClientError::Message(e.to_string()))?;
    let stream = tokio::time::timeout(timeout, TcpStream::connect(target))
        .await
        .map_err(|_| link("connect timed out".into()))?
        .map_err(|e| link(e.to_string()))?;
    let mut framed = Framed::new(stream, codec);
    framed
        .send(Frame {
            header: Bytes::new(),
            body,
        })
        .await
        .map_err(|e| link(e.to_string()))?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let frame = tokio::time::timeout_at(deadline, framed.next())
            .await
            .map_err(|_| link(format!("no response within {timeout:?}")))?
            .ok_or_else(|| link("closed without a response".into()))?
            .map_err(|e| link(e.to_string()))?;
        let answer =
            iso8583::decode(spec, &frame.body).map_err(|e| ClientError::Message(e.to_string()))?;
        if answer.text(11) == request.text(11) {
            return Ok(answer);
        }
    }
}

/// Parses `N=VALUE` as a field override.
pub fn parse_field(text: &str) -> Result<(u8, String), String> {
    let (number, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected FIELD=VALUE, e.g. 4=000000001000"))?;
    let number: u8 = number
        .trim()
        .parse()
        .ok()
        .filter(|n| (2..=128).contains(n))
        .ok_or_else(|| format!("{text:?}: the field number must be 2-128"))?;
    Ok((number, value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_apply_after_the_fresh_fields() {
        let template = Message::new(Mti::new(b"0200").expect("mti"));
        let overrides = Overrides {
            mti: Some("0220".into()),
            fields: vec![
                parse_field("11=000042").expect("field"),
                parse_field("4=000000001000").expect("field"),
            ],
        };
        let request = build(&template, &overrides).expect("build");
        assert_eq!(request.mti().as_str(), "0220");
        assert_eq!(request.text(11), Some("000042"));
        assert_eq!(request.text(4), Some("000000001000"));
        assert_eq!(request.text(7).map(str::len), Some(10));
        assert_eq!(request.text(37).map(str::len), Some(12));
        assert!(parse_field("1=x").is_err() && parse_field("4").is_err());
    }
}
