//! The arguments of a load test, the same for `chain.load_test` and `dagctl load`, checked when the DAG file is
//! loaded (or the command line read), and the plan they make.

use std::collections::BTreeMap;
use std::time::Duration;

use engine::operators::{is_template, ArgIssue, OperatorArgs, Templated};
use serde::Deserialize;

use super::arrivals::{Phase, Spacing};
use super::calls;
use crate::duration::SpecDuration;

/// One phase of a ramp: `{rate: 100, for: 30s}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RampStep {
    pub rate: f64,
    #[serde(rename = "for")]
    pub length: SpecDuration,
}

/// A breaking-point search: from `start` calls/s, `increase` more every step of `for`, until a step breaks.
/// Every field may be a template (`"{{ params.start }}"`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepArgs {
    pub start: Templated<f64>,
    pub increase: Templated<f64>,
    #[serde(rename = "for")]
    pub length: Templated<SpecDuration>,
    /// Stop (unbroken) past this rate.
    #[serde(default)]
    pub max_rate: Option<Templated<f64>>,
    /// A step whose share of failed calls exceeds this breaks (default 0.01).
    #[serde(default)]
    pub max_error_rate: Option<Templated<f64>>,
    /// A step whose p99 latency exceeds this breaks (default 1s).
    #[serde(default)]
    pub max_p99: Option<Templated<SpecDuration>>,
    /// At most this many steps (default 20).
    #[serde(default)]
    pub max_steps: Option<Templated<u32>>,
}

/// A rendered value, or an issue naming `key`.
fn rendered<T: Copy>(key: &str, value: &Templated<T>) -> Result<T, ArgIssue> {
    value.value(key).copied().map_err(|e| issue(key, e))
}

/// The value when it is known (not a template yet).
fn known<T: Copy>(value: &Templated<T>) -> Option<T> {
    match value {
        Templated::Value(v) => Some(*v),
        Templated::Template(_) => None,
    }
}

/// Which nodes the calls go to.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Targets {
    /// Every node in turn.
    #[default]
    RoundRobin,
    /// One node, by name.
    Node(String),
    /// Nodes by weight (`{node-1: 3, node-2: 1}`); nodes not named get none.
    Weights(BTreeMap<String, f64>),
}

/// The arguments of a load test.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadArgs {
    /// A network name, or the task id of a `chain.deploy_network` task of this run.
    #[serde(default)]
    pub network: Option<String>,
    /// Any node's JSON-RPC URL (`http://host:port`), instead of a network.
    #[serde(default)]
    pub url: Option<String>,
    /// Open loop at this many calls per second.
    #[serde(default)]
    pub rate: Option<Templated<f64>>,
    /// `constant` (default) or `poisson` spacing of open-loop arrivals.
    #[serde(default)]
    pub arrivals: Option<Spacing>,
    /// Closed loop with this many concurrent users.
    #[serde(default)]
    pub users: Option<Templated<u32>>,
    /// A closed-loop user's pause between its calls.
    #[serde(default)]
    pub think_time: Option<SpecDuration>,
    /// Open loop through phases of rates.
    #[serde(default)]
    pub ramp: Option<Vec<RampStep>>,
    /// Open loop, stepping the rate up until the node breaks.
    #[serde(default)]
    pub step: Option<StepArgs>,
    /// How long (required with `rate` or `users` unless `max_calls` is given; caps a ramp or steps).
    #[serde(default)]
    pub duration: Option<Templated<SpecDuration>>,
    /// Stop after this many calls.
    #[serde(default)]
    pub max_calls: Option<Templated<u64>>,
    #[serde(default)]
    pub targets: Option<Targets>,
    /// Call kinds by weight (default `{eth_blockNumber: 1}`).
    #[serde(default)]
    pub workload: Option<BTreeMap<String, serde_json::Value>>,
    /// JSON-RPC bodies, one per line, for the `raw` kind.
    #[serde(default)]
    pub raw_file: Option<String>,
    /// A funded private key (hex); transfers come from senders it funds.
    #[serde(default)]
    pub funder_key: Option<String>,
    /// How many senders transfers come from (default 16).
    #[serde(default)]
    pub senders: Option<u32>,
    /// Wei per transfer (default 1).
    #[serde(default)]
    pub value: Option<u64>,
    /// A call without an answer this long is a timeout (default 5s).
    #[serde(default)]
    pub timeout: Option<SpecDuration>,
    /// Blocks on top of a transfer's block before it counts as confirmed (default 2).
    #[serde(default)]
    pub confirmations: Option<u64>,
    /// Calls in flight at most; beyond, a call is not sent and counts as dropped (default 10,000).
    #[serde(default)]
    pub max_in_flight: Option<u32>,
    /// After the last call, how long to wait for transfers to be included and confirmed (default 30s).
    #[serde(default)]
    pub settle: Option<SpecDuration>,
}

