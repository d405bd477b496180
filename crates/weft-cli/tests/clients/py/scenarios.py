#!/usr/bin/env python3
"""nats-py scenarios, run by crates/weft-cli/tests/real_clients.rs.

The same script runs against a weft cluster and a nats-server cluster; the
Rust test compares the results. Protocol with the test (stdout/stdin):

- every scenario prints one line `{"scenario": NAME, "result": {...},
  "info": {...}}` (or `"error": TEXT` instead of "result"); only "result"
  is compared, "info" is for the log;
- to kill or restart node I it prints `{"ctl": "kill"|"start", "node": I}`
  and waits for one line on stdin (the node is down, or up and serving).

`--role sub` runs one subscriber process (the SIGSTOP scenario): it prints
`ready` once subscribed, then `{"received": N}` when it has COUNT messages
or its deadline passes. `--role slowsub` is the slow-consumer scenario's
subscriber process: `ready`, then `{"reconnected": true}` on every
reconnect and `{"again": true}` once it receives an `again` message.

Every wait is bounded. Waits marked INTEREST-WAIT are for nats-server,
where interest reaches other servers some time after the PONG of a flush;
weft needs none (its PONG waits for every live node: the `barrier`
scenario checks that without any probe).
"""

import argparse
import asyncio
import json
import os
import signal
import sys
import time

import nats
import nats.errors
import nats.js.errors

SCENARIO_LIMIT = 40.0


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def log(*args):
    print("[py]", *args, file=sys.stderr, flush=True)


async def ctl(action, node):
    """Asks the test to kill or start a node; returns when it is done."""
    emit({"ctl": action, "node": node})
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if line.strip() != "done":
        raise RuntimeError(f"ctl {action} {node}: got {line!r}")


async def quiet_error(e):
    log("client error:", repr(e))


async def connect(servers, **kw):
    opts = dict(
        servers=servers,
        dont_randomize=True,
        reconnect_time_wait=0.2,
        max_reconnect_attempts=200,
        connect_timeout=2,
        error_cb=quiet_error,
    )
    opts.update(kw)
    return await nats.connect(**opts)


async def wait_until(cond, limit, what):
    """Polls cond() every 10 ms; raises after `limit` seconds."""
    deadline = time.monotonic() + limit
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


class Collector:
    """Records the non-probe messages of one subscription; counts probes."""

    def __init__(self):
        self.msgs = []
        self.probes = 0

    async def cb(self, msg):
        if msg.data.startswith(b"probe"):
            self.probes += 1
        else:
            self.msgs.append(msg)


async def probe_until(pub, subject, cond, what, limit=15.0):
    # INTEREST-WAIT: publish probes until the subscribers' interest has
    # reached the publisher's node (cond() sees a probe).
    deadline = time.monotonic() + limit
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no probe arrived: {what}")
        await pub.publish(subject, b"probe")
        await pub.flush()
        await asyncio.sleep(0.05)


# ---------------------------------------------------------------- scenarios


async def sc_order(s):
    sub = await connect([s[0]])
    pubs = [await connect([s[1]]), await connect([s[2]])]
    c = Collector()
    await sub.subscribe("order.x", cb=c.cb)
    await sub.flush()
    for p in pubs:
        start = c.probes
        await probe_until(p, "order.x", lambda: c.probes > start, "order")
    n = 500

    async def run(k, p):
        for i in range(n):
            await p.publish("order.x", f"p{k}-{i}".encode())
        await p.flush()

    await asyncio.gather(*(run(k, p) for k, p in enumerate(pubs)))
    await wait_until(lambda: len(c.msgs) >= 2 * n, 20, "order messages")
    await asyncio.sleep(0.1)
    seqs = {0: [], 1: []}
    for m in c.msgs:
        k, i = m.data.decode()[1:].split("-")
        seqs[int(k)].append(int(i))
    for nc in [sub] + pubs:
        await nc.close()
    return {
        "received": len(c.msgs),
        "in_order": [seqs[k] == list(range(n)) for k in (0, 1)],
    }, {}


