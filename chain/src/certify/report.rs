//! The certify report: every scenario's outcome and points, the 0-100 score, and a digest over all of it
//! (inputs: the profile's SHA-256, the network, the seed; results: every criterion with its numbers), so two
//! operators' reports can be compared and checked; optionally signed with the operator's ed25519 key.
//!
//! The digest is SHA-256 over the report's canonical JSON (keys sorted, no spaces) without `digest` and
//! `signature`; the signature is ed25519 over the digest's text (`sha256:<hex>`). Numbers that are not whole
//! are kept to 6 decimals when the report is sealed: a JSON parser reads such a number back to the very same
//! double (at most 15 significant digits), so the digest survives a trip through a file and any reader.

use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey};
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Digest;

use crate::chaos::verdict::Criterion;

/// The report format's name and version.
pub const FORMAT: &str = "dagctl-certify-report/1";

/// How a scenario ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Every criterion passed.
    Passed,
    /// Some criterion failed.
    Failed,
    /// A fault or attack could not be applied (its error is the detail): no points.
    Error,
    /// Not expressible on this machine or this network (the reason is the detail): outside the score.
    NotRun,
}

/// One scenario's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioResult {
    pub name: String,
    pub weight: f64,
    pub status: Status,
    /// weight x criteria passed / criteria judged (0 for an error, none when not run).
    pub points: Option<f64>,
    pub detail: String,
    pub criteria: Vec<Criterion>,
    /// Fault reports, the attack's report, the load's figures, the audit's findings.
    pub evidence: Value,
    pub seconds: f64,
}

impl ScenarioResult {
    /// A result judged on `criteria`.
    pub fn judged(name: &str, weight: f64, criteria: Vec<Criterion>, evidence: Value, seconds: f64) -> Self {
        let passed = criteria.iter().filter(|c| c.passed).count();
        let total = criteria.len().max(1);
        let all = passed == criteria.len() && !criteria.is_empty();
        ScenarioResult {
            name: name.into(),
            weight,
            status: if all { Status::Passed } else { Status::Failed },
            points: Some(weight * passed as f64 / total as f64),
            detail: format!("{passed} of {} criteria passed", criteria.len()),
            criteria,
            evidence,
            seconds,
        }
    }

    pub fn not_run(name: &str, weight: f64, reason: String) -> Self {
        ScenarioResult {
            name: name.into(),
            weight,
            status: Status::NotRun,
            points: None,
            detail: reason,
            criteria: Vec::new(),
            evidence: Value::Null,
            seconds: 0.0,
        }
    }

    pub fn error(name: &str, weight: f64, reason: String, evidence: Value, seconds: f64) -> Self {
        ScenarioResult {
            name: name.into(),
            weight,
            status: Status::Error,
            points: Some(0.0),
            detail: reason,
            criteria: Vec::new(),
            evidence,
            seconds,
        }
    }
}

/// The score: 100 x points / weight of the scenarios run, and the share of the profile's weight that ran.
pub fn score(results: &[ScenarioResult]) -> (f64, f64) {
    let all: f64 = results.iter().map(|r| r.weight).sum();
    let run: f64 = results.iter().filter(|r| r.points.is_some()).map(|r| r.weight).sum();
    let points: f64 = results.iter().filter_map(|r| r.points).sum();
    let round = |x: f64| (x * 10.0).round() / 10.0;
    let score = if run > 0.0 { round(100.0 * points / run) } else { 0.0 };
    let coverage = if all > 0.0 { round(100.0 * run / all) } else { 0.0 };
    (score, coverage)
}

/// The report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub format: String,
    /// name, version, sha256 and source of the profile.
    pub profile: Value,
    /// name, client, client version, consensus, chain id, nodes and validators.
    pub network: Value,
    pub dagctl_version: String,
    pub seed: u64,
    pub started: String,
    pub ended: String,
    pub scenarios: Vec<ScenarioResult>,
    /// 0-100 over the scenarios run.
    pub score: f64,
    /// The share (percent) of the profile's weight that ran; scores compare at equal coverage.
    pub coverage: f64,
    #[serde(default)]
    pub digest: Option<String>,
    #[serde(default)]
    pub signature: Option<Signature>,
}

/// An ed25519 signature over the digest's text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signature {
    pub algorithm: String,
    /// Hex of the 32-byte public key.
    pub public_key: String,
    /// Hex of the 64-byte signature.
    pub value: String,
}

