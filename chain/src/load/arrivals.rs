//! When calls are meant to start, in open loop: phases of a fixed rate (one, a ramp of several, or the steps of
//! a breaking-point search), with constant spacing or Poisson arrivals (exponential gaps). Times are offsets
//! from the start of the run; a call's latency is measured from its intended time, so a stalled node cannot
//! hide its latency by holding the generator back (no coordinated omission).

use std::time::Duration;

/// One phase: `rate` calls per second for `length`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Phase {
    pub rate: f64,
    pub length: Duration,
}

/// How gaps between arrivals are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Spacing {
    #[default]
    Constant,
    Poisson,
}

/// The intended start times of a run's calls, phase by phase.
#[derive(Debug)]
pub struct Arrivals {
    phases: Vec<Phase>,
    spacing: Spacing,
    /// Index of the current phase and when it began.
    phase: usize,
    phase_start: Duration,
    /// The next arrival.
    next: Duration,
    rng: u64,
}

impl Arrivals {
    pub fn new(phases: Vec<Phase>, spacing: Spacing, seed: u64) -> Arrivals {
        let mut arrivals = Arrivals {
            phases,
            spacing,
            phase: 0,
            phase_start: Duration::ZERO,
            next: Duration::ZERO,
            rng: seed | 1,
        };
        arrivals.next = arrivals.first_of_phase();
        arrivals
    }

    /// The phase the next arrival belongs to, or `None` when every phase is over.
    fn phase_index(&self) -> Option<usize> {
        (self.phase < self.phases.len()).then_some(self.phase)
    }

    /// The end of the last phase.
    pub fn end(&self) -> Duration {
        self.phases.iter().map(|p| p.length).sum()
    }

    /// The next intended start time (and its phase), or `None` after the last phase.
    pub fn peek(&self) -> Option<(Duration, usize)> {
        self.phase_index().map(|p| (self.next, p))
    }

    /// Takes the next arrival.
    pub fn advance(&mut self) {
        let Some(phase) = self.phases.get(self.phase).copied() else {
            return;
        };
        let gap = self.gap(phase.rate);
        self.next += gap;
        while let Some(phase) = self.phases.get(self.phase).copied() {
            let end = self.phase_start + phase.length;
            if self.next < end {
                break;
            }
            self.phase += 1;
            self.phase_start = end;
            self.next = self.first_of_phase();
        }
    }

    fn first_of_phase(&mut self) -> Duration {
        let start = self.phase_start;
        match self.phases.get(self.phase).copied() {
            Some(phase) if phase.rate > 0.0 => {
                // Poisson: the first arrival is itself a random gap after the start.
                match self.spacing {
                    Spacing::Constant => start,
                    Spacing::Poisson => start + self.gap(phase.rate),
                }
            }
            // A phase of rate 0 is a pause: its "arrival" is its end, which moves to the next phase.
            Some(phase) => start + phase.length,
            None => start,
        }
    }

    fn gap(&mut self, rate: f64) -> Duration {
        if rate <= 0.0 {
            return Duration::from_secs(3600);
        }
        let mean = 1.0 / rate;
        let seconds = match self.spacing {
            Spacing::Constant => mean,
            Spacing::Poisson => -mean * (1.0 - self.uniform()).ln(),
        };
        Duration::from_secs_f64(seconds)
    }

    /// xorshift64*: a uniform number in [0, 1).
    fn uniform(&mut self) -> f64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(mut a: Arrivals) -> Vec<usize> {
        let mut per_phase = vec![0; 8];
        while let Some((at, phase)) = a.peek() {
            assert!(at < a.end());
            per_phase[phase] += 1;
            a.advance();
        }
        per_phase
    }

    #[test]
    fn constant_phases_give_rate_times_length_calls() {
        let phases = vec![
            Phase {
                rate: 100.0,
                length: Duration::from_secs(2),
            },
            Phase {
                rate: 0.0,
                length: Duration::from_secs(1),
            },
            Phase {
                rate: 1000.0,
                length: Duration::from_millis(500),
            },
        ];
        let counts = count(Arrivals::new(phases, Spacing::Constant, 1));
        assert_eq!(&counts[..3], &[200, 0, 500]);
    }

    #[test]
    fn poisson_arrivals_average_the_rate_with_exponential_gaps() {
        let phases = vec![Phase {
            rate: 1000.0,
            length: Duration::from_secs(20),
        }];
        let mut a = Arrivals::new(phases, Spacing::Poisson, 42);
        let mut gaps = Vec::new();
        let mut last = Duration::ZERO;
        while let Some((at, _)) = a.peek() {
            gaps.push((at - last).as_secs_f64());
            last = at;
            a.advance();
        }
        let n = gaps.len() as f64;
        assert!((19_000.0..21_000.0).contains(&n), "{n} arrivals");
        let mean = gaps.iter().sum::<f64>() / n;
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / n;
        // Exponential: the standard deviation equals the mean.
        assert!((var.sqrt() / mean - 1.0).abs() < 0.05, "cv {}", var.sqrt() / mean);
    }
}
