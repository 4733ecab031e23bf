//! The call kinds a workload mixes, by weight: JSON-RPC reads with fixed bodies, signed transfers, and raw
//! JSON-RPC bodies from a file; and how an answer is classified.

use std::collections::BTreeMap;

use super::record::Outcome;

/// The read methods a workload may name, with their parameters (`{funder}` is the funder's address, or the
/// zero address without one).
pub const READS: &[(&str, &str)] = &[
    ("eth_blockNumber", "[]"),
    ("eth_chainId", "[]"),
    ("eth_gasPrice", "[]"),
    ("net_peerCount", "[]"),
    ("eth_getBalance", r#"["{funder}","latest"]"#),
    ("eth_getTransactionCount", r#"["{funder}","latest"]"#),
    ("eth_getBlockByNumber", r#"["latest",false]"#),
    (
        "eth_call",
        r#"[{"to":"0x0000000000000000000000000000000000000001","data":"0x"},"latest"]"#,
    ),
];

/// Signed transfers: EIP-1559 where the chain has a base fee (legacy otherwise), and always legacy.
pub const TRANSFER: &str = "transfer";
pub const TRANSFER_LEGACY: &str = "transfer_legacy";
/// A transfer at the lowest fee a block takes: a 1 wei tip over the base fee (EIP-1559), or a 1 wei gas price.
pub const TRANSFER_LOW_FEE: &str = "transfer_low_fee";
/// One line of `raw_file`, in turn.
pub const RAW: &str = "raw";
/// The bundled token (`token.rs`): a `transfer` from a sender, a deployment of a new token, a `balanceOf` read.
pub const TOKEN_TRANSFER: &str = "token_transfer";
pub const TOKEN_DEPLOY: &str = "token_deploy";
pub const TOKEN_BALANCE: &str = "token_balance";

/// The kinds that send transactions from the senders.
pub const SENDING: &[&str] = &[
    TRANSFER,
    TRANSFER_LEGACY,
    TRANSFER_LOW_FEE,
    TOKEN_TRANSFER,
    TOKEN_DEPLOY,
];
/// The kinds that need the token deployed at the start.
pub const TOKEN: &[&str] = &[TOKEN_TRANSFER, TOKEN_BALANCE];

/// Every workload name.
pub fn known() -> Vec<&'static str> {
    READS
        .iter()
        .map(|(name, _)| *name)
        .chain([
            TRANSFER,
            TRANSFER_LEGACY,
            TRANSFER_LOW_FEE,
            RAW,
            TOKEN_TRANSFER,
            TOKEN_DEPLOY,
            TOKEN_BALANCE,
        ])
        .collect()
}

/// A transaction a sender signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxWork {
    /// A value transfer to a receiver.
    Transfer { legacy: bool },
    /// A value transfer at the lowest fee a block takes.
    LowFeeTransfer,
    /// A token `transfer` of 1 to a receiver.
    TokenTransfer,
    /// A new token, the sender its one holder.
    TokenDeploy,
}

/// What one call kind sends.
#[derive(Debug, Clone)]
pub enum Body {
    /// The same bytes every time.
    Fixed(Vec<u8>),
    /// A signed transaction from the next free sender.
    Tx(TxWork),
    /// The lines of a file, in turn.
    Raw(Vec<Vec<u8>>),
}

/// One kind of call and its share of the mix.
#[derive(Debug, Clone)]
pub struct Kind {
    pub name: String,
    pub weight: f64,
    pub body: Body,
}

impl Kind {
    pub fn sends(&self) -> bool {
        matches!(self.body, Body::Tx(_))
    }
}

/// The kinds of `weights` (checked names, weights > 0), with `funder` for read parameters, `raw` lines, and
/// the token's address and a holder for `token_balance`.
pub fn kinds(
    weights: &BTreeMap<String, f64>,
    funder: Option<&str>,
    raw: &[Vec<u8>],
    token: Option<(alloy_primitives::Address, alloy_primitives::Address)>,
) -> Vec<Kind> {
    let funder = funder.unwrap_or("0x0000000000000000000000000000000000000000");
    weights
        .iter()
        .filter(|(_, w)| **w > 0.0)
        .map(|(name, weight)| {
            let body = match name.as_str() {
                TRANSFER => Body::Tx(TxWork::Transfer { legacy: false }),
                TRANSFER_LEGACY => Body::Tx(TxWork::Transfer { legacy: true }),
                TRANSFER_LOW_FEE => Body::Tx(TxWork::LowFeeTransfer),
                TOKEN_TRANSFER => Body::Tx(TxWork::TokenTransfer),
                TOKEN_DEPLOY => Body::Tx(TxWork::TokenDeploy),
                RAW => Body::Raw(raw.to_vec()),
                TOKEN_BALANCE => {
                    let (token, holder) = token.unwrap_or_default();
                    let call =
                        serde_json::json!([{"to": token, "data": super::token::balance_of_data(&holder)}, "latest"]);
                    Body::Fixed(request("eth_call", &call.to_string()).into_bytes())
                }
                read => {
                    let params = READS
                        .iter()
                        .find(|(n, _)| *n == read)
                        .map_or("[]", |(_, p)| p)
                        .replace("{funder}", funder);
                    Body::Fixed(request(read, &params).into_bytes())
                }
            };
            Kind {
                name: name.clone(),
                weight: *weight,
                body,
            }
        })
        .collect()
}

/// A JSON-RPC request body.
pub fn request(method: &str, params: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{params}}}"#)
}

