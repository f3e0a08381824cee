#!/usr/bin/env python3
"""Three-member clusters on loopback, bootstrapped statically.

Each test starts three members with etcd's flags (--initial-cluster
a=...,b=...,c=... --initial-cluster-state new) and checks what a user of a
replicated store relies on: a write through any member is readable through
every other; every member names the same leader; killing the leader with
SIGKILL under write load elects a new one quickly and loses no acknowledged
write; a watch on a follower sees every event in order across the failover;
the killed member restarts from its data directory and catches up until all
data hashes agree.

CAPSTAN_TEST_TARGET=etcd runs the same tests against a real etcd cluster.
"""

import http.client
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lincheck"))
import capstan_test as ct  # noqa: E402
import gateway  # noqa: E402
from capstan_test import b64, unb64  # noqa: E402

NAMES = ("a", "b", "c")
START_TIMEOUT = 60
FAILOVER_BOUND = 20.0        # seconds; generous: etcd needs ~1-3 s


class Member(ct.Server):
    """A cluster member: the harness' server with the whole cluster in its flags."""

    initial_cluster = None

    def argv(self):
        a = super().argv()
        i = a.index("--initial-cluster")
        a[i + 1] = self.initial_cluster
        return a


class Cluster:
    def __init__(self, n=3):
        self.members = [Member(name=NAMES[i]) for i in range(n)]
        spec = ",".join("%s=%s" % (m.name, m.peer_url) for m in self.members)
        for m in self.members:
            m.initial_cluster = spec

    def start(self):
        for m in self.members:
            m.start(expect_ready=False)
        for m in self.members:
            wait_ready(m)
        leader = self.wait_leader()
        # Serving: the new cluster acknowledges a write.
        ct.wait_until(lambda: _try_put(leader, "cluster-ready", "1"), timeout=START_TIMEOUT,
                      interval=0.1, what="the new cluster acknowledging a write")
        return self

    def stop(self):
        for m in self.members:
            m.stop()

    def live(self):
        return [m for m in self.members if m.alive()]

    def statuses(self, members=None):
        out = {}
        for m in members or self.live():
            try:
                st, body = m.post("/v3/maintenance/status", {}, timeout=3)
            except (OSError, http.client.HTTPException):
                continue
            if st == 200 and isinstance(body, dict):
                out[m.name] = body
        return out

    def leader(self, members=None):
        """The member every live member names as leader, or None."""
        sts = self.statuses(members)
        members = members or self.live()
        if len(sts) != len(members):
            return None
        leaders = {str(s.get("leader", "0")) for s in sts.values()}
        if len(leaders) != 1 or leaders == {"0"}:
            return None
        lid = leaders.pop()
        for m in members:
            if str(sts[m.name]["header"]["member_id"]) == lid:
                return m
        return None

    def wait_leader(self, members=None, timeout=START_TIMEOUT):
        return ct.wait_until(lambda: self.leader(members), timeout=timeout, interval=0.1,
                             what="all members agreeing on a leader")

    def hashes(self):
        out = {}
        for m in self.live():
            st, body = m.post("/v3/maintenance/hash", {}, timeout=10)
            assert st == 200, (m.name, st, body)
            out[m.name] = (int(body["hash"]), int(body["header"]["revision"]))
        return out


def wait_ready(m, timeout=START_TIMEOUT):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not m.alive():
            raise AssertionError("member %s exited during start-up:\n%s" % (m.name, m.log_tail()))
        try:
            st, body = m.post("/v3/maintenance/status", {}, timeout=2)
            if st == 200 and isinstance(body, dict) and "header" in body:
                return
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.1)
    raise AssertionError("member %s not ready within %ss:\n%s" % (m.name, timeout, m.log_tail()))


def read(m, key, serializable=False, timeout=5):
    body = {"key": b64(key)}
    if serializable:
        body["serializable"] = True
    st, r = m.post("/v3/kv/range", body, timeout=timeout)
    assert st == 200, (m.name, st, r)
    kvs = r.get("kvs") or []
    return (unb64(kvs[0]["value"]) if kvs else None), int(r["header"]["revision"])


def range_prefix(m, prefix, timeout=10):
    st, r = m.post("/v3/kv/range", {"key": b64(prefix), "range_end": b64(prefix[:-1] + chr(ord(prefix[-1]) + 1))},
                   timeout=timeout)
    assert st == 200, (m.name, st, r)
    return {unb64(kv["key"]): (unb64(kv["value"]), int(kv["mod_revision"])) for kv in r.get("kvs", [])}


