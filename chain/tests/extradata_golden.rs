//! Our extraData equals known-good genesis files byte for byte (tests/golden/extradata.json
//! cites each source), and decodes back to the same validator list.

use chain::extradata::{decode_validators, encode, ExtraDataFormat};
use chain::Address;
use proptest::prelude::*;
use serde::Deserialize;

#[derive(Deserialize)]
struct GoldenFile {
    cases: Vec<GoldenCase>,
}

#[derive(Deserialize)]
struct GoldenCase {
    name: String,
    source: String,
    format: String,
    validators: Vec<Address>,
    #[serde(rename = "extraData")]
    extra_data: String,
}

fn format_named(name: &str) -> ExtraDataFormat {
    match name {
        "clique" => ExtraDataFormat::Clique,
        "quorum-ibft" => ExtraDataFormat::QuorumIbft,
        "qbft" => ExtraDataFormat::Qbft,
        "besu-ibft2" => ExtraDataFormat::BesuIbft2,
        other => panic!("unknown format {other} in golden file"),
    }
}

fn golden_cases() -> Vec<GoldenCase> {
    let text = include_str!("golden/extradata.json");
    let file: GoldenFile = serde_json::from_str(text).expect("golden file parses");
    assert!(file.cases.len() >= 9, "golden cases went missing");
    file.cases
}

#[test]
fn encoding_matches_every_golden_case_byte_for_byte() {
    for case in golden_cases() {
        let format = format_named(&case.format);
        let ours = encode(format, &case.validators);
        let theirs =
            chain::Bytes::from(alloy_hex(&case.extra_data).unwrap_or_else(|| panic!("{}: bad hex", case.name)));
        assert_eq!(
            ours, theirs,
            "{} ({}): extraData differs from {}",
            case.name, case.format, case.source
        );
    }
}

#[test]
fn golden_extra_data_decodes_to_its_validators() {
    for case in golden_cases() {
        let format = format_named(&case.format);
        let bytes = alloy_hex(&case.extra_data).expect("hex");
        let decoded = decode_validators(format, &bytes).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(decoded, case.validators, "{}", case.name);
    }
}

fn alloy_hex(text: &str) -> Option<Vec<u8>> {
    let digits = text.strip_prefix("0x")?;
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(digits.get(i..i + 2)?, 16).ok())
        .collect()
}

fn any_format() -> impl Strategy<Value = ExtraDataFormat> {
    prop_oneof![
        Just(ExtraDataFormat::Clique),
        Just(ExtraDataFormat::QuorumIbft),
        Just(ExtraDataFormat::Qbft),
        Just(ExtraDataFormat::BesuIbft2),
    ]
}

proptest! {
    #[test]
    fn any_validator_set_round_trips(
        format in any_format(),
        raw in prop::collection::vec(any::<[u8; 20]>(), 0..40),
    ) {
        let validators: Vec<Address> = raw.iter().map(|b| Address::from(*b)).collect();
        let encoded = encode(format, &validators);
        prop_assert_eq!(decode_validators(format, &encoded).unwrap(), validators);
    }

    #[test]
    fn decoding_random_bytes_never_panics(
        format in any_format(),
        bytes in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let _ = decode_validators(format, &bytes);
    }
}
