// NATS nkeys with node:crypto: a user's seed ("SU...") decoded (base32, two prefix bytes,
// the 32-byte Ed25519 seed, CRC16 little-endian), its public key ("U...") and the
// signature of the server's nonce that CONNECT carries.

import { ed25519FromSeed } from "./ed25519.mjs";

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const PREFIX_SEED = 18 << 3; // 'S'
const PREFIX_USER = 20 << 3; // 'U'

export function base32Decode(text) {
  let bits = 0;
  let value = 0;
  const out = [];
  for (const char of text) {
    const index = ALPHABET.indexOf(char);
    if (index < 0) throw new Error(`not base32: ${JSON.stringify(char)}`);
    value = (value << 5) | index;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

export function base32Encode(bytes) {
  let bits = 0;
  let value = 0;
  let out = "";
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += ALPHABET[(value << (5 - bits)) & 31];
  return out;
}

/** CRC-16/XMODEM (polynomial 0x1021, initial value 0), as nkeys checksums its keys. */
export function crc16(bytes) {
  let crc = 0;
  for (const byte of bytes) {
    crc ^= byte << 8;
    for (let i = 0; i < 8; i++) {
      crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    }
  }
  return crc;
}

function withChecksum(bytes) {
  const crc = crc16(bytes);
  return Buffer.concat([bytes, Buffer.from([crc & 0xff, crc >> 8])]);
}

/** The user's key pair from its seed text; throws on anything that is not a user seed. */
export function nkeyFromSeed(seedText) {
  const raw = base32Decode(seedText.trim());
  if (raw.length !== 36) throw new Error("an nkey seed decodes to 36 bytes");
  const body = raw.subarray(0, 34);
  if (raw.readUInt16LE(34) !== crc16(body)) throw new Error("nkey seed checksum is wrong");
  if ((raw[0] & 0xf8) !== PREFIX_SEED) throw new Error("not an nkey seed (no 'S' prefix)");
  const kind = ((raw[0] & 0x07) << 5) | ((raw[1] & 0xf8) >> 3);
  if (kind !== PREFIX_USER) throw new Error("not a user seed ('SU...')");
  const key = ed25519FromSeed(raw.subarray(2, 34));
  const publicKey = base32Encode(withChecksum(Buffer.concat([Buffer.from([PREFIX_USER]), key.publicKey])));
  return {
    publicKey,
    /** The nonce's signature as CONNECT's `sig`: base64url without padding. */
    sign: (nonce) => key.sign(nonce).toString("base64url"),
  };
}
