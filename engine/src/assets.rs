//! Airflow's assets (datasets): a URI that tasks update (`outlets`) and DAGs are scheduled by (`schedule: [uri,
//! ...]`, or a condition of `&` and `|` over URIs as dag-factory folds `__and__`/`__or__`). A DAG scheduled by
//! assets runs once its condition holds over the assets updated since its last such run.

use std::collections::{BTreeSet, HashSet};

use serde::{Deserialize, Serialize};

/// The longest asset URI taken (Airflow's column is 1500 characters).
pub const MAX_URI: usize = 1500;

/// Checks an asset URI as Airflow does, a little stricter: `scheme://rest`, ASCII without spaces, and not the
/// `airflow` scheme Airflow reserves.
pub fn check_uri(uri: &str) -> Result<(), String> {
    let shown: String = uri.chars().take(80).collect();
    if uri.is_empty() || uri.len() > MAX_URI {
        return Err(format!("an asset URI is 1 to {MAX_URI} characters"));
    }
    if !uri.is_ascii() || uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "`{shown}` is not an asset URI: ASCII characters without spaces only"
        ));
    }
    let Some((scheme, rest)) = uri.split_once("://") else {
        return Err(format!(
            "`{shown}` is not an asset URI: expected scheme://... (e.g. s3://bucket/key, file:///data/x)"
        ));
    };
    let scheme_ok = scheme.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    if !scheme_ok || rest.is_empty() {
        return Err(format!(
            "`{shown}` is not an asset URI: expected scheme://... (e.g. s3://bucket/key, file:///data/x)"
        ));
    }
    if scheme.eq_ignore_ascii_case("airflow") {
        return Err(format!("`{shown}`: the `airflow` scheme is reserved"));
    }
    if "&|()".chars().any(|c| uri.contains(c)) {
        return Err(format!(
            "`{shown}`: `&`, `|` and parentheses are not taken in an asset URI (they build conditions)"
        ));
    }
    Ok(())
}

/// When a DAG scheduled by assets runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AssetCondition {
    Asset {
        uri: String,
    },
    /// Every one updated (a `schedule:` list, or `&`).
    All {
        of: Vec<AssetCondition>,
    },
    /// Any one updated (`|`).
    Any {
        of: Vec<AssetCondition>,
    },
}

impl AssetCondition {
    /// Every URI the condition names.
    pub fn uris(&self) -> BTreeSet<&str> {
        let mut out = BTreeSet::new();
        self.collect(&mut out);
        out
    }

    fn collect<'a>(&'a self, out: &mut BTreeSet<&'a str>) {
        match self {
            AssetCondition::Asset { uri } => {
                out.insert(uri);
            }
            AssetCondition::All { of } | AssetCondition::Any { of } => of.iter().for_each(|c| c.collect(out)),
        }
    }

    /// Whether it holds when the assets in `updated` were updated.
    pub fn met(&self, updated: &HashSet<String>) -> bool {
        match self {
            AssetCondition::Asset { uri } => updated.contains(uri),
            AssetCondition::All { of } => of.iter().all(|c| c.met(updated)),
            AssetCondition::Any { of } => of.iter().any(|c| c.met(updated)),
        }
    }

    /// A list of URIs: all of them.
    pub fn all_of(uris: Vec<String>) -> Result<AssetCondition, String> {
        if uris.is_empty() {
            return Err(
                "an empty list of assets never triggers; write null for a DAG that only runs when triggered".into(),
            );
        }
        for uri in &uris {
            check_uri(uri)?;
        }
        Ok(AssetCondition::All {
            of: uris.into_iter().map(|uri| AssetCondition::Asset { uri }).collect(),
        })
    }

    /// Reads `a & (b | c)` (how dag-factory folds `__and__` and `__or__`); `&` binds tighter than `|`.
    pub fn parse(text: &str) -> Result<AssetCondition, String> {
        let tokens = tokenize(text)?;
        let mut at = 0;
        let condition = parse_or(&tokens, &mut at)?;
        if at != tokens.len() {
            return Err(format!("unexpected `{}` in the asset condition `{text}`", tokens[at]));
        }
        Ok(condition)
    }

    /// As written, e.g. `(s3://a & s3://b) | s3://c`.
    pub fn display(&self) -> String {
        match self {
            AssetCondition::Asset { uri } => uri.clone(),
            AssetCondition::All { of } => {
                format!("({})", of.iter().map(|c| c.display()).collect::<Vec<_>>().join(" & "))
            }
            AssetCondition::Any { of } => {
                format!("({})", of.iter().map(|c| c.display()).collect::<Vec<_>>().join(" | "))
            }
        }
    }
}