class Writer(threading.Thread):
    """Puts unique keys through one member at a time (any live one), recording acknowledgements."""

    def __init__(self, cluster, idx, stop, prefix):
        super().__init__(daemon=True)
        self.cluster, self.idx, self.stop, self.prefix = cluster, idx, stop, prefix
        self.acked = {}          # key -> (value, revision)
        self.ack_times = []      # (time, revision)
        self.errors = 0

    def run(self):
        n = 0
        target = None
        conn = None
        while not self.stop.is_set():
            if target is None or not target.alive():
                live = self.cluster.live()
                if not live:
                    time.sleep(0.05)
                    continue
                target = live[(self.idx + n) % len(live)]
                if conn:
                    conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", target.port, timeout=5)
            n += 1
            key = "%sw%d/%06d" % (self.prefix, self.idx, n)
            value = "v-%d-%d-%f" % (self.idx, n, time.time())
            try:
                st, body = ct.post_to(target.port, "/v3/kv/put", {"key": b64(key), "value": b64(value)},
                                      conn=conn)
                if st == 200:
                    rev = int(body["header"]["revision"])
                    self.acked[key] = (value, rev)
                    self.ack_times.append((time.time(), rev))
                else:
                    self.errors += 1
                    time.sleep(0.05)
            except (OSError, http.client.HTTPException, ValueError):
                self.errors += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", target.port, timeout=5)
                target = None
                time.sleep(0.05)
            time.sleep(0.005)
        if conn:
            conn.close()


class Watcher(threading.Thread):
    """A prefix watch on one member from a start revision; collects events."""

    def __init__(self, member, prefix, start_rev):
        super().__init__(daemon=True)
        self.member, self.prefix, self.start_rev = member, prefix, start_rev
        self.events = []         # (frame no, revision, key, value, type)
        self.frames = 0
        self.stop = threading.Event()
        self.error = None

    def run(self):
        end = self.prefix[:-1] + chr(ord(self.prefix[-1]) + 1)
        try:
            w = gateway.WatchStream("127.0.0.1", self.member.port, {"create_request": {
                "key": b64(self.prefix), "range_end": b64(end), "start_revision": str(self.start_rev)}})
            while not self.stop.is_set():
                f = w.next(timeout=0.5)
                if f is None:
                    continue
                res = f.get("result") or {}
                evs = res.get("events") or []
                if not evs:
                    continue
                self.frames += 1
                for e in evs:
                    kv = e["kv"]
                    self.events.append((self.frames, int(kv["mod_revision"]), unb64(kv["key"]),
                                        unb64(kv.get("value", "")), e.get("type", "PUT")))
            w.close()
        except Exception as e:  # noqa: reported by the test
            self.error = repr(e)


# ---------------------------------------------------------------- tests

def test_write_through_each_member_is_readable_from_every_member():
    """A write acknowledged by any member is read back (linearizably) from every member."""
    cl = Cluster().start()
    try:
        for i, m in enumerate(cl.members):
            key, value = "cl/from-%s" % m.name, "value-%d-%f" % (i, time.time())
            r = m.put(key, value)
            wrote = int(r["header"]["revision"])
            for other in cl.members:
                got, rev = read(other, key)
                assert got == value, "%s wrote %r, %s read %r" % (m.name, value, other.name, got)
                assert rev >= wrote, "%s answered at revision %d < %d" % (other.name, rev, wrote)
    finally:
        cl.stop()


def test_members_agree_on_the_leader():
    """/v3/maintenance/status on every member names the same leader, which is one of them."""
    cl = Cluster().start()
    try:
        sts = cl.statuses()
        assert len(sts) == 3, sts
        leaders = {str(s["leader"]) for s in sts.values()}
        assert len(leaders) == 1, "members disagree on the leader: %s" % leaders
        ids = {str(s["header"]["member_id"]) for s in sts.values()}
        assert len(ids) == 3, "member ids are not distinct: %s" % ids
        assert leaders <= ids, "the leader %s is not a member (%s)" % (leaders, ids)
        cids = {str(s["header"]["cluster_id"]) for s in sts.values()}
        assert len(cids) == 1, "members disagree on the cluster id: %s" % cids
    finally:
        cl.stop()


