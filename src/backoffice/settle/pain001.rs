//! The ISO 20022 `pain.001.001.09` customer credit transfer initiation of one
//! settlement: one payment information block from the bank's settlement account, one
//! credit transfer per party with a positive amount (its payee's name, account and
//! BIC), `NbOfTxs` and `CtrlSum` in the group header and the block, a `MsgId` stable
//! for the bank, day and currency, and an `EndToEndId` per party and day. Written with
//! quick-xml; the same settlement always gives the same bytes.

use std::io::Cursor;

use iso_currency::Currency;

use crate::vocab::money::decimal;
use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesText, Event};

use crate::config::{Config, SettlementAccount};
use crate::durable::record::Settlement;

const NAMESPACE: &str = "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09";

/// The document for `settlement`, made at `at_ms`; the error names what is missing.
pub fn document(
    settlement: &Settlement,
    debtor: &SettlementAccount,
    config: &Config,
    at_ms: i64,
) -> Result<String, String> {
    let number: u16 = settlement
        .currency
        .parse()
        .map_err(|_| format!("currency {:?} is not ISO 4217", settlement.currency))?;
    let currency = Currency::from_numeric(number)
        .ok_or_else(|| format!("currency {number} is not ISO 4217"))?;
    let exponent = u32::from(currency.exponent().unwrap_or(0));
    let amount = |minor: u64| decimal(minor, exponent);
    let mut paid = Vec::new();
    for share in settlement.parties.iter().filter(|p| p.amount > 0) {
        let payee = config
            .payee_of(&share.party)
            .ok_or_else(|| format!("{} has no [[payee]]", share.party))?;
        paid.push((share, payee));
    }
    let sum: u64 = paid.iter().map(|(share, _)| share.amount).sum();
    let created = chrono::DateTime::from_timestamp_millis(at_ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string();
    let message_id = max35(&format!(
        "RPL-{}-{}-{}",
        settlement.bank, settlement.day, settlement.currency
    ));
    let mut xml = Writer::new_with_indent(Cursor::new(Vec::new()), b' ', 2);
    let io = |e: std::io::Error| e.to_string();
    xml.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))
        .map_err(io)?;
    xml.create_element("Document")
        .with_attribute(("xmlns", NAMESPACE))
        .write_inner_content(|w| {
            w.create_element("CstmrCdtTrfInitn")
                .write_inner_content(|w| {
                    w.create_element("GrpHdr").write_inner_content(|w| {
                        text(w, "MsgId", &message_id)?;
                        text(w, "CreDtTm", &created)?;
                        text(w, "NbOfTxs", &paid.len().to_string())?;
                        text(w, "CtrlSum", &amount(sum))?;
                        w.create_element("InitgPty")
                            .write_inner_content(|w| text(w, "Nm", "replenish"))?;
                        Ok(())
                    })?;
                    w.create_element("PmtInf").write_inner_content(|w| {
                        text(w, "PmtInfId", &message_id)?;
                        text(w, "PmtMtd", "TRF")?;
                        text(w, "NbOfTxs", &paid.len().to_string())?;
                        text(w, "CtrlSum", &amount(sum))?;
                        w.create_element("ReqdExctnDt")
                            .write_inner_content(|w| text(w, "Dt", &settlement.day))?;
                        party(
                            w,
                            "Dbtr",
                            "DbtrAcct",
                            "DbtrAgt",
                            &debtor.name,
                            &debtor.account,
                            debtor.bic.as_deref(),
                        )?;
                        for (share, payee) in &paid {
                            w.create_element("CdtTrfTxInf").write_inner_content(|w| {
                                w.create_element("PmtId").write_inner_content(|w| {
                                    let id = max35(&format!("{}-{}", settlement.day, share.party));
                                    text(w, "EndToEndId", &id)
                                })?;
                                w.create_element("Amt").write_inner_content(|w| {
                                    w.create_element("InstdAmt")
                                        .with_attribute(("Ccy", currency.code()))
                                        .write_text_content(BytesText::new(&amount(
                                            share.amount,
                                        )))?;
                                    Ok(())
                                })?;
                                creditor(w, &payee.name, &payee.account, payee.bic.as_deref())
                            })?;
                        }
                        Ok(())
                    })?;
                    Ok(())
                })?;
            Ok(())
        })
        .map_err(io)?;
    let mut bytes = xml.into_inner().into_inner();
    bytes.push(b'\n');
    String::from_utf8(bytes).map_err(|e| e.to_string())
}

