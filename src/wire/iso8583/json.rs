//! The JSON form of a message used by `replenish decode` and `encode` and by test
//! harnesses: `{"mti":"0200","fields":{"2":"...","4":"..."}}`, fields in ascending
//! order, text fields as strings, binary fields (class `b`) as upper-case hex. Bitmap
//! fields are never written and are ignored when read: they follow from the fields.

use serde_json::{Map, Value};

use super::charset::Class;
use super::message::{Message, Mti};
use super::spec::{MAX_FIELD, Spec};

/// Why a JSON message could not be turned into a [`Message`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JsonError {
    /// The text is not JSON.
    #[error("not JSON: {0}")]
    Syntax(#[from] serde_json::Error),
    /// The JSON lacks or misshapes a member.
    #[error("{0}")]
    Shape(String),
    /// A field is not defined by the spec or its value cannot be read.
    #[error("field {field}: {reason}")]
    Field {
        /// The field at fault.
        field: String,
        /// What is wrong.
        reason: String,
    },
}

/// The JSON object for `message`; binary-ness of a field comes from `spec`.
pub fn to_json(spec: &Spec, message: &Message) -> Value {
    let mut fields = Map::new();
    for (number, value) in message.fields() {
        let binary = spec.field(number).is_some_and(|f| f.class == Class::B);
        let shown = if binary {
            hex::encode_upper(value)
        } else {
            String::from_utf8_lossy(value).into_owned()
        };
        fields.insert(number.to_string(), Value::String(shown));
    }
    let mut object = Map::new();
    object.insert("mti".into(), Value::String(message.mti().to_string()));
    object.insert("fields".into(), Value::Object(fields));
    Value::Object(object)
}

/// Parses the JSON text of one message.
pub fn from_json_str(spec: &Spec, text: &str) -> Result<Message, JsonError> {
    from_json(spec, &serde_json::from_str(text)?)
}

/// Builds a message from its JSON object. Values are checked against the spec's
/// classes and lengths only when the message is encoded.
pub fn from_json(spec: &Spec, json: &Value) -> Result<Message, JsonError> {
    let shape = |what: &str| JsonError::Shape(what.to_owned());
    let mti = json
        .get("mti")
        .and_then(Value::as_str)
        .ok_or_else(|| shape("\"mti\" must be a string of 4 digits"))?;
    let mti: Mti = mti.parse().map_err(|e: String| JsonError::Shape(e))?;
    let fields = json
        .get("fields")
        .and_then(Value::as_object)
        .ok_or_else(|| shape("\"fields\" must be an object of field number to string"))?;
    let mut message = Message::with_capacity(mti, fields.len(), spec.masking());
    for (key, value) in fields {
        if let Some((number, bytes)) = field_value(spec, key, value)? {
            message.set(number, bytes);
        }
    }
    Ok(message)
}

/// One `"number": "value"` member; `None` for a bitmap field.
fn field_value(spec: &Spec, key: &str, value: &Value) -> Result<Option<(u8, Vec<u8>)>, JsonError> {
    let fault = |reason: &str| JsonError::Field {
        field: key.to_owned(),
        reason: reason.to_owned(),
    };
    let number: u8 = key
        .parse()
        .ok()
        .filter(|n| (1..=MAX_FIELD).contains(n))
        .ok_or_else(|| fault("not a field number from 1 to 192"))?;
    if number == 1 || (number == 65 && spec.tertiary_bitmap) {
        return Ok(None);
    }
    let field = spec
        .field(number)
        .ok_or_else(|| fault(&format!("not defined by spec {}", spec.name)))?;
    let text = value
        .as_str()
        .ok_or_else(|| fault("value must be a string"))?;
    let bytes = if field.class == Class::B {
        hex::decode(text).map_err(|_| fault("binary field needs hex digits"))?
    } else {
        text.as_bytes().to_vec()
    };
    Ok(Some((number, bytes)))
}
