"""Linearizability checker for per-key registers (Wing & Gong, Lowe; the
search Porcupine uses).

A history is a list of operations, each with a process (client) id, a kind
(read, write, cas), a key, an input, an output, a call time, a return time and
a status:

  ok       the client got an answer; output is what the server said
  fail     the server guarantees the operation did not take effect
  unknown  no answer (timeout, connection reset, crash): it may or may not
           have taken effect, at any moment after its call
  applied  no answer, but it is known from elsewhere (a complete watch
           history) that it took effect, at some moment after its call and
           before its return time if one is given

The register model: the value of a key starts absent (None); a read returns
the current value; a write sets it; cas(expected, new) sets it to new and
answers True iff the current value equals expected (expected None means "the
key does not exist"), and otherwise answers False and changes nothing.

The history is split per key (a register per key is a linearizable object on
its own, so the whole is linearizable iff every key is). Per key the checker
walks call and return events in time order; at a call it tries to linearize
the operation against the model; it memoizes (set of linearized operations,
model state) to avoid revisiting; at a return whose call has not been
linearized yet it backtracks. Unknown operations return at +infinity and
may also never be linearized at all; applied ones must be linearized, before
their return time if known, else at any time.

Each key has a time limit; running out gives the verdict "timeout", which a
test must count as a failure, since nothing was proven.
"""

import threading
import time

INF = float("inf")

OK, FAIL, UNKNOWN, APPLIED = "ok", "fail", "unknown", "applied"
READ, WRITE, CAS = "read", "write", "cas"

VERDICT_OK = "linearizable"
VERDICT_BAD = "NOT linearizable"
VERDICT_TIMEOUT = "unknown (timeout)"


class Op:
    """One client operation. input: the value for write, (expected, new) for
    cas, None for read. output: the value read (None: absent), the cas
    answer (bool), None for write."""

    __slots__ = ("id", "process", "kind", "key", "input", "output", "call", "ret",
                 "status", "revision", "note")

    def __init__(self, process, kind, key, input=None, output=None, call=0.0,
                 ret=None, status=OK, revision=None, note=None, id=None):
        if kind not in (READ, WRITE, CAS):
            raise ValueError("unknown operation kind %r" % (kind,))
        if status not in (OK, FAIL, UNKNOWN, APPLIED):
            raise ValueError("unknown status %r" % (status,))
        self.id = id
        self.process = process
        self.kind = kind
        self.key = key
        self.input = input
        self.output = output
        self.call = call
        self.ret = ret
        self.status = status
        self.revision = revision
        self.note = note

    def describe(self, t0=0.0):
        if self.kind == READ:
            what = "read -> %r" % (self.output,)
        elif self.kind == WRITE:
            what = "write %r" % (self.input,)
        else:
            exp, new = self.input
            ans = "" if self.status != OK else (" -> %s" % ("ok" if self.output else "failed"))
            what = "cas %r => %r%s" % (exp, new, ans)
        ret = "inf" if self.ret is None or self.ret == INF else "%.4f" % (self.ret - t0)
        st = "" if self.status == OK else " [%s]" % self.status
        return "[p%s] %s  (call %.4f, return %s)%s" % (self.process, what, self.call - t0, ret, st)

    def __repr__(self):
        return "Op(%s)" % self.describe()