async def sc_wildcards(s):
    sub = await connect([s[0]])
    pub = await connect([s[1]])
    star, gt = Collector(), Collector()
    await sub.subscribe("wc.*", cb=star.cb)
    await sub.subscribe("wc.>", cb=gt.cb)
    await sub.flush()
    await probe_until(pub, "wc.probe", lambda: star.probes and gt.probes, "wildcards")
    for subj in ["wc.a", "wc.a.b", "wc.b", "wx.a", "wc", "wc.b.c.d", "wc.end"]:
        await pub.publish(subj, b"m")
    await pub.flush()
    await wait_until(
        lambda: any(m.subject == "wc.end" for m in star.msgs)
        and any(m.subject == "wc.end" for m in gt.msgs),
        20,
        "wc.end",
    )
    await asyncio.sleep(0.1)
    await sub.close()
    await pub.close()
    return {"star": [m.subject for m in star.msgs], "gt": [m.subject for m in gt.msgs]}, {}


async def sc_queue(s):
    # Members on nodes 1 and 3, the publisher on node 2: every message has
    # to pick one member across the cluster.
    member_ncs = [await connect([s[0]]), await connect([s[0]]), await connect([s[2]])]
    plain_nc = await connect([s[0]])
    pub = await connect([s[1]])
    members = [Collector() for _ in member_ncs]
    for nc, c in zip(member_ncs, members):
        await nc.subscribe("q.work", queue="workers", cb=c.cb)
        await nc.flush()
    plain = Collector()
    await plain_nc.subscribe("q.work", cb=plain.cb)
    await plain_nc.flush()
    await probe_until(
        pub,
        "q.work",
        lambda: plain.probes and sum(c.probes for c in members),
        "queue",
    )
    n = 300
    for i in range(n):
        await pub.publish("q.work", str(i).encode())
    await pub.flush()
    await wait_until(
        lambda: len(plain.msgs) >= n and sum(len(c.msgs) for c in members) >= n,
        20,
        "queue messages",
    )
    # Duplicates would arrive with the rest; give them a moment to show.
    await asyncio.sleep(0.3)
    got = [m.data for c in members for m in c.msgs]
    for nc in member_ncs + [plain_nc, pub]:
        await nc.close()
    return {"total": len(got), "distinct": len(set(got)), "plain": len(plain.msgs)}, {
        "per_member": [len(c.msgs) for c in members]
    }


async def sc_request(s):
    svc = await connect([s[0]])
    req = await connect([s[2]])

    async def answer(msg):
        await msg.respond(b"re:" + msg.data)

    await svc.subscribe("rr.svc", cb=answer)
    await svc.flush()
    # INTEREST-WAIT: until the responder's interest reaches node 3, a
    # request there is (rightly) answered no-responders.
    deadline = time.monotonic() + 15
    while True:
        try:
            await req.request("rr.svc", b"probe", timeout=1)
            break
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)
    correct = 0
    for i in range(20):
        r = await req.request("rr.svc", str(i).encode(), timeout=5)
        correct += r.data == f"re:{i}".encode()
    t0 = time.monotonic()
    try:
        await req.request("rr.nobody", b"x", timeout=10)
        nr = "answered"
    except Exception as e:  # noqa: BLE001 - the error's name is the result
        nr = type(e).__name__
    elapsed = time.monotonic() - t0
    await svc.close()
    await req.close()
    return {"correct": correct, "no_responders": nr}, {"no_responders_ms": round(elapsed * 1000)}


