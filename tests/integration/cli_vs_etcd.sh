#!/bin/sh
# cli_vs_etcd.sh — runs the capstan CLI against a throwaway real etcd on
# loopback and checks outputs and exit codes; proves the CLI speaks the
# gateway as etcd serves it. Usage: cli_vs_etcd.sh [BUILDDIR]
# Needs `etcd` on PATH. Stops everything it starts.
set -u

BUILDDIR=${1:-${CAPSTAN_BUILDDIR:-.}}
CAPSTAN="$BUILDDIR/capstan"
PORT=${CLI_TEST_PORT:-23791}
PEER=$((PORT + 10))
EP="http://127.0.0.1:$PORT"
DIR=$(mktemp -d)
ETCD_PID=
FAILS=0

cleanup() {
	if [ -n "$ETCD_PID" ]; then
		kill "$ETCD_PID" 2>/dev/null
		wait "$ETCD_PID" 2>/dev/null
	fi
	rm -rf "$DIR"
}
trap cleanup EXIT INT TERM

command -v etcd >/dev/null 2>&1 || { echo "FAIL: etcd is required (scripts/install-deps installs it)"; exit 1; }

etcd --name t --data-dir "$DIR/etcd" --listen-client-urls "$EP" --advertise-client-urls "$EP" \
	--listen-peer-urls "http://127.0.0.1:$PEER" --initial-advertise-peer-urls "http://127.0.0.1:$PEER" \
	--initial-cluster "t=http://127.0.0.1:$PEER" >"$DIR/etcd.log" 2>&1 &
ETCD_PID=$!

c() { "$CAPSTAN" --endpoints "$EP" "$@"; }

i=0
until c kv get x >/dev/null 2>&1; do
	i=$((i + 1))
	[ $i -gt 50 ] && { echo "etcd did not start"; exit 1; }
	sleep 0.1
done

# expect NAME WANT_RC WANT_OUT -- command...
expect() {
	name=$1 want_rc=$2 want_out=$3
	shift 4
	out=$("$@" 2>"$DIR/err")
	rc=$?
	if [ "$rc" != "$want_rc" ] || [ "$out" != "$want_out" ]; then
		echo "FAIL $name: rc=$rc (want $want_rc)"
		echo "  got:  $(printf '%s' "$out" | tr '\n' '|')"
		echo "  want: $(printf '%s' "$want_out" | tr '\n' '|')"
		echo "  stderr: $(cat "$DIR/err")"
		FAILS=$((FAILS + 1))
	else
		echo "ok   $name"
	fi
}

nl='
'
expect put 0 "OK" -- c kv put a 1
expect put-prev 0 "OK${nl}a${nl}1" -- c kv put a 2 --prev-kv
expect get 0 "a${nl}2" -- c kv get a
expect get-missing 0 "" -- c kv get nope
c kv put b x >/dev/null
expect get-prefix-keys 0 "a${nl}${nl}b" -- c kv get "" --prefix --keys-only
expect get-range 0 "a${nl}2" -- c kv get a b
expect get-count 0 "2" -- c kv get a --from-key --count-only
expect get-desc 0 "x" -- c kv get "" --prefix --order DESCEND --limit 1 --print-value-only
expect del-prev 0 "1${nl}a${nl}2" -- c kv del a --prev-kv
expect del-none 0 "0" -- c kv del a
expect txn-success 0 "SUCCESS${nl}${nl}OK${nl}${nl}b${nl}x" -- \
	sh -c "printf 'value(\"b\") = \"x\"\nmod(\"b\") > \"0\"\n\nput k v\nget b\n\nput f f\n\n' | \"$CAPSTAN\" --endpoints $EP kv txn"
expect txn-failure 0 "FAILURE${nl}${nl}OK" -- \
	sh -c "printf 'create(\"b\") = \"0\"\n\nput k v\n\nput f f\n\n' | \"$CAPSTAN\" --endpoints $EP kv txn"

ID=$(c lease grant 60 | awk '{print $2}')
expect lease-put 0 "OK" -- c kv put lk v --lease "$ID"
expect lease-ttl-keys 0 "lease $ID granted with TTL(60s), remaining(59s), attached keys([lk])" -- c lease ttl "$ID" --keys
expect lease-keepalive-once 0 "lease $ID keepalived with TTL(60)" -- c lease keepalive "$ID" --once
expect lease-revoke 0 "lease $ID revoked" -- c lease revoke "$ID"
expect lease-ttl-gone 0 "lease $ID already expired" -- c lease ttl "$ID"
expect lease-revoke-gone 1 "" -- c lease revoke "$ID"
expect lease-bad-put 1 "" -- c kv put x y --lease 1234

REV=$(c -w json kv get b | sed 's/.*"revision":"\([0-9]*\)".*/\1/')
expect compact 0 "compacted revision $REV" -- c kv compact "$REV"
expect get-compacted 1 "" -- c kv get b --rev 1

c kv watch w --prev-kv --count 3 >"$DIR/watch.out" 2>&1 &
WATCH_PID=$!
sleep 0.5
c kv put w 1 >/dev/null
c kv put w 2 >/dev/null
c kv del w >/dev/null
wait $WATCH_PID
expect watch 0 "PUT${nl}w${nl}1${nl}PUT${nl}w${nl}1${nl}w${nl}2${nl}DELETE${nl}w${nl}2${nl}w" -- cat "$DIR/watch.out"

expect member-list 0 " started, t, http://127.0.0.1:$PEER, $EP, false" -- \
	sh -c "\"$CAPSTAN\" --endpoints $EP member list | cut -d, -f2-"
expect snapshot 0 "Snapshot saved at $DIR/snap.db" -- c snapshot save "$DIR/snap.db"
expect status-rows 0 "5" -- sh -c "\"$CAPSTAN\" --endpoints $EP status | wc -l"
expect unreachable 3 "" -- "$CAPSTAN" --endpoints http://127.0.0.1:1 kv get a
expect failover 0 "b${nl}x" -- "$CAPSTAN" --endpoints "http://127.0.0.1:1,$EP" kv get b
expect usage 2 "" -- c kv get

[ $FAILS -eq 0 ] && echo "all passed" && exit 0
echo "$FAILS failed"
exit 1