class History:
    """A thread-safe recorder: invoke() before sending, then ok()/fail()/unknown()."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.ops = []
        self.t0 = clock()
        self._lock = threading.Lock()

    def invoke(self, process, kind, key, input=None):
        op = Op(process, kind, key, input=input, call=self.clock(), status=UNKNOWN)
        with self._lock:
            op.id = len(self.ops)
            self.ops.append(op)
        return op

    def ok(self, op, output=None, revision=None):
        op.ret = self.clock()
        op.output = output
        op.revision = revision
        op.status = OK

    def fail(self, op, note=None):
        op.ret = self.clock()
        op.status = FAIL
        op.note = note

    def unknown(self, op, note=None):
        op.ret = None
        op.status = UNKNOWN
        op.note = note

    def snapshot(self):
        with self._lock:
            return list(self.ops)


# ---------------------------------------------------------------- model

def _step(state, op):
    """(legal, next state) for op applied to a register holding state."""
    k = op.kind
    if k == READ:
        return op.output == state, state
    if k == WRITE:
        return True, op.input
    exp, new = op.input
    matches = state == exp
    if op.status == OK:
        if op.output:
            return matches, new if matches else state
        return not matches, state
    # unknown: only the successful branch matters, since an unsuccessful cas
    # is indistinguishable from one that never happened; applied: it is known
    # to have written its value, so it matched.
    return matches, new


def _prepare(ops):
    """Drop what cannot constrain the search; give +inf returns to open ops."""
    out = []
    for op in ops:
        if op.status == FAIL:
            continue
        if op.status == UNKNOWN and op.kind == READ:
            continue            # an unanswered read says nothing
        out.append(op)
    return out


class KeyResult:
    def __init__(self, key, verdict, nops, seconds, explanation=None, states=0):
        self.key = key
        self.verdict = verdict
        self.nops = nops
        self.seconds = seconds
        self.explanation = explanation
        self.states = states

    @property
    def ok(self):
        return self.verdict == VERDICT_OK


def check_key(ops, key=None, time_limit=60.0, t0=None, init=None):
    """Check the operations on one key. Returns a KeyResult."""
    start = time.monotonic()
    ops = _prepare(ops)
    n = len(ops)
    if t0 is None:
        t0 = min([o.call for o in ops] or [0.0])
    if n == 0:
        return KeyResult(key, VERDICT_OK, 0, 0.0)

    # Events: (time, 0 for call / 1 for return, op index). Calls sort before
    # returns at equal times, so touching operations count as concurrent.
    events = []
    for i, op in enumerate(ops):
        events.append((op.call, 0, i))
        r = op.ret if (op.status in (OK, APPLIED) and op.ret is not None) else INF
        if r < op.call:
            raise ValueError("operation returns before its call: %r" % (op,))
        events.append((r, 1, i))
    events.sort()

    # Doubly linked list over the events; node 0 is the head sentinel.
    m = len(events)
    nxt = list(range(1, m + 2))
    nxt[m] = 0                   # the last node points to "none" (0)
    prv = list(range(-1, m))
    is_call = [False] * (m + 1)
    op_of = [0] * (m + 1)
    ret_node = [0] * n
    call_node = [0] * n
    for j, (_, kind, i) in enumerate(events, start=1):
        op_of[j] = i
        if kind == 0:
            is_call[j] = True
            call_node[i] = j
        else:
            ret_node[i] = j
    match = [0] * (m + 1)
    for i in range(n):
        match[call_node[i]] = ret_node[i]
    optional = [op.status == UNKNOWN for op in ops]
    required = sum(1 for o in optional if not o)
    bits = [1 << i for i in range(n)]

    def lift(c):
        r = match[c]
        p, q = prv[c], nxt[c]
        nxt[p] = q
        if q:
            prv[q] = p
        p, q = prv[r], nxt[r]
        nxt[p] = q
        if q:
            prv[q] = p

    def unlift(c):
        r = match[c]
        p, q = prv[r], nxt[r]
        nxt[p] = r
        if q:
            prv[q] = r
        p, q = prv[c], nxt[c]
        nxt[p] = c
        if q:
            prv[q] = c

    cache = set()
    stack = []                   # (call node, state before)
    state = init
    linearized = 0
    entry = nxt[0]
    best = None                  # (depth, sequence, state, stuck op, pending ops)
    steps = 0
    deadline = start + time_limit
    while True:
        if required == 0 or entry == 0 or entry > m:
            return KeyResult(key, VERDICT_OK, n, time.monotonic() - start, states=len(cache))
        steps += 1
        if steps & 1023 == 0 and time.monotonic() > deadline:
            return KeyResult(key, VERDICT_TIMEOUT, n, time.monotonic() - start,
                             explanation="gave up after %.1fs and %d states (%d operations)"
                             % (time.monotonic() - start, len(cache), n), states=len(cache))
        i = op_of[entry]
        if is_call[entry]:
            legal, ns = _step(state, ops[i])
            if legal:
                nl = linearized | bits[i]
                k = (nl, ns)
                if k not in cache:
                    cache.add(k)
                    stack.append((entry, state))
                    state, linearized = ns, nl
                    lift(entry)
                    if not optional[i]:
                        required -= 1
                    entry = nxt[0]
                    continue
            entry = nxt[entry]
            continue
        if optional[i]:
            entry = nxt[entry]   # may never have happened: no need to place it
            continue
        # A required operation returned before it could be linearized.
        if best is None or len(stack) > best[0]:
            pending = []
            e = nxt[0]
            while e and e != entry:
                if is_call[e]:
                    pending.append(ops[op_of[e]])
                e = nxt[e]
            best = (len(stack), [ops[op_of[c]] for c, _ in stack], state, ops[i], pending)
        if not stack:
            break
        c, state = stack.pop()
        j = op_of[c]
        linearized &= ~bits[j]
        unlift(c)
        if not optional[j]:
            required += 1
        entry = nxt[c]
    return KeyResult(key, VERDICT_BAD, n, time.monotonic() - start,
                     explanation=_explain(key, best, t0), states=len(cache))


def _explain(key, best, t0, context=6):
    depth, seq, state, stuck, pending = best
    lines = ["key %r: no order of the operations explains the history" % (key,)]
    if seq:
        lines.append("  longest linearizable prefix: %d operations; the last %d:"
                     % (depth, min(context, len(seq))))
        for op in seq[-context:]:
            lines.append("    " + op.describe(t0))
    else:
        lines.append("  not even the first operation can be linearized")
    lines.append("  register then holds %r" % (state,))
    lines.append("  stuck at: " + stuck.describe(t0))
    others = [o for o in pending if o is not stuck]
    if others:
        lines.append("  none of the %d operations pending then fits either; nearest:" % len(others))
        others.sort(key=lambda o: abs(o.call - stuck.call))
        for op in others[:context]:
            lines.append("    " + op.describe(t0))
    return "\n".join(lines)


class Result:
    def __init__(self, keys, seconds):
        self.keys = keys           # key -> KeyResult
        self.seconds = seconds

    @property
    def ok(self):
        return all(r.ok for r in self.keys.values())

    def count(self, verdict):
        return sum(1 for r in self.keys.values() if r.verdict == verdict)

    @property
    def verdict(self):
        if self.count(VERDICT_BAD):
            return VERDICT_BAD
        if self.count(VERDICT_TIMEOUT):
            return VERDICT_TIMEOUT
        return VERDICT_OK

    def summary(self):
        nops = sum(r.nops for r in self.keys.values())
        return ("%s: %d keys, %d operations checked in %.2fs (%d linearizable, %d not, %d timed out)"
                % (self.verdict, len(self.keys), nops, self.seconds, self.count(VERDICT_OK),
                   self.count(VERDICT_BAD), self.count(VERDICT_TIMEOUT)))

    def report(self, limit=3):
        lines = [self.summary()]
        shown = 0
        for key in sorted(self.keys, key=str):
            r = self.keys[key]
            if r.ok:
                continue
            if shown >= limit:
                lines.append("  ... and more")
                break
            shown += 1
            lines.append("  %s: %s" % (key, r.verdict))
            if r.explanation:
                lines += ["  " + ln for ln in r.explanation.splitlines()]
        return "\n".join(lines)


def check(ops, time_limit_per_key=60.0):
    """Split ops per key and check each key; returns a Result."""
    start = time.monotonic()
    per = {}
    for op in ops:
        per.setdefault(op.key, []).append(op)
    t0 = min([o.call for o in ops] or [0.0])
    out = {}
    for key, kops in per.items():
        out[key] = check_key(kops, key=key, time_limit=time_limit_per_key, t0=t0)
    return Result(out, time.monotonic() - start)


def resolve_unknowns(ops, applied, settled=None):
    """Given the complete set of (key, value) pairs that were written (from a
    gap-free watch history), mark each unknown write or cas as applied or
    failed. Values must be unique per key for this to be sound. settled, if
    given, is a time by which every applied operation had taken effect (when
    the watch history was seen complete); it becomes their return time.
    Returns the number of operations resolved each way, as (applied, not)."""
    a = f = 0
    for op in ops:
        if op.status != UNKNOWN or op.kind == READ:
            continue
        new = op.input if op.kind == WRITE else op.input[1]
        if (op.key, new) in applied:
            op.status = APPLIED
            op.ret = settled
            a += 1
        else:
            op.status = FAIL
            f += 1
    return a, f