fn tokenize(text: &str) -> Result<Vec<String>, String> {
    let mut tokens = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        match c {
            '&' | '|' | '(' | ')' => {
                if !current.is_empty() {
                    tokens.push(std::mem::take(&mut current));
                }
                tokens.push(c.to_string());
            }
            c if c.is_whitespace() => {
                if !current.is_empty() {
                    tokens.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        tokens.push(current);
    }
    if tokens.len() > 10_000 {
        return Err("an asset condition of more than 10,000 parts".into());
    }
    Ok(tokens)
}

/// Nesting allowed in a condition (each level is one recursion).
const MAX_NESTING: usize = 64;

fn parse_or(tokens: &[String], at: &mut usize) -> Result<AssetCondition, String> {
    parse_level(tokens, at, 0, true)
}

fn parse_level(tokens: &[String], at: &mut usize, depth: usize, or: bool) -> Result<AssetCondition, String> {
    if depth > MAX_NESTING {
        return Err(format!("an asset condition nested deeper than {MAX_NESTING}"));
    }
    let op = if or { "|" } else { "&" };
    let mut parts = vec![if or {
        parse_level(tokens, at, depth + 1, false)?
    } else {
        parse_atom(tokens, at, depth)?
    }];
    while tokens.get(*at).is_some_and(|t| t == op) {
        *at += 1;
        parts.push(if or {
            parse_level(tokens, at, depth + 1, false)?
        } else {
            parse_atom(tokens, at, depth)?
        });
    }
    Ok(match (parts.len(), or) {
        (1, _) => parts.remove(0),
        (_, true) => AssetCondition::Any { of: parts },
        (_, false) => AssetCondition::All { of: parts },
    })
}

fn parse_atom(tokens: &[String], at: &mut usize, depth: usize) -> Result<AssetCondition, String> {
    match tokens.get(*at).map(String::as_str) {
        None => Err("an asset condition ends where an asset or `(` was expected".into()),
        Some("(") => {
            *at += 1;
            let inner = parse_level(tokens, at, depth + 1, true)?;
            if tokens.get(*at).map(String::as_str) != Some(")") {
                return Err("an asset condition has an unclosed `(`".into());
            }
            *at += 1;
            Ok(inner)
        }
        Some(t @ ("&" | "|" | ")")) => Err(format!(
            "`{t}` where an asset or `(` was expected in an asset condition"
        )),
        Some(uri) => {
            check_uri(uri)?;
            *at += 1;
            Ok(AssetCondition::Asset { uri: uri.to_string() })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(uris: &[&str]) -> HashSet<String> {
        uris.iter().map(|u| u.to_string()).collect()
    }

    #[test]
    fn conditions_read_and_decide_as_airflow() {
        let c = AssetCondition::parse("(s3://a | (s3://b & s3://c))").unwrap();
        assert_eq!(c.display(), "(s3://a | (s3://b & s3://c))");
        assert!(c.met(&set(&["s3://a"])));
        assert!(!c.met(&set(&["s3://b"])));
        assert!(c.met(&set(&["s3://b", "s3://c"])));
        // `&` binds tighter than `|`.
        let c = AssetCondition::parse("s3://a & s3://b | s3://c").unwrap();
        assert!(c.met(&set(&["s3://c"])) && !c.met(&set(&["s3://a"])));
        assert_eq!(c.uris().len(), 3);
        let all = AssetCondition::all_of(vec!["s3://a".into(), "file:///x".into()]).unwrap();
        assert!(!all.met(&set(&["s3://a"])) && all.met(&set(&["s3://a", "file:///x"])));
        for bad in [
            "",
            "s3://a &",
            "(s3://a",
            "s3://a)",
            "& s3://a",
            "not a uri",
            "s3://a | | s3://b",
        ] {
            assert!(AssetCondition::parse(bad).is_err(), "{bad}");
        }
        let deep = format!("{}s3://a{}", "(".repeat(500), ")".repeat(500));
        assert!(AssetCondition::parse(&deep).unwrap_err().contains("nested deeper"));
    }

    #[test]
    fn uris_are_checked() {
        for good in [
            "s3://bucket/key",
            "file:///data/x.csv",
            "postgres://db/schema/table",
            "x-y.z+w://h",
        ] {
            check_uri(good).unwrap();
        }
        for bad in [
            "bucket/key",
            "://x",
            "s3://",
            "s3://a b",
            "airflow://x",
            "1s3://x",
            "s3://ä",
            "s3://a|b",
        ] {
            assert!(check_uri(bad).is_err(), "{bad}");
        }
        assert!(AssetCondition::all_of(vec![]).is_err());
    }
}
