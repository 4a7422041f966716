// The publishing side of the jetmesh wire contract (subjects/README.md) with node:crypto
// only: key files and key ids, ULIDs, caller tokens, delegation links, signed envelopes.

import { randomBytes } from "node:crypto";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { ed25519FromSeed } from "./ed25519.mjs";
import { b64d, b64e, sha256, signJwt } from "./encoding.mjs";

export const SCHEME_PLAIN = "ed25519";
export const SCHEME_MERKLE = "ed25519-merkle-sha256";

// -- keys -----------------------------------------------------------------------------------

export const keyId = (owner, publicKey) => `${owner}-${sha256(publicKey).toString("hex").slice(0, 16)}`;

/** A key file (`<name>.key`): the owner's name, then the 32-byte seed in base64url. */
export function loadIdentityKey(path) {
  const [owner, seedText, ...rest] = readFileSync(path, "utf8").split(/\s+/).filter(Boolean);
  const seed = b64d(seedText ?? "");
  if (!owner || rest.length || !seed || seed.length !== 32) {
    throw new Error(`${path} is not a key file (owner, then a base64url 32-byte seed)`);
  }
  return identityFromSeed(owner, seed);
}

export function identityFromSeed(owner, seed) {
  const key = ed25519FromSeed(seed);
  return { owner, publicKey: key.publicKey, kid: keyId(owner, key.publicKey), sign: key.sign };
}

/** Trusted roots from a directory of `<kid>.pub` files (owner, then base64url public key). */
export function loadRoots(directory) {
  const roots = {};
  for (const name of readdirSync(directory)) {
    if (!name.endsWith(".pub")) continue;
    const [, keyText] = readFileSync(join(directory, name), "utf8").split(/\s+/).filter(Boolean);
    const key = b64d(keyText ?? "");
    if (key && key.length === 32) roots[name.slice(0, -4)] = key;
  }
  if (!Object.keys(roots).length) throw new Error(`no trusted root key in ${directory}`);
  return roots;
}
// -- ids ------------------------------------------------------------------------------------

const CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/** A ULID: 48 bits of milliseconds, 80 random bits, Crockford base32. */
export function ulid(ms = Date.now()) {
  const bytes = Buffer.concat([Buffer.alloc(6), randomBytes(10)]);
  bytes.writeUIntBE(ms, 0, 6);
  let value = BigInt("0x" + bytes.toString("hex"));
  let out = "";
  for (let i = 0; i < 26; i++) {
    out = CROCKFORD[Number(value & 31n)] + out;
    value >>= 5n;
  }
  return out;
}

/** The 128 bits of a ULID, as 32 hex digits (the workflow's trace id). */
export function ulidHex(id) {
  let value = 0n;
  for (const c of id) value = (value << 5n) | BigInt(CROCKFORD.indexOf(c));
  return value.toString(16).padStart(32, "0");
}
// -- tokens and links -----------------------------------------------------------------------

/** A caller token, minted by an ingress identity. */
export function mintToken(identity, { subject, tenant = "", scopes = [], ttlS = 3600, now = Date.now() / 1000 }) {
  const iat = Math.floor(now);
  const claims = {
    iss: identity.owner,
    sub: subject,
    tenant,
    scopes: [...new Set(scopes)].sort(),
    iat,
    nbf: iat,
    exp: iat + ttlS,
    jti: ulid(),
  };
  return signJwt(identity, { alg: "EdDSA", kid: identity.kid, typ: "JWT" }, claims);
}

/** A delegation link: `after` is the caller token (link 0) or the link before. */
export function mintLink(identity, after, { to, workflow, step, scopes, expires, now = Date.now() / 1000 }) {
  const claims = {
    iss: identity.owner,
    to,
    wf: workflow,
    step,
    scopes: [...new Set(scopes)].sort(),
    iat: Math.floor(now),
    exp: expires,
    prev: b64e(sha256(Buffer.from(after, "ascii"))),
  };
  return signJwt(identity, { alg: "EdDSA", kid: identity.kid, typ: "mesh-delegation+jwt" }, claims);
}
// -- envelopes ------------------------------------------------------------------------------

export class Subjects {
  constructor(prefix = "mesh") {
    this.prefix = prefix;
  }
  task(agent) {
    return `${this.prefix}.agent.${agent}.task`;
  }
  reply(agent, instance) {
    return `${this.prefix}.agent.${agent}.reply.${instance}`;
  }
  events(workflow) {
    return `${this.prefix}.event.${workflow}.>`;
  }
}

/** The bytes to publish and their headers: `Mesh-Sig` over exactly these bytes. */
export function seal(identity, envelope) {
  const data = Buffer.from(JSON.stringify(envelope), "utf8");
  const headers = {
    "Mesh-Sig-Scheme": SCHEME_PLAIN,
    "Mesh-Key": identity.kid,
    "Mesh-Sig": b64e(identity.sign(data)),
    "Nats-Msg-Id": envelope.id,
    traceparent: `00-${ulidHex(envelope.workflow)}-${randomBytes(8).toString("hex")}-01`,
  };
  return { data, headers };
}
