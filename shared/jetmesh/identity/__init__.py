"""Identity: Ed25519 keys, agent certificates, caller tokens, signing and verification."""
