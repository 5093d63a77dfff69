"""Load benchmark of `clip serve` (POST /v1/embeddings), against `clip embed` and a Python (FastAPI + transformers)
service on the same machine, in the same run. Loopback only; every level bounded in time and in requests.

Usage (the client needs aiohttp and numpy: /tmp/clip-venv, see scripts/bench/README_serve.md):
    cargo build --release -p clip-cli
    /tmp/clip-venv/bin/python scripts/bench/serve_load.py [--clip target/release/clip] [--model /tmp/vitb32]
        [--dtype f32] [--serve-arg=--max-batch=32 ...] [--python] [--photos /tmp/photos1000]
        [--concurrency 1,8,64] [--duration 30] [--requests 500] [--modes images,texts]
        [--overload] [--overload-seconds 60] [--json]
    ... --server http://127.0.0.1:8080 [--server-pid PID]     # a clip serve already running (RSS only with its pid)
    ... --skip-ours --python                                  # the Python service alone

Order, one heavy thing at a time: `clip serve` is started (free loopback port, waiting for GET /ready), checked
(API probes), loaded level by level, overloaded (--overload), stopped; then `clip embed` runs on the same photos and
texts; then scripts/bench/python_service.py is started, checked and loaded the same way, and stopped.

Closed loop: N clients (asyncio + aiohttp), each sends one request (one photo as a data:image/jpeg;base64 URI, or one
text) and waits for the answer before the next. Per level: requests/s (= images/s or texts/s), p50/p99 latency of the
answered requests, errors (status other than 200/429, timeouts, bad bodies), 429s (the client then waits
min(Retry-After, 1 s)), and the server's peak RSS (VmHWM of /proc/PID/status, reset before each level through
/proc/PID/clear_refs where allowed). A level stops after --duration seconds or --requests requests, whichever comes
first (requests in flight are awaited). Each level is preceded by --warmup seconds of the same load, not counted.

CLI: `clip embed --image P1..PN --output x.npy` timed as a whole process for N = --cli-images and for 8 photos; the
throughput is the difference (N - 8) / (t_N - t_8), i.e. without process start and model load (the whole-process
figure is printed too); texts the same with --text-file. Served throughput at the highest concurrency / CLI
throughput is reported (target >= 85%).

Python service: throughput ratio clip / Python per level (target >= 2x) and p99 ratio (target <= 0.5x).

Overload (--overload or --overload-seconds N): after all the closed-loop levels, open-loop sending of images (texts
when only texts are measured; requests at fixed intervals, each awaited independently) at --overload-factor (2)
times the best closed-loop images/s for N seconds
(default 60; the issue's figure is 300). Recorded: status counts (every request must be answered 200 or 429: no
timeouts, no 5xx, no connection errors), latency of the 429s, server RSS sampled every second (max, growth from the
start), queue-depth gauges from /metrics (any metric whose name contains "queue"), then /health and a short closed
loop after the storm.
"""
import argparse
import asyncio
import base64
import collections
import glob
import json
import math
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import aiohttp
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from machine import cpu_description, usable_cores  # noqa: E402
JSON_HEADERS = {"Content-Type": "application/json"}
CLI_SMALL = 8   # the photos/texts of the short CLI run subtracted from the long one
SUBJECTS = ["dog", "cat", "horse", "bicycle", "red car", "old man", "child", "bird", "boat", "mountain", "city street",
            "bowl of soup", "guitar", "train", "lighthouse", "field of flowers"]
PLACES = ["on a beach", "in the snow", "at night", "in a kitchen", "under a bridge", "in the rain", "on a table",
          "near a lake", "in a forest", "on a busy road"]
STYLES = ["a photo of", "a blurry photo of", "a close-up photo of", "a black and white photo of", "a painting of",
          "a drawing of"]