async def sc_headers(s):
    sub = await connect([s[0]])
    pub = await connect([s[1]])
    c = Collector()
    await sub.subscribe("hdr.x", cb=c.cb)
    await sub.flush()
    # A raw-protocol subscriber on the same node, to see the header block
    # exactly as the server writes it.
    rr, rw = await asyncio.open_connection(*hostport(s[0]))
    await rr.readline()  # INFO
    rw.write(b'CONNECT {"headers":true,"verbose":false}\r\nSUB hdr.x 1\r\nPING\r\n')
    await rw.drain()
    await read_until(rr, b"PONG\r\n")
    await probe_until(pub, "hdr.x", lambda: c.probes, "headers")
    await pub.publish("hdr.x", b"empty", headers={})
    await pub.publish("hdr.x", b"single", headers={"X-One": "1", "X-Two": "two words"})
    await pub.flush()
    # nats-py's headers are a dict, so a multi-value header goes out raw.
    pr, pw = await asyncio.open_connection(*hostport(s[1]))
    await pr.readline()
    block = b"NATS/1.0\r\nX-Multi: a\r\nX-Multi: b\r\nX-One: 1\r\n\r\n"
    body = b"multi"
    pw.write(
        b'CONNECT {"headers":true,"verbose":false}\r\n'
        + f"HPUB hdr.x {len(block)} {len(block) + len(body)}\r\n".encode()
        + block
        + body
        + b"\r\nPING\r\n"
    )
    await pw.drain()
    await read_until(pr, b"PONG\r\n")
    await wait_until(lambda: len(c.msgs) >= 3, 20, "header messages")
    raw = await read_until(rr, b"multi\r\n")
    pw.close()
    rw.close()
    res = {m.data.decode(): dict(m.headers or {}) for m in c.msgs}
    # The raw subscriber's view of the multi-value message: its header block.
    i = raw.rfind(b"HMSG hdr.x")
    raw_block = raw[raw.index(b"\r\n", i) + 2 :].split(b"\r\n\r\n")[0].decode()
    await sub.close()
    await pub.close()
    return {"received": res, "order": [m.data.decode() for m in c.msgs], "multi_raw": raw_block}, {}


def hostport(url):
    host, port = url.split("//")[1].rsplit(":", 1)
    return host, int(port)


async def read_until(reader, needle, limit=10.0):
    seen = b""
    deadline = time.monotonic() + limit
    while needle not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no {needle!r} in {seen[-200:]!r}")
        chunk = await asyncio.wait_for(reader.read(65536), left)
        if not chunk:
            raise ConnectionError(f"closed before {needle!r}: {seen[-200:]!r}")
        seen += chunk
    return seen


async def sc_drain(s):
    # The publisher is on the subscriber's node so that, once its marker
    # comes back, every message is in flight to the subscriber (queued at
    # the server or in the client); drain must hand all of them to the
    # handler. nats-py's flush() writes its PING ahead of commands still
    # pending in the client, so it does not prove that earlier SUBs/PUBs
    # reached the server: a probe and a marker do.
    sub = await connect([s[0]])
    pub = await connect([s[0]])
    handled = []
    probes = [0]

    async def slow(msg):
        if msg.data == b"probe":
            probes[0] += 1
            return
        await asyncio.sleep(0.002)
        handled.append(msg.data)

    await sub.subscribe("drain.x", cb=slow)
    await sub.flush()
    await probe_until(pub, "drain.x", lambda: probes[0], "drain subscriber registered")
    marker = Collector()
    await pub.subscribe("drain.marker", cb=marker.cb)
    await pub.flush()
    await probe_until(pub, "drain.marker", lambda: marker.probes, "drain marker registered")
    n = 200
    for i in range(n):
        await pub.publish("drain.x", str(i).encode())
    await pub.publish("drain.marker", b"sent")
    await wait_until(lambda: marker.msgs, 10, "drain marker")
    before = len(handled)
    await sub.drain()
    ok_order = handled == [str(i).encode() for i in range(n)]
    await pub.close()
    return {"handled": len(handled), "in_order": ok_order, "closed": sub.is_closed}, {
        "handled_before_drain": before
    }


