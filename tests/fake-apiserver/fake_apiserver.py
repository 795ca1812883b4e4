#!/usr/bin/env python3
"""A faithful fake kube-apiserver for kube-ipvs tests (kubernetes-api.md §8, FS-1..FS-46).

Python 3 standard library only; shares no code with the C++ client. Serves Services,
EndpointSlices and Nodes over HTTP/1.1 (plain, or TLS with certificates it makes with the
openssl CLI), with list paging, watches, bookmarks, watch-list, selectors, token and
client-certificate auth, and scriptable faults. A control API under /__fake/ (on the main
port, token-exempt, and on a plain-HTTP control port) drives it. See README.md.
"""

import argparse
import base64
import bisect
import gc
import json
import os
import re
import select
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

RESOURCES = {
    "services": {"kind": "Service", "apiVersion": "v1", "prefix": "/api/v1", "namespaced": True},
    "endpointslices": {"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
                       "prefix": "/apis/discovery.k8s.io/v1", "namespaced": True},
    "nodes": {"kind": "Node", "apiVersion": "v1", "prefix": "/api/v1", "namespaced": False},
}
KIND_TO_RES = {v["kind"]: k for k, v in RESOURCES.items()}


def status_body(code, reason, message, details=None, meta=None):
    s = {"kind": "Status", "apiVersion": "v1", "metadata": meta or {}, "status": "Failure",
         "message": message, "reason": reason, "code": code}
    if details:
        s["details"] = details
    return json.dumps(s, separators=(",", ":")).encode()


class ApiError(Exception):
    def __init__(self, code, reason, message, details=None, headers=None, meta=None):
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message
        self.details, self.headers, self.meta = details, headers or {}, meta


# ---------------------------------------------------------------------------------------------
# Selectors (FS-8)

LABEL_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")


def split_top(s):
    parts, depth, cur = [], 0, ""
    for c in s:
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        if c == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += c
    parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def parse_label_selector(s):
    reqs = []
    for term in split_top(s or ""):
        m = re.match(r"^(\S+)\s+(in|notin)\s+\((.*)\)$", term)
        if m:
            vals = {v.strip() for v in m.group(3).split(",") if v.strip()}
            key, op = m.group(1), m.group(2)
        elif term.startswith("!"):
            key, op, vals = term[1:], "!", None
        elif "!=" in term:
            key, v = term.split("!=", 1)
            op, vals = "!=", {v}
        elif "==" in term:
            key, v = term.split("==", 1)
            op, vals = "=", {v}
        elif "=" in term:
            key, v = term.split("=", 1)
            op, vals = "=", {v}
        else:
            key, op, vals = term, "exists", None
        if not LABEL_KEY.match(key.strip()):
            raise ApiError(400, "BadRequest", "unable to parse requirement: invalid label key %r" % key)
        reqs.append((key.strip(), op, vals))
    return reqs


def parse_field_selector(s):
    reqs = []
    for term in split_top(s or ""):
        if "!=" in term:
            f, v = term.split("!=", 1)
            op = "!="
        elif "==" in term:
            f, v = term.split("==", 1)
            op = "="
        elif "=" in term:
            f, v = term.split("=", 1)
            op = "="
        else:
            raise ApiError(400, "BadRequest", "invalid selector: %r; can't understand %r" % (s, term))
        if f not in ("metadata.name", "metadata.namespace"):
            raise ApiError(400, "BadRequest", "field label not supported: %s" % f)
        reqs.append((f, op, v))
    return reqs


def matches(obj, labels_req, fields_req):
    if obj is None:
        return False
    for key, op, vals in labels_req:
        has = key in obj.labels
        if op == "exists" and not has:
            return False
        if op == "!" and has:
            return False
        if op == "=" and (not has or obj.labels[key] not in vals):
            return False
        if op == "!=" and has and obj.labels[key] in vals:
            return False
        if op == "in" and (not has or obj.labels[key] not in vals):
            return False
        if op == "notin" and has and obj.labels[key] in vals:
            return False
    for f, op, v in fields_req:
        actual = obj.name if f == "metadata.name" else obj.ns
        if (actual == v) != (op == "="):
            return False
    return True


# ---------------------------------------------------------------------------------------------
# Store (FS-1..FS-3)

class Obj:
    """One stored object version: serialized once, without kind/apiVersion (FS-7)."""
    __slots__ = ("res", "ns", "name", "labels", "rv", "body")

    def __init__(self, res, raw, rv):
        meta = raw.setdefault("metadata", {})
        raw.pop("kind", None)
        raw.pop("apiVersion", None)
        meta["resourceVersion"] = str(rv)
        self.res, self.rv = res, rv
        self.ns = meta.get("namespace", "") if RESOURCES[res]["namespaced"] else ""
        self.name = meta.get("name", "")
        self.labels = meta.get("labels") or {}
        self.body = json.dumps(raw, separators=(",", ":")).encode()

    def key(self):
        return (self.ns, self.name)

    def with_kind(self):
        r = RESOURCES[self.res]
        return b'{"kind":"%s","apiVersion":"%s",' % (r["kind"].encode(), r["apiVersion"].encode()) + self.body[1:]

    def at_rv(self, rv):
        """The same object with another metadata.resourceVersion (DELETED carries the delete RV)."""
        raw = json.loads(self.body)
        return Obj(self.res, raw, rv)


