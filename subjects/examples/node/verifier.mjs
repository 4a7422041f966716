// What every receiver checks (subjects/README.md, "Checks every receiver makes" and the
// delegation chain's checks), in order, each failure a refusal with its reason code: for
// replies and events a publisher reads, and for the conformance vectors.

import { ed25519Verify } from "./ed25519.mjs";
import { b64d, b64e, isObject, parseStrictJson, readJwt, sha256 } from "./encoding.mjs";
import { SCHEME_MERKLE, SCHEME_PLAIN, Subjects, keyId } from "./mesh.mjs";

export const KINDS = ["task", "reply", "error", "event"];
export const DEFAULT_LIMITS = {
  max_payload_bytes: 256 * 1024,
  max_age_s: 110,
  clock_skew_s: 5,
  leeway_s: 5,
  max_call_depth: 8,
  max_header_bytes: 8 * 1024,
};
const TOKEN_RE = /^[A-Za-z0-9_-]{1,64}$/;
const KEY_ID_RE = /^[A-Za-z0-9_-]{1,64}-[0-9a-f]{16}$/;
const STEP_RE = /^[A-Za-z0-9_\-./]{1,1024}$/;
const MERKLE_PREFIX = Buffer.from("jetmesh/merkle/v1\0", "latin1");

/** A refusal: `reason` is one of the `rejected` event's codes. */
export class Refused extends Error {
  constructor(reason, detail) {
    super(`${reason}: ${detail}`);
    this.reason = reason;
    this.detail = detail;
  }
}

const timeOk = (claims, now, leeway) =>
  typeof claims.exp === "number" &&
  claims.exp + leeway >= now &&
  (claims.nbf === undefined || (typeof claims.nbf === "number" && claims.nbf - leeway <= now));

/** A certificate verified against `roots` (untrusted-certificate, expired-key). */
export function verifyCertificate(text, roots, now, leeway, expectedKid) {
  const jwt = readJwt(text);
  if (!jwt) throw new Refused("untrusted-certificate", "not a compact JWS");
  const { header, claims } = jwt;
  const root = roots[header.kid];
  if (header.alg !== "EdDSA" || header.typ !== "jetmesh-cert+jwt" || !root) {
    throw new Refused("untrusted-certificate", `not signed by a trusted root (${header.kid})`);
  }
  if (!ed25519Verify(root, jwt.input, jwt.signature)) {
    throw new Refused("untrusted-certificate", "root signature does not verify");
  }
  const pub = b64d(claims.pub);
  const present = typeof claims.iss === "string" && typeof claims.iat === "number";
  if (!present || typeof claims.sub !== "string" || !pub || pub.length !== 32 || claims.kid !== keyId(claims.sub, pub)) {
    throw new Refused("untrusted-certificate", "certificate claims are not a key's");
  }
  if (expectedKid !== undefined && claims.kid !== expectedKid) {
    throw new Refused("untrusted-certificate", `certificate is for ${claims.kid}, not ${expectedKid}`);
  }
  if (!timeOk(claims, now, leeway)) throw new Refused("expired-key", `${claims.kid} is out of date`);
  return {
    kid: claims.kid,
    sub: claims.sub,
    publicKey: pub,
    publish: Array.isArray(claims.publish) ? claims.publish : [],
    subscribe: Array.isArray(claims.subscribe) ? claims.subscribe : [],
    scopes: Array.isArray(claims.scopes) ? claims.scopes : [],
    ingress: claims.ingress === true,
  };
}


// -- receiving ------------------------------------------------------------------------------

/** Whether NATS `pattern` (with `*` and `>`) matches `subject`. */
export function subjectMatches(pattern, subject) {
  const p = pattern.split(".");
  const s = subject.split(".");
  for (let i = 0; i < p.length; i++) {
    if (p[i] === ">") return i < s.length;
    if (i >= s.length || (p[i] !== "*" && p[i] !== s[i])) return false;
  }
  return p.length === s.length;
}