async def sc_max_payload(s):
    nc = await connect([s[1]])
    mp = nc.max_payload
    try:
        await nc.publish("mp.x", b"x" * (mp + 1))
        err = "accepted"
    except Exception as e:  # noqa: BLE001
        err = type(e).__name__
    c = Collector()
    await nc.subscribe("mp.x", cb=c.cb)
    await nc.publish("mp.x", b"small")
    await nc.flush()
    await wait_until(lambda: c.msgs, 10, "message after refusal")
    await nc.close()
    return {"max_payload": mp, "error": err, "usable_after": bool(c.msgs)}, {}


async def sc_stopped_subscriber(s):
    n = 2000
    payload = b"s" * 512
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        os.path.abspath(__file__),
        "--role",
        "sub",
        "--servers",
        s[0],
        "--subject",
        "stop.x",
        "--count",
        str(n),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        line = await asyncio.wait_for(child.stdout.readline(), 15)
        if line.strip() != b"ready":
            raise RuntimeError(f"subscriber process said {line!r}")
        other_nc = await connect([s[0]])
        pub = await connect([s[1]])
        other = Collector()
        await other_nc.subscribe("stop.x", cb=other.cb)
        await other_nc.flush()
        await probe_until(pub, "stop.x", lambda: other.probes, "stopped subscriber")
        os.kill(child.pid, signal.SIGSTOP)
        for _ in range(n):
            await pub.publish("stop.x", payload)
        await pub.flush()
        await wait_until(lambda: len(other.msgs) >= n, 20, "the running subscriber")
        others = len(other.msgs)
        os.kill(child.pid, signal.SIGCONT)
        line = await asyncio.wait_for(child.stdout.readline(), 25)
        stopped = json.loads(line)["received"]
        await asyncio.wait_for(child.wait(), 10)
        await other_nc.close()
        await pub.close()
        return {"others": others, "stopped_after_cont": stopped}, {}
    finally:
        if child.returncode is None:
            os.kill(child.pid, signal.SIGCONT)
            child.kill()
            await child.wait()


async def sc_slow_consumer(s):
    # The servers run with max_pending = 4 MiB (see real_clients.rs): a
    # stopped subscriber that falls 32 MiB behind is closed as a slow
    # consumer, while the other subscriber gets everything; continued, the
    # stopped one reconnects by itself and receives again.
    n = 32768
    payload = b"w" * 1024
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        os.path.abspath(__file__),
        "--role",
        "slowsub",
        "--servers",
        ",".join(s),
        "--subject",
        "slow.x",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        line = await asyncio.wait_for(child.stdout.readline(), 15)
        if line.strip() != b"ready":
            raise RuntimeError(f"subscriber process said {line!r}")
        other_nc = await connect([s[0]])
        pub = await connect([s[1]])
        other = Collector()
        await other_nc.subscribe("slow.x", cb=other.cb)
        await other_nc.flush()
        await probe_until(pub, "slow.x", lambda: other.probes, "slow consumer")
        os.kill(child.pid, signal.SIGSTOP)
        for i in range(n):
            await pub.publish("slow.x", payload)
            if i % 1024 == 1023:
                # Paced by the running subscriber, so that only the
                # stopped one falls behind.
                await wait_until(lambda: len(other.msgs) >= i - 2048, 30, "the running subscriber to keep up")
        await pub.flush()
        await wait_until(lambda: len(other.msgs) >= n, 30, "the running subscriber")
        others = len(other.msgs)
        os.kill(child.pid, signal.SIGCONT)
        said = set()

        async def read_child():
            while True:
                line = await child.stdout.readline()
                if not line:
                    return
                said.update(json.loads(line).keys())

        reader = asyncio.create_task(read_child())
        # Probes until the continued subscriber, reconnected and
        # resubscribed, gets one (bounded).
        deadline = time.monotonic() + 20
        while "again" not in said and time.monotonic() < deadline and not reader.done():
            await pub.publish("slow.x", b"again")
            await pub.flush()
            await asyncio.sleep(0.1)
        reader.cancel()
        await other_nc.close()
        await pub.close()
        return {"others": others, "reconnected": "reconnected" in said, "receives_again": "again" in said}, {}
    finally:
        if child.returncode is None:
            os.kill(child.pid, signal.SIGCONT)
            child.kill()
            await child.wait()


