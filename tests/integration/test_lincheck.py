#!/usr/bin/env python3
"""The linearizability checker (tests/lincheck/wgl.py) on known histories.

Linearizable histories must be accepted, non-linearizable ones rejected with
an explanation naming the operation that cannot be placed, and a run out of
time must count as a failure. No server is started.
"""

import os
import random
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lincheck"))
import capstan_test as ct  # noqa: E402
import wgl  # noqa: E402
from wgl import Op, OK, FAIL, UNKNOWN, APPLIED, READ, WRITE, CAS  # noqa: E402


def W(p, v, call, ret, status=OK, key="k"):
    return Op(p, WRITE, key, input=v, call=call, ret=ret, status=status)


def R(p, v, call, ret, status=OK, key="k"):
    return Op(p, READ, key, output=v, call=call, ret=ret, status=status)


def C(p, exp, new, answer, call, ret, status=OK, key="k"):
    return Op(p, CAS, key, input=(exp, new), output=answer, call=call, ret=ret, status=status)


def accepts(ops):
    res = wgl.check(ops, time_limit_per_key=10)
    assert res.ok, "a linearizable history was rejected:\n" + res.report()
    return res


def rejects(ops, mention=None):
    res = wgl.check(ops, time_limit_per_key=10)
    assert not res.ok and res.verdict == wgl.VERDICT_BAD, \
        "a non-linearizable history was accepted: " + res.summary()
    text = res.report()
    if mention is not None:
        assert mention in text, "the explanation does not mention %r:\n%s" % (mention, text)
    return res


# ---------------------------------------------------------------- accepted

def test_sequential_history_accepted():
    """A sequential history of writes, reads and cas is linearizable."""
    accepts([R(1, None, 0, 1), W(1, "a", 2, 3), R(2, "a", 4, 5), C(1, "a", "b", True, 6, 7),
             C(2, "a", "c", False, 8, 9), R(1, "b", 10, 11), C(2, None, "x", False, 12, 13)])


def test_cas_on_absent_key_accepted():
    """cas from 'absent' succeeds once on a fresh key and then fails."""
    accepts([C(1, None, "a", True, 0, 1), C(2, None, "b", False, 2, 3), R(1, "a", 4, 5)])


def test_concurrent_overlapping_history_accepted():
    """Overlapping operations may take effect in any order consistent with real time."""
    accepts([W(1, "a", 0, 10), W(2, "b", 1, 9), R(3, "b", 2, 3), R(4, "a", 4, 5), R(3, "a", 11, 12)])
    # A read overlapping a write may see either value.
    accepts([W(1, "a", 0, 1), W(2, "b", 2, 6), R(3, "a", 3, 4), R(4, "b", 4, 5), R(3, "b", 7, 8)])


def test_unknown_write_assumed_applied_accepted():
    """A timed-out write whose value is read later must be taken as applied."""
    accepts([W(1, "a", 0, 1), W(2, "b", 2, None, status=UNKNOWN), R(3, "a", 3, 4),
             R(3, "b", 100, 101), R(1, "b", 200, 201)])


def test_unknown_write_assumed_not_applied_accepted():
    """A timed-out write nobody ever reads may never have happened."""
    accepts([W(1, "a", 0, 1), W(2, "b", 2, None, status=UNKNOWN), R(3, "a", 3, 4),
             R(3, "a", 100, 101), C(1, "a", "c", True, 200, 201), R(2, "c", 300, 301)])


def test_unknown_cas_accepted_either_way():
    """A timed-out cas may have succeeded late, or not at all."""
    accepts([W(1, "a", 0, 1), C(2, "a", "b", None, 2, None, status=UNKNOWN),
             R(1, "a", 50, 51), R(1, "b", 60, 61)])
    accepts([W(1, "a", 0, 1), C(2, "a", "b", None, 2, None, status=UNKNOWN),
             R(1, "a", 50, 51), W(1, "c", 60, 61), R(1, "c", 70, 71)])


def test_failed_operations_are_ignored():
    """A write the server refused has no effect and constrains nothing."""
    accepts([W(1, "a", 0, 1), W(2, "b", 2, 3, status=FAIL), R(1, "a", 4, 5),
             R(2, "zzz", 6, 7, status=FAIL)])