def log(*args):
    print(*args, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------------------------

def proc_status(pid):
    """{VmRSS, VmHWM} in bytes of a process, or {} when it cannot be read."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(value.split()[0]) * 1024
    except (OSError, ValueError):
        pass
    return out


def reset_peak(pid):
    """Resets VmHWM to the current RSS (`echo 5 > /proc/PID/clear_refs`); False where not allowed."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=5.0):
    """(status, body bytes, content type) of a GET; status 0 when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.get("Content-Type", "")
    except (urllib.error.URLError, OSError):
        return 0, b"", ""


def http_post(url, body, timeout=120.0):
    """(status, body bytes, headers) of a POST with a JSON body; status 0 when nothing answered."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=JSON_HEADERS, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)
    except (urllib.error.URLError, OSError) as e:
        return 0, str(e).encode(), {}


# ---------------------------------------------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------------------------------------------

class Server:
    """A service under test: one this script starts (argv) or one already running (url, optional pid)."""

    def __init__(self, name, url=None, argv=None, pid=None, log_path=None):
        self.name, self.url, self.argv, self.pid, self.log_path = name, url, argv, pid, log_path
        self.proc = None
        self.ready_seconds = None
        self.exit = None

    def start(self, ready_timeout):
        log(f"[{self.name}] starting: {' '.join(self.argv)}")
        out = open(self.log_path, "wb")
        start = time.perf_counter()
        self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        self.pid = self.proc.pid
        health_seen = None
        while time.perf_counter() - start < ready_timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} before /ready; log:\n"
                                   + self.log_tail())
            if health_seen is None and http_get(self.url + "/health", 1.0)[0] == 200:
                health_seen = time.perf_counter() - start
            if http_get(self.url + "/ready", 1.0)[0] == 200:
                self.ready_seconds = time.perf_counter() - start
                self.health_seconds = health_seen if health_seen is not None else self.ready_seconds
                log(f"[{self.name}] ready after {self.ready_seconds:.1f} s (/health first 200 after "
                    f"{self.health_seconds:.1f} s), pid {self.pid}")
                return
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"{self.name} not ready after {ready_timeout} s; log:\n" + self.log_tail())

    def log_tail(self, n=30):
        try:
            return "".join(open(self.log_path, errors="replace").readlines()[-n:])
        except (OSError, TypeError):
            return ""

    def stop(self, grace=15.0):
        """SIGTERM, then SIGKILL after `grace` seconds; records the exit status and the seconds it took."""
        if self.proc is None or self.proc.poll() is not None:
            return
        start = time.perf_counter()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(grace)
            self.exit = {"signal": "SIGTERM", "returncode": self.proc.returncode,
                         "seconds": round(time.perf_counter() - start, 3)}
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self.exit = {"signal": "SIGKILL after SIGTERM timed out", "returncode": self.proc.returncode,
                         "seconds": round(time.perf_counter() - start, 3)}
        log(f"[{self.name}] stopped: {self.exit}")

    def memory(self):
        return proc_status(self.pid) if self.pid else {}


# ---------------------------------------------------------------------------------------------------------------
# Payloads
# ---------------------------------------------------------------------------------------------------------------

def photo_paths(directory):
    return sorted(p for p in glob.glob(os.path.join(directory, "**", "*"), recursive=True)
                  if p.lower().endswith((".jpg", ".jpeg")))


def data_uri(path):
    with open(path, "rb") as f:
        return "data:image/jpeg;base64," + base64.b64encode(f.read()).decode("ascii")


