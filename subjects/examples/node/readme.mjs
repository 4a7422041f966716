// Checks the worked example of subjects/README.md ("A complete example") with this
// example's code: from the public seed shown there, the same key id, the same Mesh-Sig over
// the `bytes:` line, the same link 0 from the `link 0` header and claims, whose `prev` is
// the digest of the example's caller token. Prints one JSON object of booleans.
//
//   node subjects/examples/node/readme.mjs subjects/README.md

import { readFileSync } from "node:fs";
import { b64d, b64e, sha256 } from "./encoding.mjs";
import { identityFromSeed } from "./mesh.mjs";

const text = readFileSync(process.argv[2] ?? "subjects/README.md", "utf8");
const line = (label) => {
  const found = text.split("\n").find((l) => l.startsWith(label));
  if (found === undefined) throw new Error(`no line starting ${JSON.stringify(label)}`);
  return found.slice(label.length);
};

const seed = b64d(line("seed (base64url): "));
const kid = line("Mesh-Key: ");
const owner = kid.replace(/-[0-9a-f]{16}$/, "");
const identity = identityFromSeed(owner, seed);
const bytes = Buffer.from(line("bytes: "), "utf8");
const envelope = JSON.parse(bytes.toString("utf8"));
const linkInput = `${b64e(Buffer.from(line("link 0 header: ")))}.${b64e(Buffer.from(line("link 0 claims: ")))}`;
const link = `${linkInput}.${b64e(identity.sign(Buffer.from(linkInput, "ascii")))}`;
const claims = JSON.parse(line("link 0 claims: "));

console.log(
  JSON.stringify({
    key_id: identity.kid === kid,
    signature: b64e(identity.sign(bytes)) === line("Mesh-Sig: "),
    link: envelope.chain?.[0] === link,
    prev: claims.prev === b64e(sha256(Buffer.from(envelope.caller, "ascii"))),
  }),
);
