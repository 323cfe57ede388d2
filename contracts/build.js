// Compile contracts/Anchor.sol with solc-js (the npm `solc` package, no downloaded binaries) into
// govern/ledger/anchor/build/Anchor.json: ABI, creation and runtime bytecode, compiler version.
"use strict";

const fs = require("fs");
const path = require("path");
const solc = require("solc");

const root = path.resolve(__dirname, "..");
const sourcePath = path.join(__dirname, "Anchor.sol");
const outDir = path.join(root, "govern", "ledger", "anchor", "build");

const input = {
  language: "Solidity",
  sources: { "Anchor.sol": { content: fs.readFileSync(sourcePath, "utf8") } },
  settings: {
    // Paris has no PUSH0 and no Cancun opcodes, so the same bytecode runs on py-evm, ganache
    // and any chain past the merge.
    evmVersion: "paris",
    optimizer: { enabled: true, runs: 200 },
    // No metadata hash: the bytecode then depends only on source and settings, and the runtime
    // code check in govern compares like with like.
    metadata: { bytecodeHash: "none" },
    outputSelection: {
      "*": {
        "*": [
          "abi",
          "evm.bytecode.object",
          "evm.deployedBytecode.object",
          "evm.deployedBytecode.immutableReferences",
        ],
      },
    },
  },
};

const output = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (output.errors || []).filter((e) => e.severity === "error");
for (const e of output.errors || []) {
  process.stderr.write(e.formattedMessage + "\n");
}
if (errors.length) {
  process.exit(1);
}

const contract = output.contracts["Anchor.sol"].Anchor;
const artifact = {
  contractName: "Anchor",
  compiler: { name: "solc-js", version: solc.version(), settings: input.settings },
  abi: contract.abi,
  bytecode: "0x" + contract.evm.bytecode.object,
  deployedBytecode: "0x" + contract.evm.deployedBytecode.object,
  // Byte ranges of the runtime code that the constructor fills in (the owner address): a
  // deployed contract's code equals deployedBytecode outside them.
  immutableReferences: contract.evm.deployedBytecode.immutableReferences,
};
fs.mkdirSync(outDir, { recursive: true });
fs.writeFileSync(path.join(outDir, "Anchor.json"), JSON.stringify(artifact, null, 2) + "\n");
process.stdout.write(`compiled Anchor.sol with solc ${solc.version()} -> ${path.relative(root, outDir)}/Anchor.json\n`);
