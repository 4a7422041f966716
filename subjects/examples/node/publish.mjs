#!/usr/bin/env node
// Publish one task to a jetmesh mesh as an ingress role, from subjects/README.md alone, with
// Node's built-ins only: connect to nats-server as the role (nkey), mint the caller token
// and the chain's first link, sign the envelope, publish it through JetStream, wait for the
// reply and verify it, then (--events) read the workflow's events back by direct get and
// verify each. Prints one JSON object; exit code 0 when the reply (or, with --tamper or
// --sender, the refusal) was seen, 1 otherwise, 2 on bad arguments.
//
//   node publish.mjs --server nats://127.0.0.1:4222 --keys .jetmesh/keys --role acme-ingest \
//       --agent echo --body '{"text":"hi"}' --events
//   node publish.mjs ... --role acme-ingest --workflow <id>     (read its events only)

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { randomBytes } from "node:crypto";
import { NatsConnection, NatsError, decodeHeaders } from "./nats.mjs";
import { readJwt } from "./encoding.mjs";
import { Subjects, loadIdentityKey, loadRoots, mintLink, mintToken, seal, ulid } from "./mesh.mjs";
import { Refused, Verifier } from "./verifier.mjs";

const OPTIONS = {
  server: { type: "string", env: "NATS_URL", default: "nats://127.0.0.1:4222" },
  keys: { type: "string", env: "JETMESH_KEYS_DIR", default: ".jetmesh/keys" },
  role: { type: "string", env: "JETMESH_ROLE" },
  "nkey-seed": { type: "string", env: "JETMESH_NKEY_SEED_FILE" },
  "identity-key": { type: "string", env: "JETMESH_IDENTITY_KEY_FILE" },
  certificate: { type: "string", env: "JETMESH_CERTIFICATE_FILE" },
  roots: { type: "string", env: "JETMESH_ROOTS_DIR" },
  prefix: { type: "string", env: "JETMESH_SUBJECT_PREFIX", default: "mesh" },
  "events-stream": { type: "string", env: "JETMESH_EVENTS_STREAM", default: "MESH_EVENTS" },
  registry: { type: "string", env: "JETMESH_REGISTRY_BUCKET", default: "MESH_KEYS" },
  agent: { type: "string", env: "JETMESH_AGENT" },
  workflow: { type: "string" },
  type: { type: "string", default: "" },
  body: { type: "string", default: "null" },
  caller: { type: "string", default: "node-user" },
  tenant: { type: "string", default: "" },
  scopes: { type: "string", default: "" },
  timeout: { type: "string", default: "10" },
  events: { type: "boolean", default: false },
  tamper: { type: "boolean", default: false },
  sender: { type: "string" },
};

function options(argv) {
  const { values } = parseArgs({
    args: argv,
    options: Object.fromEntries(Object.entries(OPTIONS).map(([name, o]) => [name, { type: o.type }])),
    strict: true,
  });
  const out = {};
  for (const [name, o] of Object.entries(OPTIONS)) {
    out[name] = values[name] ?? (o.env && process.env[o.env]) ?? o.default;
  }
  const role = out.role;
  if (!role || !(out.agent || out.workflow)) throw new Error("--role and --agent (or --workflow) are required");
  if (out.agent && out.workflow) throw new Error("--workflow reads a workflow: give it without --agent");
  out["nkey-seed"] ??= join(out.keys, "nats", `${role}.nk`); // `jetmesh up` writes it there
  out["identity-key"] ??= join(out.keys, `${role}.key`);
  out.certificate ??= join(out.keys, `${role}.cert`);
  out.roots ??= join(out.keys, "roots");
  out.timeoutMs = Number(out.timeout) * 1000;
  out.body = JSON.parse(out.body);
  out.scopes = out.scopes ? out.scopes.split(",") : [];
  return out;
}

/**
 * Reads certificates and revocations from the registry bucket: the last message on
 * `$KV.<bucket>.<key>` of stream `KV_<bucket>`, by `$JS.API.STREAM.MSG.GET` (the bucket is
 * not made for direct gets); a key whose last message is a delete marker has no value.
 */
