#!/usr/bin/env python3
"""Real-browser test of `clip serve`'s web page (crates/clip-serve/static/index.html).

Builds a folder of ~30 photos from scikit-image's sample images, indexes them with `clip index`, starts
`clip serve --db`, and drives headless Chromium through the page: a text search, the thumbnails, "more like
this" (mouse and keyboard), an image chosen with the file input, an image dropped (synthetic drop event), an
error, Esc. Every list the page shows is compared with the JSON API's answer to the same request. Then the
server is restarted without --db and zero-shot classification is checked against POST /v1/classify.
Screenshots go to docs/serve_page.png and docs/serve_page_classify.png.

Needs: chromium and chromium-driver (Debian packages), and Python with selenium, numpy, Pillow, scikit-image.

    python scripts/serve/browser_test.py --clip target/release/clip
    python scripts/serve/browser_test.py --base-url http://127.0.0.1:8080 --classify-base-url http://127.0.0.1:8081

With --base-url / --classify-base-url no clip process is started: the page is tested against servers already
running (for --base-url, one serving an index of the photos in --photos-dir, when given). Exit code 0 when every
check passed, 1 otherwise.
"""
import argparse
import base64
import io
import json
import os
import shutil
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

from PIL import Image

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
K = 24  # the number of results the page asks for
AUTH = {}  # {"Authorization": "Bearer KEY"} while testing a server started with --api-key


class Checks:
    def __init__(self):
        self.failed = []
        self.passed = 0

    def check(self, ok, what, detail=""):
        if ok:
            self.passed += 1
            print(f"  ok    {what}")
        else:
            self.failed.append(f"{what}: {detail}" if detail else what)
            print(f"  FAIL  {what}" + (f"\n        {detail}" if detail else ""))
        return ok

    def note(self, what):
        print(f"  note  {what}")


C = Checks()


def http(method, url, body=None, timeout=120, auth=True):
    """Returns (status, content-type, bytes)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=AUTH if auth else {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


def http_json(method, url, body=None, auth=True):
    status, _, raw = http(method, url, body, auth=auth)
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, {"_raw": raw[:300].decode("utf-8", "replace")}


def describe(method, path, body=None):
    if body is None:
        return f"{method} {path}"
    short = {k: (v[:40] + "…" if isinstance(v, str) and len(v) > 40 else v) for k, v in body.items()}
    return f"{method} {path} {json.dumps(short)}"


def data_uri(path):
    with open(path, "rb") as f:
        return "data:image/jpeg;base64," + base64.b64encode(f.read()).decode()


# ---------------------------------------------------------------- photos, index, server

def make_photos(folder, n):
    """~n JPEGs from scikit-image's bundled sample images (plus mirrored/cropped variants to reach n)."""
    import skimage
    src = os.path.join(os.path.dirname(skimage.__file__), "data")
    bases = []
    for name in sorted(os.listdir(src)):
        if not name.lower().endswith((".png", ".jpg", ".jpeg")):
            continue
        try:
            with Image.open(os.path.join(src, name)) as im:
                im = im.convert("RGB")
        except Exception:
            continue
        if min(im.size) < 64:
            continue
        im.thumbnail((640, 640))
        bases.append((os.path.splitext(name)[0], im))
    os.makedirs(folder, exist_ok=True)
    paths = []
    variants = [("", lambda im: im), ("_mirror", lambda im: im.transpose(Image.FLIP_LEFT_RIGHT)),
                ("_crop", lambda im: im.crop((im.width // 8, im.height // 8, im.width * 7 // 8, im.height * 7 // 8)))]
    photo_like = ["chelsea", "coffee", "rocket", "astronaut", "motorcycle_left", "camera", "horse", "retina"]
    variants_of = lambda suffix: bases if not suffix else sorted(
        bases, key=lambda b: photo_like.index(b[0]) if b[0] in photo_like else len(photo_like))
    for suffix, fn in variants:
        for name, im in variants_of(suffix):
            if len(paths) >= n:
                return paths
            p = os.path.join(folder, f"{name}{suffix}.jpg")
            fn(im).save(p, "JPEG", quality=90)
            paths.append(p)
    return paths


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, cmd, port, log_path):
        self.cmd, self.port, self.log_path = cmd, port, log_path
        self.url = f"http://127.0.0.1:{port}"
        print("$ " + " ".join(cmd))
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, cwd=REPO)

    def log_tail(self, n=30):
        try:
            with open(self.log_path, "rb") as f:
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-n:])
        except OSError:
            return ""

    def wait_ready(self, timeout):
        t0 = time.time()
        while time.time() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"clip serve exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                status, _, raw = http("GET", self.url + "/ready", timeout=2, auth=False)
                if status == 200:
                    print(f"  ready after {time.time() - t0:.1f} s at {self.url}")
                    return
                if raw.startswith(b"failed"):
                    raise RuntimeError(f"GET /ready: {raw.decode('utf-8', 'replace')}\n{self.log_tail()}")
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"GET /ready did not answer 200 within {timeout} s:\n{self.log_tail()}")

    def stop(self):
        if self.proc.poll() is not None:
            C.check(False, "server still running at the end", f"it exited earlier with {self.proc.returncode}")
            self.log.close()
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=15)
            C.check(True, f"server stopped on SIGTERM (exit code {rc})")
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            C.check(False, "server stops within 15 s of SIGTERM", "it had to be killed")
        self.log.close()