class Store:
    def __init__(self):
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.rv = 1
        self.floor = 0
        self.objects = {r: {} for r in RESOURCES}
        self.history = []      # (rv, res, type, obj, prev)
        self.history_rvs = []
        # Per resource: a write counter, and the current objects sorted by key as of a count,
        # so that a paged list sorts once, not once per page (88 pages at 44,000 objects and
        # limit 500 made every list O(N^2 / limit): 12 s per list on the host, where a real
        # API server reads one page from etcd).
        self.gen = {r: 0 for r in RESOURCES}
        self.sorted_cache = {}  # res -> (gen, objects, keys)

    def _bump(self):
        self.rv += 1
        return self.rv

    def upsert(self, raw, record=True):
        kind = raw.get("kind")
        res = KIND_TO_RES.get(kind)
        if res is None:
            raise ApiError(400, "BadRequest", "unknown kind %r" % kind)
        with self.lock:
            rv = self._bump()
            obj = Obj(res, raw, rv)
            if not obj.name or (RESOURCES[res]["namespaced"] and not obj.ns):
                raise ApiError(400, "BadRequest", "object needs metadata.name (and namespace)")
            prev = self.objects[res].get(obj.key())
            self.objects[res][obj.key()] = obj
            self.gen[res] += 1
            if record:
                self._record(rv, res, "MODIFIED" if prev else "ADDED", obj, prev)
            else:
                self.floor = rv
            return rv

    def delete(self, res, ns, name):
        with self.lock:
            prev = self.objects[res].pop((ns, name), None)
            if prev is None:
                raise ApiError(404, "NotFound", '%s "%s" not found' % (RESOURCES[res]["kind"], name))
            self.gen[res] += 1
            rv = self._bump()
            self._record(rv, res, "DELETED", prev.at_rv(rv), prev)
            return rv

    def _record(self, rv, res, typ, obj, prev):
        self.history.append((rv, res, typ, obj, prev))
        self.history_rvs.append(rv)
        self.cond.notify_all()

    def compact(self, rv=None):
        with self.lock:
            rv = self.rv if rv is None else min(int(rv), self.rv)
            self.floor = max(self.floor, rv)
            i = bisect.bisect_right(self.history_rvs, self.floor)
            del self.history[:i]
            del self.history_rvs[:i]
            self.cond.notify_all()
            return self.floor

    def entries_after(self, rv):
        i = bisect.bisect_right(self.history_rvs, rv)
        return self.history[i:]

    def sorted_at(self, res, rv):
        """(objects, keys) of `res` as of RV `rv` (needs rv >= floor), sorted by key. Call with the
        lock held. The current state's order is cached until the next write to `res`."""
        if any(e[1] == res for e in self.entries_after(rv)):
            objs = sorted(self.state_at(res, rv).values(), key=lambda o: o.key())
            return objs, [o.key() for o in objs]
        cached = self.sorted_cache.get(res)
        if cached is None or cached[0] != self.gen[res]:
            objs = sorted(self.objects[res].values(), key=lambda o: o.key())
            cached = (self.gen[res], objs, [o.key() for o in objs])
            self.sorted_cache[res] = cached
        return cached[1], cached[2]

    def state_at(self, res, rv):
        """Objects of `res` as of RV `rv` (needs rv >= floor): current state with later writes undone."""
        state = dict(self.objects[res])
        for (erv, eres, _typ, obj, prev) in reversed(self.entries_after(rv)):
            if eres != res:
                continue
            if prev is None:
                state.pop(obj.key(), None)
            else:
                state[prev.key()] = prev
        return state


# ---------------------------------------------------------------------------------------------
# Server state: config, faults, request log, open watches (FS-4)

class Fake:
    def __init__(self, args):
        self.store = Store()
        self.lock = threading.Lock()
        self.config = {
            "tokens": list(args.token or []),
            "client_cert_auth": bool(args.client_cert_auth),
            "forbidden": [],
            "watchlist": not args.no_watchlist,
            "ignore_limit": False,
            "items_with_kind": False,
            "bookmark_interval": args.bookmark_interval,
            "initial_events_end_bookmark": True,
            "default_watch_timeout": args.default_watch_timeout,
            "chunk_split": 0,
            "too_large_wait": 3.0,
        }
        self.faults = []
        self.fault_seq = 0
        self.release_event = threading.Event()
        self.requests = []
        self.request_seq = 0
        self.watchers = set()

    def take_fault(self, info):
        with self.lock:
            for f in self.faults:
                if f["count"] == 0:
                    continue
                m = f.get("match", {})
                if "resource" in m and m["resource"] != info["resource"]:
                    continue
                if "watch" in m and bool(m["watch"]) != info["watch"]:
                    continue
                if "watchlist" in m and bool(m["watchlist"]) != info["watchlist"]:
                    continue
                if "verb" in m and m["verb"] != info["verb"]:
                    continue
                if "path" in m and not re.search(m["path"], info["path"]):
                    continue
                if "query" in m and not re.search(m["query"], info["query"]):
                    continue
                if f["count"] > 0:
                    f["count"] -= 1
                f["hits"] = f.get("hits", 0) + 1
                f["last_seq"] = info.get("seq")
                return f
        return None

    def log_request(self, entry):
        """Logs a request; returns its seq (increasing, never reused)."""
        with self.lock:
            entry["seq"] = self.request_seq
            self.request_seq += 1
            self.requests.append(entry)
            if len(self.requests) > 200000:
                del self.requests[:100000]
            return entry["seq"]

    def start_churn(self, spec):
        """Open-loop endpoint churn inside the server (the scale benchmark's churn phase): at
        `rate` changes per second for `seconds`, EndpointSlice `names[(i * stride) % len]`
        ("namespace/name") gets endpoints[0].addresses[0] replaced by the next address from
        `base`. A client driving this over HTTP tops out near 40 changes/s under emulation;
        from here, 100/s hold."""
        names = [tuple(n.split("/", 1)) for n in spec["names"]]
        rate, seconds, stride = float(spec["rate"]), float(spec["seconds"]), int(spec.get("stride", 1))
        base = int(spec.get("base", 0x0AF10000))
        st = self.store
        with self.lock:
            if getattr(self, "churn", None) and self.churn["running"]:
                raise ApiError(409, "Conflict", "a churn is running")
            self.churn = churn = {"running": True, "times": [], "rvs": []}

        def run():
            start = time.time()
            i = 0
            while True:
                due = start + i / rate
                now = time.time()
                if now - start >= seconds:
                    break
                if due > now:
                    time.sleep(due - now)
                key = names[(i * stride) % len(names)]
                with st.lock:
                    raw = json.loads(st.objects["endpointslices"][key].with_kind())
                a = base + i + 1
                raw["endpoints"][0]["addresses"] = ["%d.%d.%d.%d" % (a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255)]
                t = time.time()
                rv = st.upsert(raw)
                churn["times"].append(t)
                churn["rvs"].append(rv)
                i += 1
            churn["running"] = False

        threading.Thread(target=run, daemon=True).start()

    def open_watches(self, res=None):
        with self.lock:
            return sum(1 for w in self.watchers if res is None or w.res == res)

    def open_watch_seqs(self, res):
        """The request seqs of the open watches on `res`, oldest first."""
        with self.lock:
            return sorted(w.seq for w in self.watchers if w.res == res)


