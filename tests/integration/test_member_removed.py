#!/usr/bin/env python3
"""A member removed from a running cluster stops, as etcd's does.

etcd's removed member learns from its peers that it was removed and exits;
a capstan-store member that keeps running after `member remove` holds its
port, answers "no leader" forever and looks alive to monitoring.

CAPSTAN_TEST_TARGET=etcd runs the same test against a real etcd cluster.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import capstan_test as ct  # noqa: E402
import test_membership as tm  # noqa: E402


def test_removed_follower_exits():
    """member remove of a follower under load: the removed process exits while the other two keep serving."""
    cl = tm.Cluster().start()
    prefix = "rmx/"
    try:
        tm.ready_for_changes(cl)
        leader = cl.wait_leader()
        victim, other = [m for m in cl.members if m is not leader]
        vid = tm.member_id(victim)
        stop, writers = tm.start_writers(cl, prefix)
        ct.wait_until(lambda: tm.acked_count(writers) > 50, timeout=tm.BOUND, what="writes before the remove")
        t0 = time.time()
        st, body = other.post("/v3/cluster/member/remove", {"ID": vid}, timeout=tm.BOUND)
        assert st == 200, (st, body)
        ct.wait_until(lambda: not victim.alive(), timeout=tm.BOUND, what="the removed member exiting")
        print("# removed member exited with %s %.2fs after member remove" % (
            victim.proc.returncode, time.time() - t0))
        n0 = tm.acked_count(writers)
        ct.wait_until(lambda: tm.acked_count(writers) > n0 + 50, timeout=tm.BOUND,
                      what="writes acknowledged after the remove")
        acked = tm.stop_writers(stop, writers)
        tm.assert_none_lost([leader, other], prefix, acked)
    finally:
        cl.stop()


if __name__ == "__main__":
    ct.run(globals())
