//! A resilience profile: a versioned YAML list of scenarios (faults, attacks, an exposure audit, load during
//! them, pass criteria, weight). `profiles/gos-v1.yaml` ships in the binary as `gos-v1`; any other profile is
//! a file. Errors name the file, the line and the key.

use std::collections::BTreeSet;

use serde::Deserialize;
use sha2::Digest;

use crate::audit::exposure::Severity;
use crate::chaos::attack::AttackSpec;
use crate::chaos::spec::FaultArgs;
use crate::chaos::verdict::VerdictSpec;
use crate::chaos::Selector;

/// The profiles bundled in the binary, by name.
pub const BUNDLED: &[(&str, &str)] = &[("gos-v1", include_str!("../../../profiles/gos-v1.yaml"))];

/// A profile as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Its name (`gos`).
    pub profile: String,
    /// Its version: a changed scenario is a new version, so two scores of one version are comparable.
    pub version: u32,
    #[serde(default)]
    pub description: Option<String>,
    pub scenarios: Vec<Scenario>,
}

/// One scenario: what is done to the network, the load during it, how it is judged and what it weighs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    /// Its share of the score (more than zero).
    pub weight: f64,
    #[serde(default)]
    pub description: Option<String>,
    /// Faults side by side, as `chain.chaos` takes them.
    #[serde(default)]
    pub faults: Vec<FaultArgs>,
    #[serde(default)]
    pub attack: Option<AttackSpec>,
    /// The node exposure audit, judged on its worst finding.
    #[serde(default)]
    pub audit: Option<AuditScenario>,
    /// Load on every node while the scenario runs.
    #[serde(default)]
    pub load: Option<ScenarioLoad>,
    /// The resilience verdict's settings (baseline, grace, max_missed, max_fork_depth, expect_progress).
    #[serde(default)]
    pub pass: Option<VerdictSpec>,
}

/// `audit: {fail_on: medium}`: a finding of this severity or worse fails the scenario (default medium).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditScenario {
    #[serde(default)]
    pub fail_on: Option<String>,
}

impl AuditScenario {
    pub fn fail_on(&self) -> Severity {
        self.fail_on
            .as_deref()
            .and_then(Severity::parse)
            .unwrap_or(Severity::Medium)
    }
}

/// `load: {rate: 20, workload: {...}, max_error_rate: 0.05}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioLoad {
    /// Calls per second over every node.
    pub rate: f64,
    #[serde(default)]
    pub workload: Option<std::collections::BTreeMap<String, serde_json::Value>>,
    /// With it, a criterion: the calls that failed during the scenario, at most this share.
    #[serde(default)]
    pub max_error_rate: Option<f64>,
    /// How long the load runs (required when the scenario has nothing else; otherwise it runs until the
    /// faults and the attack end).
    #[serde(default)]
    pub duration: Option<crate::duration::SpecDuration>,
}

/// A profile read and checked, with its text's SHA-256 and where it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub profile: Profile,
    pub sha256: String,
    pub source: String,
}

impl Loaded {
    /// Reads `name_or_path`: a bundled profile's name (`gos-v1`) or a YAML file.
    pub fn read(name_or_path: &str) -> Result<Loaded, String> {
        if let Some((name, text)) = BUNDLED.iter().find(|(n, _)| *n == name_or_path) {
            return Loaded::parse(&format!("{name} (bundled)"), text);
        }
        let text = std::fs::read_to_string(name_or_path).map_err(|e| {
            format!(
                "{name_or_path}: {e} (bundled profiles: {})",
                BUNDLED.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            )
        })?;
        Loaded::parse(name_or_path, &text)
    }