/// How calls are started.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    Open {
        phases: Vec<Phase>,
        spacing: Spacing,
    },
    Closed {
        users: u32,
        think: Duration,
        length: Option<Duration>,
    },
    Step(StepPlan),
}

/// A breaking-point search, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct StepPlan {
    pub start: f64,
    pub increase: f64,
    pub length: Duration,
    pub max_rate: Option<f64>,
    pub max_error_rate: f64,
    pub max_p99: Duration,
    pub max_steps: u32,
    pub spacing: Spacing,
}

/// A checked load test, ready to run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub mode: Mode,
    pub max_calls: Option<u64>,
    /// The whole run's cap.
    pub duration: Option<Duration>,
    pub weights: BTreeMap<String, f64>,
    pub timeout: Duration,
    pub confirmations: u64,
    pub max_in_flight: u32,
    pub senders: u32,
    pub value: u64,
    pub settle: Duration,
}

fn issue(key: &str, message: impl Into<String>) -> ArgIssue {
    ArgIssue::new(key, message)
}

/// A checked private key's bytes.
pub fn parse_key(text: &str) -> Result<alloy_primitives::B256, String> {
    let hex = text.trim().trim_start_matches("0x");
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err("not a private key: 32 bytes of hex (64 digits, 0x optional)".into());
    }
    let bytes = alloy_primitives::hex::decode(hex).map_err(|e| e.to_string())?;
    Ok(alloy_primitives::B256::from_slice(&bytes))
}

impl LoadArgs {
    /// The workload's weights, checked.
    pub fn weights(&self) -> Result<BTreeMap<String, f64>, ArgIssue> {
        let Some(workload) = &self.workload else {
            return Ok([("eth_blockNumber".to_string(), 1.0)].into());
        };
        let known = calls::known();
        let mut weights = BTreeMap::new();
        for (name, weight) in workload {
            if !known.contains(&name.as_str()) {
                return Err(issue(
                    &format!("workload.{name}"),
                    format!("unknown workload `{name}`; expected one of {}", known.join(", ")),
                ));
            }
            let weight = match weight {
                serde_json::Value::Number(n) => n.as_f64().unwrap_or(-1.0),
                other => {
                    return Err(issue(
                        &format!("workload.{name}"),
                        format!("the weight of `{name}` must be a number, not {other}"),
                    ))
                }
            };
            if !(weight.is_finite() && weight >= 0.0) {
                return Err(issue(
                    &format!("workload.{name}"),
                    format!("the weight of `{name}` must be 0 or more"),
                ));
            }
            weights.insert(name.clone(), weight);
        }
        if !weights.values().any(|w| *w > 0.0) {
            return Err(issue("workload", "at least one workload needs a weight above 0"));
        }
        Ok(weights)
    }

    /// Whether the workload sends transactions, or reads the token (both need `funder_key`).
    pub fn transfers(&self) -> bool {
        self.weights().is_ok_and(|w| {
            w.iter()
                .any(|(k, v)| *v > 0.0 && (calls::SENDING.contains(&k.as_str()) || calls::TOKEN.contains(&k.as_str())))
        })
    }

