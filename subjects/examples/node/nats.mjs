// A small NATS client over the text protocol, with node:net only: INFO/CONNECT with nkey
// authentication, SUB, PUB/HPUB, MSG/HMSG, PING/PONG, and requests answered on the
// connection's own inbox (JetStream acks and direct gets).
//
//   const nc = await NatsConnection.connect("nats://127.0.0.1:4222", { seed, inboxPrefix });
//   const answer = await nc.request("$JS.API.DIRECT.GET.MESH_EVENTS", '{"seq":1}');

import net from "node:net";
import { randomBytes } from "node:crypto";
import { nkeyFromSeed } from "./nkeys.mjs";

const CRLF = "\r\n";

export class NatsError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

/** Headers as `NATS/1.0[ status[ description]]` then `Key: Value` lines. */
export function encodeHeaders(headers) {
  let text = "NATS/1.0" + CRLF;
  for (const [key, value] of Object.entries(headers)) {
    if (/[\r\n:]/.test(key) || /[\r\n]/.test(String(value))) {
      throw new NatsError("bad-header", `header ${JSON.stringify(key)} cannot be sent`);
    }
    text += `${key}: ${value}${CRLF}`;
  }
  return Buffer.from(text + CRLF, "utf8");
}

export function decodeHeaders(block) {
  const lines = block.toString("utf8").split(CRLF);
  const status = lines[0].slice("NATS/1.0".length).trim();
  const headers = {};
  for (const line of lines.slice(1)) {
    if (!line) continue;
    const at = line.indexOf(":");
    if (at <= 0) continue;
    const key = line.slice(0, at).trim();
    if (!(key in headers)) headers[key] = line.slice(at + 1).trim();
  }
  const code = status ? Number(status.split(" ")[0]) : 0;
  return { status: code, description: status.split(" ").slice(1).join(" "), headers };
}

function parseUrl(url) {
  const parsed = new URL(url.split(",")[0].trim());
  if (parsed.protocol !== "nats:") throw new NatsError("bad-url", `not a nats:// URL: ${url}`);
  return { host: parsed.hostname, port: Number(parsed.port || 4222) };
}

export class NatsConnection {
  constructor(socket, inboxPrefix) {
    this.socket = socket;
    this.inboxPrefix = inboxPrefix;
    this.buffer = Buffer.alloc(0);
    this.subs = new Map();
    this.nextSid = 1;
    this.pending = new Map();
    this.errors = [];
    this.info = null;
    this.closed = false;
    this.waiters = [];
    this.pongs = [];
  }

  /**
   * Connect and authenticate: read INFO, answer its nonce with the nkey's signature, and
   * wait for the PONG to our PING (an -ERR instead means refused).
   */
  static async connect(url, { seed, inboxPrefix = "_INBOX", name = "node-publisher" } = {}) {
    const { host, port } = parseUrl(url);
    const socket = net.connect({ host, port });
    const nc = new NatsConnection(socket, inboxPrefix);
    socket.on("data", (chunk) => nc.receive(chunk));
    socket.on("error", (err) => nc.fail(new NatsError("socket", err.message)));
    socket.on("close", () => nc.fail(new NatsError("closed", "connection closed")));
    const info = await nc.nextInfo();
    const connect = {
      verbose: false,
      pedantic: false,
      headers: true,
      no_responders: true,
      protocol: 1,
      lang: "node-builtins",
      version: "1.0.0",
      name,
    };
    if (seed) {
      const nkey = nkeyFromSeed(seed);
      connect.nkey = nkey.publicKey;
      if (info.nonce) connect.sig = nkey.sign(Buffer.from(info.nonce, "utf8"));
    }
    socket.write(`CONNECT ${JSON.stringify(connect)}${CRLF}`);
    await nc.ping();
    // one subscription for every answer: a role may subscribe only under _INBOX.<role>.
    nc.inbox = `${inboxPrefix}.${nc.token()}`;
    nc.subscribe(`${nc.inbox}.>`, (msg) => nc.answer(msg));
    return nc;
  }

  token() {
    return randomBytes(12).toString("hex");
  }