/** The Merkle root a `Mesh-Sig-Path` (`<index>/<count>/<path>`) leads to, or null. */
export function merkleRoot(data, pathHeader) {
  const m = /^(\d+)\/(\d+)\/([A-Za-z0-9_-]*)$/.exec(pathHeader ?? "");
  if (!m) return null;
  let index = Number(m[1]);
  let count = Number(m[2]);
  const path = b64d(m[3]);
  if (!path || path.length % 32 || index >= count) return null;
  const siblings = [];
  for (let i = 0; i < path.length; i += 32) siblings.push(path.subarray(i, i + 32));
  let node = sha256(Buffer.from([0]), data);
  let used = 0;
  while (count > 1) {
    if (index % 2 === 1) {
      if (used >= siblings.length) return null;
      node = sha256(Buffer.from([1]), siblings[used++], node);
    } else if (index + 1 < count) {
      if (used >= siblings.length) return null;
      node = sha256(Buffer.from([1]), node, siblings[used++]);
    }
    index = Math.floor(index / 2);
    count = Math.floor((count + 1) / 2);
  }
  return used === siblings.length ? node : null;
}

/**
 * What a receiver reads certificates and revocations through: `certificate(kid)` and
 * `revocation(kid)` (async, the text stored under `<kid>` and `revoked.<kid>` in the
 * registry bucket, or null), the trusted `roots`, the `limits`.
 */
export class Verifier {
  constructor({ roots, certificate, revocation = async () => null, prefix = "mesh", limits = {}, seen = null }) {
    this.roots = roots;
    this.lookup = certificate;
    this.revocation = revocation;
    this.subjects = new Subjects(prefix);
    this.limits = { ...DEFAULT_LIMITS, ...limits };
    this.seen = seen;
  }

  /** The verified certificate of `kid` (unknown-key, untrusted-certificate, expired-key, revoked-key). */
  async certificate(kid, now) {
    if (typeof kid !== "string" || !KEY_ID_RE.test(kid)) throw new Refused("unknown-key", `not a key id: ${kid}`);
    const text = await this.lookup(kid);
    if (!text) throw new Refused("unknown-key", `no certificate for ${kid}`);
    const cert = verifyCertificate(text, this.roots, now, this.limits.leeway_s, kid);
    const record = await this.revocation(kid);
    if (record !== null) {
      // revoked from `at` on; a record that cannot be read revokes the key at any time
      let at = 0;
      try {
        const parsed = parseStrictJson(record);
        at = typeof parsed?.at === "number" ? parsed.at : 0;
      } catch {
        at = 0;
      }
      if (now >= at) throw new Refused("revoked-key", `${kid} is revoked`);
    }
    return cert;
  }

  /**
   * Run every check of "Checks every receiver makes" on one received message; returns
   * `{ envelope, certificate, token, chain }` or throws Refused with the first failure.
   * `storedAt` is the stream's storage time (JetStream) or the receiving time; `call`, on
   * a reply, the call it must answer (`id`, `to`, `workflow`, `step` of the task sent).
   */
  async verify(subject, data, headers, { now = Date.now() / 1000, storedAt = now, core = false, call = null } = {}) {
    const L = this.limits;
    if (data.length > L.max_payload_bytes) throw new Refused("oversized", `${data.length} bytes`);
    const headerBytes = Object.entries(headers).reduce((n, [k, v]) => n + k.length + String(v).length, 0);
    if (headerBytes > L.max_header_bytes) throw new Refused("oversized", `${headerBytes} bytes of headers`);
    const scheme = headers["Mesh-Sig-Scheme"];
    const kid = headers["Mesh-Key"];
    const sigText = headers["Mesh-Sig"];
    if (!kid || !sigText || ![SCHEME_PLAIN, SCHEME_MERKLE].includes(scheme)) {
      throw new Refused("unsigned", "no Mesh-Key or Mesh-Sig, or an unknown scheme");
    }
    const cert = await this.certificate(kid, now);
    const sig = b64d(sigText);
    let signed = data;
    if (scheme === SCHEME_MERKLE) {
      const root = merkleRoot(data, headers["Mesh-Sig-Path"]);
      signed = root && Buffer.concat([MERKLE_PREFIX, root]);
    }
    if (!sig || !signed || !ed25519Verify(cert.publicKey, signed, sig)) {
      throw new Refused("bad-signature", `signature of ${kid} does not verify`);
    }
    let env;
    try {
      env = parseStrictJson(data.toString("utf8"));
    } catch (err) {
      throw new Refused("malformed", err.message);
    }
    this.checkShape(env);
    this.checkAddress(subject, env, cert);
    if (storedAt - env.created > L.max_age_s + L.clock_skew_s || env.created - storedAt > L.clock_skew_s) {
      throw new Refused("stale", `created ${env.created}, stored ${storedAt}`);
    }
    if (core) {
      if (this.seen?.has(env.id)) throw new Refused("replayed", `${env.id} seen before`);
      this.seen?.add(env.id);
    } else if (headers["Nats-Msg-Id"] !== env.id) {
      throw new Refused("replayed", "Nats-Msg-Id is not the envelope's id");
    }
    const token = env.caller ? await this.verifyToken(env.caller, now) : null;
    let chain = null;
    if (env.kind === "task") {
      if (!token) throw new Refused("invalid-token", "a task carries a caller token");
      chain = await this.verifyChain(env, token, kid, now);
      const depth = env.step.split("/").length - 1;
      if (env.step && depth > L.max_call_depth) throw new Refused("plan-too-deep", `${depth} calls deep`);
    }
    if (call && (env.kind === "reply" || env.kind === "error")) {
      // an answer to a call comes from the role called, about that call and its step
      const fits = env.parent === call.id && cert.sub === call.to && env.workflow === call.workflow && env.step === call.step;
      if (!fits) throw new Refused("forged-reply", `${cert.sub} answers ${env.parent} (${env.step}), not the call`);
    }
    return { envelope: env, certificate: cert, token, chain };
  }

