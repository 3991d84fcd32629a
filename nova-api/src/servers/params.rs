//! The server attributes that both a create and an update take, checked as Nova's schemas check them.

use crate::versions::ApiVersion;
use api_toolkit::body::invalid;
use api_toolkit::ApiResult;
use serde_json::Value;
use std::collections::BTreeMap;

/// A server name as Nova's `name` format wants it: 1–255 printable characters, no leading or
/// trailing whitespace.
pub(super) fn parse_name(v: &Value) -> ApiResult<String> {
    api_toolkit::body::nova_name("name", v)
}

/// A server description (2.19): `null` or up to 255 printable characters (Nova's
/// `description` parameter type).
pub(super) fn parse_description(v: &Value) -> ApiResult<Option<String>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => {
            if s.chars().count() > 255 {
                return Err(invalid("description", v, "is too long"));
            }
            if s.chars()
                .any(|c| !api_toolkit::body::is_printable(c) && !matches!(c, '\t' | '\n' | '\r'))
            {
                return Err(invalid(
                    "description",
                    v,
                    "Invalid characters in the description",
                ));
            }
            Ok(Some(s.clone()))
        }
        _ => Err(invalid(
            "description",
            v,
            &format!("{v} is not of type 'string', 'null'"),
        )),
    }
}

/// Nova's hostname parameter (2.90): one DNS label of letters, digits and hyphens that neither
/// starts nor ends with a hyphen, 2 to 63 characters; from 2.94 a fully qualified name of such
/// labels (up to 255 characters).
pub(super) fn parse_hostname(v: &Value, version: ApiVersion) -> ApiResult<String> {
    let s = v
        .as_str()
        .ok_or_else(|| invalid("hostname", v, &format!("{v} is not of type 'string'")))?;
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let ok = if version.at_least(94) {
        (1..=255).contains(&s.len()) && s.split('.').all(label_ok)
    } else {
        s.len() >= 2 && label_ok(s)
    };
    if ok {
        Ok(s.to_owned())
    } else {
        Err(invalid("hostname", v, "is not a valid hostname"))
    }
}

/// A reference is an id or a URL ending in one (Nova takes the last path segment).
pub(super) fn last_segment(s: &str) -> &str {
    s.trim_end_matches('/').rsplit('/').next().unwrap_or(s)
}

pub(super) fn parse_metadata(v: &Value) -> ApiResult<BTreeMap<String, String>> {
    let obj = v
        .as_object()
        .ok_or_else(|| invalid("metadata", v, &format!("{v} is not of type 'object'")))?;
    let mut out = BTreeMap::new();
    for (k, val) in obj {
        let key_ok = (1..=255).contains(&k.chars().count())
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_:. ".contains(c));
        if !key_ok {
            return Err(invalid(
                "metadata",
                v,
                &format!("'{k}' does not match any of the regexes: '^[a-zA-Z0-9-_:. ]{{1,255}}$'"),
            ));
        }
        let s = val.as_str().ok_or_else(|| {
            invalid(
                &format!("metadata/{k}"),
                val,
                &format!("{val} is not of type 'string'"),
            )
        })?;
        if s.chars().count() > 255 {
            return Err(invalid(&format!("metadata/{k}"), val, "is too long"));
        }
        out.insert(k.clone(), s.to_owned());
    }
    Ok(out)
}

/// An IP address of the family `field` names (Nova's `accessIPv4`/`accessIPv6` formats), in
/// its canonical spelling: Nova keeps it as an address object, so
/// `0000:…:babe:220.12.22.2` reads back as `::babe:dc0c:1602` (Tempest checks this).
pub(super) fn access_ip(field: &str, v: &Value) -> ApiResult<String> {
    let canonical = v.as_str().and_then(|s| {
        if field == "accessIPv4" {
            s.parse::<std::net::Ipv4Addr>().ok().map(|a| a.to_string())
        } else {
            s.parse::<std::net::Ipv6Addr>().ok().map(|a| a.to_string())
        }
    });
    let Some(canonical) = canonical else {
        let kind = if field == "accessIPv4" {
            "ipv4"
        } else {
            "ipv6"
        };
        return Err(invalid(field, v, &format!("{v} is not a '{kind}'")));
    };
    Ok(canonical)
}
