// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title LoadToken: a small ERC-20-like token for dagctl's load tests.
/// @notice The deployer names the holders; each starts with `amount`. Transfers, approvals and
/// allowance-based transfers work as in ERC-20. There is no owner and no minting after deployment.
/// Compiled by solc 0.8.28 (optimizer on, 200 runs, EVM london, no metadata hash, no CBOR tail) into
/// LoadToken.bin; dagctl/tests/contract.rs compiles it again with the solc npm package and compares.
contract LoadToken {
    string public constant name = "dagctl load token";
    string public constant symbol = "LOAD";
    uint8 public constant decimals = 18;

    uint256 public totalSupply;
    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);

    constructor(address[] memory holders, uint256 amount) {
        for (uint256 i = 0; i < holders.length; i++) {
            balanceOf[holders[i]] += amount;
            emit Transfer(address(0), holders[i], amount);
        }
        totalSupply = amount * holders.length;
    }

    function transfer(address to, uint256 value) external returns (bool) {
        _move(msg.sender, to, value);
        return true;
    }

    function approve(address spender, uint256 value) external returns (bool) {
        allowance[msg.sender][spender] = value;
        emit Approval(msg.sender, spender, value);
        return true;
    }

    function transferFrom(address from, address to, uint256 value) external returns (bool) {
        uint256 allowed = allowance[from][msg.sender];
        require(allowed >= value, "allowance too low");
        allowance[from][msg.sender] = allowed - value;
        _move(from, to, value);
        return true;
    }

    function _move(address from, address to, uint256 value) private {
        uint256 balance = balanceOf[from];
        require(balance >= value, "balance too low");
        balanceOf[from] = balance - value;
        balanceOf[to] += value;
        emit Transfer(from, to, value);
    }
}