  nextInfo() {
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  fail(err) {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.waiters.splice(0)) w.reject(err);
    for (const p of this.pongs.splice(0)) p.reject(err);
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  /** Round trip to the server: everything sent before it has been processed. */
  ping() {
    if (this.closed) return Promise.reject(new NatsError("closed", "connection closed"));
    return new Promise((resolve, reject) => {
      this.pongs.push({ resolve, reject });
      this.socket.write(`PING${CRLF}`);
    });
  }

  receive(chunk) {
    this.buffer = Buffer.concat([this.buffer, chunk]);
    for (;;) {
      const end = this.buffer.indexOf(CRLF);
      if (end < 0) return;
      const line = this.buffer.subarray(0, end).toString("utf8");
      const op = line.split(" ", 1)[0].toUpperCase();
      if (op === "MSG" || op === "HMSG") {
        const args = line.split(" ").slice(1);
        const total = Number(args[args.length - 1]);
        if (this.buffer.length < end + 2 + total + 2) return;
        const data = this.buffer.subarray(end + 2, end + 2 + total);
        this.buffer = this.buffer.subarray(end + 2 + total + 2);
        this.deliver(op, args, data);
        continue;
      }
      this.buffer = this.buffer.subarray(end + 2);
      if (op === "INFO") {
        this.info = JSON.parse(line.slice(5));
        const waiter = this.waiters.shift();
        if (waiter) waiter.resolve(this.info);
      } else if (op === "PING") {
        this.socket.write(`PONG${CRLF}`);
      } else if (op === "PONG") {
        const pong = this.pongs.shift();
        if (pong) pong.resolve();
      } else if (op === "-ERR") {
        const text = line.slice(5).replace(/^'|'$/g, "");
        this.errors.push(text);
        if (!/permissions violation/i.test(text)) {
          // the server closes the connection after any other error (authorization too)
          const err = new NatsError("server", text);
          for (const w of this.waiters.splice(0)) w.reject(err);
          for (const p of this.pongs.splice(0)) p.reject(err);
          this.fail(err);
          this.socket.destroy();
        }
      }
    }
  }

  deliver(op, args, data) {
    let subject, sid, reply, headerBytes;
    if (op === "MSG") {
      [subject, sid] = args;
      reply = args.length === 4 ? args[2] : null;
      headerBytes = 0;
    } else {
      [subject, sid] = args;
      reply = args.length === 5 ? args[2] : null;
      headerBytes = Number(args[args.length - 2]);
    }
    const head = headerBytes ? decodeHeaders(data.subarray(0, headerBytes)) : null;
    const msg = {
      subject,
      reply,
      status: head ? head.status : 0,
      description: head ? head.description : "",
      headers: head ? head.headers : {},
      data: Buffer.from(data.subarray(headerBytes)),
    };
    const sub = this.subs.get(sid);
    if (sub) sub.callback(msg);
  }

  subscribe(subject, callback) {
    const sid = String(this.nextSid++);
    this.subs.set(sid, { subject, callback });
    this.socket.write(`SUB ${subject} ${sid}${CRLF}`);
    return { sid, subject };
  }

  publish(subject, data, { reply = null, headers = null } = {}) {
    if (this.closed) throw new NatsError("closed", "connection closed");
    const payload = Buffer.isBuffer(data) ? data : Buffer.from(data ?? "", "utf8");
    const target = reply ? `${subject} ${reply}` : subject;
    if (headers) {
      const head = encodeHeaders(headers);
      const line = `HPUB ${target} ${head.length} ${head.length + payload.length}${CRLF}`;
      this.socket.write(Buffer.concat([Buffer.from(line), head, payload, Buffer.from(CRLF)]));
    } else {
      const line = `PUB ${target} ${payload.length}${CRLF}`;
      this.socket.write(Buffer.concat([Buffer.from(line), payload, Buffer.from(CRLF)]));
    }
  }

  answer(msg) {
    const waiting = this.pending.get(msg.subject);
    if (!waiting) return;
    this.pending.delete(msg.subject);
    waiting.resolve(msg);
  }

  /**
   * Publish with a reply subject on this connection's inbox and wait for the one answer.
   * A permissions violation for `subject`, reported while waiting, fails it at once.
   */
  request(subject, data, { headers = null, timeoutMs = 5000 } = {}) {
    const reply = `${this.inbox}.${this.token()}`;
    const errorsBefore = this.errors.length;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(reply);
        reject(new NatsError("timeout", `no answer to ${subject} in ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(reply, {
        resolve: (msg) => {
          clearTimeout(timer);
          if (msg.status === 503) {
            reject(new NatsError("no-responders", `no responders on ${subject}`));
          } else {
            resolve(msg);
          }
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      });
      this.publish(subject, data, { reply, headers });
      this.ping().then(
        () => {
          const refused = this.errors.slice(errorsBefore).find((e) => e.includes(`"${subject}"`));
          if (refused && this.pending.has(reply)) {
            this.pending.delete(reply);
            clearTimeout(timer);
            reject(new NatsError("permissions-violation", refused));
          }
        },
        () => {},
      );
    });
  }

  async close() {
    if (!this.closed) {
      try {
        await this.ping();
      } catch {
        // closing anyway
      }
    }
    this.closed = true;
    this.socket.end();
    this.socket.destroy();
  }
}