  checkShape(env) {
    const bad = (what) => {
      throw new Refused("malformed", what);
    };
    if (!isObject(env)) bad("not a JSON object");
    for (const field of ["id", "kind", "workflow", "sender", "to"]) {
      if (typeof env[field] !== "string") bad(`${field} is not a string`);
    }
    if (typeof env.created !== "number") bad("created is not a number");
    if (!("body" in env)) bad("no body");
    if (!TOKEN_RE.test(env.id) || !TOKEN_RE.test(env.workflow)) bad("id or workflow is not a subject token");
    if (!KINDS.includes(env.kind)) bad(`unknown kind ${env.kind}`);
    for (const field of ["type", "step"]) {
      if (env[field] !== undefined && typeof env[field] !== "string") bad(`${field} is not a string`);
    }
    for (const field of ["parent", "reply_to", "caller"]) {
      if (env[field] !== undefined && env[field] !== null && typeof env[field] !== "string") bad(`${field} is not a string`);
    }
    if (env.chain !== undefined && env.chain !== null && !Array.isArray(env.chain)) bad("chain is not an array");
    if (env.kind === "task" && env.step && !STEP_RE.test(env.step)) bad("step has characters outside the set");
  }

  checkAddress(subject, env, cert) {
    const miss = (what) => {
      throw new Refused("misaddressed", what);
    };
    const p = this.subjects.prefix;
    if (env.sender !== cert.sub) miss(`sender ${env.sender} is not the signer ${cert.sub}`);
    if (!cert.publish.some((pattern) => subjectMatches(pattern, subject))) miss(`${cert.sub} may not publish to ${subject}`);
    const parts = subject.split(".");
    const rest = subject.startsWith(`${p}.`) ? subject.slice(p.length + 1).split(".") : [];
    if (rest[0] === "agent" && rest.length === 3 && rest[2] === "task") {
      if (env.to !== rest[1]) miss("to is not the subject's agent");
      if (env.kind !== "task") miss(`kind ${env.kind} on a task subject`);
    } else if (rest[0] === "agent" && rest.length === 4 && rest[2] === "reply") {
      if (env.to !== rest[1]) miss("to is not the subject's agent");
      if (!["reply", "error"].includes(env.kind)) miss(`kind ${env.kind} on a reply subject`);
    } else if (rest[0] === "event" && rest.length === 3) {
      if (rest[1] !== env.workflow) miss("the subject names another workflow");
      if (env.kind !== "event") miss(`kind ${env.kind} on an event subject`);
    } else {
      miss(`${parts.join(".")} is no subject of the mesh`);
    }
    if (env.reply_to && !subjectMatches(`${p}.agent.${env.sender}.reply.*`, env.reply_to)) {
      miss("reply_to is not one of the sender's reply subjects");
    }
  }