    /// The plan, once every templated value is rendered.
    pub fn plan(&self) -> Result<Plan, ArgIssue> {
        self.check()?;
        let value = |key: &str, t: &Option<Templated<f64>>| -> Result<Option<f64>, ArgIssue> {
            t.as_ref()
                .map(|t| t.value(key).copied())
                .transpose()
                .map_err(|e| issue(key, e))
        };
        let rate = value("rate", &self.rate)?;
        let users = self
            .users
            .as_ref()
            .map(|t| t.value("users").copied())
            .transpose()
            .map_err(|e| issue("users", e))?;
        let duration = self
            .duration
            .as_ref()
            .map(|t| t.value("duration").map(|d| d.get()))
            .transpose()
            .map_err(|e| issue("duration", e))?;
        let max_calls = self
            .max_calls
            .as_ref()
            .map(|t| t.value("max_calls").copied())
            .transpose()
            .map_err(|e| issue("max_calls", e))?;
        let spacing = self.arrivals.unwrap_or_default();
        // Without a duration, an open or closed loop runs until max_calls (bounded by a day).
        let length = duration.or(max_calls.map(|_| Duration::from_secs(86_400)));
        let mode = if let Some(rate) = rate {
            check_rate("rate", rate)?;
            let length = length.ok_or_else(|| issue("duration", "give `duration` or `max_calls` with `rate`"))?;
            Mode::Open {
                phases: vec![Phase { rate, length }],
                spacing,
            }
        } else if let Some(users) = users {
            if !(1..=10_000).contains(&users) {
                return Err(issue("users", "users must be 1 to 10,000"));
            }
            if length.is_none() {
                return Err(issue("duration", "give `duration` or `max_calls` with `users`"));
            }
            Mode::Closed {
                users,
                think: self.think_time.map(|t| t.get()).unwrap_or_default(),
                length,
            }
        } else if let Some(ramp) = &self.ramp {
            Mode::Open {
                phases: ramp
                    .iter()
                    .map(|s| Phase {
                        rate: s.rate,
                        length: s.length.get(),
                    })
                    .collect(),
                spacing,
            }
        } else if let Some(step) = &self.step {
            let optional = |key: &str, v: &Option<Templated<f64>>| v.as_ref().map(|v| rendered(key, v)).transpose();
            let plan = StepPlan {
                start: rendered("step.start", &step.start)?,
                increase: rendered("step.increase", &step.increase)?,
                length: rendered("step.for", &step.length)?.get(),
                max_rate: optional("step.max_rate", &step.max_rate)?,
                max_error_rate: optional("step.max_error_rate", &step.max_error_rate)?.unwrap_or(0.01),
                max_p99: step
                    .max_p99
                    .as_ref()
                    .map(|v| rendered("step.max_p99", v))
                    .transpose()?
                    .map_or(Duration::from_secs(1), |d| d.get()),
                max_steps: step
                    .max_steps
                    .as_ref()
                    .map(|v| rendered("step.max_steps", v))
                    .transpose()?
                    .unwrap_or(20),
                spacing,
            };
            check_step(&plan)?;
            Mode::Step(plan)
        } else {
            return Err(issue("rate", "give one of `rate`, `users`, `ramp` or `step`"));
        };
        Ok(Plan {
            mode,
            max_calls,
            duration,
            weights: self.weights()?,
            timeout: self.timeout.map(|t| t.get()).unwrap_or(Duration::from_secs(5)),
            confirmations: self.confirmations.unwrap_or(2),
            max_in_flight: self.max_in_flight.unwrap_or(10_000),
            senders: self.senders.unwrap_or(16),
            value: self.value.unwrap_or(1),
            settle: self.settle.map(|t| t.get()).unwrap_or(Duration::from_secs(30)),
        })
    }
}

/// The checks of a resolved step plan (templated values are known only now).
fn check_step(plan: &StepPlan) -> Result<(), ArgIssue> {
    check_rate("step.start", plan.start)?;
    check_rate("step.increase", plan.increase)?;
    if plan.length < Duration::from_secs(1) {
        return Err(issue("step", "a step lasts at least 1s"));
    }
    if !(plan.max_error_rate > 0.0 && plan.max_error_rate <= 1.0) {
        return Err(issue("step", "max_error_rate is a share above 0, at most 1"));
    }
    if plan.max_steps == 0 || plan.max_steps > 100 {
        return Err(issue("step", "max_steps must be 1 to 100"));
    }
    Ok(())
}

fn check_rate(key: &str, rate: f64) -> Result<(), ArgIssue> {
    if !(rate.is_finite() && rate > 0.0) {
        return Err(issue(key, format!("{key} must be more than 0 calls per second")));
    }
    if rate > 1_000_000.0 {
        return Err(issue(key, format!("{key} must be at most 1,000,000 calls per second")));
    }
    Ok(())
}

