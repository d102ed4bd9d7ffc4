#!/usr/bin/env python3
"""How long after a failed request's response `why502 watch` writes its verdict (issue 11, item 4).

Runs `why502 watch --json` against a running nginx, sends COUNT requests one at a time to failing
locations (rotating through the paths given), timestamps each response as the client receives it
(nginx writes the access line just before), and timestamps each verdict line as watch writes it to
its stdout pipe (flushed per line). A verdict is joined to its request by the request line, which
holds a unique sequence number. Prints one JSON object: the latencies' percentiles in ms, how many
requests got a verdict, and the causes seen.

Only the standard library: the bench installs nothing for it beyond python3.
"""
import argparse
import http.client
import json
import os
import subprocess
import sys
import threading
import time


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, int(round(p / 100.0 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--why502", required=True)
    ap.add_argument("--nginx-pid", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--paths", default="/refused/", help="comma-separated failing locations, used in turn")
    ap.add_argument("--count", type=int, default=150)
    ap.add_argument("--gap", type=float, default=0.05, help="seconds between requests")
    ap.add_argument("--wait", type=float, default=10.0, help="seconds to wait for late verdicts")
    args = ap.parse_args()

    watch = subprocess.Popen(
        [args.why502, "watch", "--json", "--nginx-pid", str(args.nginx_pid)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0)
    verdict_at = {}  # request line -> (monotonic time, cause)
    started = threading.Event()
    lock = threading.Lock()

    def reader():
        for raw in iter(watch.stdout.readline, b""):
            now = time.monotonic()
            try:
                j = json.loads(raw)
            except ValueError:
                continue
            if j.get("type") == "start":
                started.set()
            elif j.get("type") == "verdict" and j.get("count", 1) == 1:
                req = (j.get("request") or {}).get("request", "")
                with lock:
                    verdict_at.setdefault(req, (now, j.get("cause", "")))
        started.set()

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    if not started.wait(30) or watch.poll() is not None:
        print(json.dumps({"error": "why502 watch did not start"}))
        return 1
    time.sleep(0.5)

    paths = [p for p in args.paths.split(",") if p]
    sent = {}  # request line -> monotonic time of the response
    statuses = {}
    for i in range(args.count):
        path = "%s%d" % (paths[i % len(paths)], i)
        conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=30)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            done = time.monotonic()
            statuses[resp.status] = statuses.get(resp.status, 0) + 1
        finally:
            conn.close()
        sent["GET %s HTTP/1.1" % path] = done
        time.sleep(args.gap)

    deadline = time.monotonic() + args.wait
    while time.monotonic() < deadline:
        with lock:
            if all(r in verdict_at for r in sent):
                break
        time.sleep(0.05)
    watch.send_signal(2)
    try:
        watch.wait(15)
    except subprocess.TimeoutExpired:
        watch.kill()

    lat = []
    causes = {}
    with lock:
        for req, t_resp in sent.items():
            if req in verdict_at:
                t_v, cause = verdict_at[req]
                lat.append((t_v - t_resp) * 1000.0)
                causes[cause] = causes.get(cause, 0) + 1
    lat.sort()
    out = {
        "requests": len(sent),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "verdicts": len(lat),
        "causes": causes,
        "latency_ms": {"p50": percentile(lat, 50), "p90": percentile(lat, 90), "p99": percentile(lat, 99),
                       "max": lat[-1] if lat else None},
    }
    print(json.dumps(out, sort_keys=True))
    return 0 if len(lat) == len(sent) else 2


if __name__ == "__main__":
    sys.exit(main())
