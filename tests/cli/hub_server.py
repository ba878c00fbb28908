#!/usr/bin/env python3
"""A stand-in for the Hugging Face Hub for `loom pull` tests: files under --root served in the
Hub's URL layout. /api/models/ORG/REPO lists a repository's files ("siblings");
/ORG/REPO/resolve/main/FILE answers 302 to a second port (the "CDN") with X-Linked-Etag (the file's
sha256) and X-Linked-Size, as the Hub does for LFS files; the CDN serves the bytes with Range support.

--token T: the Hub answers 401 unless "Authorization: Bearer T" comes; the CDN answers 400 to any
Authorization header (a token must not follow a redirect off the Hub).
--cut FILE: the first GET of ORG/REPO/FILE without Range sends the full Content-Length, half of
the bytes, then closes the connection. --bad-sha FILE: X-Linked-Etag carries a wrong digest.
--rename OLD=NEW (ORG/REPO each): OLD's URLs answer 307 to NEW's, on the Hub itself, as the Hub does
for a renamed repository.
Prints "hub PORT" and "cdn PORT", then one line per request."""
import argparse
import hashlib
import http.server
import json
import os
import re
import sys
import threading

args = None
cut_done = set()
lock = threading.Lock()


def log(line):
    print(line, flush=True)


def repo_files(repo_dir):
    out = []
    for base, _, files in os.walk(repo_dir):
        for f in files:
            out.append(os.path.relpath(os.path.join(base, f), repo_dir))
    return sorted(out)


def safe_path(rel):
    path = os.path.realpath(os.path.join(args.root, rel))
    return path if path.startswith(os.path.realpath(args.root) + os.sep) else None


class Base(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def send_json(self, status, obj, extra=()):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)


class Hub(Base):
    def do_GET(self):
        auth = self.headers.get("Authorization")
        log(f"hub GET {self.path} auth={'yes' if auth else 'no'}")
        if args.token and auth != f"Bearer {args.token}":
            return self.send_json(401, {"error": "Invalid credentials"})
        for old, new in (r.split("=") for r in args.rename):
            for prefix in (f"/api/models/{old}", f"/{old}/"):
                if self.path == prefix or self.path.startswith(prefix.rstrip("/") + "/"):
                    self.send_response(307)
                    self.send_header("Location", self.path.replace(old, new, 1))
                    self.send_header("Content-Length", "0")
                    return self.end_headers()
        m = re.fullmatch(r"/api/models/([^/]+)/([^/]+)", self.path)
        if m:
            repo_dir = safe_path(f"{m[1]}/{m[2]}")
            if not repo_dir or not os.path.isdir(repo_dir):
                return self.send_json(404, {"error": "Repository not found"}, [("X-Error-Code", "RepoNotFound")])
            siblings = [{"rfilename": f} for f in repo_files(repo_dir)]
            return self.send_json(200, {"id": f"{m[1]}/{m[2]}", "siblings": siblings})
        m = re.fullmatch(r"/([^/]+)/([^/]+)/resolve/main/(.+)", self.path)
        path = safe_path(f"{m[1]}/{m[2]}/{m[3]}") if m else None
        if not path or not os.path.isfile(path):
            return self.send_json(404, {"error": "Entry not found"}, [("X-Error-Code", "EntryNotFound")])
        rel = f"{m[1]}/{m[2]}/{m[3]}"
        with open(path, "rb") as f:
            sha = hashlib.sha256(f.read()).hexdigest()
        if rel in args.bad_sha:
            sha = hashlib.sha256(b"not the file").hexdigest()
        self.send_response(302)
        self.send_header("Location", f"http://127.0.0.1:{args.cdn_port}/{rel}")
        self.send_header("X-Linked-Etag", f'"{sha}"')
        self.send_header("X-Linked-Size", str(os.path.getsize(path)))
        self.send_header("ETag", '"0123456789abcdef0123456789abcdef01234567"')
        self.send_header("Content-Length", "0")
        self.end_headers()


class Cdn(Base):
    def do_GET(self):
        rng = self.headers.get("Range")
        log(f"cdn GET {self.path} range={rng} auth={'yes' if self.headers.get('Authorization') else 'no'}")
        if self.headers.get("Authorization"):
            return self.send_json(400, {"error": "Authorization sent to the CDN"})
        rel = self.path.lstrip("/")
        path = safe_path(rel)
        if not path or not os.path.isfile(path):
            return self.send_json(404, {"error": "not found"})
        with open(path, "rb") as f:
            data = f.read()
        start = 0
        if rng:
            m = re.fullmatch(r"bytes=(\d+)-", rng)
            start = int(m[1]) if m else 0
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                return self.end_headers()
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        with lock:
            cut = rel in args.cut and not rng and rel not in cut_done
            if cut:
                cut_done.add(rel)
        if cut:
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self.wfile.write(data[start:])


def main():
    global args
    p = argparse.ArgumentParser()
    p.add_argument("--root", required=True)
    p.add_argument("--token", default="")
    p.add_argument("--cut", action="append", default=[])
    p.add_argument("--bad-sha", action="append", default=[])
    p.add_argument("--rename", action="append", default=[])
    args = p.parse_args()
    hub = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    cdn = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Cdn)
    args.cdn_port = cdn.server_address[1]
    threading.Thread(target=cdn.serve_forever, daemon=True).start()
    log(f"cdn {args.cdn_port}")
    log(f"hub {hub.server_address[1]}")
    hub.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