/// Checks a URL a load test may target: plain `http://` with a host (the generator does not speak TLS).
pub fn check_url(url: &str) -> Result<(), String> {
    super::http::Endpoint::parse(url).map(|_| ())
}

impl OperatorArgs for LoadArgs {
    fn check(&self) -> Result<(), ArgIssue> {
        match (&self.network, &self.url) {
            (Some(_), Some(_)) => return Err(issue("url", "give `network` or `url`, not both")),
            (None, None) => return Err(issue("network", "give `network` (a network or deploy task) or `url`")),
            (Some(n), None) if n.trim().is_empty() => return Err(issue("network", "`network` is empty")),
            (None, Some(url)) if !is_template(url) => check_url(url).map_err(|e| issue("url", e))?,
            _ => {}
        }
        let modes = [
            self.rate.is_some(),
            self.users.is_some(),
            self.ramp.is_some(),
            self.step.is_some(),
        ];
        match modes.iter().filter(|m| **m).count() {
            0 => return Err(issue("rate", "give one of `rate`, `users`, `ramp` or `step`")),
            1 => {}
            _ => return Err(issue("rate", "give only one of `rate`, `users`, `ramp` or `step`")),
        }
        if let Some(Templated::Value(rate)) = &self.rate {
            check_rate("rate", *rate)?;
        }
        if let Some(Templated::Value(users)) = &self.users {
            if !(1..=10_000).contains(users) {
                return Err(issue("users", "users must be 1 to 10,000"));
            }
        }
        if self.think_time.is_some() && self.users.is_none() {
            return Err(issue("think_time", "`think_time` is for closed loop (`users`)"));
        }
        if let Some(ramp) = &self.ramp {
            if ramp.is_empty() || ramp.len() > 1000 {
                return Err(issue("ramp", "a ramp has 1 to 1,000 phases"));
            }
            for phase in ramp {
                if !(phase.rate.is_finite() && (0.0..=1_000_000.0).contains(&phase.rate)) {
                    return Err(issue(
                        "ramp",
                        format!("ramp rate {} must be 0 to 1,000,000", phase.rate),
                    ));
                }
                if phase.length.get().is_zero() {
                    return Err(issue("ramp", "every ramp phase needs a `for` above 0"));
                }
            }
        }
        if let Some(step) = &self.step {
            if let Some(start) = known(&step.start) {
                check_rate("step.start", start)?;
            }
            if let Some(increase) = known(&step.increase) {
                check_rate("step.increase", increase)?;
            }
            if known(&step.length).is_some_and(|l| l.get() < Duration::from_secs(1)) {
                return Err(issue("step", "a step lasts at least 1s"));
            }
            if let Some(rate) = step.max_error_rate.as_ref().and_then(known) {
                if !(rate > 0.0 && rate <= 1.0) {
                    return Err(issue("step", "max_error_rate is a share above 0, at most 1"));
                }
            }
            if step
                .max_steps
                .as_ref()
                .and_then(known)
                .is_some_and(|n| n == 0 || n > 100)
            {
                return Err(issue("step", "max_steps must be 1 to 100"));
            }
        }
        if let Some(Templated::Value(0)) = &self.max_calls {
            return Err(issue("max_calls", "max_calls must be more than 0"));
        }
        if let Some(Templated::Value(d)) = &self.duration {
            if d.get().is_zero() {
                return Err(issue("duration", "duration must be more than 0"));
            }
        }
        let weights = self.weights()?;
        if weights.get(calls::RAW).is_some_and(|w| *w > 0.0) && self.raw_file.is_none() {
            return Err(issue(
                "raw_file",
                "the `raw` workload needs `raw_file` (JSON-RPC bodies, one per line)",
            ));
        }
        if self.transfers() && self.funder_key.is_none() {
            return Err(issue(
                "funder_key",
                "transfers and the token workloads need `funder_key`, a funded private key",
            ));
        }
        if let Some(key) = self.funder_key.as_deref().filter(|k| !is_template(k)) {
            parse_key(key).map_err(|e| issue("funder_key", e))?;
        }
        if self.senders.is_some_and(|n| n == 0 || n > 10_000) {
            return Err(issue("senders", "senders must be 1 to 10,000"));
        }
        if self.timeout.is_some_and(|t| t.get() < Duration::from_millis(10)) {
            return Err(issue("timeout", "timeout must be at least 10ms"));
        }
        if self.max_in_flight.is_some_and(|n| n == 0) {
            return Err(issue("max_in_flight", "max_in_flight must be more than 0"));
        }
        if let Some(Targets::Weights(weights)) = &self.targets {
            if weights.is_empty() || weights.values().any(|w| !(w.is_finite() && *w >= 0.0)) {
                return Err(issue(
                    "targets",
                    "target weights are numbers of 0 or more, for at least one node",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(yaml: serde_json::Value) -> Result<LoadArgs, String> {
        serde_json::from_value::<LoadArgs>(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn modes_resolve_into_plans() {
        let open = args(serde_json::json!({"url": "http://127.0.0.1:8545", "rate": 100, "duration": "10s"})).unwrap();
        let plan = open.plan().unwrap();
        assert!(matches!(&plan.mode, Mode::Open { phases, .. } if phases.len() == 1 && phases[0].rate == 100.0));
        let ramp = args(
            serde_json::json!({"network": "n", "ramp": [{"rate": 100, "for": "30s"}, {"rate": 1000, "for": "1m"}]}),
        )
        .unwrap();
        assert!(
            matches!(&ramp.plan().unwrap().mode, Mode::Open { phases, .. } if phases[1].length == Duration::from_secs(60))
        );
        let closed =
            args(serde_json::json!({"network": "n", "users": 8, "think_time": "10ms", "max_calls": 1000})).unwrap();
        assert!(matches!(closed.plan().unwrap().mode, Mode::Closed { users: 8, .. }));
        let targets =
            args(serde_json::json!({"network": "n", "rate": 1, "duration": 1, "targets": {"weights": {"node-1": 3}}}))
                .unwrap();
        assert_eq!(
            targets.targets,
            Some(Targets::Weights([("node-1".to_string(), 3.0)].into()))
        );
        let one =
            args(serde_json::json!({"network": "n", "rate": 1, "duration": 1, "targets": {"node": "node-2"}})).unwrap();
        assert_eq!(one.targets, Some(Targets::Node("node-2".into())));
    }

    #[test]
    fn bad_arguments_name_their_key() {
        let key_of = |v: serde_json::Value| args(v).unwrap().check().unwrap_err().key;
        assert_eq!(
            key_of(serde_json::json!({"network": "n", "rate": 0, "duration": 1})),
            "rate"
        );
        assert_eq!(
            key_of(serde_json::json!({"network": "n", "rate": -5, "duration": 1})),
            "rate"
        );
        assert_eq!(
            key_of(serde_json::json!({"network": "n", "rate": 5, "duration": 1, "workload": {"eth_foo": 1}})),
            "workload.eth_foo"
        );
        assert_eq!(
            key_of(serde_json::json!({"network": "n", "rate": 5, "duration": 1, "workload": {"eth_call": "lots"}})),
            "workload.eth_call"
        );
        assert_eq!(
            key_of(
                serde_json::json!({"network": "n", "rate": 5, "duration": 1, "workload": {"transfer": 1}, "funder_key": "0x1234"})
            ),
            "funder_key"
        );
        assert_eq!(
            key_of(serde_json::json!({"network": "n", "rate": 5, "duration": 1, "workload": {"transfer": 1}})),
            "funder_key"
        );
        assert_eq!(
            key_of(serde_json::json!({"url": "https://node:8545", "rate": 5, "duration": 1})),
            "url"
        );
        assert_eq!(
            key_of(serde_json::json!({"url": "ftp://node", "rate": 5, "duration": 1})),
            "url"
        );
        assert_eq!(
            key_of(serde_json::json!({"network": "n", "rate": 5, "users": 2, "duration": 1})),
            "rate"
        );
        assert_eq!(key_of(serde_json::json!({"network": "n"})), "rate");
        assert_eq!(
            key_of(serde_json::json!({"network": "n", "rate": 5, "duration": 1, "workload": {"raw": 1}})),
            "raw_file"
        );
        assert_eq!(
            args(serde_json::json!({"network": "n", "rate": 5}))
                .unwrap()
                .plan()
                .unwrap_err()
                .key,
            "duration"
        );
    }
}