# ---------------------------------------------------------------- rejected

def test_stale_read_after_acknowledged_write_rejected():
    """A read that starts after a write was acknowledged must not return the older value."""
    res = rejects([W(1, "a", 0, 1), W(1, "b", 2, 3), R(2, "a", 4, 5)], mention="read -> 'a'")
    assert "p2" in res.report(), res.report()


def test_read_of_never_written_value_rejected():
    """A read may only return a value some write wrote."""
    rejects([W(1, "a", 0, 1), R(2, "ghost", 2, 3)], mention="ghost")
    rejects([R(2, "ghost", 0, 1)], mention="ghost")


def test_lost_write_rejected():
    """An acknowledged write that later reads never reflect is a lost write."""
    rejects([W(1, "a", 0, 1), R(2, "a", 2, 3), W(1, "b", 4, 5), R(2, "b", 6, 7), R(2, "a", 8, 9)],
            mention="read -> 'a'")
    # Even with an unanswered write around, an acknowledged one cannot vanish.
    rejects([W(1, "a", 0, 1), W(2, "b", 2, 3), W(3, "c", 2.5, None, status=UNKNOWN),
             R(1, "a", 10, 11)])


def test_double_cas_from_same_value_rejected():
    """Two cas that both succeeded from the same expected value cannot both be real."""
    rejects([W(1, "a", 0, 1), C(2, "a", "b", True, 2, 3), C(3, "a", "c", True, 4, 5)])
    # ...also when they overlap in time.
    rejects([W(1, "a", 0, 1), C(2, "a", "b", True, 2, 6), C(3, "a", "c", True, 3, 7)])


def test_reads_going_back_in_time_rejected():
    """Once one client has read the new value, another client's later read cannot see the old."""
    rejects([W(1, "a", 0, 1), W(2, "b", 2, 100), R(3, "b", 3, 4), R(4, "a", 5, 6)],
            mention="read -> 'a'")


def test_applied_unknown_must_be_placed():
    """A write known to be applied (from watch history) but never visible is rejected."""
    ops = [W(1, "a", 0, 1), W(2, "b", 2, None, status=UNKNOWN), R(3, "a", 3, 4),
           W(1, "c", 5, 6), R(3, "c", 7, 8)]
    accepts(ops)
    resolved = wgl.resolve_unknowns(ops, {("k", "a"), ("k", "c")}, settled=50)
    assert resolved == (0, 1) and ops[1].status == FAIL, resolved
    ops[1].status, ops[1].ret = UNKNOWN, None
    resolved = wgl.resolve_unknowns(ops, {("k", "a"), ("k", "b"), ("k", "c")}, settled=50)
    assert resolved == (1, 0) and ops[1].status == APPLIED, resolved
    # b took effect by time 50; it fits between a and c.
    ops.append(R(2, "c", 60, 61))
    accepts(ops)
    ops[1].call = 6.5            # now b was sent after c was acknowledged ...
    rejects(ops)                 # ... so c read at 60 contradicts it


def test_violation_is_confined_to_its_key():
    """A violation on one key is reported for that key only."""
    ops = [W(1, "a", 0, 1, key="x"), R(2, "a", 2, 3, key="x"),
           W(1, "a", 0, 1, key="y"), W(1, "b", 2, 3, key="y"), R(2, "a", 4, 5, key="y")]
    res = wgl.check(ops)
    assert res.keys["x"].ok and not res.keys["y"].ok, res.report()
    assert res.count(wgl.VERDICT_BAD) == 1, res.report()


def test_timeout_counts_as_failure():
    """A key whose check runs out of time gets 'unknown (timeout)' and fails the history."""
    rnd = random.Random(7)
    # Many fully concurrent writes and reads of values in a scrambled order:
    # no order exists, and proving that takes exponential time.
    ops = [W(i, "v%d" % i, 0, 1000) for i in range(24)]
    ops += [R(100 + i, "v%d" % rnd.randrange(24), 0, 1000) for i in range(24)]
    ops += [R(200, "nope", 2000, 2001)]
    res = wgl.check(ops, time_limit_per_key=0.2)
    assert res.verdict == wgl.VERDICT_TIMEOUT, res.summary()
    assert not res.ok, res.summary()


