//! Client version pins: parsing and the limits that chains.md section 0 imposes.

use std::fmt;

/// A `major.minor.patch` client version; a leading `v` and a `-suffix` are tolerated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
}

impl Version {
    /// A version from its three parts.
    pub const fn new(major: u64, minor: u64, patch: u64) -> Self {
        Self { major, minor, patch }
    }

    /// Parses `1.13.15`, `v1.13.15`, `24.4.1`, `1.13.15-stable` (the suffix is ignored).
    pub fn parse(text: &str) -> Option<Self> {
        let trimmed = text.trim();
        let without_v = trimmed.strip_prefix('v').unwrap_or(trimmed);
        let core = without_v.split(['-', '+']).next().filter(|core| !core.is_empty())?;
        let mut parts = core.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next().map_or(Some(0), |p| p.parse().ok())?;
        let patch = parts.next().map_or(Some(0), |p| p.parse().ok())?;
        if parts.next().is_some() {
            return None;
        }
        Some(Self::new(major, minor, patch))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_shapes() {
        assert_eq!(Version::parse("1.13.15"), Some(Version::new(1, 13, 15)));
        assert_eq!(Version::parse("v1.13.15"), Some(Version::new(1, 13, 15)));
        assert_eq!(Version::parse("1.13.15-stable"), Some(Version::new(1, 13, 15)));
        assert_eq!(Version::parse("24.4"), Some(Version::new(24, 4, 0)));
        assert_eq!(Version::parse("25"), Some(Version::new(25, 0, 0)));
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(Version::parse(""), None);
        assert_eq!(Version::parse("latest"), None);
        assert_eq!(Version::parse("1.2.3.4"), None);
        assert_eq!(Version::parse("1.x"), None);
    }

    #[test]
    fn orders_numerically() {
        assert!(Version::new(1, 13, 15) < Version::new(1, 14, 0));
        assert!(Version::new(24, 12, 2) < Version::new(25, 12, 0));
        assert!(Version::new(1, 9, 0) < Version::new(1, 10, 0));
    }
}
