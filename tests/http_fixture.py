"""A scripted HTTP server on 127.0.0.1 for the downloader's tests.

    server = Server()                       # listening on a free port, in a thread
    server.serve("/models/124M/hparams.json", b"{}")  # headers={...}: sent with it every time
    server.script["/models/124M/hparams.json"].append({"drop_after": 10})
    ... server.gets("/models/124M/hparams.json")   # headers of each GET, lower-case keys

Each request takes the next behaviour from `script[path]` (none left: serve normally).
Serving normally honours `Range: bytes=N-` and `If-Range` (against the path's ETag).
Behaviours, as dict keys:
  status, headers, body   answer this status instead (an error page, 503 + Retry-After)
  redirect                answer 302 with this Location
  stall                   accept, read the request, never answer (for this many seconds)
  stall_after             send the headers and this many body bytes, then stall
  drop_after              send the headers and this many body bytes, then close
  ignore_range            answer 200 and the whole body whatever Range says
  range_start             claim this start in Content-Range (a 206 for the wrong bytes)
  no_length               send no Content-Length (the body ends when the connection closes)
  gzip                    gzip the body and say Content-Encoding: gzip
  trickle                 send the body one byte at a time, this many bytes per second
  endless                 after the headers, send bytes until the client goes away
`server.link(path, location, headers)` answers every request for `path` with a 302 and
those headers (what the Hugging Face Hub does for its large files). HEAD is answered like
GET, without the body.
HTTP/1.0, so every response closes its connection, as a dropped transfer would.
A request in absolute form (`GET http://host/path`, what a client sends a proxy) is served
by its path, so the same server can play a proxy.
"""
import gzip
import http.server
import re
import threading
from collections import defaultdict, deque
from urllib.parse import urlsplit


class Server:
    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.etags: dict[str, str] = {}
        self.headers: dict[str, dict] = {}
        self.links: dict[str, tuple[str, dict]] = {}
        self.script: dict[str, deque] = defaultdict(deque)
        self.requests: list[tuple[str, str, dict]] = []  # (method, request target, headers)
        self.sent: dict[str, int] = defaultdict(int)  # body bytes sent, by path
        self.rate: float | None = None  # bytes per second per response; None: no limit
        self.stop = threading.Event()
        self.lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"state": self})
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def serve(self, path: str, data: bytes, etag: str | None = '"v1"', headers: dict | None = None) -> None:
        self.files[path] = data
        self.etags[path] = etag
        self.headers[path] = headers or {}

    def link(self, path: str, location: str, headers: dict | None = None) -> None:
        self.links[path] = (location, headers or {})

    def gets(self, path: str) -> list[dict]:
        with self.lock:
            return [h for _, target, h in self.requests if _path(target) == path]

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def _path(target: str) -> str:
    return urlsplit(target).path if "://" in target else target


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    state: Server

    def log_message(self, *args):
        pass

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        st, path = self.state, _path(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        with st.lock:
            st.requests.append((self.command, self.path, headers))
            b = st.script[path].popleft() if st.script[path] else {}
        if "stall" in b:
            st.stop.wait(b["stall"])
            return
        if "status" in b:
            self._answer(b["status"], b.get("headers", {}), b.get("body", b""))
            return
        if "redirect" in b:
            self._answer(302, {"Location": b["redirect"]}, b"")
            return
        if path in st.links and not b:
            location, extra = st.links[path]
            self._answer(302, {"Location": location, **extra}, b"")
            return
        data, etag = st.files.get(path), st.etags.get(path)
        if data is None:
            self._answer(404, {"Content-Type": "application/xml"}, b"<Error><Code>BlobNotFound</Code></Error>")
            return
        status, start = 200, 0
        m = re.fullmatch(r"bytes=(\d+)-", headers.get("range", ""))
        if m and not b.get("ignore_range") and headers.get("if-range") in (None, etag):
            start, status = int(m.group(1)), 206
            if start >= len(data):
                self._answer(416, {"Content-Range": f"bytes */{len(data)}"}, b"")
                return
        body = data[start:]
        if b.get("gzip"):
            body = gzip.compress(body)
        self.send_response(status)
        if not b.get("no_length"):
            self.send_header("Content-Length", str(len(body)))
        if etag:
            self.send_header("ETag", etag)
        if status == 206:
            self.send_header("Content-Range", f"bytes {b.get('range_start', start)}-{len(data) - 1}/{len(data)}")
        if b.get("gzip"):
            self.send_header("Content-Encoding", "gzip")
        for k, v in {**st.headers.get(path, {}), **b.get("headers", {})}.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command == "HEAD":
            return
        limit = min(b.get("drop_after", len(body)), b.get("stall_after", len(body)))
        if "trickle" in b:
            self._trickle(path, [body[:limit]], b["trickle"])
        elif b.get("endless"):
            self._trickle(path, iter(lambda: body, None), None)
        else:
            self._send(path, body[:limit])
        if "stall_after" in b:
            st.stop.wait(30)

    def _answer(self, status: int, headers: dict, body: bytes) -> None:
        self.send_response(status)
        for k, v in {"Content-Length": str(len(body)), **headers}.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _trickle(self, path: str, pieces, per_second: float | None) -> None:
        """Sends each byte of `pieces` (bytes, or an iterator of bytes) as it comes, at
        `per_second` bytes a second, or as fast as it goes."""
        st = self.state
        try:
            for piece in pieces:
                for i in range(0, len(piece), 1 if per_second else len(piece) or 1):
                    if per_second and st.stop.wait(1 / per_second):
                        return
                    if st.stop.is_set():
                        return
                    chunk = piece[i:i + 1] if per_second else piece
                    self.wfile.write(chunk)
                    self.wfile.flush()
                    with st.lock:
                        st.sent[path] += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away

    def _send(self, path: str, body: bytes) -> None:
        st, step = self.state, 1 << 14
        try:
            for i in range(0, len(body), step):
                if st.rate and st.stop.wait(step / st.rate):
                    return
                self.wfile.write(body[i:i + step])
                self.wfile.flush()
                with st.lock:
                    st.sent[path] += len(body[i:i + step])
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away (interrupted): nothing to do