function registry(nc, bucket) {
  const get = async (key) => {
    const request = JSON.stringify({ last_by_subj: `$KV.${bucket}.${key}` });
    const msg = await nc.request(`$JS.API.STREAM.MSG.GET.KV_${bucket}`, request);
    const answer = JSON.parse(msg.data.toString("utf8"));
    if (answer.error?.code === 404) return null;
    if (answer.error) throw new NatsError("registry", `${answer.error.code} ${answer.error.description}`);
    const { message } = answer;
    const head = message.hdrs ? decodeHeaders(Buffer.from(message.hdrs, "base64")).headers : {};
    const op = head["KV-Operation"];
    if (op === "DEL" || op === "PURGE") return null;
    return Buffer.from(message.data ?? "", "base64").toString("utf8");
  };
  return { certificate: get, revocation: (kid) => get(`revoked.${kid}`) };
}

/** The stream's next stored message on `subject` after sequence `after`, or null. */
async function nextStored(nc, stream, subject, after) {
  const msg = await nc.request(`$JS.API.DIRECT.GET.${stream}`, JSON.stringify({ seq: after + 1, next_by_subj: subject }));
  if (msg.status === 404) return null;
  if (msg.status) throw new NatsError("direct-get", `${msg.status} ${msg.description}`);
  const storedAt = Date.parse(msg.headers["Nats-Time-Stamp"]) / 1000;
  if (!Number.isFinite(storedAt)) throw new NatsError("direct-get", "no Nats-Time-Stamp on a stored message");
  return {
    subject: msg.headers["Nats-Subject"],
    seq: Number(msg.headers["Nats-Sequence"]),
    storedAt,
    headers: msg.headers,
    data: msg.data,
  };
}

/** Every stored event of `workflow`, each verified (a refused one is listed with its reason). */
async function readEvents(nc, verifier, stream, subjects, workflow) {
  const out = [];
  let after = 0;
  for (let stored; (stored = await nextStored(nc, stream, subjects.events(workflow), after)); after = stored.seq) {
    const item = { seq: stored.seq, subject: stored.subject };
    try {
      // reading history: freshness, certificates and tokens are judged at the time the
      // stream stored the event, not now (a finished workflow's token has expired since)
      const { envelope, certificate } = await verifier.verify(stored.subject, stored.data, stored.headers, {
        storedAt: stored.storedAt,
        now: stored.storedAt,
      });
      const event = envelope.body ?? {};
      if (event.agent !== certificate.sub) {
        // the signer is who said it, whatever the body claims
        throw new Refused("forged", `signed by ${certificate.sub}, names ${event.agent}`);
      }
      Object.assign(item, {
        verified: true,
        signer: certificate.sub,
        scheme: stored.headers["Mesh-Sig-Scheme"],
        id: envelope.id,
        kind: event.kind,
        agent: event.agent,
        task: event.task ?? null,
        reason: event.reason ?? "",
        detail: event.detail ?? "",
        event,
      });
    } catch (err) {
      if (!(err instanceof Refused)) throw err;
      Object.assign(item, { verified: false, refused: err.reason, detail: err.detail });
    }
    out.push(item);
  }
  return out;
}