class Watcher:
    def __init__(self, res, seq=None):
        self.res = res
        self.seq = seq
        self.close_mode = None


# ---------------------------------------------------------------------------------------------
# HTTP handler

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-apiserver"
    sys_version = ""
    timeout = 600

    def log_message(self, fmt, *args):
        if self.server.fake_args.verbose:
            sys.stderr.write("fake-apiserver: " + (fmt % args) + "\n")

    def setup(self):
        ctx = getattr(self.server, "tls_context", None)
        if ctx is not None:
            self.request.settimeout(10)
            self.request = ctx.wrap_socket(self.request, server_side=True)
            self.request.settimeout(None)
        super().setup()

    @property
    def fake(self):
        return self.server.fake

    # --- response helpers ---
    def send_bytes(self, code, body, ctype="application/json", headers=None):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache, private")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, code, obj):
        self.send_bytes(code, json.dumps(obj).encode())

    def send_error_status(self, e):
        self.send_bytes(e.code, status_body(e.code, e.reason, e.message, e.details, e.meta),
                        headers=e.headers)

    def reset_connection(self):
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        try:
            raw = socket.socket(fileno=os.dup(self.connection.fileno()))
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            raw.close()
        except OSError:
            pass
        try:
            self.connection.close()
        except OSError:
            pass
        self.close_connection = True

    def chunk(self, data):
        split = self.fake.config["chunk_split"]
        if split and len(data) > split:
            for i in range(0, len(data), split):
                part = data[i:i + split]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
        elif data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def end_chunks(self):
        self.wfile.write(b"0\r\n\r\n")

    # --- verbs ---
    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def do_PUT(self):
        self.dispatch("PUT")

    def do_PATCH(self):
        self.dispatch("PATCH")

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def dispatch(self, verb):
        url = urlsplit(self.path)
        path = url.path
        if path.startswith("/__fake/"):
            try:
                self.control(verb, path, url.query)
            except ApiError as e:
                self.send_error_status(e)
            except (ValueError, KeyError, TypeError) as e:
                self.send_error_status(ApiError(400, "BadRequest", "control: %s" % e))
            return
        if getattr(self.server, "control_only", False):
            self.send_error_status(ApiError(404, "NotFound", "control port: only /__fake/"))
            return
        q = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        if verb != "GET":
            self.read_body()
        try:
            self.api(verb, path, url.query, q)
        except ApiError as e:
            self.send_error_status(e)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            self.close_connection = True

    # --- the API ---
    def route(self, path):
        """(resource, namespace, name) or None."""
        for res, r in RESOURCES.items():
            pre = r["prefix"]
            if path == "%s/%s" % (pre, res):
                return res, None, None
            if path.startswith("%s/%s/" % (pre, res)) and not r["namespaced"]:
                name = path[len("%s/%s/" % (pre, res)):]
                if name and "/" not in name:
                    return res, None, name
            if r["namespaced"] and path.startswith(pre + "/namespaces/"):
                rest = path[len(pre + "/namespaces/"):].split("/")
                if len(rest) in (2, 3) and rest[1] == res and rest[0]:
                    return res, rest[0], (rest[2] if len(rest) == 3 and rest[2] else None)
        return None

    def authenticate(self):
        cfg = self.fake.config
        tokens, cert_auth = cfg["tokens"], cfg["client_cert_auth"]
        if not tokens and not cert_auth:
            return True
        auth = self.headers.get("Authorization", "")
        if tokens and auth.startswith("Bearer ") and auth[7:] in tokens:
            return True
        if cert_auth and isinstance(self.connection, ssl.SSLSocket):
            try:
                if self.connection.getpeercert():
                    return True
            except (ValueError, ssl.SSLError):
                pass
        return False

    def api(self, verb, path, rawq, q):
        r = self.route(path)
        res = r[0] if r else ""
        watch = q.get("watch", "").lower() not in ("", "0", "false")
        info = {"verb": verb, "path": path, "query": rawq, "resource": res, "watch": watch,
                "watchlist": q.get("sendInitialEvents") == "true"}
        info["seq"] = self.fake.log_request({
            "method": verb, "path": path, "query": rawq, "watch": watch, "resource": res,
            "time": time.time(), "headers": {k: v for k, v in self.headers.items()},
            "cipher": self.connection.cipher()[0] if isinstance(self.connection, ssl.SSLSocket) else None})
        self.request_seq = info["seq"]
        fault = self.fake.take_fault(info)
        stream_fault = None
        if fault:
            action = fault.get("action")
            if action == "reset":
                self.reset_connection()
                return
            if action in ("hold", "no_headers"):
                self.fake.release_event.wait(fault.get("timeout", 3600))
                if action == "no_headers":
                    self.close_connection = True
                    return
            elif action == "delay":
                time.sleep(float(fault.get("seconds", 1)))
            elif action == "status":
                self.fault_status(fault)
                return
            elif action == "stream":
                stream_fault = fault
        if path in ("/version",):
            self.send_json(200, {"major": "1", "minor": "31", "gitVersion": "v1.31.0-fake"})
            return
        if path == "/api":
            self.send_json(200, {"kind": "APIVersions", "versions": ["v1"]})
            return
        if path == "/apis":
            self.send_json(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": "discovery.k8s.io", "versions": [{"groupVersion": "discovery.k8s.io/v1", "version": "v1"}]}]})
            return
        if not self.authenticate():
            raise ApiError(401, "Unauthorized", "Unauthorized")
        if r is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if verb != "GET":
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        accept = self.headers.get("Accept", "")
        if accept and "application/json" not in accept and "*/*" not in accept:
            raise ApiError(406, "NotAcceptable", "only the following media types are accepted: application/json")
        if res in self.fake.config["forbidden"]:
            group = "" if RESOURCES[res]["prefix"] == "/api/v1" else "discovery.k8s.io"
            raise ApiError(403, "Forbidden",
                           '%s%s is forbidden: User "system:kube-proxy" cannot %s resource "%s" in API group "%s" at the cluster scope'
                           % (res, ("." + group) if group else "", "watch" if watch else "list", res, group),
                           details={"group": group, "kind": res})
        _, ns, name = r
        if name is not None:
            return self.serve_get(res, ns, name)
        labels = parse_label_selector(q.get("labelSelector"))
        fields = parse_field_selector(q.get("fieldSelector"))
        if ns:
            fields = fields + [("metadata.namespace", "=", ns)]
        if watch:
            return self.serve_watch(res, q, labels, fields, stream_fault)
        return self.serve_list(res, q, labels, fields)

    def fault_status(self, f):
        code = int(f.get("status", 500))
        headers = {}
        if f.get("retry_after") is not None:
            headers["Retry-After"] = str(f["retry_after"])
        if f.get("preset") == "too_large_rv":
            st = self.fake.store
            code = 504
            headers.setdefault("Retry-After", "1")
            body = status_body(504, "Timeout", "Timeout: Too large resource version: %d, current: %d" % (st.rv + 1000, st.rv),
                               details={"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                                        "retryAfterSeconds": 1})
            self.send_bytes(code, body, headers=headers)
            return
        if f.get("content_type") == "text":
            self.send_bytes(code, (f.get("body") or "Too many requests, please try again later.\n").encode(),
                            ctype="text/plain; charset=utf-8", headers=headers)
            return
        reasons = {401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 410: "Expired", 422: "Invalid",
                   429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout"}
        reason = f.get("reason", reasons.get(code, "Unknown"))
        details = {"retryAfterSeconds": int(f["retry_after"])} if f.get("retry_after") is not None else None
        self.send_bytes(code, status_body(code, reason, f.get("message", "injected %d" % code), details), headers=headers)

    def serve_get(self, res, ns, name):
        with self.fake.store.lock:
            obj = self.fake.store.objects[res].get((ns or "", name))
        if obj is None:
            raise ApiError(404, "NotFound", '%s "%s" not found' % (res, name))
        self.send_bytes(200, obj.with_kind())

    def wait_for_rv(self, n):
        st = self.fake.store
        deadline = time.time() + self.fake.config["too_large_wait"]
        with st.cond:
            while st.rv < n and time.time() < deadline:
                st.cond.wait(max(0.0, deadline - time.time()))
            if st.rv < n:
                raise ApiError(504, "Timeout", "Timeout: Too large resource version: %d, current: %d" % (n, st.rv),
                               details={"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                                        "retryAfterSeconds": 1}, headers={"Retry-After": "1"})

    def serve_list(self, res, q, labels, fields):
        st, cfg = self.fake.store, self.fake.config
        rv, rvm, cont = q.get("resourceVersion"), q.get("resourceVersionMatch"), q.get("continue")
        invalid = lambda msg: ApiError(422, "Invalid", 'ListOptions.meta.k8s.io "" is invalid: %s' % msg,
                                       details={"group": "meta.k8s.io", "kind": "ListOptions"})
        if "sendInitialEvents" in q:
            raise invalid("sendInitialEvents: Forbidden: sendInitialEvents is forbidden for list")
        if rvm and cont:
            raise invalid("resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden when continue is provided")
        if rvm and not rv:
            raise invalid("resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided")
        if rvm and rvm not in ("Exact", "NotOlderThan"):
            raise invalid('resourceVersionMatch: Unsupported value: "%s"' % rvm)
        if rvm == "Exact" and rv == "0":
            raise invalid('resourceVersionMatch: Forbidden: resourceVersionMatch "exact" is forbidden for resourceVersion "0"')
        if cont and rv:
            raise ApiError(400, "BadRequest", "specifying resource version is not allowed when using continue")
        limit = int(q.get("limit") or 0)
        if cfg["ignore_limit"]:
            limit = 0
        start_key = None
        with st.lock:
            if cont:
                try:
                    tok = json.loads(base64.urlsafe_b64decode(cont.encode()))
                    snap_rv, start_key = int(tok["rv"]), tuple(tok["start"])
                except (ValueError, KeyError, TypeError):
                    raise ApiError(400, "BadRequest", "continue key is not valid")
                if snap_rv < st.floor:
                    fresh = base64.urlsafe_b64encode(json.dumps({"rv": st.rv, "start": list(start_key)}).encode()).decode()
                    raise ApiError(410, "Expired",
                                   "The provided continue parameter is too old to display a consistent list result. "
                                   "You can start a new list without the continue parameter, or use the continue token "
                                   "in this response to retrieve the remainder of the results.", meta={"continue": fresh})
            elif rv in (None, "", "0"):
                snap_rv = st.rv
            else:
                try:
                    n = int(rv)
                except ValueError:
                    raise ApiError(400, "BadRequest", "invalid resource version %r" % rv)
                exact = rvm == "Exact" or (not rvm and limit > 0)
                if n > st.rv:
                    st.lock.release()
                    try:
                        self.wait_for_rv(n)
                    finally:
                        st.lock.acquire()
                if exact:
                    if n < st.floor:
                        raise ApiError(410, "Expired", "The resourceVersion for the provided list is too old.")
                    snap_rv = n
                else:
                    snap_rv = st.rv
            every, keys = st.sorted_at(res, snap_rv)
            # One page: the matching objects from start_key on, one more than the limit to
            # know whether a continue token is due.
            objs = []
            for j in range(bisect.bisect_left(keys, start_key) if start_key is not None else 0, len(every)):
                if matches(every[j], labels, fields):
                    objs.append(every[j])
                    if limit and len(objs) > limit:
                        break
        next_tok = ""
        if limit and len(objs) > limit:
            next_tok = base64.urlsafe_b64encode(json.dumps({"rv": snap_rv, "start": list(objs[limit].key())}).encode()).decode()
            objs = objs[:limit]
        r = RESOURCES[res]
        meta = {"resourceVersion": str(snap_rv)}
        if next_tok:
            meta["continue"] = next_tok
        head = ('{"kind":"%sList","apiVersion":"%s","metadata":%s,"items":[' %
                (r["kind"], r["apiVersion"], json.dumps(meta, separators=(",", ":")))).encode()
        items = [o.with_kind() for o in objs] if cfg["items_with_kind"] else [o.body for o in objs]
        self.send_bytes(200, head + b",".join(items) + b"]}")

    def client_gone(self):
        try:
            r, _, _ = select.select([self.connection.fileno()], [], [], 0)
            return bool(r)
        except (OSError, ValueError):
            return True

    def serve_watch(self, res, q, labels, fields, fault):
        st, cfg = self.fake.store, self.fake.config
        rv, rvm = q.get("resourceVersion"), q.get("resourceVersionMatch")
        send_initial = q.get("sendInitialEvents", "").lower() == "true"
        allow_bm = q.get("allowWatchBookmarks", "").lower() in ("true", "1")
        invalid = lambda msg: ApiError(422, "Invalid", 'ListOptions.meta.k8s.io "" is invalid: %s' % msg,
                                       details={"group": "meta.k8s.io", "kind": "ListOptions"})
        if "sendInitialEvents" in q:
            if not cfg["watchlist"]:
                raise invalid("sendInitialEvents: Forbidden: sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled")
            if rvm != "NotOlderThan":
                raise invalid("resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan")
        elif rvm:
            raise invalid("resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided")
        timeout = float(q["timeoutSeconds"]) if q.get("timeoutSeconds") else cfg["default_watch_timeout"]
        r = RESOURCES[res]
        watcher = Watcher(res, getattr(self, "request_seq", None))
        initial, expired = [], None
        with st.lock:
            if send_initial or rv in (None, "", "0"):
                pos = st.rv
                if send_initial or rv in (None, "", "0"):
                    initial = [o for o in st.sorted_at(res, pos)[0] if matches(o, labels, fields)]
            else:
                try:
                    pos = int(rv)
                except ValueError:
                    raise ApiError(400, "BadRequest", "invalid resource version %r" % rv)
                if pos < st.floor:
                    expired = "too old resource version: %d (%d)" % (pos, st.floor + 1)
            with self.fake.lock:
                self.fake.watchers.add(watcher)
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Cache-Control", "no-cache, private")
            self.end_headers()
            self.wfile.flush()
            self.watch_loop(res, r, watcher, pos, initial, expired, send_initial, allow_bm, timeout,
                            labels, fields, fault)
        finally:
            with self.fake.lock:
                self.fake.watchers.discard(watcher)

    def watch_loop(self, res, r, watcher, pos, initial, expired, send_initial, allow_bm, timeout,
                   labels, fields, fault):
        st, cfg = self.fake.store, self.fake.config
        kind_b, api_b = r["kind"].encode(), r["apiVersion"].encode()
        if expired:
            self.chunk(b'{"type":"ERROR","object":' + status_body(410, "Expired", expired) + b"}\n")
            self.end_chunks()
            return
        start = time.time()
        deadline = start + timeout
        interval = cfg["bookmark_interval"]
        next_bm = start + interval if interval > 0 else None
        pre_deadline_bm = deadline - 2 if timeout > 4 else None
        sent = [0]

        def bookmark(rv, end=False):
            ann = b',"annotations":{"k8s.io/initial-events-end":"true"}' if end else b""
            return (b'{"type":"BOOKMARK","object":{"kind":"%s","apiVersion":"%s","metadata":{"resourceVersion":"%d"%s}}}\n'
                    % (kind_b, api_b, rv, ann))

        def apply_fault():
            """Runs the stream fault once its event count is reached; returns True to stop."""
            nonlocal fault
            if not fault or sent[0] < int(fault.get("after_events", 0)):
                return False
            f, fault = fault, None
            then = f.get("then", "close")
            if then == "reset":
                self.wfile.flush()
                self.reset_connection()
                return True
            if then == "close":
                self.end_chunks()
                return True
            if then == "partial":
                self.chunk(b'{"type":"MODIFIED","object":{"kind":')
                if f.get("close_mode") == "reset":
                    self.reset_connection()
                else:
                    self.end_chunks()
                return True
            if then in ("error_410", "error_gone", "error_500"):
                body = {"error_410": status_body(410, "Expired", "too old resource version: %d (%d)" % (pos, pos + 1)),
                        "error_gone": status_body(410, "Gone", "too old resource version: %d (%d)" % (pos, pos + 1)),
                        "error_500": status_body(500, "InternalError", "Internal error occurred: injected")}[then]
                self.chunk(b'{"type":"ERROR","object":' + body + b"}\n")
                self.end_chunks()
                return True
            line = {"garbled": b'{"type":"ADDED","object":{]}\n',
                    "unknown_type": b'{"type":"FOO","object":{}}\n',
                    "wrong_kind": b'{"type":"ADDED","object":{"kind":"Node","apiVersion":"v1","metadata":{"name":"intruder","resourceVersion":"%d"}}}\n' % pos,
                    }.get(then)
            if then == "raw":
                line = f.get("data", "").encode()
            if line is None:
                raise ApiError(500, "InternalError", "unknown stream fault %r" % then)
            self.chunk(line)
            return False

        if apply_fault():
            return
        if initial:
            out = []
            for o in initial:
                out.append(b'{"type":"ADDED","object":' + o.with_kind() + b"}\n")
                sent[0] += 1
                if fault and sent[0] >= int(fault.get("after_events", 0)):
                    self.chunk(b"".join(out))
                    out = []
                    if apply_fault():
                        return
            self.chunk(b"".join(out))
        if send_initial and allow_bm and cfg["initial_events_end_bookmark"]:
            self.chunk(bookmark(pos, True))
        while True:
            lines = []
            with st.cond:
                while True:
                    now = time.time()
                    if watcher.close_mode or now >= deadline:
                        break
                    if pos < st.floor:
                        break
                    if st.history_rvs and st.history_rvs[-1] > pos:
                        break
                    if next_bm is not None and allow_bm and now >= next_bm:
                        break
                    if pre_deadline_bm is not None and allow_bm and now >= pre_deadline_bm:
                        break
                    wake = min(deadline, next_bm or deadline, pre_deadline_bm or deadline, now + 0.2)
                    st.cond.wait(max(0.01, wake - now))
                    if self.client_gone():
                        return
                compacted = pos < st.floor
                entries = [] if compacted else st.entries_after(pos)
                current = st.rv
            if watcher.close_mode == "reset":
                self.reset_connection()
                return
            if watcher.close_mode == "close" or time.time() >= deadline:
                self.end_chunks()
                return
            if compacted:
                self.chunk(b'{"type":"ERROR","object":' +
                           status_body(410, "Expired", "too old resource version: %d (%d)" % (pos, st.floor + 1)) + b"}\n")
                self.end_chunks()
                return
            for (erv, eres, typ, obj, prev) in entries:
                pos = erv
                if eres != res:
                    continue
                if typ == "DELETED":
                    ev = ("DELETED", obj) if matches(obj, labels, fields) else None
                else:
                    now_m, was_m = matches(obj, labels, fields), matches(prev, labels, fields)
                    if now_m:
                        ev = ("ADDED" if typ == "ADDED" or not was_m else "MODIFIED", obj)
                    elif was_m:
                        ev = ("DELETED", prev.at_rv(erv))
                    else:
                        ev = None
                if ev is None:
                    continue
                lines.append(b'{"type":"%s","object":' % ev[0].encode() + ev[1].with_kind() + b"}\n")
                sent[0] += 1
                if fault and sent[0] >= int(fault.get("after_events", 0)):
                    self.chunk(b"".join(lines))
                    lines = []
                    if apply_fault():
                        return
            now = time.time()
            if allow_bm and not entries and ((next_bm is not None and now >= next_bm) or
                                             (pre_deadline_bm is not None and now >= pre_deadline_bm)):
                pos = max(pos, current)
                lines.append(bookmark(pos))
                if next_bm is not None:
                    next_bm = now + interval
                if pre_deadline_bm is not None and now >= pre_deadline_bm:
                    pre_deadline_bm = None
            if lines:
                self.chunk(b"".join(lines))

    # --- control API ---
    def control(self, verb, path, rawq):
        fake, st = self.fake, self.fake.store
        body = self.read_body() if verb != "GET" else b""
        data = json.loads(body) if body else {}
        q = {k: v[-1] for k, v in parse_qs(rawq).items()}
        name = path[len("/__fake/"):]
        if name == "state":
            with st.lock:
                counts = {r: len(st.objects[r]) for r in RESOURCES}
                return self.send_json(200, {"rv": st.rv, "floor": st.floor, "counts": counts,
                                            "open_watches": fake.open_watches()})
        if name == "objects" and verb == "GET":
            res = q.get("resource", "services")
            with st.lock:
                items = [json.loads(o.with_kind()) for o in st.sorted_at(res, st.rv)[0]]
            return self.send_json(200, {"rv": st.rv, "items": items})
        if name == "objects" and verb == "POST":
            items = data.get("items", [data]) if isinstance(data, dict) else data
            rv = 0
            for it in items:
                rv = st.upsert(it)
            return self.send_json(200, {"rv": rv})
        if name == "delete" and verb == "POST":
            items = data.get("items", [data]) if isinstance(data, dict) else data
            rv = 0
            for it in items:
                res = it.get("resource") or KIND_TO_RES[it["kind"]]
                rv = st.delete(res, it.get("namespace", "") if RESOURCES[res]["namespaced"] else "", it["name"])
            return self.send_json(200, {"rv": rv})
        if name == "compact" and verb == "POST":
            return self.send_json(200, {"floor": st.compact(data.get("rv"))})
        if name == "config":
            if verb == "POST":
                unknown = set(data) - set(fake.config)
                if unknown:
                    raise ApiError(400, "BadRequest", "unknown config keys %s" % sorted(unknown))
                fake.config.update(data)
            return self.send_json(200, fake.config)
        if name == "faults":
            if verb == "DELETE":
                with fake.lock:
                    fake.faults.clear()
                return self.send_json(200, {})
            if verb == "POST":
                rules = data if isinstance(data, list) else [data]
                ids = []
                with fake.lock:
                    for rule in rules:
                        fake.fault_seq += 1
                        rule = dict(rule)
                        rule["id"] = fake.fault_seq
                        rule.setdefault("count", 1)
                        fake.faults.append(rule)
                        ids.append(rule["id"])
                return self.send_json(200, {"ids": ids})
            with fake.lock:
                return self.send_json(200, {"faults": fake.faults})
        if name == "release" and verb == "POST":
            fake.release_event.set()
            time.sleep(0.05)
            fake.release_event.clear()
            return self.send_json(200, {})
        if name == "close-watches" and verb == "POST":
            mode = data.get("mode", "close")
            with fake.lock:
                n = 0
                for w in fake.watchers:
                    if data.get("resource") in (None, w.res):
                        w.close_mode = mode
                        n += 1
            with st.cond:
                st.cond.notify_all()
            return self.send_json(200, {"closed": n})
        if name == "watches":
            by = {r: fake.open_watches(r) for r in RESOURCES}
            seqs = {r: fake.open_watch_seqs(r) for r in RESOURCES}
            return self.send_json(200, {"open": fake.open_watches(), "by_resource": by,
                                        "seqs": seqs})
        if name == "wait-watches" and verb == "POST":
            want, res = int(data.get("count", 1)), data.get("resource")
            deadline = time.time() + float(data.get("timeout", 30))
            while fake.open_watches(res) < want and time.time() < deadline:
                time.sleep(0.02)
            n = fake.open_watches(res)
            return self.send_json(200 if n >= want else 408, {"open": n})
        if name == "churn" and verb == "POST":
            fake.start_churn(data)
            return self.send_json(200, {})
        if name == "churn":
            return self.send_json(200, getattr(fake, "churn", None) or {"running": False, "times": []})
        if name == "requests":
            since = int(q.get("since", 0))
            with fake.lock:
                out = [r for r in fake.requests if r["seq"] >= since]
                nxt = fake.requests[-1]["seq"] + 1 if fake.requests else 0
            return self.send_json(200, {"next": nxt, "requests": out})
        raise ApiError(404, "NotFound", "unknown control endpoint %s %s" % (verb, path))


# ---------------------------------------------------------------------------------------------
# Certificates (FS-21), made with the openssl CLI

def openssl(*args):
    subprocess.run(["openssl", *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_certs(d):
    os.makedirs(d, exist_ok=True)
    p = lambda n: os.path.join(d, n)
    if os.path.exists(p("client.crt")):
        return
    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", p(ca + ".key"), "-out", p(ca + ".crt"), "-days", "3650", "-subj", "/CN=fake-%s" % ca)

    def leaf(name, subj, san, ext_usage):
        ext = p(name + ".ext")
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n")
            f.write("extendedKeyUsage=%s\n" % ext_usage)
            if san:
                f.write("subjectAltName=%s\n" % san)
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", p(name + ".key"), "-out", p(name + ".csr"), "-subj", subj)
        openssl("x509", "-req", "-in", p(name + ".csr"), "-CA", p("ca.crt"), "-CAkey", p("ca.key"),
                "-CAcreateserial", "-out", p(name + ".crt"), "-days", "3650", "-extfile", ext)
        os.remove(p(name + ".csr"))
        os.remove(ext)

    leaf("server", "/CN=kube-apiserver",
         "IP:127.0.0.1,IP:::1,DNS:localhost,DNS:kubernetes.default.svc", "serverAuth")
    leaf("wrong-san", "/CN=wrong", "DNS:wrong.example,IP:192.0.2.1", "serverAuth")
    leaf("client", "/CN=system:kube-proxy/O=system:node-proxier", None, "clientAuth")


def write_kubeconfigs(d, url, token):
    b64 = lambda n: base64.b64encode(open(os.path.join(d, n), "rb").read()).decode()
    for name, user in (("kubeconfig-token.yaml", "    token: %s\n" % (token or "")),
                       ("kubeconfig-cert.yaml", "    client-certificate: client.crt\n    client-key: client.key\n")):
        with open(os.path.join(d, name), "w") as f:
            f.write("apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n"
                    "    server: %s\n    certificate-authority-data: %s\n"
                    "users:\n- name: fake\n  user:\n%s"
                    "contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n"
                    "current-context: fake\n" % (url, b64("ca.crt"), user))


# ---------------------------------------------------------------------------------------------
# Synthetic data (benchmarks and the demo)

def synth(n, endpoints=10):
    items = [{"kind": "Node", "apiVersion": "v1",
              "metadata": {"name": "node-1", "labels": {"topology.kubernetes.io/zone": "zone-a"}},
              "spec": {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"]},
              "status": {"addresses": [{"type": "InternalIP", "address": "192.168.0.10"}]}}]
    for i in range(n):
        ns, name = "ns-%d" % (i % 50), "svc-%d" % i
        ip = "10.%d.%d.%d" % (96 + (i >> 16), (i >> 8) & 255, i & 255)
        items.append({"kind": "Service", "apiVersion": "v1",
                      "metadata": {"name": name, "namespace": ns, "uid": "uid-s-%d" % i,
                                   "creationTimestamp": "2024-01-01T00:00:00Z", "labels": {"app": name}},
                      "spec": {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip], "ipFamilies": ["IPv4"],
                               "ipFamilyPolicy": "SingleStack", "selector": {"app": name},
                               "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080}],
                               "sessionAffinity": "None", "internalTrafficPolicy": "Cluster"},
                      "status": {"loadBalancer": {}}})
        eps = [{"addresses": ["10.%d.%d.%d" % (128 + ((i * endpoints + j) >> 16), ((i * endpoints + j) >> 8) & 255, (i * endpoints + j) & 255)],
                "conditions": {"ready": True, "serving": True, "terminating": False},
                "nodeName": "node-%d" % (j % 5), "zone": "zone-a",
                "targetRef": {"kind": "Pod", "namespace": ns, "name": "%s-pod-%d" % (name, j)}}
               for j in range(endpoints)]
        items.append({"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
                      "metadata": {"name": name + "-abcde", "namespace": ns, "uid": "uid-e-%d" % i,
                                   "labels": {"kubernetes.io/service-name": name,
                                              "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
                      "addressType": "IPv4", "endpoints": eps,
                      "ports": [{"name": "http", "protocol": "TCP", "port": 8080}]})
    return items


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, addr, handler, fake, args, tls_context=None, control_only=False):
        self.address_family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        self.fake, self.fake_args, self.tls_context, self.control_only = fake, args, tls_context, control_only
        super().__init__(addr, handler)

    def handle_error(self, request, client_address):
        if self.fake_args.verbose:
            super().handle_error(request, client_address)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--control-port", type=int, default=0, help="plain-HTTP control port (-1: none)")
    ap.add_argument("--tls-dir", help="serve TLS with certificates in DIR (made if missing)")
    ap.add_argument("--serve-cert", default="server", choices=["server", "wrong-san"])
    ap.add_argument("--token", action="append", help="accepted bearer token (repeatable; none: no token auth)")
    ap.add_argument("--client-cert-auth", action="store_true", help="accept client certificates signed by the CA")
    ap.add_argument("--seed", help="JSON file: a list of objects or {items:[...]}")
    ap.add_argument("--synth", type=int, default=0, help="N Services + N EndpointSlices (10 endpoints) + node-1")
    ap.add_argument("--bookmark-interval", type=float, default=1.0, help="seconds; 0 never")
    ap.add_argument("--default-watch-timeout", type=float, default=1800.0)
    ap.add_argument("--no-watchlist", action="store_true")
    ap.add_argument("--exit-on-stdin-eof", action="store_true")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()

    fake = Fake(args)
    seed = []
    if args.seed:
        with open(args.seed) as f:
            data = json.load(f)
        seed = data.get("items", []) if isinstance(data, dict) else data
    seed += synth(args.synth) if args.synth else []
    for item in seed:
        fake.store.upsert(item, record=False)
    fake.store.floor = fake.store.rv
    del seed
    # The seeded objects live until the end: keep them out of the cyclic collector. With
    # 44,000 Services and slices loaded a full collection took 53 ms natively (and about ten
    # times that under the test guest's emulation), and it landed in the middle of a watch
    # event, so the scale benchmark's p99 latency measured this server's pauses.
    gc.collect()
    gc.freeze()

    ctx = None
    if args.tls_dir:
        make_certs(args.tls_dir)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(args.tls_dir, args.serve_cert + ".crt"),
                            os.path.join(args.tls_dir, args.serve_cert + ".key"))
        ctx.load_verify_locations(os.path.join(args.tls_dir, "ca.crt"))
        ctx.verify_mode = ssl.CERT_OPTIONAL
        # SSL_OP_PRIORITIZE_CHACHA (no name in Python's ssl): follow a client that offers
        # ChaCha20-Poly1305 first, as kube-apiserver (Go's crypto/tls) does; else AES-GCM.
        ctx.options |= 0x00200000
    srv = Server((args.bind, args.port), Handler, fake, args, tls_context=ctx)
    port = srv.server_address[1]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    out = ["PORT %d" % port]
    if args.control_port >= 0:
        ctl = Server(("127.0.0.1", args.control_port), Handler, fake, args, control_only=True)
        threading.Thread(target=ctl.serve_forever, daemon=True).start()
        out.append("CONTROL_PORT %d" % ctl.server_address[1])
    if args.tls_dir:
        host = "[%s]" % args.bind if ":" in args.bind else args.bind
        write_kubeconfigs(args.tls_dir, "https://%s:%d" % (host, port), (args.token or [""])[0])
    print("\n".join(out) + "\nREADY", flush=True)
    try:
        if args.exit_on_stdin_eof:
            # A test that dies takes the server with it: its end of our stdin closes.
            sys.stdin.read()
        else:
            threading.Event().wait()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
