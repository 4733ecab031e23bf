//! Faults as they are written: in a DAG file (`chain.chaos`'s `faults`, a certify profile's scenarios) and,
//! built from flags, by `dagctl chaos`. Each spec checks itself and makes the [`Fault`] it names; what no
//! mechanism here can apply is refused with the reason.

use std::time::Duration;

use serde::Deserialize;

use super::link::{parse_rate, Cut, Delay, Distribution, Shape};
use super::network::{CutDirection, Direction, NetworkFault, PacketEffect};
use super::{process, Fault, ProcessFault, Selector};
use crate::duration::SpecDuration;

/// `delay` of `netem`, in pumba's units (milliseconds, percent).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DelaySpec {
    pub time: u64,
    #[serde(default)]
    pub jitter: u64,
    #[serde(default)]
    pub correlation: f64,
    #[serde(default)]
    pub distribution: Option<String>,
}

/// `loss`, `duplicate` and `corrupt` of `netem`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PercentSpec {
    pub percent: f64,
    #[serde(default)]
    pub correlation: f64,
}

/// `rate` of `netem`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateSpec {
    /// e.g. `100kbit`, `1mbit`, `500kbps`.
    pub rate: String,
}

/// `netem` as written in a DAG file (and built from `dagctl chaos netem` flags): one of the effects.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetemSpec {
    pub duration: SpecDuration,
    /// pumba's interface; here the node's peer links (nodes run on loopback).
    #[serde(default)]
    pub interface: Option<String>,
    /// `egress` (netem's, the default), `ingress` or `both`.
    #[serde(default)]
    pub direction: Option<String>,
    #[serde(default)]
    pub delay: Option<DelaySpec>,
    #[serde(default)]
    pub loss: Option<PercentSpec>,
    #[serde(default)]
    pub duplicate: Option<PercentSpec>,
    #[serde(default)]
    pub corrupt: Option<PercentSpec>,
    #[serde(default)]
    pub rate: Option<RateSpec>,
}

/// `partition` as written in a DAG file (and built from `dagctl chaos partition` flags).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionSpec {
    pub duration: SpecDuration,
    /// The other group (a target selector); every node not targeted when absent.
    #[serde(default)]
    pub from: Option<String>,
    /// `both` (default), `to` or `from`.
    #[serde(default)]
    pub direction: Option<String>,
    /// `blackhole` (default) or `reset`.
    #[serde(default)]
    pub mode: Option<String>,
}

fn positive(d: SpecDuration) -> Result<Duration, String> {
    if d.0.is_zero() {
        Err("`duration` must be more than zero".into())
    } else {
        Ok(d.0)
    }
}

fn percent(key: &str, value: f64) -> Result<f64, String> {
    if !(0.0..=100.0).contains(&value) {
        return Err(format!("`{key}` is a percentage: 0 to 100, not {value}"));
    }
    Ok(value)
}

