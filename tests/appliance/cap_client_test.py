#!/usr/bin/env python3
"""An independent CAP/1 client, written from doc/protocols/cap.md alone with
Debian's python3-zmq, driving a real custosd on 127.0.0.1.

Usage: cap_client_test.py CUSTOSD CUSTOS CUSTOS-AGENT   (the three binaries)

Checks: an unknown key never completes the CURVE handshake (the ZAP handler
refuses it: nothing arrives); enrolment with a token from `custos agent add`,
dialling with the key pair derived from its secret (section 4), which may
only ENROL (401 otherwise) and stops working once used; HELLO first (409
otherwise); WELCOME; PING and
PONG; malformed JSON, unknown commands and fields, wrong field types, a
command of the other side (403), replayed and skipped sequence numbers,
oversized headers (413), a wrong version frame; a client with the wrong
appliance key gets nothing; a backup job driven by hand (blobs that do not
hash to their ID, do not decompress or are not trees are rejected with 422
and never stored, HAVE is answered from this agent's blobs only, a COMMIT of
a tree that never arrived is refused and the operator's command fails); a
restore job driven by hand (section 5.2: JOB with the snapshot's tree, WANT
answered with BLOBs that hash to their IDs within the granted CREDIT, a WANT
for a blob outside the job refused with 403, the job failed and its report
kept); a revoked agent is refused at its next message and at the handshake
of any new connection;
and after all that the daemon still serves everyone (status, a fresh
session). Exits 0 when every check passed, 1 with the failed checks.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import zmq

CUSTOSD, CUSTOS, AGENT = sys.argv[1], sys.argv[2], sys.argv[3]
failures = []


def check(cond, what):
    print(("ok    " if cond else "FAIL  ") + what)
    if not cond:
        failures.append(what)


def finish(proc, timeout=20):
    """Waits for an operator command started with Popen (killed after `timeout` s); its stderr."""
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err


def blob_entry(blob_id, kind, compression, size, payload):
    """One entry of a BLOB message's "blobs" list (section 5.1)."""
    return {"id": blob_id, "kind": kind, "compression": compression, "size": size, "length": len(payload)}


def frames(header, payloads=()):
    return [b"CAP1", json.dumps(header).encode()] + list(payloads)


class Client:
    def __init__(self, ctx, endpoint, server_key, keys=None):
        self.pub, self.sec = keys or zmq.curve_keypair()
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.curve_serverkey = server_key
        self.sock.curve_publickey = self.pub
        self.sock.curve_secretkey = self.sec
        self.sock.connect(endpoint)
        self.seq = 0

    def send(self, mtype, fields=None, payloads=(), seq=None):
        self.seq = self.seq + 1 if seq is None else seq
        h = {"type": mtype, "seq": self.seq}
        h.update(fields or {})
        self.sock.send_multipart(frames(h, payloads))

    def send_raw(self, parts):
        self.sock.send_multipart(parts)

    def recv(self, timeout_ms=3000):
        if not self.sock.poll(timeout_ms):
            return None
        parts = self.sock.recv_multipart()
        assert parts[0] == b"CAP1", parts
        return json.loads(parts[1])

    def close(self):
        self.sock.close()


def is_error(reply, code):
    return reply is not None and reply.get("type") == "ERROR" and reply.get("code") == code