def captions(n):
    out = []
    for i in range(n):
        style = STYLES[i % len(STYLES)]
        subject = SUBJECTS[(i // len(STYLES)) % len(SUBJECTS)]
        place = PLACES[(i // (len(STYLES) * len(SUBJECTS))) % len(PLACES)]
        out.append(f"{style} {i % 7 + 1} {subject} {place}")
    return out


def request_body(model, item, encoding, **extra):
    return json.dumps({"model": model, "input": item, "encoding_format": encoding, **extra}).encode()


def decode_embedding(value):
    if isinstance(value, str):
        return np.frombuffer(base64.b64decode(value), dtype="<f4")
    return np.asarray(value, dtype=np.float32)


def check_answer(payload, expected_items):
    """None when `payload` is a well-formed embeddings answer for `expected_items` inputs, else what is wrong."""
    try:
        doc = json.loads(payload)
    except ValueError:
        return "body is not JSON"
    if doc.get("object") != "list" or not isinstance(doc.get("data"), list):
        return "no object=list / data"
    if len(doc["data"]) != expected_items:
        return f"{len(doc['data'])} rows for {expected_items} inputs"
    for i, row in enumerate(doc["data"]):
        if row.get("index") != i or "embedding" not in row:
            return f"row {i}: index/embedding missing"
        vec = decode_embedding(row["embedding"])
        if vec.size == 0 or not np.all(np.isfinite(vec)):
            return f"row {i}: empty or non-finite embedding"
    if "usage" not in doc or "model" not in doc:
        return "usage or model missing"
    return None


# ---------------------------------------------------------------------------------------------------------------
# Load
# ---------------------------------------------------------------------------------------------------------------

def percentile(sorted_values, q):
    if not sorted_values:
        return None
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


def metric_values(text, needle="queue"):
    """{metric name with labels: value} of the Prometheus samples whose name contains `needle`."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        base = name.split("{", 1)[0]
        if needle in base and not base.endswith(("_bucket", "_sum", "_count", "_created")):
            try:
                out[name] = float(value)
            except ValueError:
                pass
    return out


def metric_samples(url):
    """{sample name with labels: value} of every sample of GET url/metrics ({} when it does not answer 200)."""
    status, payload, _ = http_get(url + "/metrics")
    out = {}
    if status != 200:
        return out
    for line in payload.decode(errors="replace").splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            try:
                out[name] = float(value)
            except ValueError:
                pass
    return out


def histogram_means(before, after, needle="batch_size"):
    """Mean of each histogram whose name contains `needle` over the samples added between two scrapes:
    {labels: (mean, observations)}."""
    out = {}
    for name, total in after.items():
        base, _, labels = name.partition("{")
        if needle not in base or not base.endswith("_sum"):
            continue
        count_name = base[:-4] + "_count" + ("{" + labels if labels else "")
        d_sum = total - before.get(name, 0.0)
        d_count = after.get(count_name, 0.0) - before.get(count_name, 0.0)
        if d_count > 0:
            out[labels.rstrip("}") or base[:-4]] = (d_sum / d_count, int(d_count))
    return out


def stage_seconds(before, after):
    """Seconds per stage between two scrapes, from clip_stage_seconds_total-like counters: {stage labels: s}."""
    out = {}
    for name, total in after.items():
        base, _, labels = name.partition("{")
        if "stage_seconds" in base:
            out[labels.rstrip("}")] = round(total - before.get(name, 0.0), 3)
    return out


async def closed_loop(url, bodies, concurrency, duration, max_requests, timeout, pid=None, record=True):
    """`concurrency` clients, each sending the next body and waiting for the answer; stops at `duration` seconds or
    `max_requests` sent. Returns the level's figures."""
    latencies, statuses, errors = [], collections.Counter(), collections.Counter()
    samples = []
    state = {"sent": 0}
    peak_reset = reset_peak(pid) if (pid and record) else False
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    start = time.perf_counter()
    deadline = start + duration

    async def worker():
        while state["sent"] < max_requests and time.perf_counter() < deadline:
            body = bodies[state["sent"] % len(bodies)]
            state["sent"] += 1
            t0 = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=JSON_HEADERS) as r:
                    payload = await r.read()
                    status, retry_after = r.status, r.headers.get("Retry-After")
            except asyncio.TimeoutError:
                errors["timeout"] += 1
                continue
            except aiohttp.ClientError as e:
                errors[f"connection: {type(e).__name__}"] += 1
                continue
            elapsed = time.perf_counter() - t0
            statuses[status] += 1
            if status == 200:
                problem = check_answer(payload, 1)
                if problem:
                    errors[f"bad body: {problem}"] += 1
                else:
                    latencies.append(elapsed)
            elif status == 429:
                try:
                    wait = float(retry_after) if retry_after is not None else 0.1
                except ValueError:
                    wait = 0.1
                await asyncio.sleep(min(max(wait, 0.0), 1.0))
            else:
                errors[f"HTTP {status}: {payload[:200].decode(errors='replace')}"] += 1

    async def sampler():
        while True:
            mem = proc_status(pid)
            if "VmRSS" in mem:
                samples.append(mem["VmRSS"])
            await asyncio.sleep(0.5)

    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session:
        sampling = asyncio.create_task(sampler()) if pid else None
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        if sampling:
            sampling.cancel()
    wall = time.perf_counter() - start
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    latencies.sort()
    mem = proc_status(pid) if pid else {}
    return {
        "concurrency": concurrency, "seconds": round(wall, 3), "sent": state["sent"], "ok": len(latencies),
        "per_second": len(latencies) / wall if wall > 0 else 0.0,
        "p50_ms": None if not latencies else 1000 * percentile(latencies, 0.50),
        "p99_ms": None if not latencies else 1000 * percentile(latencies, 0.99),
        "mean_ms": None if not latencies else 1000 * sum(latencies) / len(latencies),
        "errors": sum(errors.values()), "error_kinds": dict(errors), "status_429": statuses.get(429, 0),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "peak_rss_bytes": mem.get("VmHWM"), "peak_rss_is_level_peak": peak_reset,
        "sampled_max_rss_bytes": max(samples) if samples else None,
        "client_cpu_fraction": ((cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime) / wall
                                if wall > 0 else None),
    }


async def open_loop(server, bodies, rate, seconds, timeout):
    """Requests sent at `rate`/s for `seconds`, each awaited on its own; RSS and queue gauges sampled every second."""
    url = server.url + "/v1/embeddings"
    statuses, errors = collections.Counter(), collections.Counter()
    ok_lat, busy_lat = [], []
    rss, queue_samples = [], collections.defaultdict(list)
    retry_after = collections.Counter()
    state = {"in_flight": 0, "max_in_flight": 0, "metrics_failures": 0}
    connector = aiohttp.TCPConnector(limit=0)
    client_timeout = aiohttp.ClientTimeout(total=timeout)

    async def one(session, body):
        state["in_flight"] += 1
        state["max_in_flight"] = max(state["max_in_flight"], state["in_flight"])
        t0 = time.perf_counter()
        try:
            async with session.post(url, data=body, headers=JSON_HEADERS) as r:
                payload = await r.read()
                status = r.status
                if status == 429:
                    retry_after[r.headers.get("Retry-After", "(none)")] += 1
        except asyncio.TimeoutError:
            errors["timeout"] += 1
            return
        except aiohttp.ClientError as e:
            errors[f"connection: {type(e).__name__}"] += 1
            return
        finally:
            state["in_flight"] -= 1
        elapsed = time.perf_counter() - t0
        statuses[status] += 1
        if status == 200:
            problem = check_answer(payload, 1)
            if problem:
                errors[f"bad body: {problem}"] += 1
            else:
                ok_lat.append(elapsed)
        elif status == 429:
            busy_lat.append(elapsed)
        else:
            errors[f"HTTP {status}: {payload[:200].decode(errors='replace')}"] += 1

    async def sampler(session):
        while True:
            mem = server.memory()
            if "VmRSS" in mem:
                rss.append((round(time.perf_counter() - start, 2), mem["VmRSS"]))
            try:
                async with session.get(server.url + "/metrics") as r:
                    text = await r.text()
                for name, value in metric_values(text).items():
                    queue_samples[name].append(value)
            except (aiohttp.ClientError, asyncio.TimeoutError):
                state["metrics_failures"] += 1   # reported apart: the question is whether requests are answered
            await asyncio.sleep(1.0)

    start = time.perf_counter()
    sent = 0
    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as side:
            sampling = asyncio.create_task(sampler(side))
            tasks = set()
            interval = 1.0 / rate
            next_at = start
            while next_at < start + seconds:
                task = asyncio.create_task(one(session, bodies[sent % len(bodies)]))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                sent += 1
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            send_seconds = time.perf_counter() - start
            if tasks:
                await asyncio.gather(*list(tasks))
            drained = time.perf_counter() - start
            await asyncio.sleep(3.0)   # a few samples after the storm
            sampling.cancel()
    ok_lat.sort()
    busy_lat.sort()
    first = rss[0][1] if rss else None
    answered = statuses.get(200, 0) + statuses.get(429, 0)
    return {
        "target_rate": rate, "seconds": seconds, "sent": sent, "sent_rate": sent / send_seconds,
        "drained_after_seconds": round(drained, 3), "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "errors": sum(errors.values()), "error_kinds": dict(errors),
        "all_answered_200_or_429": answered == sent and not errors,
        "ok_per_second": statuses.get(200, 0) / drained if drained > 0 else 0.0,
        "ok_p50_ms": None if not ok_lat else 1000 * percentile(ok_lat, 0.5),
        "ok_p99_ms": None if not ok_lat else 1000 * percentile(ok_lat, 0.99),
        "rejected_p50_ms": None if not busy_lat else 1000 * percentile(busy_lat, 0.5),
        "rejected_p99_ms": None if not busy_lat else 1000 * percentile(busy_lat, 0.99),
        "retry_after_values": dict(retry_after), "max_in_flight": state["max_in_flight"],
        "rss_first_bytes": first, "rss_max_bytes": max((v for _, v in rss), default=None),
        "rss_last_bytes": rss[-1][1] if rss else None,
        "rss_growth_bytes": (rss[-1][1] - first) if rss else None,
        "rss_samples": rss,
        "queue_metrics_max": {k: max(v) for k, v in queue_samples.items()},
        "metrics_scrapes_failed": state["metrics_failures"],
    }


# ---------------------------------------------------------------------------------------------------------------
# API checks (once per server, before loading it)
# ---------------------------------------------------------------------------------------------------------------

def api_checks(server, model, photo, text, expect_queue_gauge=True):
    """A few requests checking the API shapes the load relies on; returns (checks, probe embeddings)."""
    url = server.url + "/v1/embeddings"
    checks = []
    probes = {}

    def check(name, ok, detail=""):
        checks.append({"check": name, "ok": bool(ok), "detail": detail})
        if not ok:
            log(f"[{server.name}] API check failed: {name}: {detail}")

    def embed(body, n):
        status, payload, headers = http_post(url, body)
        if status != 200:
            return status, None, payload[:300].decode(errors="replace")
        problem = check_answer(payload, n)
        if problem:
            return status, None, problem
        doc = json.loads(payload)
        return status, [decode_embedding(r["embedding"]) for r in doc["data"]], doc

    def same(a, b):
        """Equal up to the float error of a different batch composition (a batching server may group requests)."""
        return a.shape == b.shape and cosine(a, b) > 0.99999

    uri = data_uri(photo)
    status, text_f, doc = embed({"model": model, "input": text, "encoding_format": "float"}, 1)
    check("text, string input, float", text_f is not None, f"HTTP {status}: {doc if text_f is None else ''}")
    if text_f is not None:
        probes["text"] = text_f[0]
        check("usage.prompt_tokens > 0 for a text", doc["usage"].get("prompt_tokens", 0) > 0, str(doc["usage"]))
    status, text_b, doc = embed({"model": model, "input": [text], "encoding_format": "base64"}, 1)
    check("text, list input, base64 = float", text_b is not None and text_f is not None
          and same(text_b[0], text_f[0]), f"HTTP {status}")
    status, img_f, doc = embed({"model": model, "input": uri, "encoding_format": "float"}, 1)
    check("image data URI, float", img_f is not None, f"HTTP {status}: {doc if img_f is None else ''}")
    if img_f is not None:
        probes["image"] = img_f[0]
    raw = uri.split(",", 1)[1]
    status, img_m, doc = embed({"model": model, "input": [raw], "encoding_format": "base64", "modality": "image"}, 1)
    check('modality "image", raw base64 = data URI', img_m is not None and img_f is not None
          and same(img_m[0], img_f[0]), f"HTTP {status}: {doc if img_m is None else ''}")
    status, mixed, doc = embed({"model": model, "input": [text, uri, text], "encoding_format": "base64"}, 3)
    check("mixed [text, image, text]: rows in input order", mixed is not None and text_f is not None
          and img_f is not None and same(mixed[0], text_f[0]) and same(mixed[1], img_f[0])
          and same(mixed[2], text_f[0]),
          f"HTTP {status}: {doc if mixed is None else ''}")
    status, normed, doc = embed({"model": model, "input": text, "encoding_format": "float", "normalize": True}, 1)
    check("normalize: unit norm", normed is not None and abs(float(np.linalg.norm(normed[0])) - 1) < 1e-4,
          f"HTTP {status}: {doc if normed is None else float(np.linalg.norm(normed[0]))}")
    status, payload, _ = http_post(url, {"model": model, "input": "data:image/jpeg;base64,bm90IGEganBlZw==",
                                         "encoding_format": "float"})
    check("unreadable image -> 4xx", 400 <= status < 500, f"HTTP {status}: {payload[:200].decode(errors='replace')}")
    status, payload, _ = http_post(url, b"{not json")
    check("malformed JSON -> 4xx", 400 <= status < 500, f"HTTP {status}")
    status, payload, _ = http_post(url, {"model": model, "input": [], "encoding_format": "float"})
    check("empty input list -> 4xx", 400 <= status < 500, f"HTTP {status}")
    status, payload, ctype = http_get(server.url + "/metrics")
    names = sorted({line.split("{")[0].split(" ")[0] for line in payload.decode(errors="replace").splitlines()
                    if line and not line.startswith("#")})
    check("GET /metrics -> 200 text", status == 200 and ctype.startswith("text/plain"), f"HTTP {status} {ctype}")
    if expect_queue_gauge:
        check("/metrics has a queue gauge", any("queue" in n for n in names), ", ".join(names[:40]))
    return checks, probes, names


def cosine(a, b):
    if a is None or b is None or a.shape != b.shape:
        return None
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


# ---------------------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------------------

def run_timed(cmd):
    """(seconds, peak RSS bytes) of one child process run to completion."""
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            message = err.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"{' '.join(cmd[:6])} ... failed ({proc.returncode}): {message}")
    return seconds, usage.ru_maxrss * 1024


def cli_throughput(binary, model, dtype, modality, items, workdir):
    """clip embed over `items` and over the first CLI_SMALL of them: differential and whole-process rates."""
    out = os.path.join(workdir, f"cli_{modality}.npy")
    base = [binary, "embed", "--model", model, "--dtype", dtype, "--quiet", "--output", out]

    def command(subset):
        if modality == "images":
            return base + ["--image", *subset]
        path = os.path.join(workdir, f"texts_{len(subset)}.txt")
        with open(path, "w") as f:
            f.write("\n".join(subset) + "\n")
        return base + ["--text-file", path]

    small, small_rss = run_timed(command(items[:CLI_SMALL]))
    full, full_rss = run_timed(command(items))
    rows = np.load(out)
    result = {"items": len(items), "seconds": full, "seconds_small": small, "small_items": CLI_SMALL,
              "whole_process_per_second": len(items) / full,
              "per_second": (len(items) - CLI_SMALL) / (full - small) if full > small else None,
              "peak_rss_bytes": full_rss, "first_row": rows[0], "command": " ".join(command(items)[:10]) + " ..."}
    log(f"[clip embed] {modality}: {len(items)} in {full:.2f} s, {CLI_SMALL} in {small:.2f} s -> "
        f"{result['per_second'] or float('nan'):.2f}/s (whole process {result['whole_process_per_second']:.2f}/s)")
    return result


# ---------------------------------------------------------------------------------------------------------------
# One server, all levels
# ---------------------------------------------------------------------------------------------------------------

def measure(server, args, bodies, levels, probe_items, overload):
    result = {"name": server.name, "url": server.url, "pid": server.pid, "ready_seconds": server.ready_seconds,
              "rss_at_ready_bytes": server.memory().get("VmRSS"), "modes": {}}
    checks, probes, metric_names = api_checks(server, args.request_model, *probe_items,
                                              expect_queue_gauge=server.name == "clip serve")
    result["api_checks"], result["metric_names"] = checks, metric_names
    url = server.url + "/v1/embeddings"
    for mode in args.modes:
        rows = []
        for c in levels:
            if args.warmup > 0:
                asyncio.run(closed_loop(url, bodies[mode], c, args.warmup, max(2 * c, 4), args.timeout,
                                        server.pid, record=False))
            scrape = metric_samples(server.url)
            row = asyncio.run(closed_loop(url, bodies[mode], c, args.duration, args.requests, args.timeout,
                                          server.pid))
            scrape_after = metric_samples(server.url)
            row["mean_batch"] = {k: round(v[0], 2) for k, v in histogram_means(scrape, scrape_after).items()}
            row["model_calls"] = {k: v[1] for k, v in histogram_means(scrape, scrape_after).items()}
            row["stage_seconds"] = stage_seconds(scrape, scrape_after)
            log(f"[{server.name}] {mode} x{c}: {row['per_second']:.2f}/s, p50 {fmt(row['p50_ms'])} ms, p99 "
                f"{fmt(row['p99_ms'])} ms, {row['ok']} ok, {row['errors']} errors, {row['status_429']} 429s, "
                f"peak RSS {mib(row['peak_rss_bytes'])} MiB, client CPU {row['client_cpu_fraction']:.2f}")
            if row["mean_batch"] or row["stage_seconds"]:
                log(f"[{server.name}]   mean batch {row['mean_batch']}, model calls {row['model_calls']}, "
                    f"stage seconds {row['stage_seconds']}")
            if row["error_kinds"]:
                log(f"[{server.name}]   errors: {row['error_kinds']}")
            rows.append(row)
        result["modes"][mode] = rows
    if overload:
        # after every closed-loop level, so that no level's RSS includes what the storm's queue took
        mode = "images" if "images" in result["modes"] else args.modes[0]
        rows = result["modes"][mode]
        if rows:
            best = max(r["per_second"] for r in rows)
            rate = args.overload_factor * best
            log(f"[{server.name}] overload: open loop at {rate:.1f} requests/s ({args.overload_factor}x "
                f"{best:.1f}/s) for {args.overload_seconds} s")
            storm = asyncio.run(open_loop(server, bodies[mode], rate, args.overload_seconds, args.timeout))
            status, _, _ = http_get(server.url + "/health")
            storm["health_after"] = status
            after = asyncio.run(closed_loop(url, bodies[mode], min(8, max(levels)), 5.0, args.requests,
                                            args.timeout, server.pid, record=False))
            storm["after"] = {k: after[k] for k in ("concurrency", "per_second", "p50_ms", "p99_ms", "ok", "errors",
                                                    "status_429")}
            log(f"[{server.name}] overload: {storm['statuses']}, errors {storm['error_kinds']}, RSS max "
                f"{mib(storm['rss_max_bytes'])} MiB (growth {mib(storm['rss_growth_bytes'])} MiB), queue "
                f"{storm['queue_metrics_max'] or 'not exposed'}, /health after {status}")
            storm["modality"] = mode
            result["overload"] = storm
    status, payload, _ = http_get(server.url + "/metrics")
    result["metrics_at_end"] = payload.decode(errors="replace") if status == 200 else None
    mem = server.memory()
    result["rss_at_end_bytes"], result["peak_rss_lifetime_bytes"] = mem.get("VmRSS"), mem.get("VmHWM")
    return result, probes


# ---------------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------------

def fmt(value, spec=".1f"):
    return "-" if value is None else format(value, spec)


def mib(value):
    return "-" if value is None else f"{value / 2**20:.0f}"


def ratio(a, b):
    return None if (a is None or b in (None, 0)) else a / b


def print_report(report, out):
    p = lambda *a: print(*a, file=out)  # noqa: E731
    m = report["machine"]
    p(f"cpu: {m['cpu']} [{' '.join(m['cpu_flags'])}], {m['cores']} cores")
    p(f"client: python {m['python']}, aiohttp {m['aiohttp']}; {report['settings']['encoding']} answers; "
      f"per level {report['settings']['duration']} s or {report['settings']['requests']} requests, "
      f"{report['settings']['warmup']} s warm-up; photos {report['settings']['photos']} "
      f"({report['settings']['distinct_photos']} distinct)")
    for s in report["servers"]:
        p(f"{s['name']}: {s.get('command', s['url'])}; ready after {fmt(s['ready_seconds'], '.1f')} s, "
          f"RSS at ready {mib(s['rss_at_ready_bytes'])} MiB, lifetime peak {mib(s['peak_rss_lifetime_bytes'])} MiB"
          + (f", exit {s['exit']}" if s.get("exit") else ""))
    for mode in report["settings"]["modes"]:
        unit = "images/s" if mode == "images" else "texts/s"
        p("")
        p(f"{mode}: one {'1024x768 JPEG (data URI)' if mode == 'images' else 'caption'} per request, closed loop")
        p(f"{'server':<14}{'clients':>8}{unit:>11}{'p50 ms':>10}{'p99 ms':>10}{'ok':>7}{'errors':>8}{'429s':>6}"
          f"{'peak RSS MiB':>14}{'client CPU':>12}  mean batch")
        for s in report["servers"]:
            for r in s["modes"].get(mode, []):
                p(f"{s['name']:<14}{r['concurrency']:>8}{r['per_second']:>11.2f}{fmt(r['p50_ms']):>10}"
                  f"{fmt(r['p99_ms']):>10}{r['ok']:>7}{r['errors']:>8}{r['status_429']:>6}"
                  f"{mib(r['peak_rss_bytes']):>14}{r['client_cpu_fraction']:>12.2f}  "
                  + (" ".join(f"{k}={v}" for k, v in r.get("mean_batch", {}).items()) or "-"))
        cli = report.get("cli", {}).get(mode)
        if cli:
            p(f"{'clip embed':<14}{'CLI':>8}{fmt(cli['per_second'], '.2f'):>11}   ({cli['items']} items: "
              f"{cli['seconds']:.2f} s, {cli['small_items']}: {cli['seconds_small']:.2f} s; whole process "
              f"{cli['whole_process_per_second']:.2f}/s; peak RSS {mib(cli['peak_rss_bytes'])} MiB)")
        comp = report["comparisons"].get(mode, {})
        if "served_over_cli" in comp:
            p(f"served at {comp['cli_level']} clients / CLI = {fmt(100 * comp['served_over_cli'] if comp['served_over_cli'] is not None else None, '.0f')}%"
              f" (target >= 85%)")
        for row in comp.get("vs_python", []):
            p(f"clip serve / python at {row['concurrency']:>2} clients: throughput {fmt(row['throughput_ratio'], '.2f')}x"
              f" (target >= 2x), p99 {fmt(row['p99_ratio'], '.2f')}x (target <= 0.5x)")
    for s in report["servers"]:
        storm = s.get("overload")
        if storm:
            p("")
            p(f"overload ({s['name']}, {storm.get('modality', 'images')}): open loop {storm['target_rate']:.1f} req/s (sent {storm['sent_rate']:.1f}/s) "
              f"for {storm['seconds']} s: {storm['sent']} sent, statuses {storm['statuses']}, errors "
              f"{storm['errors']} {storm['error_kinds'] or ''}")
            p(f"  every request answered 200 or 429: {'yes' if storm['all_answered_200_or_429'] else 'NO'}; "
              f"200s at {storm['ok_per_second']:.2f}/s, p50 {fmt(storm['ok_p50_ms'])} ms, p99 "
              f"{fmt(storm['ok_p99_ms'])} ms; 429s p50 {fmt(storm['rejected_p50_ms'])} ms, p99 "
              f"{fmt(storm['rejected_p99_ms'])} ms, Retry-After {storm['retry_after_values']}")
            p(f"  RSS: first {mib(storm['rss_first_bytes'])} MiB, max {mib(storm['rss_max_bytes'])} MiB, last "
              f"{mib(storm['rss_last_bytes'])} MiB (growth {mib(storm['rss_growth_bytes'])} MiB); max in flight "
              f"{storm['max_in_flight']}; queue gauges max {storm['queue_metrics_max'] or 'not exposed'}")
            a = storm["after"]
            p(f"  after: /health {storm['health_after']}; {a['concurrency']} clients for 5 s: {a['per_second']:.2f}/s, p99 "
              f"{fmt(a['p99_ms'])} ms, errors {a['errors']}, 429s {a['status_429']}")
    for s in report["servers"]:
        bad = [c for c in s["api_checks"] if not c["ok"]]
        p("")
        p(f"API checks ({s['name']}): {len(s['api_checks']) - len(bad)}/{len(s['api_checks'])} passed"
          + "".join(f"\n  FAILED {c['check']}: {c['detail']}" for c in bad))
    if report.get("cosines"):
        p("")
        p("same photo / text, cosine of the embeddings: "
          + ", ".join(f"{k} {fmt(v, '.6f')}" for k, v in report["cosines"].items()))


# ---------------------------------------------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", help="URL of a clip serve already running (not started or stopped here)")
    parser.add_argument("--server-pid", type=int, help="its process id, for RSS figures")
    parser.add_argument("--clip", default=os.path.join(ROOT, "target", "release", "clip"), help="clip binary")
    parser.add_argument("--model", default="/tmp/vitb32", help="model directory (both services and the CLI)")
    parser.add_argument("--dtype", default="f32", choices=["f32", "bf16", "int8"])
    parser.add_argument("--serve-arg", action="append", default=[],
                        help="extra argument for clip serve, repeatable (--serve-arg=--max-batch=32)")
    parser.add_argument("--skip-ours", action="store_true", help="do not load clip serve (e.g. Python only)")
    parser.add_argument("--no-cli", action="store_true", help="skip the clip embed comparison")
    parser.add_argument("--python", action="store_true", help="also start and load scripts/bench/python_service.py")
    parser.add_argument("--python-url", help="URL of a Python service already running (instead of --python)")
    parser.add_argument("--python-bin", default=sys.executable, help="interpreter for python_service.py")
    parser.add_argument("--python-arg", action="append", default=[], help="extra argument for python_service.py")
    parser.add_argument("--photos", default="/tmp/photos1000", help="directory of JPEGs (1024x768)")
    parser.add_argument("--distinct", type=int, default=500, help="distinct photos / texts sent (cycled)")
    parser.add_argument("--concurrency", default="1,8,64")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per level at most")
    parser.add_argument("--requests", type=int, default=500, help="requests per level at most")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before each level, not counted")
    parser.add_argument("--modes", default="images,texts")
    parser.add_argument("--encoding", default="base64", choices=["base64", "float"], help="encoding_format sent")
    parser.add_argument("--request-model", help='the "model" field sent (default: the model directory\'s name)')
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before a request counts as timed out")
    parser.add_argument("--ready-timeout", type=float, default=300.0)
    parser.add_argument("--cli-images", type=int, default=256, help="photos embedded by the CLI run")
    parser.add_argument("--cli-texts", type=int, default=1000, help="texts embedded by the CLI run")
    parser.add_argument("--overload", action="store_true", help="run the overload phase on clip serve")
    parser.add_argument("--overload-seconds", type=float, help="overload length (default 60; implies --overload)")
    parser.add_argument("--overload-factor", type=float, default=2.0, help="times the best measured images/s")
    parser.add_argument("--log-dir", help="where server logs and CLI outputs go (default: a new temporary dir)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON (tables go to stderr)")
    args = parser.parse_args()

    args.modes = [m for m in args.modes.split(",") if m]
    if any(m not in ("images", "texts") for m in args.modes):
        parser.error("--modes takes images and/or texts")
    levels = [int(c) for c in args.concurrency.split(",")]
    overload = args.overload or args.overload_seconds is not None
    args.overload_seconds = args.overload_seconds if args.overload_seconds is not None else 60.0
    args.request_model = args.request_model or os.path.basename(os.path.normpath(args.model))
    workdir = args.log_dir or tempfile.mkdtemp(prefix="serve-load-")
    os.makedirs(workdir, exist_ok=True)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    photos = photo_paths(args.photos)
    if not photos:
        raise SystemExit(f"no JPEG in {args.photos}")
    used = photos[:args.distinct]
    texts = captions(max(args.distinct, args.cli_texts))
    log(f"encoding {len(used)} photos as request bodies ...")
    bodies = {"images": [request_body(args.request_model, data_uri(p), args.encoding) for p in used],
              "texts": [request_body(args.request_model, t, args.encoding) for t in texts[:args.distinct]]}
    probe_items = (photos[0], texts[0])

    cpu, flags = cpu_description()
    report = {
        "machine": {"cpu": cpu, "cpu_flags": flags, "cores": usable_cores(), "python": sys.version.split()[0],
                    "aiohttp": aiohttp.__version__, "kernel": os.uname().release},
        "settings": {"concurrency": levels, "duration": args.duration, "requests": args.requests,
                     "warmup": args.warmup, "modes": args.modes, "encoding": args.encoding, "photos": args.photos,
                     "distinct_photos": len(used), "model": args.model, "dtype": args.dtype,
                     "request_model": args.request_model, "log_dir": workdir},
        "servers": [], "cli": {}, "comparisons": {}, "cosines": {},
    }
    probes = {}

    ours = None
    if not args.skip_ours:
        if args.server:
            ours = Server("clip serve", url=args.server.rstrip("/"), pid=args.server_pid)
            if http_get(ours.url + "/ready")[0] != 200:
                raise SystemExit(f"{ours.url}/ready does not answer 200")
        else:
            port = free_port()
            argv = [args.clip, "serve", "--model", args.model, "--dtype", args.dtype, "--host", "127.0.0.1",
                    "--port", str(port), *args.serve_arg]
            ours = Server("clip serve", url=f"http://127.0.0.1:{port}", argv=argv,
                          log_path=os.path.join(workdir, "clip_serve.log"))
    python = None
    if args.python or args.python_url:
        if args.python_url:
            python = Server("python", url=args.python_url.rstrip("/"))
        else:
            port = free_port()
            argv = [args.python_bin, os.path.join(HERE, "python_service.py"), "--model", args.model,
                    "--host", "127.0.0.1", "--port", str(port), *args.python_arg]
            python = Server("python", url=f"http://127.0.0.1:{port}", argv=argv,
                            log_path=os.path.join(workdir, "python_service.log"))

    try:
        for server, key in ((ours, "ours"), (python, "python")):
            if server is None:
                continue
            if server.argv:
                server.start(args.ready_timeout)
            try:
                result, probes[key] = measure(server, args, bodies, levels, probe_items,
                                              overload and server is ours)
            finally:
                server.stop()
            result["exit"] = server.exit
            result["command"] = " ".join(server.argv) if server.argv else server.url
            if server.log_path:
                result["log"] = server.log_path
                result["log_tail"] = server.log_tail(15)
            report["servers"].append(result)
            if key == "ours" and not args.no_cli:
                for mode in args.modes:
                    items = photos[:args.cli_images] if mode == "images" else texts[:args.cli_texts]
                    report["cli"][mode] = cli_throughput(args.clip, args.model, args.dtype, mode, items, workdir)
        if ours is None and not args.no_cli and os.path.exists(args.clip):
            for mode in args.modes:
                items = photos[:args.cli_images] if mode == "images" else texts[:args.cli_texts]
                report["cli"][mode] = cli_throughput(args.clip, args.model, args.dtype, mode, items, workdir)
    finally:
        for server in (ours, python):
            if server is not None:
                server.stop()

    # comparisons
    by_name = {s["name"]: s for s in report["servers"]}
    for mode in args.modes:
        comp = {}
        ours_rows = by_name.get("clip serve", {}).get("modes", {}).get(mode, [])
        py_rows = by_name.get("python", {}).get("modes", {}).get(mode, [])
        cli = report["cli"].get(mode)
        if ours_rows and cli:
            top = max(ours_rows, key=lambda r: r["concurrency"])
            comp["cli_level"] = top["concurrency"]
            comp["served_over_cli"] = ratio(top["per_second"], cli["per_second"])
            comp["served_over_cli_whole_process"] = ratio(top["per_second"], cli["whole_process_per_second"])
        py_by_c = {r["concurrency"]: r for r in py_rows}
        comp["vs_python"] = [{"concurrency": r["concurrency"],
                              "throughput_ratio": ratio(r["per_second"], py_by_c[r["concurrency"]]["per_second"]),
                              "p99_ratio": ratio(r["p99_ms"], py_by_c[r["concurrency"]]["p99_ms"])}
                             for r in ours_rows if r["concurrency"] in py_by_c]
        report["comparisons"][mode] = comp
    ours_p, py_p = probes.get("ours", {}), probes.get("python", {})
    cli_img = report["cli"].get("images", {}).get("first_row")
    cli_txt = report["cli"].get("texts", {}).get("first_row")
    for name, a, b in (("serve~cli image", ours_p.get("image"), cli_img),
                       ("serve~cli text", ours_p.get("text"), cli_txt),
                       ("serve~python image", ours_p.get("image"), py_p.get("image")),
                       ("serve~python text", ours_p.get("text"), py_p.get("text")),
                       ("python~cli image", py_p.get("image"), cli_img),
                       ("python~cli text", py_p.get("text"), cli_txt)):
        value = cosine(a, b)
        if value is not None:
            report["cosines"][name] = value
    for mode in report["cli"].values():
        mode.pop("first_row", None)

    print_report(report, sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(report, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