async def sc_jetstream(s):
    nc = await connect([s[1]])
    js = nc.jetstream(timeout=3)
    t0 = time.monotonic()
    try:
        await js.publish("js.x", b"x")
        pub_err = "published"
    except Exception as e:  # noqa: BLE001
        pub_err = type(e).__name__
    t1 = time.monotonic()
    try:
        await nc.jsm(timeout=3).account_info()
        info_err = "answered"
    except Exception as e:  # noqa: BLE001
        info_err = type(e).__name__
    t2 = time.monotonic()
    await nc.close()
    return {"publish": pub_err, "account_info": info_err}, {
        "publish_ms": round((t1 - t0) * 1000),
        "account_info_ms": round((t2 - t1) * 1000),
    }


async def sc_node_kill(s):
    reconnected = asyncio.Event()

    async def on_reconnect():
        reconnected.set()

    sub = await connect(list(s), reconnected_cb=on_reconnect)
    pub = await connect([s[1], s[2]])
    c = Collector()
    await sub.subscribe("kill.x", cb=c.cb)
    await sub.flush()
    await probe_until(pub, "kill.x", lambda: c.probes, "before kill")
    before = sub.connected_url.port
    await ctl("kill", 0)
    await asyncio.wait_for(reconnected.wait(), 20)
    after = sub.connected_url.port
    start = c.probes
    # INTEREST-WAIT (and the point of the scenario): the resubscription
    # made on reconnect must reach the publisher's node.
    await probe_until(pub, "kill.x", lambda: c.probes > start, "after kill")
    n = 100
    for i in range(n):
        await pub.publish("kill.x", str(i).encode())
    await pub.flush()
    await wait_until(lambda: len(c.msgs) >= n, 20, "messages after reconnect")
    ok = [m.data for m in c.msgs] == [str(i).encode() for i in range(n)]
    await sub.close()
    await pub.close()
    await ctl("start", 0)
    return {"reconnected": True, "moved": before != after, "received_after": len(c.msgs), "in_order": ok}, {
        "port_before": before,
        "port_after": after,
    }


async def sc_reconnect_50(s):
    k = 50
    reconnects = [0]

    async def on_reconnect():
        reconnects[0] += 1

    ncs = await asyncio.gather(*(connect([s[2], s[0]], reconnected_cb=on_reconnect) for _ in range(k)))
    cols = [Collector() for _ in range(k)]
    for nc, c in zip(ncs, cols):
        await nc.subscribe("many.x", cb=c.cb)
    await asyncio.gather(*(nc.flush() for nc in ncs))
    pub = await connect([s[1]])
    await probe_until(pub, "many.x", lambda: all(c.probes for c in cols), "50 before kill")
    await ctl("kill", 2)
    await wait_until(lambda: reconnects[0] >= k, 30, "50 reconnects")
    starts = [c.probes for c in cols]
    # INTEREST-WAIT: every resubscription must reach the publisher's node.
    await probe_until(
        pub,
        "many.x",
        lambda: all(c.probes > st for c, st in zip(cols, starts)),
        "50 after kill",
        limit=30,
    )
    n = 10
    for i in range(n):
        await pub.publish("many.x", str(i).encode())
    await pub.flush()
    await wait_until(lambda: all(len(c.msgs) >= n for c in cols), 20, "50 receive")
    await asyncio.sleep(0.1)
    full = sum(1 for c in cols if [m.data for m in c.msgs] == [str(i).encode() for i in range(n)])
    for nc in ncs:
        await nc.close()
    await pub.close()
    await ctl("start", 2)
    return {"clients": k, "reconnected": reconnects[0], "received_all": full}, {}


