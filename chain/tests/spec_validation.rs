//! Spec parsing and validation: every bad input is rejected with a precise message.

use std::time::Duration;

use chain::{Client, Consensus, Error, NetworkSpec, Role};

fn parse(json: &str) -> Result<NetworkSpec, String> {
    serde_json::from_str(json).map_err(|e| e.to_string())
}

fn validate(json: &str) -> String {
    let spec = parse(json).expect("spec parses");
    spec.validate().expect_err("spec must be rejected").to_string()
}

#[test]
fn minimal_spec_gets_documented_defaults() {
    let spec = parse(r#"{"name":"net","client":"geth","consensus":"clique","nodes":4}"#).unwrap();
    let settings = spec.settings().unwrap();
    assert_eq!(settings.block_time, Some(Duration::from_secs(5)));
    assert_eq!(settings.epoch, Some(30_000));
    assert_eq!(settings.request_timeout, None);
    assert_eq!(settings.gas_limit, 30_000_000);
    assert_eq!(settings.chain_id, 1337);
    assert_eq!(settings.version, "1.13.15");
    assert_eq!(settings.regions.len(), 1);
    assert_eq!(settings.regions[0].name, "local");
}

#[test]
fn block_time_accepts_numbers_and_unit_strings() {
    let cases = [
        (r#"2"#, Duration::from_secs(2)),
        (r#""2s""#, Duration::from_secs(2)),
        (r#""500ms""#, Duration::from_millis(500)),
        (r#"0.25"#, Duration::from_millis(250)),
    ];
    for (text, expected) in cases {
        let json = format!(r#"{{"name":"r","client":"quorum","consensus":"raft","nodes":3,"block_time":{text}}}"#);
        let spec = parse(&json).unwrap();
        assert_eq!(spec.settings().unwrap().block_time, Some(expected), "{text}");
    }
}

#[test]
fn impossible_client_consensus_pairs_list_the_legal_ones() {
    assert_eq!(
        validate(r#"{"name":"n","client":"geth","consensus":"ibft","nodes":4}"#),
        "consensus `ibft` is not supported by client `geth`; supported: clique"
    );
    assert_eq!(
        validate(r#"{"name":"n","client":"besu","consensus":"ibft","nodes":4}"#),
        "consensus `ibft` is not supported by client `besu`; supported: ibft2, qbft, clique"
    );
    assert_eq!(
        validate(r#"{"name":"n","client":"quorum","consensus":"aura","nodes":4}"#),
        "consensus `aura` is not supported by client `quorum`; supported: ibft, qbft, raft, clique"
    );
    assert_eq!(
        validate(r#"{"name":"n","client":"openethereum","consensus":"qbft","nodes":4}"#),
        "consensus `qbft` is not supported by client `openethereum`; supported: aura, clique"
    );
    assert_eq!(
        validate(r#"{"name":"n","client":"anvil","consensus":"clique","nodes":1}"#),
        "consensus `clique` is not supported by client `anvil`; supported: interval, instant"
    );
}

#[test]
fn every_supported_pair_validates() {
    for client in Client::ALL {
        for consensus in client.supported_consensus() {
            let spec = NetworkSpec::new("ok", client, *consensus, 2);
            spec.validate().unwrap_or_else(|e| panic!("{client} {consensus}: {e}"));
        }
    }
}

#[test]
fn unknown_client_consensus_and_fields_fail_to_parse() {
    let unknown_client = parse(r#"{"name":"n","client":"nethermind","consensus":"aura","nodes":1}"#).unwrap_err();
    assert!(
        unknown_client.contains("unknown variant `nethermind`"),
        "{unknown_client}"
    );
    assert!(unknown_client.contains("`geth`"), "{unknown_client}");
    let unknown_consensus = parse(r#"{"name":"n","client":"geth","consensus":"pow","nodes":1}"#).unwrap_err();
    assert!(
        unknown_consensus.contains("unknown variant `pow`"),
        "{unknown_consensus}"
    );
    let unknown_field = parse(r#"{"name":"n","client":"geth","consensus":"clique","nodes":1,"period":5}"#).unwrap_err();
    assert!(unknown_field.contains("unknown field `period`"), "{unknown_field}");
}

#[test]
fn aliases_of_renamed_clients_are_accepted() {
    let parity = parse(r#"{"name":"n","client":"parity","consensus":"aura","nodes":1}"#).unwrap();
    assert_eq!(parity.client, Client::Openethereum);
    let pantheon = parse(r#"{"name":"n","client":"pantheon","consensus":"ibft2","nodes":1}"#).unwrap();
    assert_eq!(pantheon.client, Client::Besu);
}

#[test]
fn zero_nodes_is_rejected() {
    assert_eq!(
        validate(r#"{"name":"n","client":"geth","consensus":"clique","nodes":0}"#),
        "invalid `nodes`: must be at least 1"
    );
    let negative = parse(r#"{"name":"n","client":"geth","consensus":"clique","nodes":-1}"#).unwrap_err();
    assert!(negative.contains("invalid value: integer `-1`"), "{negative}");
}

#[test]
fn too_many_nodes_is_rejected() {
    assert_eq!(
        validate(r#"{"name":"n","client":"besu","consensus":"qbft","nodes":100,"members":29}"#),
        "invalid `nodes`: nodes + members is 129; at most 128 are supported"
    );
}

#[test]
fn negative_and_zero_block_times_are_rejected() {
    let negative = parse(r#"{"name":"n","client":"geth","consensus":"clique","nodes":1,"block_time":-1}"#).unwrap_err();
    assert!(
        negative.contains("invalid duration `-1`: must not be negative"),
        "{negative}"
    );
    let negative_str =
        parse(r#"{"name":"n","client":"geth","consensus":"clique","nodes":1,"block_time":"-2s"}"#).unwrap_err();
    assert!(negative_str.contains("must not be negative"), "{negative_str}");
    assert_eq!(
        validate(r#"{"name":"n","client":"geth","consensus":"clique","nodes":1,"block_time":0}"#),
        "invalid `block_time`: must be greater than zero"
    );
    assert_eq!(
        validate(r#"{"name":"n","client":"quorum","consensus":"raft","nodes":1,"block_time":"0ms"}"#),
        "invalid `block_time`: must be greater than zero"
    );
}

#[test]
fn sub_second_block_times_are_rejected_where_clients_read_seconds() {
    assert_eq!(
        validate(r#"{"name":"n","client":"besu","consensus":"qbft","nodes":4,"block_time":"1500ms"}"#),
        "block_time 1.5s cannot be used with besu qbft: the client reads block time in whole seconds"
    );
    // Raft and anvil accept milliseconds.
    parse(r#"{"name":"n","client":"quorum","consensus":"raft","nodes":3,"block_time":"250ms"}"#)
        .unwrap()
        .validate()
        .unwrap();
    parse(r#"{"name":"n","client":"anvil","consensus":"interval","nodes":1,"block_time":"500ms"}"#)
        .unwrap()
        .validate()
        .unwrap();
}

#[test]
fn fields_that_a_pair_ignores_are_rejected() {
    assert_eq!(
        validate(r#"{"name":"n","client":"anvil","consensus":"instant","nodes":1,"block_time":1}"#),
        "`block_time` has no effect with anvil instant; `instant` mines a block for every transaction; use consensus `interval` for a block time"
    );
    assert_eq!(
        validate(r#"{"name":"n","client":"quorum","consensus":"raft","nodes":3,"epoch":100}"#),
        "`epoch` has no effect with quorum raft; epoch applies to clique, ibft, qbft and ibft2"
    );
    assert_eq!(
        validate(r#"{"name":"n","client":"geth","consensus":"clique","nodes":1,"request_timeout":"4s"}"#),
        "`request_timeout` has no effect with geth clique; request_timeout applies to ibft, qbft and ibft2"
    );
    assert_eq!(
        validate(r#"{"name":"n","client":"quorum","consensus":"raft","nodes":3,"members":1}"#),
        "invalid `members`: raft has no non-voting members at genesis: every node is a raft peer, so count them in `nodes`"
    );
    assert_eq!(
        validate(r#"{"name":"n","client":"anvil","consensus":"interval","nodes":1,"members":1}"#),
        "invalid `members`: anvil nodes are standalone chains with no peers: count them in `nodes`"
    );
}

#[test]
fn epoch_and_request_timeout_bounds() {
    assert_eq!(
        validate(r#"{"name":"n","client":"geth","consensus":"clique","nodes":1,"epoch":0}"#),
        "invalid `epoch`: must be greater than zero"
    );
    assert_eq!(
        validate(r#"{"name":"n","client":"besu","consensus":"ibft2","nodes":4,"request_timeout":0}"#),
        "invalid `request_timeout`: must be greater than zero"
    );
    assert_eq!(
        validate(r#"{"name":"n","client":"besu","consensus":"ibft2","nodes":4,"request_timeout":"2500ms"}"#),
        "invalid `request_timeout`: 2.5s is not a whole number of seconds; besu ibft2 reads requesttimeoutseconds"
    );
    // Default: twice the block time, at least 10 s.
    let slow = parse(r#"{"name":"n","client":"besu","consensus":"qbft","nodes":4,"block_time":8}"#).unwrap();
    assert_eq!(slow.settings().unwrap().request_timeout, Some(Duration::from_secs(16)));
    let fast = parse(r#"{"name":"n","client":"besu","consensus":"qbft","nodes":4,"block_time":2}"#).unwrap();
    assert_eq!(fast.settings().unwrap().request_timeout, Some(Duration::from_secs(10)));
}

#[test]
fn gas_limit_out_of_range_is_rejected() {
    for bad in ["0", "4999", "9223372036854775808"] {
        let json = format!(r#"{{"name":"n","client":"geth","consensus":"clique","nodes":1,"gas_limit":{bad}}}"#);
        assert_eq!(
            validate(&json),
            format!("invalid `gas_limit`: {bad} is out of range 5000..=9223372036854775807")
        );
    }
    for good in ["5000", "9223372036854775807"] {
        let json = format!(r#"{{"name":"n","client":"geth","consensus":"clique","nodes":1,"gas_limit":{good}}}"#);
        parse(&json).unwrap().validate().unwrap();
    }
    let negative = parse(r#"{"name":"n","client":"geth","consensus":"clique","nodes":1,"gas_limit":-5}"#).unwrap_err();
    assert!(negative.contains("invalid value: integer `-5`"), "{negative}");
}

#[test]
fn chain_id_and_name_are_checked() {
    assert_eq!(
        validate(r#"{"name":"n","client":"geth","consensus":"clique","nodes":1,"chain_id":0}"#),
        "invalid `chain_id`: must be greater than zero"
    );
    assert_eq!(
        validate(r#"{"name":"Bad Name","client":"geth","consensus":"clique","nodes":1}"#),
        "invalid `name`: `Bad Name` must be 1 to 63 lowercase letters, digits or '-', not starting or ending with '-'"
    );
}

#[test]
fn version_pins_respect_chains_md_section_0() {
    assert_eq!(
        validate(r#"{"name":"n","client":"geth","consensus":"clique","nodes":1,"version":"1.14.0"}"#),
        "geth version `1.14.0` cannot run clique: geth 1.14 and later cannot seal Clique blocks (go-ethereum#29249); pin 1.13.x, e.g. 1.13.15"
    );
    assert_eq!(
        validate(r#"{"name":"n","client":"besu","consensus":"clique","nodes":1,"version":"25.12.0"}"#),
        "besu version `25.12.0` cannot run clique: Besu 25.12.0 and later cannot create or validate Clique networks (besu-docs clique.md); pin an earlier release, e.g. 23.4.1"
    );
    assert_eq!(
        validate(r#"{"name":"n","client":"openethereum","consensus":"aura","nodes":1,"version":"3.4.0"}"#),
        "openethereum version `3.4.0` cannot run aura: OpenEthereum's last release is 3.3.5"
    );
    assert_eq!(
        validate(r#"{"name":"n","client":"geth","consensus":"clique","nodes":1,"version":"latest"}"#),
        "invalid `version`: `latest` is not a version like 1.13.15"
    );
    // Besu 25.12 is fine for QBFT; geth v-prefixed 1.13 pins are fine.
    parse(r#"{"name":"n","client":"besu","consensus":"qbft","nodes":1,"version":"25.12.0"}"#)
        .unwrap()
        .validate()
        .unwrap();
    parse(r#"{"name":"n","client":"geth","consensus":"clique","nodes":1,"version":"v1.13.14"}"#)
        .unwrap()
        .validate()
        .unwrap();
    for client in Client::ALL {
        let consensus = client.supported_consensus()[0];
        let spec = NetworkSpec::new("d", client, consensus, 1);
        assert_eq!(spec.settings().unwrap().version, client.default_version());
    }
}

#[test]
fn accounts_must_be_unique_and_well_formed() {
    let dup = r#"{"name":"n","client":"geth","consensus":"clique","nodes":1,"accounts":[
        {"address":"0xfe3b557e8fb62b89f4916b721be55ceb828dbd73","balance":"1"},
        {"address":"0xFE3B557E8Fb62b89F4916B721be55cEb828dBd73","balance":"0x2"}]}"#;
    assert_eq!(
        validate(dup),
        "invalid `accounts`: address 0xFE3B557E8Fb62b89F4916B721be55cEb828dBd73 is listed twice"
    );
    let bad_balance = parse(
        r#"{"name":"n","client":"geth","consensus":"clique","nodes":1,"accounts":[{"address":"0xfe3b557e8fb62b89f4916b721be55ceb828dbd73","balance":"lots"}]}"#,
    )
    .unwrap_err();
    assert!(bad_balance.contains("invalid balance `lots`"), "{bad_balance}");
    let spec = parse(
        r#"{"name":"n","client":"geth","consensus":"clique","nodes":1,"accounts":[{"address":"0xfe3b557e8fb62b89f4916b721be55ceb828dbd73","balance":"90000000000000000000000"},{"address":"0x627306090abaB3A6e1400e9345bC60c78a8BEf57","balance":"0x130EE8E7179044400000"}]}"#,
    )
    .unwrap();
    spec.validate().unwrap();
    assert_eq!(spec.accounts[1].balance.to_string(), "90000000000000000000000");
}

#[test]
fn nodes_are_spread_over_regions_round_robin() {
    let spec = parse(
        r#"{"name":"n","client":"geth","consensus":"clique","nodes":4,"members":1,
            "regions":["eu", {"name":"us","context":"kind-us"}]}"#,
    )
    .unwrap();
    let layout = spec.layout().unwrap();
    let placed: Vec<(&str, Role, &str)> = layout
        .iter()
        .map(|s| (s.name.as_str(), s.role, s.region.as_str()))
        .collect();
    assert_eq!(
        placed,
        vec![
            ("validator-1", Role::Validator, "eu"),
            ("validator-2", Role::Validator, "us"),
            ("validator-3", Role::Validator, "eu"),
            ("validator-4", Role::Validator, "us"),
            ("member-1", Role::Member, "eu"),
        ]
    );
    assert_eq!(spec.regions[1].context.as_deref(), Some("kind-us"));
}

#[test]
fn placement_overrides_and_unknown_regions() {
    let spec = parse(
        r#"{"name":"n","client":"besu","consensus":"qbft","nodes":2,"regions":["eu","us"],
            "placement":{"validator-1":"us"}}"#,
    )
    .unwrap();
    let layout = spec.layout().unwrap();
    assert_eq!(layout[0].region, "us");
    assert_eq!(layout[1].region, "us");

    assert_eq!(
        validate(
            r#"{"name":"n","client":"besu","consensus":"qbft","nodes":2,"regions":["eu","us"],
                "placement":{"validator-2":"asia"}}"#
        ),
        "node `validator-2` is placed in unknown region `asia`; regions: eu, us"
    );
    assert_eq!(
        validate(r#"{"name":"n","client":"besu","consensus":"qbft","nodes":2,"placement":{"validator-9":"local"}}"#),
        "placement names unknown node `validator-9`; nodes: validator-1, validator-2"
    );
    assert_eq!(
        validate(r#"{"name":"n","client":"besu","consensus":"qbft","nodes":2,"regions":["eu","eu"]}"#),
        "invalid `regions`: region `eu` is declared twice"
    );
}

#[test]
fn anvil_nodes_are_standalone() {
    let spec = NetworkSpec::new("a", Client::Anvil, Consensus::Interval, 2);
    let layout = spec.layout().unwrap();
    assert_eq!(layout[0].name, "node-1");
    assert_eq!(layout[0].role, Role::Standalone);
    let instant = NetworkSpec::new("a", Client::Anvil, Consensus::Instant, 1);
    assert_eq!(instant.settings().unwrap().block_time, None);
}

#[test]
fn spec_round_trips_through_json() {
    let json = r#"{"name":"rt","client":"quorum","consensus":"qbft","nodes":4,"members":1,
        "block_time":"2s","epoch":100,"request_timeout":6,"gas_limit":20000000,"chain_id":99,
        "accounts":[{"address":"0xfe3b557e8fb62b89f4916b721be55ceb828dbd73","balance":"0x10"}],
        "version":"24.4.1","regions":["a","b"],"placement":{"member-1":"a"},"key_seed":"s"}"#;
    let spec = parse(json).unwrap();
    let text = serde_json::to_string(&spec).unwrap();
    let again: NetworkSpec = serde_json::from_str(&text).unwrap();
    assert_eq!(again, spec);
    assert!(matches!(spec.validate(), Ok(())));
}

#[test]
fn errors_are_one_enum() {
    let spec = NetworkSpec::new("n", Client::Geth, Consensus::Raft, 1);
    assert!(matches!(
        spec.validate(),
        Err(Error::UnsupportedConsensus {
            client: Client::Geth,
            consensus: Consensus::Raft,
            ..
        })
    ));
}