/// `value` as canonical JSON: object keys sorted, no insignificant space.
pub fn canonical(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let items: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical(&map[k])))
                .collect();
            format!("{{{}}}", items.join(","))
        }
        Value::Array(items) => format!("[{}]", items.iter().map(canonical).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

/// `value` with every number that is not whole rounded to 6 decimals.
pub fn rounded(value: Value) -> Value {
    match value {
        Value::Number(n) if n.is_f64() => {
            let x = n.as_f64().unwrap_or_default();
            serde_json::Number::from_f64((x * 1e6).round() / 1e6)
                .map(Value::Number)
                .unwrap_or(Value::Null)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(rounded).collect()),
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, rounded(v))).collect()),
        other => other,
    }
}

impl Report {
    /// The digest of everything but `digest` and `signature`.
    pub fn compute_digest(&self) -> Result<String, String> {
        let mut value = rounded(serde_json::to_value(self).map_err(|e| e.to_string())?);
        if let Value::Object(map) = &mut value {
            map.remove("digest");
            map.remove("signature");
        }
        Ok(format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(canonical(&value).as_bytes()))
        ))
    }

    /// Sets the digest, and signs it with `key` when given.
    pub fn seal(&mut self, key: Option<&SigningKey>) -> Result<(), String> {
        *self = serde_json::from_value(rounded(serde_json::to_value(&*self).map_err(|e| e.to_string())?))
            .map_err(|e| e.to_string())?;
        let digest = self.compute_digest()?;
        self.signature = key.map(|key| Signature {
            algorithm: "ed25519".into(),
            public_key: hex::encode(key.verifying_key().as_bytes()),
            value: hex::encode(key.sign(digest.as_bytes()).to_bytes()),
        });
        self.digest = Some(digest);
        Ok(())
    }

    /// Checks the digest, the score against the scenarios, and the signature (against `expected` when given);
    /// what was checked, or what is wrong.
    pub fn verify(&self, expected: Option<&VerifyingKey>) -> Result<Vec<String>, String> {
        let mut checked = Vec::new();
        let digest = self.compute_digest()?;
        match &self.digest {
            Some(d) if *d == digest => checked.push(format!("digest {digest} matches the report")),
            Some(d) => {
                return Err(format!(
                    "the digest does not match the report: it says {d}, the report gives {digest}"
                ))
            }
            None => return Err("the report has no digest".into()),
        }
        let (score, coverage) = score(&self.scenarios);
        if (score, coverage) != (self.score, self.coverage) {
            return Err(format!(
                "the score does not follow from the scenarios: it says {} at {}% coverage, they give {score} at {coverage}%",
                self.score, self.coverage
            ));
        }
        checked.push(format!(
            "score {score} at {coverage}% coverage follows from the scenarios"
        ));
        match (&self.signature, expected) {
            (None, Some(_)) => return Err("the report is not signed".into()),
            (None, None) => checked.push("not signed".into()),
            (Some(sig), expected) => {
                if sig.algorithm != "ed25519" {
                    return Err(format!("unknown signature algorithm `{}`", sig.algorithm));
                }
                let key = public_key_of_hex(&sig.public_key)?;
                if let Some(expected) = expected {
                    if expected != &key {
                        return Err(format!(
                            "signed by {}, not by the key given ({})",
                            sig.public_key,
                            hex::encode(expected.as_bytes())
                        ));
                    }
                }
                let bytes: [u8; 64] = hex::decode(&sig.value)
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or("the signature is not 64 bytes of hex")?;
                key.verify(digest.as_bytes(), &ed25519_dalek::Signature::from_bytes(&bytes))
                    .map_err(|_| format!("the signature does not verify with key {}", sig.public_key))?;
                checked.push(format!("signed with ed25519 key {}", sig.public_key));
            }
        }
        Ok(checked)
    }
}

fn public_key_of_hex(text: &str) -> Result<VerifyingKey, String> {
    let bytes: [u8; 32] = hex::decode(text.trim().trim_start_matches("0x"))
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or("an ed25519 public key is 32 bytes of hex")?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| format!("not an ed25519 public key: {e}"))
}

/// An operator's signing key: a PKCS#8 PEM file (`openssl genpkey -algorithm ed25519`) or 32 bytes of hex.
pub fn signing_key(text: &str) -> Result<SigningKey, String> {
    let text = text.trim();
    if text.starts_with("-----BEGIN") {
        return SigningKey::from_pkcs8_pem(text).map_err(|e| format!("not an ed25519 private key in PKCS#8 PEM: {e}"));
    }
    let bytes: [u8; 32] = hex::decode(text.trim_start_matches("0x"))
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or("an ed25519 key is a PKCS#8 PEM file or 32 bytes of hex")?;
    Ok(SigningKey::from_bytes(&bytes))
}