  async verifyToken(text, now) {
    const jwt = readJwt(text);
    if (!jwt || jwt.header.alg !== "EdDSA" || typeof jwt.header.kid !== "string") {
      throw new Refused("invalid-token", "not an EdDSA JWT");
    }
    const cert = await this.certificate(jwt.header.kid, now);
    if (!ed25519Verify(cert.publicKey, jwt.input, jwt.signature)) {
      throw new Refused("invalid-token", "token signature does not verify");
    }
    if (!cert.ingress) throw new Refused("invalid-token", `${cert.sub} is not an ingress`);
    const c = jwt.claims;
    if (typeof c.sub !== "string" || typeof c.iat !== "number" || typeof c.exp !== "number" || typeof c.jti !== "string") {
      throw new Refused("invalid-token", "a claim is missing");
    }
    if (!timeOk(c, now, this.limits.leeway_s)) throw new Refused("expired-token", "token out of date");
    return { text, claims: c, scopes: Array.isArray(c.scopes) ? c.scopes : [], issuer: cert };
  }

  async verifyChain(env, token, taskKid, now) {
    const chain = env.chain;
    if (!Array.isArray(chain) || !chain.length) throw new Refused("bad-delegation", "no delegation chain");
    if (chain.length > this.limits.max_call_depth + 1) throw new Refused("plan-too-deep", `${chain.length} links`);
    const bad = (what) => {
      throw new Refused("bad-delegation", what);
    };
    const links = [];
    for (const [n, text] of chain.entries()) {
      const jwt = typeof text === "string" ? readJwt(text) : null;
      if (!jwt) bad(`link ${n} is not a compact JWS`);
      const { header, claims } = jwt;
      if (header.alg !== "EdDSA" || header.typ !== "mesh-delegation+jwt" || typeof header.kid !== "string" || "crit" in header) {
        bad(`link ${n} header`);
      }
      const cert = await this.certificate(header.kid, now);
      const last = n === chain.length - 1;
      if (!(last && header.kid === taskKid) && !ed25519Verify(cert.publicKey, jwt.input, jwt.signature)) {
        bad(`link ${n} signature`);
      }
      for (const k of ["iss", "to", "wf", "step", "prev"]) if (typeof claims[k] !== "string") bad(`link ${n} ${k}`);
      if (typeof claims.exp !== "number") bad(`link ${n} exp`);
      if (claims.scopes !== undefined && !(Array.isArray(claims.scopes) && claims.scopes.every((s) => typeof s === "string"))) {
        bad(`link ${n} scopes`);
      }
      if (claims.iss !== cert.sub) bad(`link ${n} iss is not its signer`);
      links.push({ text, claims, cert });
    }
    if (!links[0].cert.ingress) bad("link 0 is not from an ingress");
    for (const [n, { claims }] of links.entries()) {
      const before = n === 0 ? null : links[n - 1].claims;
      const prevText = n === 0 ? token.text : links[n - 1].text;
      if (claims.prev !== b64e(sha256(Buffer.from(prevText, "ascii")))) bad(`link ${n} prev`);
      if (claims.wf !== env.workflow) bad(`link ${n} workflow`);
      if (before) {
        if (claims.iss !== before.to) bad(`link ${n} iss is not link ${n - 1}'s to`);
        if (!claims.step.startsWith(`${before.step}/`)) bad(`link ${n} step not nested`);
      }
      const allowed = new Set(before ? before.scopes ?? [] : token.scopes);
      if (!(claims.scopes ?? []).every((s) => allowed.has(s))) throw new Refused("delegation-widened", `link ${n} scopes`);
      if (claims.exp > (before ? before.exp : token.claims.exp)) throw new Refused("delegation-widened", `link ${n} exp`);
      if (claims.exp + this.limits.clock_skew_s < now) throw new Refused("expired-token", `link ${n} expired`);
    }
    const last = links[links.length - 1];
    if (last.claims.to !== env.to || last.claims.step !== (env.step ?? "")) bad("last link is not for this task");
    const senderCert = await this.certificate(taskKid, now);
    if (last.claims.iss !== env.sender && !senderCert.ingress) bad("last link is not the sender's");
    return links.map((l) => l.claims);
  }
}