/// Picks kinds by weight: a cumulative table walked with a cheap deterministic sequence.
#[derive(Debug)]
pub struct Mix {
    cumulative: Vec<f64>,
    rng: u64,
}

impl Mix {
    pub fn new(kinds: &[Kind], seed: u64) -> Mix {
        let total: f64 = kinds.iter().map(|k| k.weight).sum();
        let mut sum = 0.0;
        let cumulative = kinds
            .iter()
            .map(|k| {
                sum += k.weight / total;
                sum
            })
            .collect();
        Mix {
            cumulative,
            rng: seed | 1,
        }
    }

    pub fn pick(&mut self) -> usize {
        if self.cumulative.len() <= 1 {
            return 0;
        }
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let x = (self.rng >> 11) as f64 / (1u64 << 53) as f64;
        self.cumulative
            .iter()
            .position(|c| x < *c)
            .unwrap_or(self.cumulative.len() - 1)
    }
}

/// How a 200 answer's body reads: its outcome, and for errors the message.
pub fn classify(status: u16, body: &[u8]) -> (Outcome, Option<String>) {
    if status != 200 {
        return (Outcome::Http(status), None);
    }
    // The common case, an object with a result and no error, without a full parse.
    let has = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
    if has(b"\"result\"") && !has(b"\"error\"") {
        return (Outcome::Ok, None);
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return (Outcome::Garbage, None);
    };
    match value.get("error") {
        Some(error) if !error.is_null() => {
            let code = error.get("code").and_then(|c| c.as_i64()).unwrap_or(0);
            let message = error.get("message").and_then(|m| m.as_str()).map(str::to_string);
            (
                Outcome::RpcError(code.clamp(i32::MIN.into(), i32::MAX.into()) as i32),
                message,
            )
        }
        _ if value.get("result").is_some() => (Outcome::Ok, None),
        _ => (Outcome::Garbage, None),
    }
}

/// The `result` of a JSON-RPC answer.
pub fn result(body: &[u8]) -> Option<serde_json::Value> {
    let mut value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value.get_mut("result").map(serde_json::Value::take)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified() {
        assert_eq!(
            classify(200, br#"{"jsonrpc":"2.0","id":1,"result":"0x1"}"#).0,
            Outcome::Ok
        );
        let (outcome, message) = classify(
            200,
            br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"nonce too low"}}"#,
        );
        assert_eq!(outcome, Outcome::RpcError(-32000));
        assert_eq!(message.as_deref(), Some("nonce too low"));
        assert_eq!(classify(500, b"oops").0, Outcome::Http(500));
        assert_eq!(classify(200, b"<html>").0, Outcome::Garbage);
        assert_eq!(classify(200, br#"{"id":1}"#).0, Outcome::Garbage);
        assert_eq!(classify(200, br#"{"result":null}"#).0, Outcome::Ok);
    }

    #[test]
    fn the_mix_follows_the_weights() {
        let weights: BTreeMap<String, f64> =
            [("eth_blockNumber".to_string(), 3.0), ("eth_chainId".to_string(), 1.0)].into();
        let kinds = kinds(&weights, None, &[], None);
        let mut mix = Mix::new(&kinds, 7);
        let mut counts = [0usize; 2];
        for _ in 0..40_000 {
            counts[mix.pick()] += 1;
        }
        // BTreeMap order: eth_blockNumber, eth_chainId.
        let share = counts[0] as f64 / 40_000.0;
        assert!((0.73..0.77).contains(&share), "{counts:?}");
        assert!(
            matches!(&kinds[0].body, Body::Fixed(b) if b.starts_with(br#"{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber""#))
        );
    }
}
