//! Request bodies: parsed by hand from bytes so that malformed JSON gets the service's 400
//! instead of the framework's plain-text error, and checked key by key as the services'
//! JSON schemas check them.

use crate::error::{bad, ApiError, ApiResult};
use serde_json::{Map, Value};

/// The most a request body may hold (oslo.middleware's `max_request_body_size`, 114688 bytes).
pub const MAX_BODY: usize = 114_688;

pub fn json(raw: &[u8]) -> Result<Value, ApiError> {
    if raw.is_empty() {
        return Err(bad("The request body is empty."));
    }
    serde_json::from_slice(raw).map_err(|_| bad("Malformed request body"))
}

/// The JSON schema error for a property the schema does not know (`additionalProperties`).
pub fn unexpected(key: &str) -> ApiError {
    bad(format!(
        "Additional properties are not allowed ('{key}' was unexpected)"
    ))
}

/// Refuses the first key of `obj` that is not in `allowed`, as [`unexpected`].
pub fn only(obj: &Map<String, Value>, allowed: &[&str]) -> Result<(), ApiError> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(extra) => Err(unexpected(extra)),
        None => Ok(()),
    }
}

/// Nova's schema error for a field's value: `Invalid input for field/attribute {field}. Value:
/// {value}. {why}`.
pub fn invalid(field: &str, value: &Value, why: &str) -> ApiError {
    bad(format!(
        "Invalid input for field/attribute {field}. Value: {value}. {why}"
    ))
}

/// Nova's printable character (`parameter_types._is_printable`): none of Unicode's "other"
/// categories (control, format, private use, unassigned) and, of the separators, only spaces.
/// So no terminal escape sequence (ESC is a control character) reaches a name.
pub fn is_printable(c: char) -> bool {
    use unicode_general_category::{get_general_category, GeneralCategory as G};
    !matches!(
        get_general_category(c),
        G::Control
            | G::Format
            | G::PrivateUse
            | G::Surrogate
            | G::Unassigned
            | G::LineSeparator
            | G::ParagraphSeparator
    )
}

/// Nova's `name` format: 1 to 255 printable characters, without leading or trailing
/// whitespace ("printable characters. Can not start or end with whitespace.").
pub fn nova_name(field: &str, v: &Value) -> ApiResult<String> {
    let s = v
        .as_str()
        .ok_or_else(|| invalid(field, v, &format!("{v} is not of type 'string'")))?;
    let len = s.chars().count();
    if len == 0 {
        return Err(invalid(field, v, "'' is too short"));
    }
    if len > 255 {
        return Err(invalid(field, v, "is too long"));
    }
    if s.trim() != s || !s.chars().all(is_printable) {
        return Err(invalid(
            field,
            v,
            "printable characters. Can not start or end with whitespace.",
        ));
    }
    Ok(s.to_owned())
}

/// The spellings of a boolean that OpenStack's JSON schemas accept (Nova's
/// `parameter_types.boolean`): JSON booleans and these strings.
const TRUE_SPELLINGS: &[&str] = &[
    "True", "TRUE", "true", "1", "ON", "On", "on", "YES", "Yes", "yes", "y", "t",
];
const FALSE_SPELLINGS: &[&str] = &[
    "False", "FALSE", "false", "0", "OFF", "Off", "off", "NO", "No", "no", "n", "f",
];

/// A boolean as Nova's schemas take it; Nova's 400 for anything else.
pub fn boolean(field: &str, value: &Value) -> Result<bool, ApiError> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if TRUE_SPELLINGS.contains(&s.as_str()) => Ok(true),
        Value::String(s) if FALSE_SPELLINGS.contains(&s.as_str()) => Ok(false),
        other => Err(invalid(
            field,
            other,
            &format!("{other} is not one of [True, 'True', 'TRUE', 'true', '1', 'ON', 'On', 'on', 'YES', 'Yes', 'yes', 'y', 't', False, 'False', 'FALSE', 'false', '0', 'OFF', 'Off', 'off', 'NO', 'No', 'no', 'n', 'f']"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn booleans_take_novas_spellings_and_nothing_else() {
        assert!(boolean("b", &json!("True")).unwrap_or(false));
        assert!(boolean("b", &json!("1")).unwrap_or(false));
        assert!(!boolean("b", &json!("false")).unwrap_or(true));
        assert!(!boolean("b", &json!(false)).unwrap_or(true));
        assert!(boolean("b", &json!("maybe")).is_err());
        assert!(boolean("b", &json!(1)).is_err());
    }
}
