#!/usr/bin/env node
// nats.js scenarios, run by crates/weft-cli/tests/real_clients.rs.
//
// The same script runs against a weft cluster and a nats-server cluster;
// the Rust test compares the results. Protocol with the test (stdout/stdin):
// - every scenario prints one line {"scenario": NAME, "result": {...},
//   "info": {...}} (or "error": TEXT instead of "result"); only "result"
//   is compared, "info" is for the log;
// - to kill or restart node I it prints {"ctl": "kill"|"start", "node": I}
//   and waits for one line on stdin (the node is down, or up and serving).
//
// `--role sub` runs one subscriber process (the SIGSTOP scenario): it
// prints `ready` once subscribed, then {"received": N} when it has COUNT
// messages or its deadline passes. `--role slowsub` is the slow-consumer
// scenario's subscriber process: `ready`, then {"reconnected": true} on
// every reconnect and {"again": true} once it receives an `again` message.
//
// Every wait is bounded. Waits marked INTEREST-WAIT are for nats-server,
// where interest reaches other servers some time after the PONG of a
// flush; weft needs none (its PONG waits for every live node: the
// `barrier` scenario checks that without any probe).
"use strict";

const { spawn } = require("child_process");
const readline = require("readline");
const { connect, headers, ErrorCode } = require("nats");