type Xml = Writer<Cursor<Vec<u8>>>;

fn text(w: &mut Xml, name: &str, value: &str) -> std::io::Result<()> {
    w.create_element(name)
        .write_text_content(BytesText::new(value))?;
    Ok(())
}

/// Debtor: name, account, agent (`NOTPROVIDED` when no BIC is known).
fn party(
    w: &mut Xml,
    who: &str,
    account_tag: &str,
    agent_tag: &str,
    name: &str,
    account: &str,
    bic: Option<&str>,
) -> std::io::Result<()> {
    w.create_element(who)
        .write_inner_content(|w| text(w, "Nm", &max70(name)))?;
    w.create_element(account_tag)
        .write_inner_content(|w| account_id(w, account))?;
    w.create_element(agent_tag)
        .write_inner_content(|w| agent(w, bic))?;
    Ok(())
}

/// Creditor agent (when a BIC is known), creditor, creditor account.
fn creditor(w: &mut Xml, name: &str, account: &str, bic: Option<&str>) -> std::io::Result<()> {
    if bic.is_some() {
        w.create_element("CdtrAgt")
            .write_inner_content(|w| agent(w, bic))?;
    }
    w.create_element("Cdtr")
        .write_inner_content(|w| text(w, "Nm", &max70(name)))?;
    w.create_element("CdtrAcct")
        .write_inner_content(|w| account_id(w, account))?;
    Ok(())
}

fn agent(w: &mut Xml, bic: Option<&str>) -> std::io::Result<()> {
    w.create_element("FinInstnId")
        .write_inner_content(|w| match bic {
            Some(bic) => text(w, "BICFI", bic),
            None => w
                .create_element("Othr")
                .write_inner_content(|w| text(w, "Id", "NOTPROVIDED"))
                .map(drop),
        })?;
    Ok(())
}

/// An IBAN as `IBAN`, any other account id as `Othr/Id`.
fn account_id(w: &mut Xml, account: &str) -> std::io::Result<()> {
    w.create_element("Id")
        .write_inner_content(|w| match is_iban(account) {
            true => text(w, "IBAN", account),
            false => w
                .create_element("Othr")
                .write_inner_content(|w| text(w, "Id", &max34(account)))
                .map(drop),
        })?;
    Ok(())
}

fn is_iban(account: &str) -> bool {
    let bytes = account.as_bytes();
    bytes.len() >= 5
        && bytes.len() <= 34
        && bytes[..2].iter().all(u8::is_ascii_uppercase)
        && bytes[2..4].iter().all(u8::is_ascii_digit)
        && bytes[4..].iter().all(u8::is_ascii_alphanumeric)
}

fn cut(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}
fn max34(text: &str) -> String {
    cut(text, 34)
}
/// An identifier of at most 35 characters (the XSD's Max35Text). A longer one keeps
/// its first 26 characters and adds `-` and 8 hex digits of its SHA-256, so two long
/// names with a common start still give two identifiers.
fn max35(text: &str) -> String {
    if text.chars().count() <= 35 {
        return text.to_owned();
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    format!("{}-{}", cut(text, 26), &hex::encode(digest)[..8])
}
fn max70(text: &str) -> String {
    cut(text, 70)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_identifiers_stay_distinct_within_35_characters() {
        let a = max35("2026-12-04-retailer:Corner Stores of the Pacific North");
        let b = max35("2026-12-04-retailer:Corner Stores of the Pacific South");
        assert!(a.chars().count() <= 35 && b.chars().count() <= 35);
        assert_ne!(a, b);
        assert_eq!(
            max35("RPL-acquirer-2026-12-04-840"),
            "RPL-acquirer-2026-12-04-840"
        );
    }

    #[test]
    fn amounts_take_the_currency_s_minor_digits() {
        assert_eq!(decimal(250_001, 2), "2500.01");
        assert_eq!(decimal(5, 2), "0.05");
        assert_eq!(decimal(1234, 0), "1234");
        assert_eq!(decimal(1, 3), "0.001");
    }

    #[test]
    fn ibans_are_told_from_other_account_ids() {
        assert!(is_iban("DE89370400440532013000"));
        assert!(!is_iban("123456789"));
        assert!(!is_iban("de89370400440532013000"));
    }
}
