//! Request input with errors that say what was wrong: JSON bodies (415 for another content type, 413 when too
//! big, 422 naming the field), query parameters (422 naming the parameter, 400 for unknown ones), and forms.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ApiResult};

/// The most a request body may hold.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// A JSON body, parsed strictly (the target types deny unknown fields where Airflow does).
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                let mime = v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
                mime == "application/json" || mime.ends_with("+json")
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "expected a JSON body with Content-Type: application/json",
            ));
        }
        let bytes = read_body(req, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Reads a whole body within [`MAX_BODY_BYTES`].
pub async fn read_body<S: Send + Sync>(req: Request, state: &S) -> ApiResult<Bytes> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(status, format!("the body is larger than {MAX_BODY_BYTES} bytes"))
        } else {
            ApiError::bad_request(format!("cannot read the body: {}", rejection.body_text()))
        }
    })
}

/// Parses JSON, reporting where it went wrong.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::validation(&["body"], "a JSON body is required", "missing"));
    }
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|err| ApiError::validation(&["body"], err.to_string(), "json_invalid"))?;
    // serde reads a JSON array into a struct by position; Airflow's bodies are objects only.
    if !value.is_object() {
        return Err(ApiError::validation(
            &["body"],
            "expected a JSON object",
            "model_attributes_type",
        ));
    }
    serde_json::from_value(value).map_err(|err| ApiError::validation(&["body"], err.to_string(), "value_error"))
}

/// Query parameters, read by name with typed accessors.
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    pub fn parse(raw: Option<&str>) -> ApiResult<Params> {
        let pairs: Vec<(String, String)> = match raw {
            Some(raw) if !raw.is_empty() => serde_urlencoded_pairs(raw)?,
            _ => Vec::new(),
        };
        Ok(Params { pairs })
    }

    /// Refuses parameters this endpoint does not know (a typo would otherwise silently widen a filter).
    pub fn allow(&self, names: &[&str]) -> ApiResult<()> {
        if let Some((name, _)) = self.pairs.iter().find(|(n, _)| !names.contains(&n.as_str())) {
            return Err(ApiError::bad_request(format!(
                "unknown query parameter `{name}`; this endpoint takes: {}",
                names.join(", ")
            )));
        }
        Ok(())
    }

    /// The last value given for `name`.
    pub fn str(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeatable parameter (`state=a&state=b`; a comma list also splits).
    pub fn list(&self, name: &str) -> Vec<String> {
        self.pairs
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| v.split(',').map(|s| s.trim().to_string()).collect::<Vec<_>>())
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// A `*_pattern` filter (SQL LIKE wildcards), at most 250 characters.
    pub fn pattern(&self, name: &str) -> ApiResult<Option<String>> {
        match self.str(name) {
            Some(p) if p.chars().count() > 250 => Err(ApiError::validation(
                &["query", name],
                "a pattern is at most 250 characters",
                "string_too_long",
            )),
            other => Ok(other.map(str::to_string)),
        }
    }

    /// A single `order_by` column with an optional `-` for descending (Airflow takes a list; one column is
    /// what dagctl sorts by).
    pub fn order_by<'a>(&'a self, default: &'a str) -> ApiResult<(bool, &'a str)> {
        let values: Vec<&str> = self
            .pairs
            .iter()
            .filter(|(n, _)| n == "order_by")
            .map(|(_, v)| v.as_str())
            .collect();
        let text = match values.as_slice() {
            [] => default,
            [one] => one,
            _ => return Err(ApiError::bad_request("give one order_by column")),
        };
        Ok(match text.strip_prefix('-') {
            Some(column) => (true, column),
            None => (false, text),
        })
    }

    pub fn int(&self, name: &str, default: i64, min: i64, max: i64) -> ApiResult<i64> {
        let Some(text) = self.str(name) else {
            return Ok(default);
        };
        let value: i64 = text.trim().parse().map_err(|_| {
            ApiError::validation(&["query", name], format!("`{text}` is not an integer"), "int_parsing")
        })?;
        if value < min || value > max {
            return Err(ApiError::validation(
                &["query", name],
                format!("must be between {min} and {max}, got {value}"),
                "value_error",
            ));
        }
        Ok(value)
    }

    pub fn bool(&self, name: &str) -> ApiResult<Option<bool>> {
        match self.str(name).map(|s| s.trim().to_ascii_lowercase()) {
            None => Ok(None),
            Some(v) if matches!(v.as_str(), "true" | "1" | "yes" | "on") => Ok(Some(true)),
            Some(v) if matches!(v.as_str(), "false" | "0" | "no" | "off") => Ok(Some(false)),
            Some(v) => Err(ApiError::validation(
                &["query", name],
                format!("`{v}` is not a boolean (true or false)"),
                "bool_parsing",
            )),
        }
    }

    pub fn time(&self, name: &str) -> ApiResult<Option<DateTime<Utc>>> {
        self.str(name)
            .map(|text| {
                parse_time(text).ok_or_else(|| {
                    ApiError::validation(
                        &["query", name],
                        format!("`{text}` is not an ISO 8601 date-time with a time zone"),
                        "datetime_parsing",
                    )
                })
            })
            .transpose()
    }
}

/// An ISO 8601 date-time; one without an offset is taken as UTC, as Airflow does.
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Some(at.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S",
    ] {
        if let Ok(naive) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Some(naive.and_utc());
        }
    }
    None
}

/// Splits `a=1&b=2` into decoded pairs.
pub fn serde_urlencoded_pairs(raw: &str) -> ApiResult<Vec<(String, String)>> {
    raw.split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            Ok((percent_decode(name)?, percent_decode(value)?))
        })
        .collect()
}

fn percent_decode(text: &str) -> ApiResult<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| ApiError::bad_request("the query string has a bad %-escape"))?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| ApiError::bad_request("the query string is not UTF-8"))
}

/// The first value of `name` in decoded pairs.
pub fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_decode_and_validate() {
        let p = Params::parse(Some(
            "limit=5&state=success&state=failed,queued&name=a%20b+c&flag=maybe",
        ))
        .unwrap();
        assert_eq!(p.int("limit", 50, 0, 100).unwrap(), 5);
        assert_eq!(p.int("offset", 0, 0, 100).unwrap(), 0);
        assert_eq!(p.list("state"), vec!["success", "failed", "queued"]);
        assert_eq!(p.str("name"), Some("a b c"));
        assert_eq!(p.bool("flag").unwrap_err().status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(p.allow(&["limit", "state", "name"]).is_err());
        assert!(Params::parse(Some("a=%zz")).is_err());
        let bad = Params::parse(Some("limit=-1")).unwrap();
        assert_eq!(
            bad.int("limit", 50, 0, 100).unwrap_err().status,
            StatusCode::UNPROCESSABLE_ENTITY
        );
    }

    #[test]
    fn times_parse_with_and_without_offset() {
        assert_eq!(
            parse_time("2026-01-02T03:04:05+01:00").unwrap().to_rfc3339(),
            "2026-01-02T02:04:05+00:00"
        );
        assert_eq!(
            parse_time("2026-01-02T03:04:05").unwrap().to_rfc3339(),
            "2026-01-02T03:04:05+00:00"
        );
        assert!(parse_time("yesterday").is_none());
    }
}