def main():
    work = tempfile.mkdtemp(prefix="cap-client-")
    data = os.path.join(work, "appliance")
    daemon = subprocess.Popen([CUSTOSD, "--data-dir", data, "--listen", "tcp://127.0.0.1:0", "--heartbeat-ms", "1000"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = daemon.stdout.readline().strip()
        endpoint = line.split()[-1]
        check(endpoint.startswith("tcp://127.0.0.1:"), "custosd reports its endpoint: " + line)
        env = dict(os.environ, CUSTOS_DATA_DIR=data)
        add = json.loads(subprocess.run([CUSTOS, "--json", "agent", "add", "py01"], env=env, check=True,
                                        capture_output=True, text=True).stdout)
        server_key = add["appliance_key"].encode()
        check(add["token"].startswith("CAPT1."), "custos agent add prints a CAPT1 token")
        # The token: base64url(appliance key 32 || secret 16), section 4.
        import base64
        from zmq.utils import z85
        raw = base64.urlsafe_b64decode(add["token"][6:] + "=" * (-len(add["token"][6:]) % 4))
        check(z85.encode(raw[:32]) == server_key, "the token carries the appliance key")
        secret = raw[32:].hex()

        # 0. A snapshot to restore later: a real agent backs up a small tree.
        src = os.path.join(work, "src")
        os.makedirs(os.path.join(src, "d"))
        with open(os.path.join(src, "d", "f"), "w") as f:
            f.write("restore me")
        radd = json.loads(subprocess.run([CUSTOS, "--json", "agent", "add", "real01"], env=env, check=True,
                                         capture_output=True, text=True).stdout)
        rstate = os.path.join(work, "real01")
        subprocess.run([AGENT, "--state-dir", rstate, "enroll", "--appliance", endpoint, "--token", radd["token"]],
                       check=True, capture_output=True)
        real = subprocess.Popen([AGENT, "--state-dir", rstate, "run"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        snapshot = None
        for _ in range(100):
            b0 = subprocess.run([CUSTOS, "--json", "backup", "--agent", "real01", src], env=env,
                                capture_output=True, text=True)
            if b0.returncode == 0:
                snapshot = json.loads(b0.stdout.strip().splitlines()[-1])["snapshot"]
                break
            time.sleep(0.1)
        real.terminate()
        real.wait(10)
        check(snapshot is not None, "a real agent backed up a tree to restore later")

        ctx = zmq.Context()
        # 1. An unknown key is refused during the handshake: nothing arrives,
        # not even an error (ZAP status 400), whatever it sends.
        u = Client(ctx, endpoint, server_key)
        u.send("HELLO", {"protocol": 1, "version": "py", "host": "py", "os": "linux", "resume": []})
        check(u.recv(1500) is None, "unknown key: refused at the handshake, nothing arrives")
        u.close()
        # A client trying fresh keys: all refused, and the log is not flooded
        # (at most 10 refused keys are logged a minute; checked at the end).
        flood = [Client(ctx, endpoint, server_key) for _ in range(12)]
        for f in flood:
            f.send("HELLO", {"protocol": 1, "version": "py", "host": "py", "os": "linux", "resume": []})
        check(all(f.recv(300) is None for f in flood), "12 more unknown keys: all refused at the handshake")
        for f in flood:
            f.close()
        # The enrolment key pair (section 4): secret key = BLAKE2b-256 keyed
        # with the token secret over "custos.enrol.v1", public key = X25519
        # of it with the base point.
        enrol_sec = z85.encode(hashlib.blake2b(b"custos.enrol.v1", key=bytes.fromhex(secret), digest_size=32).digest())
        enrol_keys = (zmq.curve_public(enrol_sec), enrol_sec)
        keys = zmq.curve_keypair()  # the agent's own long-term pair
        key_hex = z85.decode(keys[0]).hex()
        c = Client(ctx, endpoint, server_key, enrol_keys)
        c.send("HELLO", {"protocol": 1, "version": "py", "host": "py", "os": "linux", "resume": []})
        check(is_error(c.recv(), 401), "enrolment key: HELLO is refused with 401")
        c.send("ENROL", {"secret": "00" * 16, "key": key_hex, "host": "py", "version": "py"})
        check(is_error(c.recv(), 401), "enrolment key: ENROL with another secret is refused with 401")
        c.send("ENROL", {"secret": secret, "key": z85.decode(enrol_keys[0]).hex(), "host": "py", "version": "py"})
        check(is_error(c.recv(), 401), "enrolment key: enrolling the token's own key is refused with 401")
        c.send("ENROL", {"secret": secret, "host": "py", "version": "py"})
        check(is_error(c.recv(), 400), "ENROL without the key to enrol: 400")
        c.seq -= 1  # a malformed message does not use up its seq (section 3)
        # ... the right secret enrols the agent's own key as py01.
        c.send("ENROL", {"secret": secret, "key": key_hex, "host": "py", "version": "py"})
        r = c.recv()
        check(r is not None and r.get("type") == "ENROLLED" and r.get("name") == "py01", "ENROL -> ENROLLED py01")
        c.close()
        # The token is single-use: its key pair is refused at the handshake now.
        c2 = Client(ctx, endpoint, server_key, enrol_keys)
        c2.send("ENROL", {"secret": secret, "key": key_hex, "host": "py", "version": "py"})
        check(c2.recv(1500) is None, "a used token's key is refused at the handshake")
        c2.close()

        # 2. The enrolled key: HELLO first.
        a = Client(ctx, endpoint, server_key, keys)
        a.send("PING")
        check(is_error(a.recv(), 409), "PING before HELLO: 409")
        a.send("HELLO", {"protocol": 1, "version": "py", "host": "py", "os": "linux", "resume": []})
        w = a.recv()
        check(w is not None and w.get("type") == "WELCOME" and isinstance(w.get("heartbeat_ms"), int)
              and isinstance(w.get("credit"), int), "HELLO -> WELCOME with heartbeat_ms and credit")
        a.send("PING")
        check((a.recv() or {}).get("type") == "PONG", "PING -> PONG")
        # 3. Malformed messages: an error each, the session goes on.
        a.seq += 1
        a.send_raw([b"CAP1", b"{not json"])
        check(is_error(a.recv(), 400), "malformed JSON: 400")
        a.seq -= 1  # that message had no readable seq
        a.send("NOPE")
        check(is_error(a.recv(), 400), "unknown command: 400")
        a.send("PING", {"extra": 1})
        check(is_error(a.recv(), 400), "unknown field: 400")
        a.send("PROGRESS", {"job": "j", "files": "many", "bytes": 1})
        check(is_error(a.recv(), 400), "wrong field type: 400")
        a.send("JOB", {"job": "j", "kind": "restore", "params": {}})
        check(is_error(a.recv(), 403), "a command only the appliance may send: 403")
        a.send("PING", seq=a.seq)  # replayed number
        check(is_error(a.recv(), 400), "replayed seq: 400")
        a.seq = a.seq + 5 - 1
        a.send("PING")  # skipped numbers
        r = a.recv()
        check(is_error(r, 400) and "out of order" in r.get("reason", ""), "skipped seq: 400 out of order")
        a.seq = 0
        a.send("PING")  # the daemon expects the next number after the last accepted one: resync by reconnecting
        a.recv()
        big = {"type": "PING", "seq": 1, "pad": "x" * (70 * 1024)}
        a.send_raw([b"CAP1", json.dumps(big).encode()])
        check(is_error(a.recv(), 413), "oversized header: 413")
        a.send_raw([b"ZMTP", b"{}"])
        check(is_error(a.recv(), 400), "wrong version frame: 400")
        a.send("BLOB", {"job": "j", "blobs": [blob_entry("a" * 64, "data", "none", 1, b"x")]}, [b"x"])
        r = a.recv()
        check(r is not None and r.get("type") == "ERROR", "a BLOB for no job gets an error")
        a.send("BLOB", {"job": "j", "blobs": [blob_entry("a" * 64, "data", "none", 5, b"world")]}, [b"worldx"])
        check(is_error(a.recv(), 400), "BLOB entries whose lengths do not cut the payload exactly: 400")
        a.close()

        # 4. The wrong appliance key: CURVE fails, nothing arrives.
        wrong_pub, _ = zmq.curve_keypair()
        x = Client(ctx, endpoint, wrong_pub)
        x.send("HELLO", {"protocol": 1, "version": "py", "host": "py", "os": "linux", "resume": []})
        check(x.recv(1500) is None, "a client pinning the wrong appliance key gets nothing")
        x.close()

        # 5. The daemon still serves: status, and a fresh session for py01.
        st = subprocess.run([CUSTOS, "--json", "status"], env=env, capture_output=True, text=True)
        check(st.returncode == 0 and any(ag["name"] == "py01" for ag in json.loads(st.stdout)["agents"]),
              "custos status still answers and lists py01")
        b = Client(ctx, endpoint, server_key, keys)
        b.send("HELLO", {"protocol": 1, "version": "py", "host": "py", "os": "linux", "resume": []})
        check((b.recv() or {}).get("type") == "WELCOME", "a fresh session of py01 is welcomed")
        # 5b. A backup job (section 5.1) driven by hand: poisoned blobs are
        # rejected, HAVE is answered from this agent's own blobs only, and a
        # COMMIT of a tree that never arrived is refused.
        job_cli = subprocess.Popen([CUSTOS, "backup", "--agent", "py01", "/srv/x"], env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        job = b.recv(10000)
        check(job is not None and job.get("type") == "JOB" and job.get("kind") == "backup"
              and job["params"]["paths"] == ["/srv/x"] and len(job["params"]["chunker"]["key"]) == 64,
              "custos backup --agent py01 sends JOB {kind: backup, params: paths, chunker}")
        jid = (job or {}).get("job", "none")
        b.send("ACCEPT", {"job": jid})
        hid = hashlib.sha256(b"hello").hexdigest()
        b.send("HAVE", {"job": jid, "ids": [hid]})
        r = b.recv()
        check(r is not None and r.get("type") == "LACK" and r.get("ids") == [hid], "HAVE -> LACK for a new blob")
        b.send("BLOB", {"job": jid, "blobs": [blob_entry(hid, "data", "none", 5, b"hellx")]}, [b"hellx"])
        r = b.recv()
        check(is_error(r, 422), "a blob whose content does not hash to its ID: 422")
        # A rejected blob's bytes are granted back (section 6), after the error.
        r = b.recv()
        check(r is not None and r.get("type") == "CREDIT" and r.get("bytes") == 5, "... and its credit is returned")
        b.send("BLOB", {"job": jid, "blobs": [blob_entry(hid, "data", "zstd", 5, b"garbage!")]}, [b"garbage!"])
        check(is_error(b.recv(), 422), "a blob that does not decompress: 422")
        b.recv()
        b.send("BLOB", {"job": jid, "blobs": [blob_entry(hid, "tree", "none", 5, b"hello")]}, [b"hello"])
        check(is_error(b.recv(), 422), "a tree blob that does not decode: 422")
        b.recv()
        b.send("BLOB", {"job": jid, "blobs": [blob_entry(hid, "data", "none", 5, b"hello")]}, [b"hello"])
        r = b.recv()
        check(r is not None and r.get("type") == "CREDIT" and r.get("bytes") == 5, "a good blob is stored: CREDIT 5")
        b.send("HAVE", {"job": jid, "ids": [hid]})
        r = b.recv()
        check(r is not None and r.get("type") == "LACK" and r.get("ids") == [], "HAVE after the blob arrived: nothing lacking")
        # Several blobs in one BLOB: each is checked on its own; one CREDIT
        # for the whole payload.
        hid2 = hashlib.sha256(b"world").hexdigest()
        b.send("BLOB", {"job": jid, "blobs": [blob_entry(hid2, "data", "none", 5, b"world"),
                                              blob_entry(hid2, "data", "none", 5, b"wxrld")]}, [b"worldwxrld"])
        check(is_error(b.recv(), 422), "a batch with one poisoned blob: 422 for that one")
        r = b.recv()
        check(r is not None and r.get("type") == "CREDIT" and r.get("bytes") == 10, "... and one CREDIT for the batch")
        b.send("HAVE", {"job": jid, "ids": [hid2]})
        r = b.recv()
        check(r is not None and r.get("type") == "LACK" and r.get("ids") == [], "the good blob of the batch arrived")
        b.send("HAVE", {"job": "j-other", "ids": [hid]})
        check(is_error(b.recv(), 404), "HAVE for a job that is not this agent's: 404")
        missing = hashlib.sha256(b"a tree that never arrived").hexdigest()
        b.send("COMMIT", {"job": jid, "tree": missing, "atimes": [], "paths": ["/srv/x"], "summary": {}})
        check(is_error(b.recv(), 422), "COMMIT of a tree that never arrived: 422")
        job_err = finish(job_cli)
        check(job_cli.returncode == 1 and "failed" in job_err,
              "the operator's custos backup --agent reports the job failed (exit %s: %s)"
              % (job_cli.returncode, job_err.strip()))
        # 5c. A restore job (section 5.2) driven by hand: the appliance
        # sends what is asked within the job, nothing outside it.
        b.send("PING")
        b.recv()
        rtarget = os.path.join(work, "restore-target")
        restore_cli = subprocess.Popen([CUSTOS, "restore", snapshot or "none", "--agent", "py01", "--target", rtarget],
                                       env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        job = b.recv(10000) or {}
        params = job.get("params", {})
        check(job.get("type") == "JOB" and job.get("kind") == "restore" and params.get("snapshot") == snapshot
              and len(params.get("tree", "")) == 64 and params.get("target") == rtarget
              and isinstance(params.get("atimes"), list),
              "custos restore --agent py01 sends JOB {kind: restore, params: snapshot, tree, atimes, target}")
        rjid = job.get("job", "none")
        b.send("ACCEPT", {"job": rjid})
        b.send("WANT", {"job": rjid, "ids": [params.get("tree", "0" * 64)]})
        r = b.recv(500)
        check(r is None, "no BLOB is sent before the agent grants CREDIT")
        b.send("CREDIT", {"job": rjid, "bytes": 16 << 20})
        parts = b.sock.recv_multipart() if b.sock.poll(3000) else [b"", b"{}"]
        r = json.loads(parts[1])
        e = (r.get("blobs") or [{}])[0]
        ok = (r.get("type") == "BLOB" and len(r.get("blobs", [])) == 1 and e.get("id") == params.get("tree")
              and e.get("kind") == "tree" and len(parts) == 3 and e.get("length") == len(parts[2]))
        if ok and e.get("compression") == "none":
            ok = hashlib.sha256(parts[2]).hexdigest() == e["id"] and e.get("size") == len(parts[2])
        check(ok, "WANT the snapshot's tree -> BLOB {kind: tree} (content hashes to its ID when plain)")
        outside = hashlib.sha256(b"a blob that is not part of this restore").hexdigest()
        b.send("WANT", {"job": rjid, "ids": [outside]})
        check(is_error(b.recv(), 403), "WANT of a blob outside the job: 403")
        b.send("WANT", {"job": rjid, "ids": [params.get("tree", "0" * 64)]})
        check(is_error(b.recv(), 404), "... and the job is over (404 for the next WANT)")
        rerr = finish(restore_cli)
        check(restore_cli.returncode == 1 and "failed" in rerr,
              "the operator's custos restore --agent reports the job failed (exit %s: %s)"
              % (restore_cli.returncode, rerr.strip()))
        rep = subprocess.run([CUSTOS, "--json", "--repo", os.path.join(data, "repository"), "--password-file",
                              os.path.join(data, "repository.pass"), "reports", "list"],
                             capture_output=True, text=True)
        check(rep.returncode == 0 and len(json.loads(rep.stdout or "[]")) == 1,
              "the failed restore left a signed report on the appliance")
        check(not os.path.exists(rtarget), "nothing was written for the refused job")
        # 5d. An evidence collection (section 5.3) driven by hand: items
        # are hashed again on receipt (a mismatch is a gap and a REDO),
        # message numbers make re-sent messages harmless, events are checked.
        b.send("PING")
        b.recv()
        case = json.loads(subprocess.run([CUSTOS, "--json", "case", "open", "--title", "py case"], env=env,
                                         check=True, capture_output=True, text=True).stdout)["id"]
        col = subprocess.run([CUSTOS, "--json", "case", "collect", case, "--agent", "py01", "--path", "/etc/hostname",
                              "--no-wait"], env=env, capture_output=True, text=True)
        job = b.recv(10000) or {}
        params = job.get("params", {})
        check(col.returncode == 0 and job.get("type") == "JOB" and job.get("kind") == "collect"
              and params.get("case") == case and params.get("recipe", "").startswith("recipe paths 1\n"),
              "custos case collect --no-wait sends JOB {kind: collect, params: case, recipe text}")
        cjid = job.get("job", "none")
        b.send("ACCEPT", {"job": cjid})
        close = subprocess.run([CUSTOS, "case", "close", case], env=env, capture_output=True, text=True)
        check(close.returncode == 1 and "collection running" in close.stderr,
              "custos case close is refused while a collection of the case runs")
        good = b"good content"
        begin = {"e": "begin", "item": 1, "artifact": "files", "kind": "file", "path": "/etc/a", "before": {"size": 12}}
        end = {"e": "end", "size": len(good), "sha256": hashlib.sha256(good).hexdigest(), "after": {"size": 12},
               "changed": False}
        b.send("EVIDENCE", {"job": cjid, "n": 1, "events": [begin, {"e": "data", "length": len(good)}, end]}, [good])
        r = b.recv()
        check(r is not None and r.get("type") == "CREDIT" and r.get("bytes") == len(good),
              "EVIDENCE with one whole item -> CREDIT of its payload")
        bad = b"tampered!!!!"
        begin2 = dict(begin, item=2, path="/etc/b")
        b.send("EVIDENCE", {"job": cjid, "n": 2, "events": [begin2, {"e": "data", "length": len(bad)}, end]}, [bad])
        r = b.recv()
        check(r is not None and r.get("type") == "REDO" and r.get("items") == [{"artifact": "files", "path": "/etc/b"}],
              "an item whose bytes do not hash to the agent's SHA-256 -> REDO of that file")
        r = b.recv()
        check(r is not None and r.get("type") == "CREDIT", "... then its CREDIT")
        b.send("EVIDENCE", {"job": cjid, "n": 2, "events": [begin2, {"e": "data", "length": len(bad)}, end]}, [bad])
        r = b.recv()
        check(r is not None and r.get("type") == "CREDIT", "a message re-sent with an old n is credited and ignored")
        b.send("EVIDENCE", {"job": cjid, "n": 3, "events": [{"e": "data", "length": 2}]}, [b"xx"])
        check(is_error(b.recv(), 400), "data outside an item: 400, and the task fails")
        # The ERROR goes out before the task's end is written: wait for it.
        for _ in range(100):
            ledger = [json.loads(line) for line in open(os.path.join(data, "evidence", "cases", case, "ledger.jsonl"))]
            if ledger[-1]["type"] == "checkpoint" and any(r["type"] == "task.end" for r in ledger):
                break
            time.sleep(0.05)
        types = [r["type"] for r in ledger]
        items = [r for r in ledger if r["type"] == "item"]
        gaps = [r for r in ledger if r["type"] == "gap"]
        ends = [r for r in ledger if r["type"] == "task.end"]
        check(len(items) == 1 and items[0]["body"]["agent_sha256"] == items[0]["body"]["appliance_sha256"]
              == hashlib.sha256(good).hexdigest() and items[0]["actor"]["kind"] == "agent",
              "the good item is in the ledger with both hashes, by the agent's key")
        check(len(gaps) == 1 and "hash mismatch" in gaps[0]["body"]["reason"] and gaps[0]["body"]["path"] == "/etc/b",
              "the damaged one is a gap naming both hashes")
        check(len(ends) == 1 and ends[0]["body"]["state"] == "failed" and types[-1] == "checkpoint",
              "the failed task ends in the ledger (task.end failed) and is checkpointed")
        # 6. Revocation: refused at the next message on the open session.
        subprocess.run([CUSTOS, "agent", "revoke", "py01"], env=env, check=True, capture_output=True)
        b.send("PING")
        check(is_error(b.recv(), 401), "revoked: the next PING on the open session is refused with 401")
        b.close()
        # ... and a new connection with the revoked key never completes its handshake.
        b2 = Client(ctx, endpoint, server_key, keys)
        b2.send("HELLO", {"protocol": 1, "version": "py", "host": "py", "os": "linux", "resume": []})
        check(b2.recv(1500) is None, "revoked: a new connection is refused at the handshake")
        b2.close()
        ctx.term()
    finally:
        daemon.terminate()
        try:
            daemon.wait(10)
        except subprocess.TimeoutExpired:
            daemon.kill()
        check(daemon.returncode == 0, "custosd stops cleanly on SIGTERM (exit %s)" % daemon.returncode)
        log = daemon.stderr.read()
        check("error 400" in log and "error 401" in log, "custosd logged the errors")
        check("refused a connection from 127.0.0.1" in log, "custosd logged the keys refused at the handshake")
        check(log.count("refused a connection from") == 10,
              "custosd logged 10 of the 15 refused keys (at most 10 a minute): %d" % log.count("refused a connection from"))
        check("error 422 to agent py01" in log and "rejected" in log, "custosd logged the rejected blobs with the agent's name")
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        print("%d checks failed" % len(failures))
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