    /// Checks `text` (named `source` in errors: `source:LINE: key: what`).
    pub fn parse(source: &str, text: &str) -> Result<Loaded, String> {
        let docs = engine::yaml::parse_str(text).map_err(|e| format!("{source}:{}: {}", e.line, e.message))?;
        let root = docs.first().ok_or_else(|| format!("{source}: an empty file"))?;
        let at = |path: &str, message: String| format!("{source}:{}: {path}: {message}", line_of(root, path));
        let scenarios = root
            .get("scenarios")
            .and_then(|s| match &s.value {
                engine::yaml::Value::Seq(items) => Some(items),
                _ => None,
            })
            .ok_or_else(|| at("scenarios", "a list of scenarios is required".into()))?;
        // Each scenario on its own, so an error has its line.
        for (i, node) in scenarios.iter().enumerate() {
            let scenario: Scenario =
                serde_json::from_value(node.to_json()).map_err(|e| at(&pinpoint(node, i), e.to_string()))?;
            scenario.check().map_err(|(key, e)| {
                let path = if key.is_empty() {
                    format!("scenarios.{i}")
                } else {
                    format!("scenarios.{i}.{key}")
                };
                at(&path, format!("({}) {e}", scenario.name))
            })?;
        }
        let profile: Profile = serde_json::from_value(root.to_json()).map_err(|e| at("profile", e.to_string()))?;
        if profile.version == 0 {
            return Err(at("version", "versions start at 1".into()));
        }
        if profile.scenarios.is_empty() {
            return Err(at("scenarios", "give at least one scenario".into()));
        }
        let mut names = BTreeSet::new();
        for (i, s) in profile.scenarios.iter().enumerate() {
            if !names.insert(s.name.as_str()) {
                return Err(at(
                    &format!("scenarios.{i}.name"),
                    format!("scenario `{}` is named twice", s.name),
                ));
            }
        }
        Ok(Loaded {
            profile,
            sha256: hex::encode(sha2::Sha256::digest(text.as_bytes())),
            source: source.to_string(),
        })
    }
}

impl Scenario {
    /// What is wrong, as (key under the scenario, message).
    pub fn check(&self) -> Result<(), (String, String)> {
        let bad = |key: &str, message: String| Err((key.to_string(), message));
        if self.name.trim().is_empty() {
            return bad("name", "a scenario needs a name".into());
        }
        if !(self.weight > 0.0 && self.weight.is_finite()) {
            return bad("weight", format!("must be more than zero, not {}", self.weight));
        }
        if self.faults.is_empty() && self.attack.is_none() && self.audit.is_none() && self.load.is_none() {
            return bad("", "give faults, an attack, an audit or load".into());
        }
        if self.audit.is_some() && (!self.faults.is_empty() || self.attack.is_some() || self.load.is_some()) {
            return bad(
                "audit",
                "an audit is a scenario of its own (no faults, attack or load)".into(),
            );
        }
        for (i, fault) in self.faults.iter().enumerate() {
            Selector::parse(&fault.target).map_err(|e| (format!("faults.{i}.target"), e))?;
            fault.fault().map_err(|e| (format!("faults.{i}"), e))?;
            fault.timing().map_err(|e| (format!("faults.{i}"), e))?;
        }
        if let Some(attack) = &self.attack {
            attack.check().map_err(|e| ("attack".to_string(), e))?;
        }
        if let Some(audit) = &self.audit {
            if let Some(level) = &audit.fail_on {
                if Severity::parse(level).is_none() {
                    return bad(
                        "audit.fail_on",
                        format!("unknown severity `{level}`; expected high, medium, low or info"),
                    );
                }
            }
        }
        if let Some(load) = &self.load {
            if !(load.rate > 0.0 && load.rate.is_finite()) {
                return bad("load.rate", format!("must be more than zero, not {}", load.rate));
            }
            if load.max_error_rate.is_some_and(|r| !(0.0..=1.0).contains(&r)) {
                return bad("load.max_error_rate", "a fraction from 0 to 1".into());
            }
            if self.faults.is_empty() && self.attack.is_none() && load.duration.is_none_or(|d| d.0.is_zero()) {
                return bad("load.duration", "a scenario of load alone needs its duration".into());
            }
            if let Some(workload) = &load.workload {
                let known = crate::load::calls::known();
                if let Some(k) = workload.keys().find(|k| !known.contains(&k.as_str())) {
                    return bad("load.workload", format!("unknown call kind `{k}`"));
                }
            }
        }
        if let Some(pass) = &self.pass {
            pass.check().map_err(|e| ("pass".to_string(), e))?;
        }
        Ok(())
    }

