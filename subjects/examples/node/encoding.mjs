// The encodings of subjects/README.md, read strictly: base64url without padding and in its
// one spelling, JSON objects that name each member once, compact JWS (JWTs).

import { createHash } from "node:crypto";

export const b64e = (bytes) => Buffer.from(bytes).toString("base64url");

/** base64url without padding, only the one spelling of its bytes; null otherwise. */
export function b64d(text) {
  if (typeof text !== "string" || !/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) {
    return null;
  }
  const bytes = Buffer.from(text, "base64url");
  return bytes.toString("base64url") === text ? bytes : null;
}

export const sha256 = (...parts) => {
  const hash = createHash("sha256");
  for (const part of parts) hash.update(part);
  return hash.digest();
};

/** JSON.parse that refuses an object naming a member twice (at any depth). */
export function parseStrictJson(text) {
  let at = 0;
  const ws = () => {
    while (at < text.length && " \t\n\r".includes(text[at])) at++;
  };
  const fail = (what) => {
    throw new SyntaxError(`${what} at ${at}`);
  };
  const string = () => {
    const start = at;
    at++;
    while (at < text.length && text[at] !== '"') at += text[at] === "\\" ? 2 : 1;
    if (at >= text.length) fail("unterminated string");
    at++;
    return JSON.parse(text.slice(start, at));
  };
  const value = () => {
    ws();
    const c = text[at];
    if (c === "{") {
      at++;
      const out = {};
      const names = new Set();
      ws();
      if (text[at] === "}") {
        at++;
        return out;
      }
      for (;;) {
        ws();
        if (text[at] !== '"') fail("expected a member name");
        const name = string();
        if (names.has(name)) fail(`member ${JSON.stringify(name)} named twice`);
        names.add(name);
        ws();
        if (text[at] !== ":") fail("expected ':'");
        at++;
        Object.defineProperty(out, name, { value: value(), enumerable: true, writable: true });
        ws();
        if (text[at] === ",") {
          at++;
          continue;
        }
        if (text[at] === "}") {
          at++;
          return out;
        }
        fail("expected ',' or '}'");
      }
    }
    if (c === "[") {
      at++;
      const out = [];
      ws();
      if (text[at] === "]") {
        at++;
        return out;
      }
      for (;;) {
        out.push(value());
        ws();
        if (text[at] === ",") {
          at++;
          continue;
        }
        if (text[at] === "]") {
          at++;
          return out;
        }
        fail("expected ',' or ']'");
      }
    }
    if (c === '"') return string();
    const m = /^(?:-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null)/.exec(text.slice(at));
    if (!m) fail("unexpected character");
    at += m[0].length;
    return JSON.parse(m[0]);
  };
  const out = value();
  ws();
  if (at !== text.length) fail("trailing characters");
  return out;
}

export const isObject = (v) => typeof v === "object" && v !== null && !Array.isArray(v);

export function signJwt(identity, header, claims) {
  const input = `${b64e(Buffer.from(JSON.stringify(header)))}.${b64e(Buffer.from(JSON.stringify(claims)))}`;
  return `${input}.${b64e(identity.sign(Buffer.from(input, "ascii")))}`;
}

/** Header, claims and signature of a compact JWS, read strictly; null when it is not one. */
export function readJwt(text) {
  if (typeof text !== "string") return null;
  const parts = text.split(".");
  if (parts.length !== 3) return null;
  const [h, c, s] = parts.map(b64d);
  if (!h || !c || !s) return null;
  try {
    const header = parseStrictJson(h.toString("utf8"));
    const claims = parseStrictJson(c.toString("utf8"));
    if (!isObject(header) || !isObject(claims)) return null;
    return { header, claims, signature: s, input: Buffer.from(`${parts[0]}.${parts[1]}`, "ascii") };
  } catch {
    return null;
  }
}