impl NetemSpec {
    /// The fault, checked: exactly one effect, numbers in range; what cannot be applied here is refused.
    pub fn fault(&self) -> Result<NetworkFault, String> {
        let given = [
            ("delay", self.delay.is_some()),
            ("loss", self.loss.is_some()),
            ("duplicate", self.duplicate.is_some()),
            ("corrupt", self.corrupt.is_some()),
            ("rate", self.rate.is_some()),
        ];
        if given.iter().filter(|(_, g)| *g).count() != 1 {
            return Err("give exactly one of delay, loss, duplicate, corrupt and rate".into());
        }
        let duration = positive(self.duration)?;
        let direction = match self.direction.as_deref().unwrap_or("egress") {
            "egress" => Direction::Egress,
            "ingress" => Direction::Ingress,
            "both" => Direction::Both,
            other => return Err(format!("`direction: {other}`: expected egress, ingress or both")),
        };
        for (name, spec) in [
            ("loss", &self.loss),
            ("duplicate", &self.duplicate),
            ("corrupt", &self.corrupt),
        ] {
            if let Some(spec) = spec {
                let percent = percent(&format!("{name}.percent"), spec.percent)?;
                let correlation = self::percent(&format!("{name}.correlation"), spec.correlation)?;
                let effect = match name {
                    "loss" => PacketEffect::Loss { percent, correlation },
                    "duplicate" => PacketEffect::Duplicate { percent, correlation },
                    _ => PacketEffect::Corrupt { percent, correlation },
                };
                return Ok(NetworkFault::Packets {
                    duration,
                    interface: self.interface.clone(),
                    direction,
                    effect,
                });
            }
        }
        let mut shape = Shape::default();
        if let Some(delay) = &self.delay {
            if delay.time == 0 {
                return Err("`delay.time` must be more than zero milliseconds".into());
            }
            if delay.jitter > delay.time.saturating_mul(10) {
                return Err("`delay.jitter` is more than ten times `delay.time`".into());
            }
            shape.delay = Some(Delay {
                time: Duration::from_millis(delay.time),
                jitter: Duration::from_millis(delay.jitter),
                correlation: percent("delay.correlation", delay.correlation)? / 100.0,
                distribution: delay
                    .distribution
                    .as_deref()
                    .unwrap_or("uniform")
                    .parse::<Distribution>()
                    .map_err(|e| format!("`delay.distribution`: {e}"))?,
            });
        }
        if let Some(rate) = &self.rate {
            shape.rate = Some(parse_rate(&rate.rate).map_err(|e| format!("`rate.rate`: {e}"))?);
        }
        Ok(NetworkFault::Netem {
            duration,
            interface: self.interface.clone(),
            direction,
            shape,
        })
    }
}

impl PartitionSpec {
    /// The fault, checked.
    pub fn fault(&self) -> Result<NetworkFault, String> {
        Ok(NetworkFault::Partition {
            duration: positive(self.duration)?,
            from: self
                .from
                .as_deref()
                .map(|s| Selector::parse(s).map_err(|e| format!("`from`: {e}")))
                .transpose()?,
            direction: match self.direction.as_deref().unwrap_or("both") {
                "both" => CutDirection::Both,
                "to" => CutDirection::To,
                "from" => CutDirection::From,
                other => return Err(format!("`direction: {other}`: expected both, to or from")),
            },
            mode: match self.mode.as_deref().unwrap_or("blackhole") {
                "blackhole" => Cut::Blackhole,
                "reset" => Cut::Reset,
                other => return Err(format!("`mode: {other}`: expected blackhole or reset")),
            },
        })
    }
}

/// `kill`'s settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KillArgs {
    /// SIGKILL (default) or SIGTERM.
    #[serde(default)]
    pub signal: Option<String>,
    /// Start the nodes again after this long.
    #[serde(default)]
    pub restart_after: Option<SpecDuration>,
}

/// A fault that lasts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lasting {
    pub duration: SpecDuration,
}

/// One fault: exactly one of `kill`, `pause`, `stop`, `restart`, `netem`, `partition`, `stress`, `clock`, with
/// its target and timing (`offset`, and pumba's `interval` with a bounded `repeat`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultArgs {
    /// Which nodes: names, `re2:<regex>`, `random:N`, `P%` or `f`.
    pub target: String,
    /// Wait this long after the task starts.
    #[serde(default)]
    pub offset: Option<SpecDuration>,
    /// Apply the fault again every `interval` (from one start to the next), `repeat` times in all; the
    /// targets are chosen again each time (a `random:` or `P%` target may differ).
    #[serde(default)]
    pub interval: Option<SpecDuration>,
    #[serde(default)]
    pub repeat: Option<u32>,
    #[serde(default)]
    pub kill: Option<KillArgs>,
    #[serde(default)]
    pub pause: Option<Lasting>,
    #[serde(default)]
    pub stop: Option<Lasting>,
    /// `restart: {}`.
    #[serde(default)]
    pub restart: Option<serde_json::Map<String, serde_json::Value>>,
    /// pumba's netem: `{duration, interface?, direction?, delay|rate: {...}}`.
    #[serde(default)]
    pub netem: Option<NetemSpec>,
    /// `{duration, from?, direction?, mode?}`: the target cut off from `from` (every other node by default).
    #[serde(default)]
    pub partition: Option<PartitionSpec>,
    /// `{offset: +30s, duration}`: the node's wall clock skewed, under the clock supervisor
    /// ([`super::clock`]).
    #[serde(default)]
    pub clock: Option<ClockSpec>,
    /// `{duration, cpu?, cpu_load?, memory?, vm?}`: `stress-ng` on the target's host.
    #[serde(default)]
    pub stress: Option<super::stress::StressSpec>,
}

