//! The bundled token the contract workloads use: `chain/contracts/LoadToken.sol`, a small ERC-20-like token,
//! compiled into `LoadToken.bin` (solc 0.8.28, optimizer on, EVM london: every client dagctl runs executes
//! it). `dagctl/tests/token.rs` compiles the source again with the solc npm package and compares.
//!
//! Calls are ABI-encoded here: the three the workloads make have fixed, simple arguments.

use alloy_primitives::{keccak256, Address, Bytes, U256};

/// The creation bytecode, hex.
pub const BYTECODE_HEX: &str = include_str!("../../contracts/LoadToken.bin");

/// Gas for one `transfer` (a first credit of a new holder costs the most: about 52,000).
pub const TRANSFER_GAS: u64 = 100_000;
/// Gas for deploying a token with one holder (about 400,000).
pub const DEPLOY_GAS: u64 = 1_000_000;

/// Gas for deploying a token with `holders` holders.
pub fn deploy_gas(holders: usize) -> u64 {
    DEPLOY_GAS + 40_000 * holders as u64
}

fn selector(signature: &str) -> [u8; 4] {
    let hash = keccak256(signature.as_bytes());
    [hash[0], hash[1], hash[2], hash[3]]
}

fn word_address(address: &Address) -> [u8; 32] {
    let mut word = [0u8; 32];
    word[12..].copy_from_slice(address.as_slice());
    word
}

/// The creation code with its constructor arguments: `(address[] holders, uint256 amount)`.
pub fn deploy_data(holders: &[Address], amount: U256) -> Result<Bytes, String> {
    let code = alloy_primitives::hex::decode(BYTECODE_HEX.trim()).map_err(|e| format!("LoadToken.bin: {e}"))?;
    let mut data = code;
    // Head: the array's offset (two words of head), the amount; tail: the length, the items.
    data.extend_from_slice(&U256::from(64u64).to_be_bytes::<32>());
    data.extend_from_slice(&amount.to_be_bytes::<32>());
    data.extend_from_slice(&U256::from(holders.len()).to_be_bytes::<32>());
    for holder in holders {
        data.extend_from_slice(&word_address(holder));
    }
    Ok(data.into())
}

/// `transfer(address,uint256)`.
pub fn transfer_data(to: &Address, value: U256) -> Bytes {
    let mut data = selector("transfer(address,uint256)").to_vec();
    data.extend_from_slice(&word_address(to));
    data.extend_from_slice(&value.to_be_bytes::<32>());
    data.into()
}

/// `balanceOf(address)`.
pub fn balance_of_data(owner: &Address) -> Bytes {
    let mut data = selector("balanceOf(address)").to_vec();
    data.extend_from_slice(&word_address(owner));
    data.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_abi_encoded() {
        assert_eq!(selector("transfer(address,uint256)"), [0xa9, 0x05, 0x9c, 0xbb]);
        assert_eq!(selector("balanceOf(address)"), [0x70, 0xa0, 0x82, 0x31]);
        let to = Address::repeat_byte(0x11);
        let data = transfer_data(&to, U256::from(5u64));
        assert_eq!(data.len(), 4 + 64);
        assert_eq!(&data[16..36], to.as_slice());
        assert_eq!(data[67], 5);
        let holders = [Address::repeat_byte(1), Address::repeat_byte(2)];
        let deploy = deploy_data(&holders, U256::from(7u64)).unwrap();
        let code_len = BYTECODE_HEX.trim().len() / 2;
        assert_eq!(deploy.len(), code_len + 32 * 5);
        let args = &deploy[code_len..];
        assert_eq!(args[31], 64, "the array's offset");
        assert_eq!(args[63], 7, "the amount");
        assert_eq!(args[95], 2, "two holders");
        assert_eq!(&args[108..128], holders[0].as_slice());
    }
}