# ---------------------------------------------------------------- bulk

def simulate(n_ops, keys, procs, seed, unknown_rate=0.02):
    """A linearizable history from a simulated register: every op takes
    effect at a random instant inside its [call, return] window."""
    rnd = random.Random(seed)
    clock = [0.0] * procs
    planned = []
    uid = 0
    for _ in range(n_ops):
        p = rnd.randrange(procs)
        call = clock[p] + rnd.expovariate(10.0)
        ret = call + rnd.expovariate(5.0)
        clock[p] = ret
        key = "k%d" % rnd.randrange(keys)
        x = rnd.random()
        uid += 1
        if x < 0.4:
            op = Op(p, READ, key, call=call, ret=ret)
        elif x < 0.75:
            op = Op(p, WRITE, key, input="v%d" % uid, call=call, ret=ret)
        else:
            op = Op(p, CAS, key, input=(None, "v%d" % uid), call=call, ret=ret)
        planned.append((rnd.uniform(call, ret), op))
    planned.sort(key=lambda t: t[0])
    state = {}
    last_written = {}
    for _, op in planned:
        cur = state.get(op.key)
        if op.kind == READ:
            op.output = cur
        elif op.kind == CAS:
            exp = last_written.get(op.key) if rnd.random() < 0.7 else "stale"
            op.input = (exp, op.input[1])
            op.output = cur == exp
            if op.output:
                state[op.key] = op.input[1]
        else:
            state[op.key] = op.input
        if op.kind != READ:
            last_written[op.key] = state.get(op.key)
    out = [op for _, op in planned]
    for op in out:
        if op.kind != READ and rnd.random() < unknown_rate:
            # It took effect (or, for a failed cas, did nothing) but the client never heard.
            op.status, op.ret, op.output = UNKNOWN, None, None
    out.sort(key=lambda o: o.call)
    return out


def test_random_linearizable_histories_accepted():
    """Simulated linearizable histories with concurrency and unknown outcomes are accepted."""
    for seed in range(20):
        accepts(simulate(400, 3, 5, seed, unknown_rate=0.05))


def test_injected_stale_read_caught():
    """One read changed to return its key's previous value is caught in a big history."""
    ops = simulate(3000, 8, 8, 99)
    caught = 0
    rnd = random.Random(5)
    tried = 0
    for op in rnd.sample([o for o in ops if o.kind == READ], 200):
        prev = [o for o in ops if o.key == op.key and o.kind == WRITE and o.status == OK
                and o.ret < op.call]
        if len(prev) < 2:
            continue
        old = op.output
        # The value of a write acknowledged before an acknowledged overwrite that
        # itself finished before this read started: reading it is stale.
        newest = max(prev, key=lambda o: o.ret)
        older = [o for o in prev if o.ret < newest.call]
        if not older or any(o.input == older[-1].input for o in ops if o is not older[-1] and o.kind == WRITE):
            continue
        op.output = older[-1].input
        tried += 1
        res = wgl.check([o for o in ops if o.key == op.key], time_limit_per_key=10)
        op.output = old
        if not res.ok:
            caught += 1
        if tried == 10:
            break
    print("# injected stale reads caught: %d of %d" % (caught, tried))
    assert tried >= 5, "too few candidates (%d)" % tried
    assert caught == tried, "only %d of %d stale reads caught" % (caught, tried)


def test_performance_5k_ops_8_keys():
    """5000 operations over 8 keys from 8 clients check as linearizable (time reported)."""
    ops = simulate(5000, 8, 8, 1234)
    t = time.time()
    res = accepts(ops)
    print("# 5000 ops / 8 keys: %.2fs (%s)" % (time.time() - t, res.summary()))
    ops = simulate(20000, 32, 8, 4321, unknown_rate=0.01)
    t = time.time()
    res = accepts(ops)
    print("# 20000 ops / 32 keys with 1%% unknown: %.2fs" % (time.time() - t))


if __name__ == "__main__":
    ct.run(globals())