    /// Whether the scenario watches the chain (everything but an audit).
    pub fn watches(&self) -> bool {
        self.audit.is_none()
    }
}

/// The path of the part of scenario `i` that does not read (a fault, the attack), or the scenario's.
fn pinpoint(node: &engine::yaml::Node, i: usize) -> String {
    if let Some(engine::yaml::Value::Seq(faults)) = node.get("faults").map(|f| &f.value) {
        if let Some(j) = faults
            .iter()
            .position(|f| serde_json::from_value::<FaultArgs>(f.to_json()).is_err())
        {
            return format!("scenarios.{i}.faults.{j}");
        }
    }
    if let Some(attack) = node.get("attack") {
        if serde_json::from_value::<AttackSpec>(attack.to_json()).is_err() {
            return format!("scenarios.{i}.attack");
        }
    }
    format!("scenarios.{i}")
}

/// The line of the node at `path` (`scenarios.3.faults.0.target`), or of its nearest ancestor.
fn line_of(root: &engine::yaml::Node, path: &str) -> usize {
    let mut node = root;
    for part in path.split('.') {
        let next = match &node.value {
            engine::yaml::Value::Seq(items) => part.parse::<usize>().ok().and_then(|i| items.get(i)),
            engine::yaml::Value::Map(_) => node.get(part),
            _ => None,
        };
        match next {
            Some(n) => node = n,
            None => break,
        }
    }
    node.line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_profile_reads() {
        let loaded = Loaded::read("gos-v1").unwrap();
        assert_eq!((loaded.profile.profile.as_str(), loaded.profile.version), ("gos", 1));
        assert!(loaded.profile.scenarios.len() >= 8);
        assert_eq!(loaded.sha256.len(), 64);
        let names: Vec<&str> = loaded.profile.scenarios.iter().map(|s| s.name.as_str()).collect();
        for wanted in [
            "rpc-flood",
            "malformed-rpc",
            "eclipse",
            "crash-f",
            "majority-crash",
            "clock-skew",
            "exposure",
        ] {
            assert!(names.contains(&wanted), "{names:?} lacks {wanted}");
        }
    }

    #[test]
    fn bad_profiles_name_file_line_and_key() {
        let good = "profile: t\nversion: 1\nscenarios:\n  - name: a\n    weight: 1\n    faults:\n      - {pause: {duration: 5s}, target: f}\n";
        assert!(Loaded::parse("t.yaml", good).is_ok());
        let cases = [
            (
                good.replace("target: f", "target: 'random:0'"),
                "t.yaml:7: scenarios.0.faults.0.target",
            ),
            (good.replace("weight: 1", "weight: 0"), "t.yaml:5: scenarios.0.weight"),
            (
                good.replace("duration: 5s", "duration: -5s"),
                "t.yaml:7: scenarios.0.faults.0: invalid duration",
            ),
            (
                good.replace("pause:", "melt:"),
                "t.yaml:7: scenarios.0.faults.0: unknown field `melt`",
            ),
            (good.replace("version: 1", "version: 0"), "t.yaml:2: version"),
            (
                good.replace("    faults:\n      - {pause: {duration: 5s}, target: f}\n", ""),
                "give faults",
            ),
            (
                format!("{good}  - name: a\n    weight: 1\n    audit: {{}}\n"),
                "named twice",
            ),
            (
                format!("{good}  - name: b\n    weight: 1\n    audit: {{fail_on: dire}}\n"),
                "t.yaml:10: scenarios.1.audit.fail_on",
            ),
            ("profile: t\nversion: 1\n".to_string(), "t.yaml:1: scenarios"),
            ("profile: [\n".to_string(), "t.yaml:"),
        ];
        for (text, needle) in cases {
            let err = Loaded::parse("t.yaml", &text).unwrap_err();
            assert!(err.contains(needle), "{text}\n=> {err}");
        }
    }
}
