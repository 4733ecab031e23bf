//! Value types a spec is made of: balances, accounts, regions, roles and node slots.

use std::fmt;

use alloy_primitives::{Address, U256};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An amount of wei: a decimal or `0x` hex string, or a JSON integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Balance(pub U256);

impl Balance {
    /// Parses a decimal or `0x`-prefixed hex amount of wei.
    pub fn parse(text: &str) -> Option<Self> {
        let trimmed = text.trim();
        let parsed = match trimmed.strip_prefix("0x").or_else(|| trimmed.strip_prefix("0X")) {
            Some(hex) if !hex.is_empty() => U256::from_str_radix(hex, 16).ok(),
            Some(_) => None,
            None if trimmed.is_empty() => None,
            None => U256::from_str_radix(trimmed, 10).ok(),
        };
        parsed.map(Balance)
    }

    /// The amount as a `0x`-prefixed hex string, as genesis files write it.
    pub fn to_hex(&self) -> String {
        format!("{:#x}", self.0)
    }
}

impl fmt::Display for Balance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for Balance {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Balance {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BalanceVisitor;

        impl Visitor<'_> for BalanceVisitor {
            type Value = Balance;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an amount of wei as a decimal or 0x hex string, or an integer")
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Balance(U256::from(v)))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                u64::try_from(v)
                    .map(|v| Balance(U256::from(v)))
                    .map_err(|_| E::custom(format!("invalid balance `{v}`: must not be negative")))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Balance::parse(v).ok_or_else(|| {
                    E::custom(format!(
                        "invalid balance `{v}`: expected a decimal or 0x hex amount of wei"
                    ))
                })
            }
        }

        deserializer.deserialize_any(BalanceVisitor)
    }
}

/// A prefunded account in the genesis allocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    /// The account's address.
    pub address: Address,
    /// Its balance at genesis, in wei.
    pub balance: Balance,
}

/// A named placement for nodes: a machine, a namespace or a kube context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Region {
    /// The region's name, referenced by `placement`.
    pub name: String,
    /// Backend-specific target (for example a kube context); `None` means the default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
}

impl Region {
    /// A region with no backend-specific target.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            context: None,
        }
    }
}

impl<'de> Deserialize<'de> for Region {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            name: String,
            #[serde(default)]
            context: Option<String>,
        }

        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Shape {
            Name(String),
            Full(Full),
        }

        match Shape::deserialize(deserializer)
            .map_err(|_| de::Error::custom("a region is a name or a map with `name` and optional `context`"))?
        {
            Shape::Name(name) => Ok(Region::named(name)),
            Shape::Full(full) => Ok(Region {
                name: full.name,
                context: full.context,
            }),
        }
    }
}

/// What a node does in the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Seals or votes on blocks (Clique signer, IBFT/QBFT validator, Aura authority, raft peer).
    Validator,
    /// Follows the chain without sealing.
    Member,
    /// An anvil node: its own one-node chain.
    Standalone,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Validator => "validator",
            Role::Member => "member",
            Role::Standalone => "standalone",
        })
    }
}

/// One node of the layout: its name, role and region, before any key or port exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeSlot {
    /// Position in the network, 0-based; validators come first.
    pub index: usize,
    /// Unique node name (`validator-1`, `member-1`, `node-1` for anvil).
    pub name: String,
    /// What the node does.
    pub role: Role,
    /// The region the node runs in.
    pub region: String,
}

/// Resource requests of a node's pod, as Kubernetes quantities (`500m`, `2`, `1Gi`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodResources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
}

/// A persistent volume for a node's data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    /// Its size, a Kubernetes quantity (`10Gi`).
    pub size: String,
    /// The storage class; the cluster's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
}

/// Checks a Kubernetes quantity: a decimal number with an optional SI or binary suffix.
pub(crate) fn check_quantity(field: &'static str, value: &str) -> crate::error::Result<()> {
    const SUFFIXES: &[&str] = &[
        "", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei",
    ];
    let digits_end = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(value.len());
    let (number, suffix) = value.split_at(digits_end);
    let number_ok =
        !number.is_empty() && number.matches('.').count() <= 1 && !number.starts_with('.') && !number.ends_with('.');
    if number_ok && SUFFIXES.contains(&suffix) {
        return Ok(());
    }
    Err(crate::error::Error::InvalidField {
        field,
        reason: format!("`{value}` is not a quantity (e.g. 500m, 2, 1Gi)"),
    })
}
