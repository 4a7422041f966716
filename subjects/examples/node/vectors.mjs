// Runs the conformance vectors (subjects/vectors/*.json) through this example's receiver
// checks and prints one verdict per case as JSON lines: {"file","name","verdict","reason"}.
//
//   node subjects/examples/node/vectors.mjs subjects/vectors/signatures.json ...

import { readFileSync } from "node:fs";
import { b64d } from "./encoding.mjs";
import { Refused, Verifier } from "./verifier.mjs";

async function run(file) {
  const doc = JSON.parse(readFileSync(file, "utf8"));
  const roots = Object.fromEntries(Object.entries(doc.roots).map(([kid, key]) => [kid, b64d(key)]));
  const out = [];
  for (const c of doc.cases) {
    // a fresh verifier per case: nothing cached or seen carries over
    const verifier = new Verifier({
      roots,
      certificate: async (kid) => doc.registry[kid] ?? null,
      revocation: async (kid) => doc.registry[`revoked.${kid}`] ?? null,
      prefix: doc.prefix,
      limits: doc.limits,
      seen: new Set(),
    });
    let verdict = "accept";
    let reason = null;
    try {
      await verifier.verify(c.subject, Buffer.from(c.message, "utf8"), c.headers, { now: doc.now, call: c.call ?? null });
    } catch (err) {
      if (!(err instanceof Refused)) throw err;
      verdict = "reject";
      reason = err.reason;
    }
    out.push({ file, name: c.name, verdict, reason });
  }
  return out;
}

for (const file of process.argv.slice(2)) {
  for (const line of await run(file)) console.log(JSON.stringify(line));
}
