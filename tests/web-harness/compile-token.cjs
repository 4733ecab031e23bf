// Compiles chain/contracts/LoadToken.sol with the solc npm package (the compiler's own JavaScript build)
// and prints the creation bytecode as hex: the settings are those LoadToken.bin was made with.
//   node tests/web-harness/compile-token.cjs SOURCE   (NODE_PATH or DAGCTL_NODE_TOOLS/node_modules finds solc)
const fs = require("fs");
const path = require("path");
const tools = process.env.DAGCTL_NODE_TOOLS;
const solc = require(tools ? path.join(tools, "node_modules", "solc") : "solc");
const source = fs.readFileSync(process.argv[2], "utf8");
const input = {
  language: "Solidity",
  sources: { "LoadToken.sol": { content: source } },
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: "london",
    metadata: { bytecodeHash: "none", appendCBOR: false },
    outputSelection: { "*": { LoadToken: ["evm.bytecode.object", "abi"] } },
  },
};
const output = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (output.errors || []).filter((e) => e.severity === "error");
if (errors.length) {
  console.error(errors.map((e) => e.formattedMessage).join("\n"));
  process.exit(1);
}
const contract = output.contracts["LoadToken.sol"].LoadToken;
console.log(JSON.stringify({ version: solc.version(), bytecode: contract.evm.bytecode.object, abi: contract.abi }));