/// `clock` skew: `offset` is a signed duration (`+30s`, `-2m`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockSpec {
    pub offset: String,
    pub duration: SpecDuration,
}

impl ClockSpec {
    pub fn fault(&self) -> Result<Fault, String> {
        let offset_seconds = super::clock::parse_offset(&self.offset)?;
        Ok(Fault::Clock {
            offset_seconds,
            duration: positive(self.duration)?,
        })
    }
}

impl FaultArgs {
    /// How many times and how far apart: `(repeat, interval)`, checked against how long the fault lasts.
    pub fn timing(&self) -> Result<(u32, Duration), String> {
        let times = self.repeat.unwrap_or(1);
        if !(1..=1000).contains(&times) {
            return Err(format!("`repeat` is 1 to 1000 times in all, not {times}"));
        }
        match (times, self.interval) {
            (1, None) => Ok((1, Duration::ZERO)),
            (1, Some(_)) => Err("`interval` needs `repeat` (how many times in all, at least 2)".into()),
            (_, None) => Err("`repeat` needs `interval` (from one start to the next)".into()),
            (n, Some(every)) => {
                let lasts = self.fault()?.lasts();
                if every.0 < lasts || every.0.is_zero() {
                    return Err(format!(
                        "`interval` ({:?}) is shorter than the fault lasts ({lasts:?}): repetitions would overlap",
                        every.0
                    ));
                }
                Ok((n, every.0))
            }
        }
    }

    /// The fault, checked.
    pub fn fault(&self) -> Result<Fault, String> {
        let given = [
            self.kill.is_some(),
            self.pause.is_some(),
            self.stop.is_some(),
            self.restart.is_some(),
            self.netem.is_some(),
            self.partition.is_some(),
            self.clock.is_some(),
            self.stress.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err("give exactly one of kill, pause, stop, restart, netem, partition, stress and clock".into());
        }
        if let Some(stress) = &self.stress {
            return stress.fault().map(Fault::Stress).map_err(|e| format!("stress: {e}"));
        }
        if let Some(clock) = &self.clock {
            return clock.fault().map_err(|e| format!("clock: {e}"));
        }
        if let Some(netem) = &self.netem {
            return netem.fault().map(Fault::Network).map_err(|e| format!("netem: {e}"));
        }
        if let Some(partition) = &self.partition {
            return partition
                .fault()
                .map(Fault::Network)
                .map_err(|e| format!("partition: {e}"));
        }
        self.process_fault().map(Fault::Process)
    }

    fn process_fault(&self) -> Result<ProcessFault, String> {
        let positive = |d: &SpecDuration, key: &str| {
            if d.0.is_zero() {
                Err(format!("`{key}` must be more than zero"))
            } else {
                Ok(d.0)
            }
        };
        Ok(if let Some(kill) = &self.kill {
            ProcessFault::Kill {
                signal: process::kill_signal(kill.signal.as_deref().unwrap_or("SIGKILL"))?,
                restart_after: kill
                    .restart_after
                    .as_ref()
                    .map(|d| positive(d, "restart_after"))
                    .transpose()?,
            }
        } else if let Some(pause) = &self.pause {
            ProcessFault::Pause {
                duration: positive(&pause.duration, "duration")?,
            }
        } else if let Some(stop) = &self.stop {
            ProcessFault::Stop {
                duration: positive(&stop.duration, "duration")?,
            }
        } else {
            if self.restart.as_ref().is_some_and(|r| !r.is_empty()) {
                return Err("`restart` takes no settings: write `restart: {}`".into());
            }
            ProcessFault::Restart
        })
    }
}