# ---------------------------------------------------------------- browser helpers

def make_driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    for a in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--window-size=1280,900", "--force-device-scale-factor=1", "--hide-scrollbars",
              "--force-prefers-reduced-motion", "--blink-settings=preferredColorScheme=1"]:
        opts.add_argument(a)
    binary = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if binary:
        opts.binary_location = binary
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver_path = shutil.which("chromedriver")
    service = Service(executable_path=driver_path) if driver_path else Service()
    d = webdriver.Chrome(options=opts, service=service)
    # 1280x900 of page (the window is as much larger as the browser's own frame takes)
    d.set_window_size(1280, 900)
    inner = d.execute_script("return [window.innerWidth, window.innerHeight]")
    if inner != [1280, 900]:
        d.set_window_size(1280 + 1280 - inner[0], 900 + 900 - inner[1])
    return d


def seq(d):
    return d.execute_script("return document.body.dataset.seq")


def wait_update(d, before, what, timeout=60):
    """Waits until the page finished a request started after `before` (data-seq changed, not loading)."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        s, state = d.execute_script("return [document.body.dataset.seq, document.body.dataset.state]")
        if s != before and state != "loading":
            return state
        time.sleep(0.05)
    raise RuntimeError(f"the page did not finish {what} within {timeout} s (status: {status_text(d)!r})")


def status_text(d):
    return d.execute_script("const s = document.querySelector('#status'); return s ? s.textContent.trim() : ''")


def page_results(d):
    return d.execute_script("""
        return [...document.querySelectorAll('#results .result')].map(li => ({
            id: Number(li.dataset.id), score: Number(li.dataset.score), path: li.dataset.path,
            scoreText: li.querySelector('.score').textContent, name: li.querySelector('.name').textContent,
            hasButton: !!li.querySelector('button.more-like-this'),
            lazy: li.querySelector('img').loading }));""")


def compare_results(d, api_status, api, what, request):
    got = page_results(d)
    if not C.check(api_status == 200 and isinstance(api, dict) and "results" in api,
                   f"{what}: API answers {request}", f"HTTP {api_status}: {str(api)[:300]}"):
        return got
    exp = api["results"]
    ok = C.check([r["id"] for r in got] == [r["id"] for r in exp],
                 f"{what}: page shows the API's {len(exp)} results in the same order",
                 f"page ids {[r['id'] for r in got]}\n        API ids  {[r['id'] for r in exp]}")
    if ok and exp:
        bad = [(g["id"], g["scoreText"], e["score"]) for g, e in zip(got, exp)
               if abs(float(g["scoreText"]) - e["score"]) > 0.0005 + 1e-9 or abs(g["score"] - e["score"]) > 1e-6
               or len(g["scoreText"].split(".")[-1]) != 3]
        C.check(not bad, f"{what}: scores shown equal the API's to 3 decimals", f"(id, shown, API): {bad[:5]}")
        bad = [(g["name"], e["path"]) for g, e in zip(got, exp)
               if g["path"] != e["path"] or g["name"] != os.path.basename(e["path"].replace("\\", "/"))]
        C.check(not bad, f"{what}: file names shown are the results' file names", str(bad[:5]))
        C.check(all(g["hasButton"] and g["lazy"] == "lazy" for g in got),
                f"{what}: every result has a lazy-loaded thumbnail and a 'more like this' button")
        scores = [e["score"] for e in exp]
        C.check(scores == sorted(scores, reverse=True), f"{what}: API results are best first", str(scores))
    st = status_text(d)
    C.check(f"{len(exp)} result" in st and " ms" in st, f"{what}: status line reads {st!r}")
    return got


def check_thumbnails(d, base, sizes):
    """Scrolls every result into view (the images are lazy) and waits for each thumbnail to load."""
    info = d.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const imgs = [...document.querySelectorAll('#results .result img')];
        (async () => {
          const out = [];
          for (const img of imgs) {
            img.scrollIntoView({block: 'center'});
            const t0 = performance.now();
            while (!(img.complete && img.currentSrc) && performance.now() - t0 < 10000)
              await new Promise(r => setTimeout(r, 25));
            try { await img.decode(); } catch (e) {}
            out.push({src: img.currentSrc, w: img.naturalWidth, h: img.naturalHeight,
                      id: Number(img.closest('.result').dataset.id)});
          }
          window.scrollTo(0, 0);
          done(out);
        })();""")
    broken = [i for i in info if not i["w"] > 0]
    C.check(info and not broken, f"all {len(info)} thumbnails loaded in the browser (naturalWidth > 0)",
            f"not loaded: {broken[:5]}")
    wrong = []
    for i in info:
        if not i["w"]:
            continue
        status, ctype, raw = http("GET", f"{base}/v1/thumbnail/{i['id']}")
        if status != 200 or not ctype.startswith("image/jpeg"):
            wrong.append((i["id"], status, ctype))
            continue
        with Image.open(io.BytesIO(raw)) as im:
            if im.format != "JPEG" or (im.width, im.height) != (i["w"], i["h"]):
                wrong.append((i["id"], im.format, im.size, (i["w"], i["h"])))
                continue
        w, h = sizes.get(i["id"], (None, None))
        if not w or not h:
            wrong.append((i["id"], "no width/height in the search result", w, h))
            continue
        want = min(256, max(w, h))
        if abs(max(i["w"], i["h"]) - want) > 1 or (i["w"] >= i["h"]) != (w >= h) and abs(w - h) > 2:
            wrong.append((i["id"], f"thumbnail {i['w']}x{i['h']} for a {w}x{h} photo"))
    C.check(not wrong, "GET /v1/thumbnail/ID: image/jpeg, longest side min(256, photo's), the photo's orientation",
            f"(id, ...): {wrong[:5]}")