/// A public key: a PEM file (`openssl pkey -pubout`) or 32 bytes of hex.
pub fn verifying_key(text: &str) -> Result<VerifyingKey, String> {
    let text = text.trim();
    if text.starts_with("-----BEGIN") {
        return VerifyingKey::from_public_key_pem(text).map_err(|e| format!("not an ed25519 public key in PEM: {e}"));
    }
    public_key_of_hex(text)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn criterion(name: &str, passed: bool) -> Criterion {
        Criterion {
            name: name.into(),
            passed,
            detail: String::new(),
            value: Value::Null,
        }
    }

    fn report() -> Report {
        let scenarios = vec![
            ScenarioResult::judged(
                "a",
                30.0,
                vec![criterion("x", true), criterion("y", true)],
                json!({}),
                1.0,
            ),
            ScenarioResult::judged(
                "b",
                20.0,
                vec![criterion("x", true), criterion("y", false)],
                json!({}),
                1.0,
            ),
            ScenarioResult::error("c", 10.0, "could not apply".into(), json!({}), 1.0),
            ScenarioResult::not_run("d", 40.0, "no mechanism".into()),
        ];
        let (score, coverage) = score(&scenarios);
        Report {
            format: FORMAT.into(),
            profile: json!({"name": "t", "version": 1}),
            network: json!({"name": "n"}),
            dagctl_version: "0".into(),
            seed: 7,
            started: "s".into(),
            ended: "e".into(),
            scenarios,
            score,
            coverage,
            digest: None,
            signature: None,
        }
    }

    #[test]
    fn the_score_counts_points_over_the_weight_that_ran() {
        let r = report();
        // (30 + 10 + 0) / 60 of the run weight; 60 of 100 ran.
        assert_eq!((r.score, r.coverage), (66.7, 60.0));
        assert_eq!(r.scenarios[1].status, Status::Failed);
        assert_eq!(r.scenarios[0].status, Status::Passed);
    }

    #[test]
    fn a_digest_survives_numbers_that_do_not_read_back_exactly() {
        // Doubles with 17 significant digits, as measurements give: serde_json's default parser may read some
        // back one unit off in the last place; rounded to 6 decimals they read back exactly.
        let mut r = report();
        let mut x = 0.1f64;
        let values: Vec<Value> = (0..2000)
            .map(|i| {
                x = (x * 7.919 + i as f64 / 3.0).fract() * 1000.0 + 1.0 / 7.0;
                json!(x)
            })
            .collect();
        r.scenarios[0].evidence = json!({"samples": values});
        r.seal(None).unwrap();
        let back: Report = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        back.verify(None).unwrap();
        assert_eq!(rounded(json!(0.123456789)), json!(0.123457));
        assert_eq!(rounded(json!(5)), json!(5));
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let v = json!({"b": [{"z": 1, "a": "x y"}], "a": 1.5});
        assert_eq!(canonical(&v), r#"{"a":1.5,"b":[{"a":"x y","z":1}]}"#);
    }

    #[test]
    fn a_sealed_report_verifies_and_a_changed_one_does_not() {
        let key = signing_key(&"11".repeat(32)).unwrap();
        let mut r = report();
        r.seal(Some(&key)).unwrap();
        let checked = r.verify(Some(&key.verifying_key())).unwrap();
        assert!(checked.iter().any(|c| c.contains("signed with ed25519")), "{checked:?}");
        // Through JSON and back, as a file is.
        let back: Report = serde_json::from_str(&serde_json::to_string_pretty(&r).unwrap()).unwrap();
        back.verify(None).unwrap();
        let mut changed = back.clone();
        changed.scenarios[1].criteria[1].passed = true;
        assert!(changed.verify(None).unwrap_err().contains("digest does not match"));
        let mut rescored = back.clone();
        rescored.score = 100.0;
        assert!(rescored.verify(None).unwrap_err().contains("digest does not match"));
        let other = signing_key(&"22".repeat(32)).unwrap();
        assert!(back
            .verify(Some(&other.verifying_key()))
            .unwrap_err()
            .contains("not by the key given"));
        let mut forged = back.clone();
        forged.signature.as_mut().unwrap().public_key = hex::encode(other.verifying_key().as_bytes());
        assert!(forged.verify(None).unwrap_err().contains("does not verify"));
        let mut unsigned = report();
        unsigned.seal(None).unwrap();
        assert!(unsigned
            .verify(Some(&key.verifying_key()))
            .unwrap_err()
            .contains("not signed"));
        assert!(signing_key("zz").is_err() && verifying_key("00").is_err());
    }
}
