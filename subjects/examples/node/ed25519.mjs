// Ed25519 (RFC 8032, pure) from raw 32-byte seeds and public keys, with node:crypto: the
// raw bytes wrapped in the fixed DER prefixes of PKCS #8 and SubjectPublicKeyInfo.

import { createPrivateKey, createPublicKey, sign, verify } from "node:crypto";

const PKCS8_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");
const SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex");

export function ed25519FromSeed(seed) {
  if (seed.length !== 32) throw new Error("an Ed25519 seed is 32 bytes");
  const privateKey = createPrivateKey({
    key: Buffer.concat([PKCS8_PREFIX, seed]),
    format: "der",
    type: "pkcs8",
  });
  const spki = createPublicKey(privateKey).export({ format: "der", type: "spki" });
  return {
    publicKey: Buffer.from(spki.subarray(SPKI_PREFIX.length)),
    sign: (data) => sign(null, data, privateKey),
  };
}

/** Whether `signature` (64 bytes) is `publicKey`'s (32 bytes) over `data`. */
export function ed25519Verify(publicKey, data, signature) {
  if (publicKey.length !== 32 || signature.length !== 64) return false;
  const key = createPublicKey({
    key: Buffer.concat([SPKI_PREFIX, publicKey]),
    format: "der",
    type: "spki",
  });
  return verify(null, data, key, signature);
}