def test_leader_kill9_failover_and_rejoin():
    """kill -9 the leader under load: new leader fast, no acknowledged write lost, follower watch complete, rejoin catches up."""
    cl = Cluster().start()
    prefix = "fo/"
    try:
        old = cl.wait_leader()
        followers = [m for m in cl.members if m is not old]
        start_rev = followers[0].revision() + 1
        # Watch on both followers: one of them becomes the new leader, the
        # other stays a follower throughout.
        watchers = [Watcher(f, prefix, start_rev) for f in followers]
        for watcher in watchers:
            watcher.start()
        time.sleep(0.3)
        stop = threading.Event()
        writers = [Writer(cl, i, stop, prefix) for i in range(4)]
        for w in writers:
            w.start()
        time.sleep(2.0)
        before = sum(len(w.acked) for w in writers)
        assert before > 0, "no write acknowledged before the kill"
        t_kill = time.time()
        old.kill9()
        survivors = cl.live()
        new = cl.wait_leader(survivors, timeout=FAILOVER_BOUND)
        # "Serves": a write through the new leader is acknowledged.
        ct.wait_until(lambda: _try_put(new, prefix + "probe", "after-failover"),
                      timeout=FAILOVER_BOUND, what="a write through the new leader")
        t_serve = time.time() - t_kill
        assert new is not old
        print("# leader %s killed; %s leads and serves writes after %.2fs" % (old.name, new.name, t_serve))
        assert t_serve < FAILOVER_BOUND
        # Writes keep being acknowledged after the failover.
        after0 = sum(len(w.acked) for w in writers)
        ct.wait_until(lambda: sum(len(w.acked) for w in writers) > after0 + 20, timeout=15,
                      what="writes acknowledged after the failover")
        stop.set()
        for w in writers:
            w.join(10)
        acked = {}
        for w in writers:
            acked.update(w.acked)
        # No acknowledged write lost, on either survivor.
        for m in survivors:
            have = range_prefix(m, prefix)
            lost = [k for k, (v, r) in acked.items() if have.get(k, (None, 0))[0] != v]
            assert not lost, "%d acknowledged writes missing on %s, e.g. %s" % (len(lost), m.name, lost[:5])
        print("# %d writes acknowledged (%d before the kill), none lost" % (len(acked), before))
        # The followers' watches saw every write, in order, gap-free.
        final_rev = new.revision()
        for watcher in watchers:
            follower = watcher.member
            try:
                ct.wait_until(lambda: watcher.events and watcher.events[-1][1] >= final_rev, timeout=15,
                              what="the follower watch reaching revision %d" % final_rev)
            except AssertionError:
                raise AssertionError("the watch on %s stopped at %s (%d events, error %s)" % (
                    follower.name, watcher.events[-1:], len(watcher.events), watcher.error))
            watcher.stop.set()
            watcher.join(5)
            assert watcher.error is None, watcher.error
            revs = [e[1] for e in watcher.events]
            assert revs[0] == start_rev, "watch started at %d, want %d" % (revs[0], start_rev)
            for a, b in zip(revs, revs[1:]):
                assert b == a + 1, "watch on %s went from revision %d to %d" % (follower.name, a, b)
            seen = {(e[2], e[3]) for e in watcher.events}
            missing = [k for k, (v, r) in acked.items() if (k, v) not in seen]
            assert not missing, "watch on %s missed %d acknowledged writes, e.g. %s" % (
                follower.name, len(missing), missing[:5])
            print("# %s %s watched %d events in %d frames, revisions %d..%d without a gap"
                  % ("new leader" if follower is new else "follower", follower.name, len(revs),
                     watcher.frames, revs[0], revs[-1]))
        assert [e[1:] for e in watchers[0].events] == [e[1:] for e in watchers[1].events], \
            "the watches on %s and %s disagree" % (watchers[0].member.name, watchers[1].member.name)
        # The killed member rejoins from its data directory and catches up.
        t_restart = time.time()
        old.start(timeout=START_TIMEOUT)
        cl.wait_leader()
        extra = "fo/after-rejoin"
        new.put(extra, "x")
        got = ct.wait_until(lambda: _same_hash(cl), timeout=60, interval=0.2,
                            what="equal data hashes on all members")
        print("# %s rejoined; all hashes equal (%s) after %.2fs" % (old.name, got, time.time() - t_restart))
        assert read(old, extra, serializable=True)[0] == "x"
        have = range_prefix(old, prefix)
        lost = [k for k, (v, r) in acked.items() if have.get(k, (None, 0))[0] != v]
        assert not lost, "the rejoined member lacks %d acknowledged writes" % len(lost)
    finally:
        cl.stop()


def _try_put(m, key, value):
    try:
        st, _ = m.post("/v3/kv/put", {"key": b64(key), "value": b64(value)}, timeout=3)
        return st == 200
    except (OSError, http.client.HTTPException):
        return False


def _same_hash(cl):
    h = cl.hashes()
    if len(h) == len(cl.members) and len(set(h.values())) == 1:
        return "hash %d at revision %d" % list(h.values())[0]
    return None


if __name__ == "__main__":
    ct.run(globals())