async function main() {
  let opts;
  try {
    opts = options(process.argv.slice(2));
  } catch (err) {
    console.error(`publish.mjs: ${err.message}`);
    return 2;
  }
  const subjects = new Subjects(opts.prefix);
  const identity = loadIdentityKey(opts["identity-key"]);
  const roots = loadRoots(opts.roots);
  const own = readJwt(readFileSync(opts.certificate, "utf8").trim());
  if (!own || own.claims.kid !== identity.kid || own.claims.ingress !== true) {
    throw new Error(`${opts.certificate} is not an ingress certificate of ${identity.kid}`);
  }
  // A role's connection may use only its own inboxes: _INBOX.<role>.>
  const nc = await NatsConnection.connect(opts.server, {
    seed: readFileSync(opts["nkey-seed"], "utf8").trim(),
    inboxPrefix: `_INBOX.${identity.owner}`,
    name: `${identity.owner}/node`,
  });
  const result = { role: identity.owner, kid: identity.kid };
  try {
    const verifier = new Verifier({ roots, prefix: opts.prefix, seen: new Set(), ...registry(nc, opts.registry) });
    if (opts.workflow) {
      // read only: the workflow's events, each verified
      result.workflow = opts.workflow;
      result.events = await readEvents(nc, verifier, opts["events-stream"], subjects, opts.workflow);
      return 0;
    }
    const instance = `node-${randomBytes(4).toString("hex")}`;
    const replySubject = subjects.reply(identity.owner, instance);
    const replies = [];
    let wake = () => {};
    nc.subscribe(replySubject, (msg) => {
      replies.push(msg);
      wake();
    });

    const now = Date.now() / 1000;
    const id = ulid();
    const token = mintToken(identity, { subject: opts.caller, tenant: opts.tenant, scopes: opts.scopes, now });
    const exp = readJwt(token).claims.exp;
    const step = opts.agent;
    const chain = [mintLink(identity, token, { to: opts.agent, workflow: id, step, scopes: opts.scopes, expires: exp, now })];
    const envelope = {
      id,
      kind: "task",
      workflow: id,
      sender: opts.sender ?? identity.owner, // --sender: claim another name, to see the refusal
      to: opts.agent,
      created: now,
      type: opts.type,
      parent: null,
      step,
      reply_to: replySubject,
      caller: token,
      chain,
      deadline: now + opts.timeoutMs / 1000,
      v: 1,
      body: opts.body,
    };
    const { data, headers } = seal(identity, envelope);
    if (opts.tamper) data[data.indexOf("body")] ^= 0x01; // after signing: the signature no longer fits
    const subject = subjects.task(opts.agent);
    result.task = { id, workflow: id, subject, tampered: opts.tamper, sender: envelope.sender };
    let ack;
    try {
      const answer = await nc.request(subject, data, { headers, timeoutMs: opts.timeoutMs });
      ack = JSON.parse(answer.data.toString("utf8"));
    } catch (err) {
      if (!(err instanceof NatsError)) throw err;
      result.error = { code: err.code, message: err.message };
      return 1;
    }
    if (ack.error) {
      result.error = { code: "jetstream", message: ack.error.description ?? JSON.stringify(ack.error) };
      return 1;
    }
    Object.assign(result.task, { stream: ack.stream, seq: ack.seq, duplicate: ack.duplicate === true });

    if (opts.tamper || envelope.sender !== identity.owner) {
      result.refusal = await awaitRefusal(nc, verifier, opts, subjects, result.task, opts.timeoutMs);
      return result.refusal ? 0 : 1;
    }

    const deadline = Date.now() + opts.timeoutMs;
    let reply = null;
    while (!reply && Date.now() < deadline) {
      const msg = replies.shift();
      if (!msg) {
        await new Promise((resolve) => {
          const timer = setTimeout(resolve, Math.max(0, deadline - Date.now()));
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        continue;
      }
      try {
        // the reply must come from the role the task went to, about this task and its step
        const call = { id, to: opts.agent, workflow: id, step };
        const checked = await verifier.verify(msg.subject, msg.data, msg.headers, { core: true, call });
        const env = checked.envelope;
        reply = {
          verified: true,
          signer: checked.certificate.sub,
          scheme: msg.headers["Mesh-Sig-Scheme"],
          kind: env.kind,
          type: env.type ?? "",
          body: env.body,
        };
      } catch (err) {
        if (!(err instanceof Refused)) throw err;
        (result.refused_replies ??= []).push({ reason: err.reason, detail: err.detail });
      }
    }
    result.reply = reply;
    if (!reply) return 1;
    if (opts.events) {
      result.events = await awaitEvents(nc, verifier, opts, subjects, id, deadline);
    }
    return 0;
  } finally {
    result.server_errors = nc.errors;
    console.log(JSON.stringify(result));
    await nc.close();
  }
}

/** The workflow's events, read again until the task's `completed` is among them. */
async function awaitEvents(nc, verifier, opts, subjects, workflow, deadline) {
  for (;;) {
    const events = await readEvents(nc, verifier, opts["events-stream"], subjects, workflow);
    if (events.some((e) => e.kind === "completed" && e.task === workflow) || Date.now() > deadline) return events;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * The refusal of our task. A bad signature is audited in workflow `_unverified` (an
 * envelope whose signature fails cannot be trusted to name its workflow) as a `rejected`
 * event; the event names the refused message by its `Nats-Msg-Id` (`message`) and its
 * tasks stream sequence (`seq`), both of which the publisher knows from its publish.
 */
async function awaitRefusal(nc, verifier, opts, subjects, task, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const workflow of ["_unverified", task.workflow]) {
      const events = await readEvents(nc, verifier, opts["events-stream"], subjects, workflow);
      const ours = events.find(
        (e) => e.verified && e.kind === "rejected" && e.event.message === task.id && e.event.seq === task.seq,
      );
      if (ours) {
        return {
          reason: ours.reason,
          detail: ours.detail,
          agent: ours.agent,
          signer: ours.signer,
          workflow,
          message: ours.event.message,
          seq: ours.event.seq,
          verified: true,
        };
      }
    }
    if (Date.now() > deadline) return null;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

process.exitCode = await main().catch((err) => {
  console.error(`publish.mjs: ${err.message}`);
  return 1;
});