def keys(d, *ks):
    from selenium.webdriver.common.action_chains import ActionChains
    ActionChains(d).send_keys(*ks).perform()


def active(d):
    return d.execute_script("""const a = document.activeElement;
        return {id: a.id, cls: a.className, dataId: a.dataset ? a.dataset.id : null, value: a.value};""")


def synthetic_drop(d, path, mime="image/jpeg"):
    with open(path, "rb") as f:
        b64 = base64.b64encode(f.read()).decode()
    return d.execute_script("""
        const [b64, name, mime] = arguments;
        const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], name, {type: mime}));
        const drop = document.querySelector('#drop');
        for (const type of ['dragenter', 'dragover', 'drop'])
          drop.dispatchEvent(new DragEvent(type, {dataTransfer: dt, bubbles: true, cancelable: true}));
        return dt.files.length;""", b64, os.path.basename(path), mime)


def console_errors(d, allowed=()):
    try:
        logs = d.get_log("browser")
    except Exception:
        return []
    return [l["message"] for l in logs if l.get("level") == "SEVERE" and not any(a in l["message"] for a in allowed)]


# ---------------------------------------------------------------- phases

def search_phase(d, base, photos, screenshot, query, sanity, key):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    print(f"\n== search page, {base}")
    status, info = http_json("GET", base + "/v1/info")
    C.check(status == 200 and info.get("db") is True, "GET /v1/info says db: true", f"HTTP {status}: {info}")
    C.check(isinstance(info.get("images"), int) and (not photos or info.get("images") == len(photos)),
            f"GET /v1/info images = {info.get('images')} (photos indexed: {len(photos) if photos else '?'})")
    st, ctype, raw = http("GET", base + "/", auth=False)
    C.check(st == 200 and ctype.startswith("text/html"), f"GET / is HTML, without the API key too (HTTP {st}, {ctype})")
    page_file = os.path.join(REPO, "crates", "clip-serve", "static", "index.html")
    if os.path.exists(page_file) and open(page_file, "rb").read() != raw:
        C.note("GET / differs from crates/clip-serve/static/index.html (the binary embeds an older page: rebuild)")

    if key:
        s, body = http_json("GET", base + "/v1/info", auth=False)
        C.check(s == 401 and isinstance(body.get("error"), dict), f"GET /v1/info without the API key: 401 (HTTP {s})",
                str(body)[:200])
        d.get(base + "/")
        wait_for(d, "document.body.dataset.state === 'error'", "the page to say it needs the key")
        st = status_text(d)
        C.check("key" in st.lower() and "401" in st, f"without ?key= the page says why: {st!r}")
        d.get(base + "/?key=" + urllib.parse.quote(key, safe=""))
    else:
        d.get(base + "/")
    wait_for(d, "document.body.dataset.state === 'idle' && !document.querySelector('#search-view').hidden",
             "the search view")
    header = d.find_element(By.CSS_SELECTOR, "#model").text
    C.check(info.get("model", "\0") in header, f"header shows the model: {header!r}")
    C.check(active(d)["id"] == "query", "the search box has focus on load")

    # / focuses the box from anywhere
    d.execute_script("document.activeElement.blur()")
    keys(d, "/")
    C.check(active(d)["id"] == "query", "'/' focuses the search box")

    # text search with Enter
    before = seq(d)
    box = d.find_element(By.ID, "query")
    box.send_keys(query, Keys.ENTER)
    wait_update(d, before, "the text search")
    path = f"/v1/search?q={urllib.parse.quote(query)}&k={K}"
    s, api = http_json("GET", base + path)
    got = compare_results(d, s, api, f"text search {query!r}", f"GET {path}")
    if photos:
        C.check(all(r["path"] in photos or os.path.realpath(r["path"]) in photos for r in got),
                "every result is one of the indexed photos")
    if photos:
        bad = []
        for r in api.get("results", []):
            if os.path.exists(r["path"]):
                with Image.open(r["path"]) as im:
                    if (r.get("width"), r.get("height")) != im.size:
                        bad.append((r["id"], os.path.basename(r["path"]), (r.get("width"), r.get("height")), im.size))
        C.check(not bad, "search results' width and height are the photos' sizes", f"(id, file, API, real): {bad[:5]}")
        dates = [r.get("date") for r in api.get("results", [])]
        C.check(all(isinstance(x, str) and x[:4].isdigit() for x in dates), "search results carry a date",
                str(dates[:3]))
    check_thumbnails(d, base, {r["id"]: (r.get("width"), r.get("height")) for r in api.get("results", [])})
    s2, api_post = http_json("POST", base + "/v1/search", {"text": query, "k": K})
    C.check(s2 == 200 and [r["id"] for r in api_post.get("results", [])] == [r["id"] for r in api.get("results", [])],
            f"POST /v1/search {{text}} agrees with GET /v1/search?q=", f"HTTP {s2}: {str(api_post)[:200]}")
    d.execute_script("document.activeElement.blur(); window.scrollTo(0, 0)")
    time.sleep(0.3)
    d.save_screenshot(screenshot)
    print(f"  saved {os.path.relpath(screenshot, REPO)}")

    # "more like this" on the second result, with the mouse
    if len(got) >= 2:
        second = got[1]
        before = seq(d)
        d.find_elements(By.CSS_SELECTOR, "#results .result")[1].find_element(By.CSS_SELECTOR, ".more-like-this").click()
        wait_update(d, before, "'more like this'")
        body = {"id": second["id"], "k": K}
        s, api = http_json("POST", base + "/v1/search", body)
        got2 = compare_results(d, s, api, f"'more like this' (click) on id {second['id']}", describe("POST", "/v1/search", body))
        if sanity and got2 and got2[0]["id"] != second["id"]:
            C.note(f"'more like this' on {second['id']}: first result is {got2[0]['id']} (the photo itself is not first)")
        if sanity and got2:
            C.check(got2[0]["id"] == second["id"] and got2[0]["score"] > 0.99,
                    "'more like this': the photo itself comes first with score ~1",
                    f"first: id {got2[0]['id']} score {got2[0]['score']}")

    # keyboard: arrows move between results, Enter = more like this
    items = d.find_elements(By.CSS_SELECTOR, "#results .result")
    if len(items) >= 6:
        d.execute_script("document.querySelector('#results .result').focus()")
        keys(d, Keys.ARROW_RIGHT)
        ids = [r["id"] for r in page_results(d)]
        C.check(active(d)["dataId"] == str(ids[1]), "ArrowRight moves focus to the next result")
        cols = d.execute_script("""const r = [...document.querySelectorAll('#results .result')];
            return r.filter(e => e.offsetTop === r[0].offsetTop).length;""")
        keys(d, Keys.ARROW_DOWN)
        target = ids[min(len(ids) - 1, 1 + cols)]
        C.check(active(d)["dataId"] == str(target), f"ArrowDown moves focus one row down ({cols} columns)")
        keys(d, Keys.ARROW_LEFT)
        target = ids[min(len(ids) - 1, cols)]
        C.check(active(d)["dataId"] == str(target), "ArrowLeft moves focus to the previous result")
        before = seq(d)
        keys(d, Keys.ENTER)
        wait_update(d, before, "'more like this' by keyboard")
        body = {"id": target, "k": K}
        s, api = http_json("POST", base + "/v1/search", body)
        compare_results(d, s, api, f"'more like this' (Enter) on id {target}", describe("POST", "/v1/search", body))
        # Tab order: query -> Search button -> drop area -> first result
        d.find_element(By.ID, "query").click()
        keys(d, Keys.TAB, Keys.TAB, Keys.TAB)
        a = active(d)
        C.check("result" in a["cls"].split(), "Tab from the search box reaches the results (after Search, drop area)",
                f"focused: {a}")

    # an image chosen with the file input
    if photos:
        upload = photos[len(photos) // 3]
        before = seq(d)
        d.find_element(By.ID, "file").send_keys(upload)
        wait_update(d, before, "the image search (file input)")
        body = {"image": data_uri(upload), "k": K}
        s, api = http_json("POST", base + "/v1/search", body)
        got3 = compare_results(d, s, api, f"image search via #file ({os.path.basename(upload)})",
                               describe("POST", "/v1/search", body))
        C.check(d.execute_script("return !document.querySelector('#drop-preview').hidden"),
                "the drop area shows the chosen image")
        if sanity and got3:
            C.check(os.path.basename(got3[0]["path"]) == os.path.basename(upload) and got3[0]["score"] > 0.99,
                    "image search: the same photo comes first with score ~1",
                    f"first: {got3[0]['path']} score {got3[0]['score']}")

        # an image dropped on the drop area (synthetic DataTransfer drop event)
        dropped = photos[(2 * len(photos)) // 3]
        before = seq(d)
        n = synthetic_drop(d, dropped)
        C.check(n == 1, "synthetic drop event carries one file")
        wait_update(d, before, "the image search (drop)")
        body = {"image": data_uri(dropped), "k": K}
        s, api = http_json("POST", base + "/v1/search", body)
        compare_results(d, s, api, f"image search via drop ({os.path.basename(dropped)})",
                        describe("POST", "/v1/search", body))

        # an error is shown readably
        broken = os.path.join(os.path.dirname(photos[0]) + "_extra", "broken.jpg")
        os.makedirs(os.path.dirname(broken), exist_ok=True)
        with open(broken, "wb") as f:
            f.write(b"\xff\xd8\xff\xe0 this is not really a JPEG " * 4)
        before = seq(d)
        synthetic_drop(d, broken)
        state = wait_update(d, before, "the broken-image search")
        body = {"image": data_uri(broken), "k": K}
        s, api = http_json("POST", base + "/v1/search", body)
        msg = api.get("error", {}).get("message") if isinstance(api.get("error"), dict) else None
        C.check(400 <= s < 500 and isinstance(msg, str) and msg and isinstance(api["error"].get("type"), str),
                f"POST /v1/search with an undecodable image: 4xx with {{error: {{message, type}}}} (HTTP {s})",
                str(api)[:300])
        st = status_text(d)
        C.check(state == "error" and msg is not None and msg in st and "error" in d.find_element(By.ID, "status").get_attribute("class"),
                f"the page shows the server's error: {st!r}")
        C.check(not page_results(d), "no stale results are left next to the error")

    # Esc clears
    box = d.find_element(By.ID, "query")
    box.click()
    box.send_keys("anything")
    keys(d, Keys.ESCAPE)
    C.check(box.get_attribute("value") == "" and not page_results(d) and status_text(d) == "",
            "Esc clears the box, the results and the status")

    # empty query does not call the server with q=
    res = d.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    foreign = [r for r in res if not r.startswith(base) and not r.startswith("data:") and not r.startswith("blob:")]
    C.check(not foreign, f"the page loaded nothing from other origins ({len(res)} requests)", str(foreign[:5]))
    errs = console_errors(d, allowed=("400", "422", "415", "status of 4"))
    C.check(not errs, "no errors in the browser console (besides the expected 4xx)", "\n        ".join(errs[:5]))


def wait_for(d, js, what, timeout=30):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if d.execute_script("return !!(" + js + ")"):
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def classify_rows(d):
    return d.execute_script("""return [...document.querySelectorAll('#classify-results .label-row')].map(r => ({
        label: r.dataset.label, p: Number(r.dataset.probability), text: r.querySelector('.pct').textContent,
        width: r.querySelector('.fill').getBoundingClientRect().width,
        full: r.querySelector('.bar').getBoundingClientRect().width }));""")


def compare_classify(d, base, image, labels, what):
    body = {"images": [data_uri(image)], "labels": labels}
    s, api = http_json("POST", base + "/v1/classify", body)
    req = describe("POST", "/v1/classify", {"images": "[" + body["images"][0][:30] + "…]", "labels": labels})
    if not C.check(s == 200 and isinstance(api.get("data"), list) and api["data"], f"{what}: API answers {req}",
                   f"HTTP {s}: {str(api)[:300]}"):
        return
    C.check(api.get("labels") == labels, f"{what}: API echoes the labels", f"got {api.get('labels')}")
    C.check(api["data"][0].get("index") == 0, f"{what}: API data[0].index is 0", str(api["data"][0])[:200])
    probs = api["data"][0]["probabilities"]
    C.check(len(probs) == len(labels) and abs(sum(probs) - 1) < 1e-4, f"{what}: API probabilities sum to 1",
            f"{probs}")
    exp = sorted(zip(labels, probs), key=lambda t: -t[1])
    rows = classify_rows(d)
    C.check([r["label"] for r in rows] == [l for l, _ in exp], f"{what}: one bar per label, most likely first",
            f"page {[r['label'] for r in rows]}\n        API  {[l for l, _ in exp]}")
    def shown_ok(text, p):  # one decimal of a percentage, or "<0.1%" for what would round to 0.0%
        if text == "<0.1%":
            return 0 < p < 0.0005
        return text.endswith("%") and abs(float(text[:-1]) - p * 100) <= 0.05 + 1e-9
    bad = [(r["label"], r["text"], r["p"], p) for r, (l, p) in zip(rows, exp)
           if abs(r["p"] - p) > 1e-6 or not shown_ok(r["text"], p)]
    C.check(not bad, f"{what}: probabilities shown equal the API's", f"(label, shown, page, API): {bad}")
    bad = [(r["label"], round(r["width"], 1), round(r["p"] * r["full"], 1)) for r in rows
           if abs(r["width"] - max(2, r["p"] * r["full"])) > 1.5]
    C.check(not bad, f"{what}: bar lengths are proportional to the probabilities", str(bad))


def classify_phase(d, base, images, screenshot):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    print(f"\n== classification page (no index), {base}")
    s, info = http_json("GET", base + "/v1/info")
    C.check(s == 200 and info.get("db") is False and info.get("images") == 0,
            "GET /v1/info says db: false, images: 0", f"HTTP {s}: {info}")
    s, api = http_json("GET", base + "/v1/search?q=cat&k=3")
    C.check(400 <= s < 500 and isinstance(api.get("error"), dict) and api["error"].get("message"),
            f"GET /v1/search without an index: 4xx with an error message (HTTP {s})", str(api)[:200])

    d.get(base + "/")
    wait_for(d, "document.body.dataset.state === 'idle' && !document.querySelector('#classify-view').hidden",
             "the classification view")
    C.check(not d.find_element(By.ID, "query").is_displayed(), "no search box without an index")
    C.check(info.get("model", "\0") in d.find_element(By.ID, "model").text, "header shows the model")

    # comma-separated labels, then an image through the file input (classifies at once)
    labels = ["a photo of a cat", "a photo of a dog", "a rocket", "a cup of coffee", "an astronaut"]
    ta = d.find_element(By.ID, "labels")
    ta.clear()
    ta.send_keys(", ".join(labels))
    before = seq(d)
    d.find_element(By.ID, "file").send_keys(images[0])
    wait_update(d, before, "the classification (file input)")
    compare_classify(d, base, images[0], labels, f"classify {os.path.basename(images[0])}, comma-separated labels")

    # one label per line, another image dropped, the Classify button
    labels = ["a photo of a cat", "a photo of a dog", "a photo of a rocket", "a cup of coffee",
              "a photo of an astronaut", "a page of text", "a photo of a horse"]
    before = seq(d)
    synthetic_drop(d, images[1])
    wait_update(d, before, "the classification (drop)")
    ta.clear()
    ta.send_keys("\n".join(labels))
    before = seq(d)
    d.find_element(By.ID, "classify").click()
    wait_update(d, before, "the classification (button)")
    compare_classify(d, base, images[1], labels, f"classify {os.path.basename(images[1])}, one label per line")
    st = status_text(d)
    C.check("most likely" in st, f"status line reads {st!r}")

    # Ctrl+Enter in the labels box
    before = seq(d)
    ta.click()
    from selenium.webdriver.common.action_chains import ActionChains
    ActionChains(d).key_down(Keys.CONTROL).send_keys(Keys.ENTER).key_up(Keys.CONTROL).perform()
    wait_update(d, before, "the classification (Ctrl+Enter)")
    compare_classify(d, base, images[1], labels, "Ctrl+Enter classifies again")
    d.execute_script("document.activeElement.blur(); window.scrollTo(0, 0)")
    time.sleep(0.3)
    d.save_screenshot(screenshot)
    print(f"  saved {os.path.relpath(screenshot, REPO)}")
    errs = console_errors(d)
    C.check(not errs, "no errors in the browser console", "\n        ".join(errs[:5]))


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clip", default="target/release/clip", help="the clip binary")
    ap.add_argument("--model", default="fixtures/models/hf_tiny_quickgelu")
    ap.add_argument("--photos", type=int, default=30, help="how many photos to index")
    ap.add_argument("--query", default="a photo of a cat")
    ap.add_argument("--base-url", help="test a running server with an index instead of starting clip")
    ap.add_argument("--classify-base-url", help="test a running server without an index instead of starting clip")
    ap.add_argument("--photos-dir", help="with --base-url: the folder of JPEGs that server has indexed")
    ap.add_argument("--api-key", help="the API key of the --base-url server (when clip is started here, the server "
                    "with the index gets a random key, and the page is opened with ?key=)")
    ap.add_argument("--no-sanity", action="store_true",
                    help="skip the checks that need a real model (an image's nearest neighbour is itself)")
    ap.add_argument("--docs", default=os.path.join(REPO, "docs"), help="where the screenshots go")
    ap.add_argument("--timeout", type=float, default=180, help="seconds to wait for GET /ready")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()

    external = bool(args.base_url or args.classify_base_url)
    tmp = tempfile.mkdtemp(prefix="clip-serve-browser-")
    servers, driver = [], None
    try:
        if args.photos_dir:
            photos = sorted(os.path.abspath(os.path.join(args.photos_dir, f)) for f in os.listdir(args.photos_dir)
                            if f.lower().endswith(".jpg"))
        else:
            photos = make_photos(os.path.join(tmp, "photos"), args.photos)
            print(f"made {len(photos)} photos in {os.path.dirname(photos[0])}")
        clip = os.path.join(REPO, args.clip) if not os.path.isabs(args.clip) else args.clip
        model = args.model  # clip runs in the repository root: a relative path is the repository's

        base = args.base_url.rstrip("/") if args.base_url else None
        key = args.api_key
        if not external:
            db = os.path.join(tmp, "photos.db")
            cmd = [clip, "index", os.path.dirname(photos[0]), "--db", db, "--model", model, "--quiet", "--json"]
            print("$ " + " ".join(cmd))
            r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
            if r.returncode != 0:
                raise RuntimeError(f"clip index failed ({r.returncode}):\n{r.stderr[-2000:]}")
            summary = json.loads(r.stdout)
            C.check(summary.get("added") == len(photos) and not summary.get("failed"),
                    f"clip index added {summary.get('added')} photos", r.stdout[:300])
            port = free_port()
            key = secrets.token_urlsafe(12)
            srv = Server([clip, "serve", "--model", model, "--db", db, "--host", "127.0.0.1", "--port", str(port),
                          "--api-key", key], port, os.path.join(tmp, "serve-db.log"))
            servers.append(srv)
            srv.wait_ready(args.timeout)
            base = srv.url

        driver = make_driver()
        os.makedirs(args.docs, exist_ok=True)
        if base:
            if key:
                AUTH["Authorization"] = "Bearer " + key
            search_phase(driver, base, photos, os.path.join(args.docs, "serve_page.png"), args.query,
                         sanity=not args.no_sanity, key=key)
            AUTH.clear()
        if not external:
            servers[0].stop()
            port = free_port()
            srv = Server([clip, "serve", "--model", model, "--host", "127.0.0.1", "--port", str(port)],
                         port, os.path.join(tmp, "serve-nodb.log"))
            servers.append(srv)
            srv.wait_ready(args.timeout)
            cbase = srv.url
        else:
            cbase = args.classify_base_url.rstrip("/") if args.classify_base_url else None
        if cbase:
            by_name = {os.path.basename(p): p for p in photos}
            images = [by_name.get("chelsea.jpg", photos[0]), by_name.get("astronaut.jpg", photos[-1])]
            classify_phase(driver, cbase, images, os.path.join(args.docs, "serve_page_classify.png"))
    except Exception as e:  # a crash is a failure, reported like the others
        import traceback
        traceback.print_exc()
        C.check(False, "the test ran to the end", f"{type(e).__name__}: {e}")
        for s in servers:
            tail = s.log_tail()
            if tail:
                print(f"--- {s.log_path} (last lines)\n{tail}")
    finally:
        if driver is not None:
            try:
                driver.quit()
            except Exception:
                pass
        for s in servers:
            if s.proc.poll() is None or not s.log.closed:
                s.stop()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    print(f"\n{C.passed} checks passed, {len(C.failed)} failed")
    for f in C.failed:
        print("  FAILED: " + f)
    return 1 if C.failed else 0


if __name__ == "__main__":
    sys.exit(main())
