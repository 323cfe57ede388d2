// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @title Anchor: a write-once record of govern access-log tree heads.
/// @notice The owner (the gateway's chain key) writes the RFC 9162 root of each signed checkpoint
///         it anchors, keyed by tree size. A root, once written for a size, can never change, so
///         the chain keeps the operator from rewriting history it has already committed to.
contract Anchor {
    address public immutable owner;

    /// Largest tree size anchored so far (0 before the first anchor).
    uint64 public latestTreeSize;

    mapping(uint64 => bytes32) private roots;

    event Anchored(uint64 indexed treeSize, bytes32 root);

    error NotOwner();
    error EmptyTree();
    error ZeroRoot();
    error RootMismatch(uint64 treeSize, bytes32 anchored);

    constructor() {
        owner = msg.sender;
    }

    /// Record `root` as the root of the tree of `treeSize` leaves. Re-anchoring the same root is
    /// a no-op (a retried transaction must not fail); a different root for an anchored size
    /// reverts with RootMismatch.
    function anchor(uint64 treeSize, bytes32 root) external {
        if (msg.sender != owner) revert NotOwner();
        if (treeSize == 0) revert EmptyTree();
        if (root == bytes32(0)) revert ZeroRoot();
        bytes32 existing = roots[treeSize];
        if (existing == root) return;
        if (existing != bytes32(0)) revert RootMismatch(treeSize, existing);
        roots[treeSize] = root;
        if (treeSize > latestTreeSize) latestTreeSize = treeSize;
        emit Anchored(treeSize, root);
    }

    /// The root anchored for `treeSize`, or zero if that size was never anchored.
    function rootAt(uint64 treeSize) external view returns (bytes32) {
        return roots[treeSize];
    }
}
