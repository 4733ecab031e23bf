//! Scalars as PyYAML's resolver reads them (YAML 1.1): plain ones by its null, bool, int and float
//! patterns, tagged ones by its safe loader's constructors.

use super::Value;

/// A scalar with an explicit tag, as PyYAML's safe loader builds it (`!!str 123` is text, `!!int '7'` a number);
/// tags it has no constructor for are refused as it refuses them.
pub(super) fn tagged(handle: &str, suffix: &str, text: String) -> Result<Value, String> {
    let core = matches!(handle, "!!" | "tag:yaml.org,2002:");
    let wrong = |kind: &str| format!("`!!{kind}` cannot read `{text}`");
    match (core, suffix) {
        (true, "str") => Ok(Value::Str(text)),
        (true, "timestamp") => Ok(Value::Str(text)),
        (true, "int") => match resolve_plain(&text) {
            Value::Int(n) => Ok(Value::Int(n)),
            _ => Err(wrong("int")),
        },
        (true, "float") => match resolve_plain(&text) {
            Value::Int(n) => Ok(Value::Float(n as f64)),
            Value::Float(f) => Ok(Value::Float(f)),
            _ => Err(wrong("float")),
        },
        (true, "bool") => match resolve_plain(&text) {
            Value::Bool(b) => Ok(Value::Bool(b)),
            _ => Err(wrong("bool")),
        },
        (true, "null") => Ok(Value::Null),
        _ => Err(format!(
            "the tag `{handle}{suffix}` is not supported (PyYAML's safe loader has no constructor for it either)"
        )),
    }
}

/// A plain scalar's value by PyYAML's resolver (YAML 1.1): its null, bool, int and float patterns.
pub(super) fn resolve_plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => return Value::Bool(true),
        "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => return Value::Bool(false),
        _ => {}
    }
    let (negative, body) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let signed = |n: i64| Value::Int(if negative { -n } else { n });
    if let Some(int) = resolve_int(body) {
        return match int {
            Some(n) => signed(n),
            // Too large for 64 bits: kept as written (PyYAML would give a Python int).
            None => Value::Str(text.to_string()),
        };
    }
    if let Some(f) = resolve_float(body) {
        return Value::Float(if negative { -f } else { f });
    }
    Value::Str(text.to_string())
}

/// `0b1_0`, `0777` (octal), `0x_1F`, `1_000`, `0`, `1:30:00` (base 60); Some(None) when it overflows.
fn resolve_int(body: &str) -> Option<Option<i64>> {
    let digits = |s: &str, ok: fn(u8) -> bool| !s.is_empty() && s.bytes().all(|b| ok(b) || b == b'_');
    let radix = |s: &str, r: u32| Some(i64::from_str_radix(&s.replace('_', ""), r).ok());
    if let Some(rest) = body.strip_prefix("0b") {
        return digits(rest, |b| b == b'0' || b == b'1')
            .then(|| radix(rest, 2))
            .flatten();
    }
    if let Some(rest) = body.strip_prefix("0x") {
        return digits(rest, |b| b.is_ascii_hexdigit())
            .then(|| radix(rest, 16))
            .flatten();
    }
    if body == "0" {
        return Some(Some(0));
    }
    if let Some(rest) = body.strip_prefix('0') {
        return digits(rest, |b| (b'0'..=b'7').contains(&b))
            .then(|| radix(rest, 8))
            .flatten();
    }
    if !body.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    if body.contains(':') {
        let mut parts = body.split(':');
        let head = parts.next()?;
        let tail: Vec<&str> = parts.collect();
        let sixty = |p: &&str| {
            !p.is_empty()
                && p.len() <= 2
                && p.bytes().all(|b| b.is_ascii_digit())
                && p.parse::<u8>().is_ok_and(|n| n < 60)
        };
        if !digits(head, |b| b.is_ascii_digit()) || !tail.iter().all(sixty) {
            return None;
        }
        let mut value = head.replace('_', "").parse::<i64>().ok();
        for part in tail {
            value = value
                .and_then(|v| v.checked_mul(60))
                .and_then(|v| v.checked_add(part.parse::<i64>().ok()?));
        }
        return Some(value);
    }
    digits(body, |b| b.is_ascii_digit()).then(|| radix(body, 10)).flatten()
}

/// `1.5`, `1.`, `.5`, `1_0.5`, `1.0e+3` (the exponent needs its sign), `.inf`, `.nan`, `1:30.5` (base 60).
fn resolve_float(body: &str) -> Option<f64> {
    match body {
        ".inf" | ".Inf" | ".INF" => return Some(f64::INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Some(f64::NAN),
        _ => {}
    }
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(at) => (&body[..at], Some(&body[at + 1..])),
        None => (body, None),
    };
    if let Some(exponent) = exponent {
        let digits = exponent.strip_prefix(['-', '+'])?;
        if exponent.len() == digits.len() || digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
    }
    if mantissa.contains(':') {
        if exponent.is_some() {
            return None;
        }
        let (whole, fraction) = mantissa.split_once('.')?;
        let seconds = resolve_int(whole)??;
        if !fraction.bytes().all(|b| b.is_ascii_digit() || b == b'_') {
            return None;
        }
        let fraction: f64 = format!("0.{}", fraction.replace('_', "")).parse().ok()?;
        return Some(seconds as f64 + fraction);
    }
    let (whole, fraction) = mantissa.split_once('.')?;
    let whole_ok = whole.is_empty()
        || (whole.starts_with(|c: char| c.is_ascii_digit()) && whole.bytes().all(|b| b.is_ascii_digit() || b == b'_'));
    let fraction_ok = fraction.bytes().all(|b| b.is_ascii_digit() || b == b'_');
    if !whole_ok
        || !fraction_ok
        || (whole.is_empty() && fraction.is_empty())
        || (whole.is_empty() && !fraction.starts_with(|c: char| c.is_ascii_digit()))
    {
        return None;
    }
    format!(
        "{}.{}{}",
        whole.replace('_', ""),
        fraction.replace('_', ""),
        exponent.map(|e| format!("e{e}")).unwrap_or_default()
    )
    .replace(".e", ".0e")
    .parse::<f64>()
    .ok()
}
