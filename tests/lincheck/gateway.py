"""Small clients for etcd's v3 JSON gateway, for the reliability tests.

WatchStream reads a streaming POST /v3/watch over a plain socket, dechunking
by itself so that a read timeout never loses bytes (it only means "nothing
yet"); it raises EOFError when the server closes the stream.
"""

import json
import socket
import time


class WatchStream:
    def __init__(self, host, port, body, connect_timeout=3.0):
        self.sock = socket.create_connection((host, port), timeout=connect_timeout)
        payload = json.dumps(body).encode()
        req = ("POST /v3/watch HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
               "Content-Length: %d\r\n\r\n" % (host, port, len(payload))).encode() + payload
        self.sock.sendall(req)
        self.raw = b""            # bytes from the socket not yet dechunked
        self.body = b""           # dechunked bytes not yet decoded
        self.status = None
        self.chunked = False
        self.closed = False
        self._dec = json.JSONDecoder()

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, TimeoutError):
            return False
        if not data:
            self.closed = True
            return False
        self.raw += data
        return True

    def _headers(self, deadline):
        while self.status is None:
            i = self.raw.find(b"\r\n\r\n")
            if i >= 0:
                head = self.raw[:i].decode("latin-1").split("\r\n")
                self.raw = self.raw[i + 4:]
                self.status = int(head[0].split()[1])
                for h in head[1:]:
                    k, _, v = h.partition(":")
                    if k.strip().lower() == "transfer-encoding" and "chunked" in v.lower():
                        self.chunked = True
                return True
            if not self._fill(deadline):
                if self.closed:
                    raise EOFError("connection closed before the response headers")
                return False
        return True

    def _dechunk(self):
        if not self.chunked:
            self.body += self.raw
            self.raw = b""
            return
        while True:
            i = self.raw.find(b"\r\n")
            if i < 0:
                return
            size = int(self.raw[:i].split(b";")[0] or b"0", 16)
            if size == 0:
                self.closed = True
                self.raw = b""
                return
            if len(self.raw) < i + 2 + size + 2:
                return
            self.body += self.raw[i + 2:i + 2 + size]
            self.raw = self.raw[i + 2 + size + 2:]

    def next(self, timeout=1.0):
        """The next frame (parsed JSON), or None if none arrived in time."""
        deadline = time.monotonic() + timeout
        if not self._headers(deadline):
            return None
        while True:
            self._dechunk()
            s = self.body.lstrip()
            if s:
                try:
                    text = s.decode("utf-8")
                    obj, end = self._dec.raw_decode(text)
                    self.body = text[end:].encode()
                    return obj
                except ValueError:
                    self.body = s
            if self.closed:
                raise EOFError("watch stream closed by the server")
            if not self._fill(deadline):
                if self.closed:
                    continue
                return None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
