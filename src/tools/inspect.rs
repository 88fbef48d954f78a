//! The `decode` and `encode` commands as library functions: hex messages in, JSON (or a
//! masked listing) out, and back. Input is a stream of messages so that a capture of
//! thousands converts in one process; a bad message is reported with its line and the
//! field at fault and the rest go on.

use std::io::{self, BufRead, Write};

use serde_json::{Deserializer, Value};

use crate::wire::iso8583::{self, Spec};

/// What `decode` prints for each message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// One compact JSON object per line.
    Json,
    /// One line per field with names, sensitive fields masked, a blank line between
    /// messages.
    Pretty,
}

/// Decodes hex messages, one per line (blank lines and lines starting with `#` are
/// skipped, spaces inside the hex are ignored), printing each to `out` and each
/// failure to `errors`. Returns how many messages failed.
pub fn decode_lines(
    spec: &Spec,
    input: impl BufRead,
    listing: Listing,
    out: &mut impl Write,
    errors: &mut impl Write,
) -> io::Result<usize> {
    let mut failures = 0;
    for (index, line) in input.lines().enumerate() {
        let line = line?;
        let text = line.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        match decode_hex(spec, text, listing) {
            Ok(shown) => writeln!(out, "{shown}")?,
            Err(reason) => {
                failures += 1;
                writeln!(errors, "line {}: {reason}", index + 1)?;
            }
        }
    }
    Ok(failures)
}

/// Decodes one hex message into its printed form.
pub fn decode_hex(spec: &Spec, text: &str, listing: Listing) -> Result<String, String> {
    let compact: String = text.split_whitespace().collect();
    let bytes = hex::decode(&compact).map_err(|e| format!("not hex: {e}"))?;
    let message = iso8583::decode_slice(spec, &bytes).map_err(|e| e.to_string())?;
    Ok(match listing {
        Listing::Json => iso8583::to_json(spec, &message).to_string(),
        Listing::Pretty => iso8583::pretty(spec, &message),
    })
}

/// Encodes a stream of JSON messages (one document, JSON lines, or several
/// pretty-printed documents), printing one upper-case hex line per message to `out`
/// and each failure to `errors`. Returns how many messages failed; a JSON syntax
/// error ends the stream.
pub fn encode_json_stream(
    spec: &Spec,
    input: &str,
    out: &mut impl Write,
    errors: &mut impl Write,
) -> io::Result<usize> {
    let mut failures = 0;
    let mut stream = Deserializer::from_str(input).into_iter::<Value>();
    loop {
        let start = stream.byte_offset();
        let Some(next) = stream.next() else { break };
        let line = line_of(input, start);
        let encoded = next
            .map_err(|e| e.to_string())
            .and_then(|json| encode_one(spec, &json));
        match encoded {
            Ok(hex) => writeln!(out, "{hex}")?,
            Err(reason) => {
                failures += 1;
                writeln!(errors, "line {line}: {reason}")?;
            }
        }
    }
    Ok(failures)
}

fn encode_one(spec: &Spec, json: &Value) -> Result<String, String> {
    let message = iso8583::from_json(spec, json).map_err(|e| e.to_string())?;
    let bytes = iso8583::encode_to_bytes(spec, &message).map_err(|e| e.to_string())?;
    Ok(hex::encode_upper(bytes))
}

/// The 1-based line of the first non-blank character at or after `offset`.
fn line_of(text: &str, offset: usize) -> usize {
    let skipped = text[offset..].len() - text[offset..].trim_start().len();
    text[..offset + skipped].matches('\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        Spec::resolve("iso87ascii").expect("shipped spec")
    }

    #[test]
    fn bad_lines_are_reported_and_the_rest_decoded() {
        let good = hex::encode("0800822000000000000004000000000000001123095500000001301");
        let bad = hex::encode("0800XYZ");
        let input = format!("# capture\n{good}\n\n{bad}\n{good}\n");
        let (mut out, mut errors) = (Vec::new(), Vec::new());
        let failures = decode_lines(
            &spec(),
            input.as_bytes(),
            Listing::Json,
            &mut out,
            &mut errors,
        )
        .expect("io");
        assert_eq!(failures, 1);
        let out = String::from_utf8(out).expect("utf8");
        assert_eq!(out.lines().count(), 2);
        assert!(out.contains(r#""70":"301""#), "{out}");
        let errors = String::from_utf8(errors).expect("utf8");
        assert!(errors.starts_with("line 4: "), "{errors}");
    }

    #[test]
    fn encode_reports_the_line_and_field_at_fault() {
        let input = "{\"mti\":\"0800\",\"fields\":{\"11\":\"000001\",\"70\":\"301\"}}\n\n\
                     {\"mti\":\"0800\",\"fields\":{\"11\":\"00000X\"}}\n";
        let (mut out, mut errors) = (Vec::new(), Vec::new());
        let failures = encode_json_stream(&spec(), input, &mut out, &mut errors).expect("io");
        assert_eq!(failures, 1);
        assert_eq!(String::from_utf8(out).expect("utf8").lines().count(), 1);
        let errors = String::from_utf8(errors).expect("utf8");
        assert!(errors.starts_with("line 3: field 11"), "{errors}");
    }
}
