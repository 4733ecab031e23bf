//! `low_fee_spam`: the lowest-fee transfers at the targets, and normal-fee probes from the funder that must
//! still be included.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::{load, load_figures, SpamSpec};
use crate::backend::local::rpc::call;
use crate::chaos::verdict::Criterion;

pub(super) async fn run(
    spam: &SpamSpec,
    nodes: &[(String, String)],
    cancel: &CancellationToken,
    progress: crate::backend::Progress<'_>,
) -> Result<(Value, Vec<Criterion>), String> {
    let key = spam
        .funder_key
        .as_deref()
        .ok_or("low_fee_spam needs a funded key (`funder_key`)")?;
    let funder = crate::load::spec::parse_key(key).map_err(|e| format!("low_fee_spam.funder_key: {e}"))?;
    let url = nodes.first().map(|(_, u)| u.clone()).ok_or("no node to spam")?;
    progress(&format!(
        "low_fee_spam: {:.0} lowest-fee transfers/s for {:?}, a normal-fee probe every 2 s",
        spam.rate, spam.duration.0
    ));
    let spam_cancel = cancel.child_token();
    let flood = load(
        json!({"rate": spam.rate, "duration": format!("{}ms", spam.duration.0.as_millis()),
            "workload": {"transfer_low_fee": 1}, "funder_key": key, "senders": 32,
            "timeout": "5s", "settle": "5s"}),
        nodes,
        &spam_cancel,
    );
    let probes = probe(&funder, &url, spam.duration.0, cancel);
    let (flood, probes) = futures_util::future::join(flood, probes).await;
    let flood = flood?;
    let probes = probes?;
    let max = spam.max_inclusion.map(|d| d.0).unwrap_or(Duration::from_secs(30));
    let included: Vec<f64> = probes.iter().filter_map(|p| p.1).collect();
    let worst = included
        .iter()
        .cloned()
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    let passed = !probes.is_empty() && included.len() == probes.len() && worst.is_some_and(|w| w <= max.as_secs_f64());
    let criteria = vec![Criterion {
        name: "normal_fee_transfers_included".into(),
        passed,
        detail: format!(
            "{} of {} normal-fee transfers sent during the spam were included, the slowest in {} (at most {:?})",
            included.len(),
            probes.len(),
            worst.map_or("-".into(), |w| format!("{w:.1} s")),
            max
        ),
        value: json!({"sent": probes.len(), "included": included.len(), "worst_seconds": worst}),
    }];
    let tx = flood.tx.as_ref().map(|t| serde_json::to_value(t).unwrap_or_default());
    Ok((
        json!({"spam": load_figures(&flood), "spam_transactions": tx, "probes": probes}),
        criteria,
    ))
}

/// Normal-fee transfers from the funder to itself, one every 2 s for `long` (from 5 s in, once the spam's
/// senders are funded), each followed into a block: (hash, seconds to inclusion).
async fn probe(
    funder: &alloy_primitives::B256,
    url: &str,
    long: Duration,
    cancel: &CancellationToken,
) -> Result<Vec<(String, Option<f64>)>, String> {
    use alloy_signer_local::PrivateKeySigner;
    let key = PrivateKeySigner::from_bytes(funder).map_err(|e| e.to_string())?;
    let rpc = |method: &'static str, params: Value| async move {
        call(url, method, params, Duration::from_secs(5))
            .await
            .map_err(|e| e.to_string())
    };
    let quantity = |v: &Value| crate::backend::local::rpc::quantity(v).map(u128::from);
    tokio::select! {
        _ = cancel.cancelled() => return Ok(Vec::new()),
        _ = tokio::time::sleep(Duration::from_secs(5).min(long)) => {}
    }
    let chain_id = quantity(&rpc("eth_chainId", json!([])).await?).ok_or("bad eth_chainId")? as u64;
    let gas_price = rpc("eth_gasPrice", json!([]))
        .await
        .ok()
        .and_then(|v| {
            v.as_str()
                .and_then(|s| u128::from_str_radix(s.trim_start_matches("0x"), 16).ok())
        })
        .unwrap_or(0);
    let head = rpc("eth_getBlockByNumber", json!(["latest", false])).await?;
    let base = head["baseFeePerGas"]
        .as_str()
        .and_then(|s| u128::from_str_radix(s.trim_start_matches("0x"), 16).ok());
    let (fees, _) = crate::load::senders::Fees::of_node(chain_id, gas_price, base);
    let mut nonce =
        quantity(&rpc("eth_getTransactionCount", json!([key.address(), "pending"])).await?).ok_or("bad nonce")? as u64;
    // Send one every 2 s while the spam lasts, and follow every one sent into a block (polled every 500 ms,
    // so an inclusion time is at most half a second late), for at most 60 s after the last.
    let mut sent: Vec<(String, Instant, Option<f64>)> = Vec::new();
    let sending_until = Instant::now() + long.saturating_sub(Duration::from_secs(5));
    let mut next_send = Instant::now();
    let mut deadline = sending_until + Duration::from_secs(60);
    while Instant::now() < deadline && !cancel.is_cancelled() {
        let now = Instant::now();
        if now < sending_until && now >= next_send && sent.len() < 100 {
            next_send = now + Duration::from_secs(2);
            let signed = crate::load::senders::sign_transfer(
                &key,
                &fees,
                false,
                nonce,
                key.address(),
                alloy_primitives::U256::from(1u64),
            )?;
            if rpc("eth_sendRawTransaction", json!([signed.raw_hex])).await.is_ok() {
                sent.push((format!("{:#x}", signed.hash), Instant::now(), None));
                nonce += 1;
            }
        }
        for (hash, at, included) in sent.iter_mut().filter(|s| s.2.is_none()) {
            if let Ok(receipt) = rpc("eth_getTransactionReceipt", json!([hash.clone()])).await {
                if receipt.get("blockNumber").is_some_and(|b| !b.is_null()) {
                    *included = Some(at.elapsed().as_secs_f64());
                }
            }
        }
        if Instant::now() >= sending_until && sent.iter().all(|s| s.2.is_some()) {
            break;
        }
        if Instant::now() >= sending_until && sent.is_empty() {
            deadline = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(sent.into_iter().map(|(h, _, i)| (h, i)).collect())
}