async def sc_barrier(s):
    """The interest barrier: subscribe on node 1, flush, publish at once
    from node 2, no probe. weft answers the PONG only once every live node
    applied the SUB; nats-server gives no such promise (a miss there is
    recorded, not required). nats-py 2.16's flush() writes its PING ahead
    of commands still pending in the client (the SUB among them), so one
    flush does not prove the SUB reached the server; a second flush, whose
    PING follows the SUB on the socket, does. The first miss ends it."""
    sub = await connect([s[0]])
    pub = await connect([s[1]])
    rounds = 200
    done = 0
    missed = False
    for i in range(rounds):
        got = []

        async def cb(msg, got=got):
            got.append(msg)

        sb = await sub.subscribe(f"barrier.py.{i}", cb=cb)
        await sub.flush()
        await sub.flush()
        await pub.publish(f"barrier.py.{i}", b"x")
        await pub.flush()
        try:
            await wait_until(lambda got=got: got, 5, "barrier message")
            done += 1
        except TimeoutError:
            missed = True
        await sb.unsubscribe()
        if missed:
            break
    await sub.close()
    await pub.close()
    return {"rounds": rounds, "no_miss": not missed and done == rounds}, {"done": done}


SCENARIOS = [
    ("barrier", sc_barrier),
    ("order", sc_order),
    ("wildcards", sc_wildcards),
    ("queue", sc_queue),
    ("request", sc_request),
    ("headers", sc_headers),
    ("drain", sc_drain),
    ("max_payload", sc_max_payload),
    ("stopped_subscriber", sc_stopped_subscriber),
    ("slow_consumer", sc_slow_consumer),
    ("jetstream", sc_jetstream),
    ("node_kill", sc_node_kill),
    ("reconnect_50", sc_reconnect_50),
]


async def main_scenarios(servers, only):
    for name, fn in SCENARIOS:
        if only and name not in only:
            continue
        t0 = time.monotonic()
        try:
            result, info = await asyncio.wait_for(fn(servers), SCENARIO_LIMIT)
            info["ms"] = round((time.monotonic() - t0) * 1000)
            emit({"scenario": name, "result": result, "info": info})
        except Exception as e:  # noqa: BLE001 - reported, the next one runs
            emit({"scenario": name, "error": f"{type(e).__name__}: {e}"})
    emit({"done": True})


async def main_sub(server, subject, count):
    """One subscriber process: stopped and continued by the parent."""
    nc = await connect([server])
    c = Collector()
    await nc.subscribe(subject, cb=c.cb)
    await nc.flush()
    print("ready", flush=True)
    try:
        await wait_until(lambda: len(c.msgs) >= count, 60, "subscriber messages")
    except TimeoutError:
        pass
    emit({"received": len(c.msgs)})
    await nc.close()


async def main_slowsub(servers, subject):
    """The slow-consumer subscriber: says when it reconnected and when it
    got an `again` message after that."""

    async def on_reconnect():
        emit({"reconnected": True})

    async def on_disconnect():
        log("slow subscriber disconnected")

    nc = await connect(servers, reconnected_cb=on_reconnect, disconnected_cb=on_disconnect)
    again = asyncio.Event()

    async def cb(msg):
        if msg.data == b"again":
            again.set()

    await nc.subscribe(subject, cb=cb, pending_bytes_limit=256 * 1024 * 1024)
    await nc.flush()
    print("ready", flush=True)
    try:
        await asyncio.wait_for(again.wait(), 90)
        emit({"again": True})
    except asyncio.TimeoutError:
        pass
    await nc.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--servers", required=True, help="comma-separated nats:// URLs, node order")
    ap.add_argument("--role", default="scenarios")
    ap.add_argument("--only", default="", help="comma-separated scenario names")
    ap.add_argument("--subject")
    ap.add_argument("--count", type=int)
    a = ap.parse_args()
    servers = a.servers.split(",")
    if a.role == "sub":
        asyncio.run(main_sub(servers[0], a.subject, a.count))
    elif a.role == "slowsub":
        asyncio.run(main_slowsub(servers, a.subject))
    else:
        asyncio.run(main_scenarios(servers, [x for x in a.only.split(",") if x]))


if __name__ == "__main__":
    main()