const SCENARIO_LIMIT_MS = 40000;
const te = new TextEncoder();
const td = new TextDecoder();

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function log(...args) {
  process.stderr.write("[js] " + args.join(" ") + "\n");
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Lines from the test on stdin, handed to ctl() one by one.
const stdinLines = [];
const stdinWaiters = [];
function listenStdin() {
  const rl = readline.createInterface({ input: process.stdin });
  rl.on("line", (line) => {
    const w = stdinWaiters.shift();
    if (w) w(line);
    else stdinLines.push(line);
  });
}

async function ctl(action, node) {
  emit({ ctl: action, node });
  const line = stdinLines.length
    ? stdinLines.shift()
    : await withTimeout(new Promise((r) => stdinWaiters.push(r)), 60000, "ctl answer");
  if (line.trim() !== "done") throw new Error(`ctl ${action} ${node}: got ${line}`);
}

function withTimeout(p, ms, what) {
  let t;
  return Promise.race([
    p,
    new Promise((_, rej) => {
      t = setTimeout(() => rej(new Error(`timed out: ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(t));
}

async function conn(servers, extra = {}) {
  return connect({
    servers,
    noRandomize: true,
    reconnectTimeWait: 200,
    maxReconnectAttempts: 200,
    timeout: 2000,
    ...extra,
  });
}

async function waitUntil(cond, ms, what) {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

// Records the non-probe messages of one subscription; counts probes.
class Collector {
  constructor() {
    this.msgs = [];
    this.probes = 0;
    this.cb = (err, msg) => {
      if (err) {
        log("subscription error:", err.message);
        return;
      }
      if (td.decode(msg.data).startsWith("probe")) this.probes++;
      else this.msgs.push(msg);
    };
  }
}

// INTEREST-WAIT: publish probes until the subscribers' interest has
// reached the publisher's node (cond() sees a probe).
async function probeUntil(pub, subject, cond, what, ms = 15000) {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`no probe arrived: ${what}`);
    pub.publish(subject, te.encode("probe"));
    await pub.flush();
    await sleep(50);
  }
}

function errName(e) {
  return e && e.code ? String(e.code) : String(e && e.message);
}

// ------------------------------------------------------------- scenarios

async function scOrder(s) {
  const sub = await conn([s[0]]);
  const pubs = [await conn([s[1]]), await conn([s[2]])];
  const c = new Collector();
  sub.subscribe("order.x", { callback: c.cb });
  await sub.flush();
  for (const p of pubs) {
    const start = c.probes;
    await probeUntil(p, "order.x", () => c.probes > start, "order");
  }
  const n = 500;
  await Promise.all(
    pubs.map(async (p, k) => {
      for (let i = 0; i < n; i++) p.publish("order.x", te.encode(`p${k}-${i}`));
      await p.flush();
    }),
  );
  await waitUntil(() => c.msgs.length >= 2 * n, 20000, "order messages");
  await sleep(100);
  const seqs = [[], []];
  for (const m of c.msgs) {
    const [k, i] = td.decode(m.data).slice(1).split("-");
    seqs[Number(k)].push(Number(i));
  }
  const inOrder = seqs.map((q) => q.length === n && q.every((v, i) => v === i));
  for (const nc of [sub, ...pubs]) await nc.close();
  return [{ received: c.msgs.length, in_order: inOrder }, {}];
}

async function scWildcards(s) {
  const sub = await conn([s[0]]);
  const pub = await conn([s[1]]);
  const star = new Collector();
  const gt = new Collector();
  sub.subscribe("wc.*", { callback: star.cb });
  sub.subscribe("wc.>", { callback: gt.cb });
  await sub.flush();
  await probeUntil(pub, "wc.probe", () => star.probes && gt.probes, "wildcards");
  for (const subj of ["wc.a", "wc.a.b", "wc.b", "wx.a", "wc", "wc.b.c.d", "wc.end"]) {
    pub.publish(subj, te.encode("m"));
  }
  await pub.flush();
  const ended = (c) => c.msgs.some((m) => m.subject === "wc.end");
  await waitUntil(() => ended(star) && ended(gt), 20000, "wc.end");
  await sleep(100);
  await sub.close();
  await pub.close();
  return [{ star: star.msgs.map((m) => m.subject), gt: gt.msgs.map((m) => m.subject) }, {}];
}

async function scQueue(s) {
  // Members on nodes 1 and 3, the publisher on node 2: every message has
  // to pick one member across the cluster.
  const memberNcs = [await conn([s[0]]), await conn([s[0]]), await conn([s[2]])];
  const plainNc = await conn([s[0]]);
  const pub = await conn([s[1]]);
  const members = memberNcs.map(() => new Collector());
  for (let i = 0; i < memberNcs.length; i++) {
    memberNcs[i].subscribe("q.work", { queue: "workers", callback: members[i].cb });
    await memberNcs[i].flush();
  }
  const plain = new Collector();
  plainNc.subscribe("q.work", { callback: plain.cb });
  await plainNc.flush();
  const total = () => members.reduce((a, c) => a + c.msgs.length, 0);
  await probeUntil(pub, "q.work", () => plain.probes && members.some((c) => c.probes), "queue");
  const n = 300;
  for (let i = 0; i < n; i++) pub.publish("q.work", te.encode(String(i)));
  await pub.flush();
  await waitUntil(() => plain.msgs.length >= n && total() >= n, 20000, "queue messages");
  // Duplicates would arrive with the rest; give them a moment to show.
  await sleep(300);
  const got = members.flatMap((c) => c.msgs.map((m) => td.decode(m.data)));
  for (const nc of [...memberNcs, plainNc, pub]) await nc.close();
  return [
    { total: got.length, distinct: new Set(got).size, plain: plain.msgs.length },
    { per_member: members.map((c) => c.msgs.length) },
  ];
}

async function scRequest(s) {
  const svc = await conn([s[0]]);
  const req = await conn([s[2]]);
  svc.subscribe("rr.svc", {
    callback: (err, msg) => {
      if (!err) msg.respond(te.encode("re:" + td.decode(msg.data)));
    },
  });
  await svc.flush();
  // INTEREST-WAIT: until the responder's interest reaches node 3, a
  // request there is (rightly) answered no-responders.
  const deadline = Date.now() + 15000;
  for (;;) {
    try {
      await req.request("rr.svc", te.encode("probe"), { timeout: 1000 });
      break;
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await sleep(50);
    }
  }
  let correct = 0;
  for (let i = 0; i < 20; i++) {
    const r = await req.request("rr.svc", te.encode(String(i)), { timeout: 5000 });
    if (td.decode(r.data) === `re:${i}`) correct++;
  }
  const t0 = Date.now();
  let nr;
  try {
    await req.request("rr.nobody", te.encode("x"), { timeout: 10000 });
    nr = "answered";
  } catch (e) {
    nr = errName(e);
  }
  const elapsed = Date.now() - t0;
  await svc.close();
  await req.close();
  return [{ correct, no_responders: nr }, { no_responders_ms: elapsed }];
}

function headerView(h) {
  if (!h) return null;
  const out = {};
  for (const k of h.keys()) out[k] = h.values(k);
  return out;
}

async function scHeaders(s) {
  const sub = await conn([s[0]]);
  const pub = await conn([s[1]]);
  const c = new Collector();
  sub.subscribe("hdr.x", { callback: c.cb });
  await sub.flush();
  await probeUntil(pub, "hdr.x", () => c.probes, "headers");
  // nats.js sends an empty headers object as `HPUB subject 0 size`.
  pub.publish("hdr.x", te.encode("empty"), { headers: headers() });
  const multi = headers();
  multi.append("X-Multi", "a");
  multi.append("X-Multi", "b");
  multi.append("X-One", "1");
  pub.publish("hdr.x", te.encode("multi"), { headers: multi });
  const single = headers();
  single.set("X-Two", "two words");
  pub.publish("hdr.x", te.encode("single"), { headers: single });
  pub.publish("hdr.x", te.encode("end"));
  await pub.flush();
  await waitUntil(() => c.msgs.some((m) => td.decode(m.data) === "end"), 20000, "header messages");
  const received = {};
  for (const m of c.msgs) {
    const h = m.headers;
    received[td.decode(m.data)] = {
      headers: headerView(h),
      code: h ? h.code : null,
      description: h ? h.description : null,
    };
  }
  await sub.close();
  await pub.close();
  return [{ received, order: c.msgs.map((m) => td.decode(m.data)) }, {}];
}

async function scDrain(s) {
  // The publisher is on the subscriber's node so that, once its marker
  // comes back, every message is in flight to the subscriber (queued at
  // the server or in the client); drain must hand all of them to the
  // handler.
  const sub = await conn([s[0]]);
  const pub = await conn([s[0]]);
  const handled = [];
  let probes = 0;
  const it = sub.subscribe("drain.x");
  const loop = (async () => {
    for await (const m of it) {
      const d = td.decode(m.data);
      if (d === "probe") {
        probes++;
        continue;
      }
      await sleep(2);
      handled.push(d);
    }
  })();
  await sub.flush();
  await probeUntil(pub, "drain.x", () => probes, "drain subscriber registered");
  const marker = new Collector();
  pub.subscribe("drain.marker", { callback: marker.cb });
  await pub.flush();
  await probeUntil(pub, "drain.marker", () => marker.probes, "drain marker registered");
  const n = 200;
  for (let i = 0; i < n; i++) pub.publish("drain.x", te.encode(String(i)));
  pub.publish("drain.marker", te.encode("sent"));
  await waitUntil(() => marker.msgs.length, 10000, "drain marker");
  const before = handled.length;
  await sub.drain();
  await withTimeout(loop, 10000, "the drained subscription's handler");
  const inOrder = handled.length === n && handled.every((v, i) => v === String(i));
  await pub.close();
  return [
    { handled: handled.length, in_order: inOrder, closed: sub.isClosed() },
    { handled_before_drain: before },
  ];
}

async function scMaxPayload(s) {
  const nc = await conn([s[1]]);
  const mp = nc.info.max_payload;
  let err;
  try {
    nc.publish("mp.x", new Uint8Array(mp + 1));
    err = "accepted";
  } catch (e) {
    err = errName(e);
  }
  const c = new Collector();
  nc.subscribe("mp.x", { callback: c.cb });
  nc.publish("mp.x", te.encode("small"));
  await nc.flush();
  await waitUntil(() => c.msgs.length, 10000, "message after refusal");
  await nc.close();
  return [{ max_payload: mp, error: err, usable_after: c.msgs.length > 0 }, {}];
}

function lines(stream) {
  const rl = readline.createInterface({ input: stream });
  const queue = [];
  const waiters = [];
  rl.on("line", (l) => {
    const w = waiters.shift();
    if (w) w(l);
    else queue.push(l);
  });
  return (ms, what) =>
    queue.length ? Promise.resolve(queue.shift()) : withTimeout(new Promise((r) => waiters.push(r)), ms, what);
}

async function scStoppedSubscriber(s) {
  const n = 2000;
  const payload = new Uint8Array(512).fill(115);
  const child = spawn(
    process.execPath,
    [__filename, "--role", "sub", "--servers", s[0], "--subject", "stop.x", "--count", String(n)],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  const next = lines(child.stdout);
  const exited = new Promise((r) => child.on("exit", r));
  try {
    const ready = await next(15000, "subscriber process ready");
    if (ready.trim() !== "ready") throw new Error(`subscriber process said ${ready}`);
    const otherNc = await conn([s[0]]);
    const pub = await conn([s[1]]);
    const other = new Collector();
    otherNc.subscribe("stop.x", { callback: other.cb });
    await otherNc.flush();
    await probeUntil(pub, "stop.x", () => other.probes, "stopped subscriber");
    process.kill(child.pid, "SIGSTOP");
    for (let i = 0; i < n; i++) pub.publish("stop.x", payload);
    await pub.flush();
    await waitUntil(() => other.msgs.length >= n, 20000, "the running subscriber");
    const others = other.msgs.length;
    process.kill(child.pid, "SIGCONT");
    const line = await next(25000, "subscriber process result");
    const stopped = JSON.parse(line).received;
    await withTimeout(exited, 10000, "subscriber process exit");
    await otherNc.close();
    await pub.close();
    return [{ others, stopped_after_cont: stopped }, {}];
  } finally {
    if (child.exitCode === null && child.signalCode === null) {
      process.kill(child.pid, "SIGCONT");
      child.kill("SIGKILL");
    }
  }
}

async function scSlowConsumer(s) {
  // The servers run with max_pending = 4 MiB (see real_clients.rs): a
  // stopped subscriber that falls 32 MiB behind is closed as a slow
  // consumer, while the other subscriber gets everything; continued, the
  // stopped one reconnects by itself and receives again.
  const n = 32768;
  const payload = new Uint8Array(1024).fill(119);
  const child = spawn(process.execPath, [__filename, "--role", "slowsub", "--servers", s.join(","), "--subject", "slow.x"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const said = new Set();
  let ready = false;
  readline.createInterface({ input: child.stdout }).on("line", (l) => {
    if (l.trim() === "ready") ready = true;
    else {
      try {
        for (const k of Object.keys(JSON.parse(l))) said.add(k);
      } catch (_) {
        log("slow subscriber said", l);
      }
    }
  });
  try {
    await waitUntil(() => ready, 15000, "slow subscriber ready");
    const otherNc = await conn([s[0]]);
    const pub = await conn([s[1]]);
    const other = new Collector();
    otherNc.subscribe("slow.x", { callback: other.cb });
    await otherNc.flush();
    await probeUntil(pub, "slow.x", () => other.probes, "slow consumer");
    process.kill(child.pid, "SIGSTOP");
    for (let i = 0; i < n; i++) {
      pub.publish("slow.x", payload);
      // Paced by the running subscriber, so that only the stopped one
      // falls behind.
      if (i % 1024 === 1023) {
        await pub.flush();
        await waitUntil(() => other.msgs.length >= i - 2048, 30000, "the running subscriber to keep up");
      }
    }
    await pub.flush();
    await waitUntil(() => other.msgs.length >= n, 30000, "the running subscriber");
    const others = other.msgs.length;
    process.kill(child.pid, "SIGCONT");
    // Probes until the continued subscriber, reconnected and resubscribed,
    // gets one (bounded).
    const deadline = Date.now() + 20000;
    while (!said.has("again") && Date.now() < deadline && child.exitCode === null) {
      pub.publish("slow.x", te.encode("again"));
      await pub.flush();
      await sleep(100);
    }
    await otherNc.close();
    await pub.close();
    return [{ others, reconnected: said.has("reconnected"), receives_again: said.has("again") }, {}];
  } finally {
    if (child.exitCode === null && child.signalCode === null) {
      process.kill(child.pid, "SIGCONT");
      child.kill("SIGKILL");
    }
  }
}

async function scJetstream(s) {
  const nc = await conn([s[1]]);
  const js = nc.jetstream({ timeout: 3000 });
  const t0 = Date.now();
  let pubErr;
  try {
    await js.publish("js.x", te.encode("x"));
    pubErr = "published";
  } catch (e) {
    pubErr = errName(e);
  }
  const t1 = Date.now();
  let infoErr;
  try {
    await nc.jetstreamManager({ timeout: 3000 });
    infoErr = "answered";
  } catch (e) {
    infoErr = errName(e);
  }
  const t2 = Date.now();
  await nc.close();
  return [{ publish: pubErr, manager: infoErr }, { publish_ms: t1 - t0, manager_ms: t2 - t1 }];
}

// Counts "reconnect" status events of `nc` into `box.n`.
function countReconnects(nc, box) {
  (async () => {
    for await (const st of nc.status()) {
      if (st.type === "reconnect") box.n++;
    }
  })().catch(() => {});
}

async function scNodeKill(s) {
  const box = { n: 0 };
  const sub = await conn(s);
  countReconnects(sub, box);
  const pub = await conn([s[1], s[2]]);
  const c = new Collector();
  sub.subscribe("kill.x", { callback: c.cb });
  await sub.flush();
  await probeUntil(pub, "kill.x", () => c.probes, "before kill");
  const before = sub.getServer();
  await ctl("kill", 0);
  await waitUntil(() => box.n > 0, 20000, "reconnect");
  const after = sub.getServer();
  const start = c.probes;
  // INTEREST-WAIT (and the point of the scenario): the resubscription
  // made on reconnect must reach the publisher's node.
  await probeUntil(pub, "kill.x", () => c.probes > start, "after kill");
  const n = 100;
  for (let i = 0; i < n; i++) pub.publish("kill.x", te.encode(String(i)));
  await pub.flush();
  await waitUntil(() => c.msgs.length >= n, 20000, "messages after reconnect");
  const ok = c.msgs.length === n && c.msgs.every((m, i) => td.decode(m.data) === String(i));
  await sub.close();
  await pub.close();
  await ctl("start", 0);
  return [
    { reconnected: true, moved: before !== after, received_after: c.msgs.length, in_order: ok },
    { server_before: before, server_after: after },
  ];
}

async function scReconnect50(s) {
  const k = 50;
  const box = { n: 0 };
  const ncs = await Promise.all(Array.from({ length: k }, () => conn([s[2], s[0]])));
  const cols = ncs.map(() => new Collector());
  ncs.forEach((nc, i) => {
    countReconnects(nc, box);
    nc.subscribe("many.x", { callback: cols[i].cb });
  });
  await Promise.all(ncs.map((nc) => nc.flush()));
  const pub = await conn([s[1]]);
  await probeUntil(pub, "many.x", () => cols.every((c) => c.probes), "50 before kill");
  await ctl("kill", 2);
  await waitUntil(() => box.n >= k, 30000, "50 reconnects");
  const starts = cols.map((c) => c.probes);
  // INTEREST-WAIT: every resubscription must reach the publisher's node.
  await probeUntil(pub, "many.x", () => cols.every((c, i) => c.probes > starts[i]), "50 after kill", 30000);
  const n = 10;
  for (let i = 0; i < n; i++) pub.publish("many.x", te.encode(String(i)));
  await pub.flush();
  await waitUntil(() => cols.every((c) => c.msgs.length >= n), 20000, "50 receive");
  await sleep(100);
  const full = cols.filter((c) => c.msgs.length === n && c.msgs.every((m, i) => td.decode(m.data) === String(i))).length;
  for (const nc of ncs) await nc.close();
  await pub.close();
  await ctl("start", 2);
  return [{ clients: k, reconnected: box.n, received_all: full }, {}];
}

// The interest barrier: subscribe on node 1, flush (PING/PONG), publish at
// once from node 2, no probe. weft answers the PONG only once every live
// node applied the SUB, so no round may miss; nats-server gives no such
// promise (a miss there is recorded, not required). The first miss ends
// the scenario, so at most one round waits the full time.
async function scBarrier(s) {
  const sub = await conn([s[0]]);
  const pub = await conn([s[1]]);
  const rounds = 200;
  let done = 0;
  let missed = false;
  for (let i = 0; i < rounds && !missed; i++) {
    let got = false;
    const subject = `barrier.js.${i}`;
    const sb = sub.subscribe(subject, { callback: () => { got = true; } });
    await sub.flush();
    pub.publish(subject, te.encode("x"));
    await pub.flush();
    try {
      await waitUntil(() => got, 5000, "barrier message");
      done++;
    } catch (_) {
      missed = true;
    }
    sb.unsubscribe();
  }
  await sub.close();
  await pub.close();
  return [{ rounds, no_miss: !missed && done === rounds }, { done }];
}

const SCENARIOS = [
  ["barrier", scBarrier],
  ["order", scOrder],
  ["wildcards", scWildcards],
  ["queue", scQueue],
  ["request", scRequest],
  ["headers", scHeaders],
  ["drain", scDrain],
  ["max_payload", scMaxPayload],
  ["stopped_subscriber", scStoppedSubscriber],
  ["slow_consumer", scSlowConsumer],
  ["jetstream", scJetstream],
  ["node_kill", scNodeKill],
  ["reconnect_50", scReconnect50],
];

async function mainScenarios(servers, only) {
  listenStdin();
  for (const [name, fn] of SCENARIOS) {
    if (only.length && !only.includes(name)) continue;
    const t0 = Date.now();
    try {
      const [result, info] = await withTimeout(fn(servers), SCENARIO_LIMIT_MS, name);
      info.ms = Date.now() - t0;
      emit({ scenario: name, result, info });
    } catch (e) {
      emit({ scenario: name, error: `${errName(e)}: ${e && e.stack}` });
    }
  }
  emit({ done: true });
  process.exit(0);
}

async function mainSub(server, subject, count) {
  // One subscriber process: stopped and continued by the parent.
  const nc = await conn([server]);
  const c = new Collector();
  nc.subscribe(subject, { callback: c.cb });
  await nc.flush();
  process.stdout.write("ready\n");
  try {
    await waitUntil(() => c.msgs.length >= count, 60000, "subscriber messages");
  } catch (_) {
    // reported as a short count
  }
  emit({ received: c.msgs.length });
  await nc.close();
  process.exit(0);
}

async function mainSlowSub(servers, subject) {
  // The slow-consumer subscriber: says when it reconnected and when it got
  // an `again` message after that.
  const nc = await conn(servers);
  (async () => {
    for await (const st of nc.status()) {
      if (st.type === "reconnect") emit({ reconnected: true });
      else log("slow subscriber status", st.type, st.data);
    }
  })().catch(() => {});
  let again = false;
  nc.subscribe(subject, {
    callback: (err, msg) => {
      if (!err && td.decode(msg.data) === "again") again = true;
    },
  });
  await nc.flush();
  process.stdout.write("ready\n");
  try {
    await waitUntil(() => again, 90000, "again");
    emit({ again: true });
  } catch (_) {
    // reported by its absence
  }
  await nc.close();
  process.exit(0);
}

function arg(name, dflt) {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : dflt;
}

const servers = (arg("--servers", "") || "").split(",").filter(Boolean);
if (!servers.length) {
  process.stderr.write("--servers is required\n");
  process.exit(2);
}
if (arg("--role", "scenarios") === "sub") {
  mainSub(servers[0], arg("--subject"), Number(arg("--count")));
} else if (arg("--role", "scenarios") === "slowsub") {
  mainSlowSub(servers, arg("--subject"));
} else {
  mainScenarios(servers, arg("--only", "").split(",").filter(Boolean));
}