/// A spec read from flow-style YAML (for tests and examples).
pub fn read<T: serde::de::DeserializeOwned>(yaml: &str) -> Result<T, String> {
    let doc = engine::yaml::parse_str(yaml).map_err(|e| e.message)?;
    let node = doc.first().ok_or("an empty document")?;
    serde_json::from_value(node.to_json()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repetitions_are_bounded_and_never_overlap() {
        let timing = |yaml: &str| read::<FaultArgs>(yaml)?.timing();
        assert_eq!(
            timing("{target: f, pause: {duration: 5s}}").unwrap(),
            (1, Duration::ZERO)
        );
        assert_eq!(
            timing("{target: f, pause: {duration: 5s}, interval: 10s, repeat: 3}").unwrap(),
            (3, Duration::from_secs(10))
        );
        for (yaml, needle) in [
            (
                "{target: f, pause: {duration: 5s}, interval: 4s, repeat: 3}",
                "would overlap",
            ),
            (
                "{target: f, kill: {restart_after: 20s}, interval: 10s, repeat: 2}",
                "would overlap",
            ),
            ("{target: f, pause: {duration: 5s}, interval: 10s}", "needs `repeat`"),
            ("{target: f, pause: {duration: 5s}, repeat: 3}", "needs `interval`"),
            (
                "{target: f, pause: {duration: 5s}, interval: 10s, repeat: 5000}",
                "1 to 1000",
            ),
            (
                "{target: f, pause: {duration: 5s}, interval: 10s, repeat: 0}",
                "1 to 1000",
            ),
        ] {
            let err = timing(yaml).unwrap_err();
            assert!(err.contains(needle), "{yaml}: {err}");
        }
    }

    fn netem(yaml: &str) -> Result<NetworkFault, String> {
        read::<NetemSpec>(yaml)?.fault()
    }

    #[test]
    fn the_seed_example_reads_and_what_cannot_be_applied_is_refused() {
        let fault = netem("{duration: 5m, interface: eth1, delay: {time: 3000, jitter: 30, correlation: 20}}").unwrap();
        let NetworkFault::Netem { shape, direction, .. } = &fault else {
            panic!()
        };
        assert_eq!(*direction, Direction::Egress);
        let delay = shape.delay.unwrap();
        assert_eq!((delay.time.as_millis(), delay.jitter.as_millis()), (3000, 30));
        assert!((delay.correlation - 0.2).abs() < 1e-9);
        assert!(fault.name().contains("interface eth1"), "{}", fault.name());
        let loss = netem("{duration: 1m, loss: {percent: 10, correlation: 25}, direction: ingress}").unwrap();
        assert_eq!(
            loss,
            NetworkFault::Packets {
                duration: Duration::from_secs(60),
                interface: None,
                direction: Direction::Ingress,
                effect: PacketEffect::Loss {
                    percent: 10.0,
                    correlation: 25.0
                },
            }
        );
        assert!(netem("{duration: 1m, loss: {percent: 120}}")
            .unwrap_err()
            .contains("0 to 100"));
        assert!(matches!(
            netem("{duration: 1m, corrupt: {percent: 1}}"),
            Ok(NetworkFault::Packets {
                effect: PacketEffect::Corrupt { .. },
                ..
            })
        ));
        assert!(netem("{duration: 1m}").unwrap_err().contains("exactly one"));
        assert!(netem("{duration: 0s, delay: {time: 10}}")
            .unwrap_err()
            .contains("more than zero"));
        assert!(netem("{duration: -5s, delay: {time: 10}}")
            .unwrap_err()
            .contains("negative"));
        assert!(netem("{duration: 1m, delay: {time: 10, distribution: cauchy}}")
            .unwrap_err()
            .contains("cauchy"));
        assert!(netem("{duration: 1m, delay: {time: 10, correlation: 101}}")
            .unwrap_err()
            .contains("0 to 100"));
        assert!(netem("{duration: 1m, rate: {rate: 1mbit}, direction: up}")
            .unwrap_err()
            .contains("egress"));
        let NetworkFault::Netem { shape, .. } = netem("{duration: 1m, rate: {rate: 1mbit}}").unwrap() else {
            panic!()
        };
        assert_eq!(shape.rate, Some(125_000));
    }
}
