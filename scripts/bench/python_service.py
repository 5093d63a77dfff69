"""The Python service `clip serve` is compared with: what a Python user writes to serve CLIP embeddings over HTTP.

FastAPI + uvicorn + transformers' `CLIPModel` and its processors, loaded from a Hugging Face directory, answering the
same `POST /v1/embeddings` request and response shapes as `clip serve` (OpenAI's embeddings API; an input item that
is a `data:image/...;base64,` URI is an image, or every item is base64 image bytes with `"modality": "image"`), plus
`GET /health`, `GET /ready` and a small `GET /metrics`.

Usage (the environment of scripts/bench/README_serve.md):
    /tmp/clip-venv/bin/python scripts/bench/python_service.py --model /tmp/vitb32 --port 8101 [--threads N]
        [--tokenizer DIR] [--text-padding longest|max_length] [--no-lock]

One model call per request and per modality: no batching across requests (what such a service does; Infinity,
`pip install infinity-emb`, is the batching alternative). Requests are handled by FastAPI's thread pool: the image
decoding, resizing and tokenising of concurrent requests overlap, while the model calls themselves take turns behind
one lock, each using every core (torch threads = --threads, default the number of cores). Without the lock
(--no-lock) concurrent calls each start their own intra-op thread team and oversubscribe the cores.

Tokenizer: a Hugging Face CLIP directory normally holds vocab.json + merges.txt (or tokenizer.json). When --model has
none and --tokenizer is not given, OpenAI's vocabulary is taken from this repository's fixtures
(fixtures/tokenizer/hf/{vocab.json,merges.txt}.gz: the files of openai/clip-vit-base-patch32, unpacked into a
temporary directory), or else built from the `bpe_simple_vocab_16e6.txt.gz` that the clip-anytorch and
open_clip_torch wheels ship (the same vocabulary, written out as vocab.json + merges.txt; see `bpe_to_hf_files`).
"""
import argparse
import base64
import binascii
import gzip
import io
import json
import os
import sys
import tempfile
import threading
import time
from typing import List, Literal, Optional, Union

import numpy as np
import torch
import uvicorn
from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse, PlainTextResponse
from PIL import Image
from pydantic import BaseModel
from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURE_TOKENIZER = os.path.join(ROOT, "fixtures", "tokenizer", "hf")
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer.json")


# ---------------------------------------------------------------------------------------------------------------
# Tokenizer files
# ---------------------------------------------------------------------------------------------------------------

def byte_symbols():
    """OpenAI's byte -> printable character table (GPT-2's), in vocabulary order: first the printable Latin-1 bytes,
    standing for themselves, then every other byte, in byte order, mapped to the code points from 256 upwards."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    table = {b: chr(b) for b in keep}
    for n, b in enumerate(b for b in range(256) if b not in table):
        table[b] = chr(256 + n)
    return table


def bpe_to_hf_files(bpe_gz, out_dir):
    """vocab.json + merges.txt (Hugging Face CLIPTokenizer files) from OpenAI's bpe_simple_vocab_16e6.txt.gz.

    The gz holds a header line then merge rules, of which CLIP uses the first 49152 - 256 - 2 = 48894. Its
    vocabulary is the 256 byte symbols, the same with the end-of-word marker "</w>", one entry per merge (the two
    halves joined), then <|startoftext|> and <|endoftext|>: 49408 ids."""
    with gzip.open(bpe_gz, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    merges = [tuple(line.split()) for line in lines[1:49152 - 256 - 2 + 1]]
    symbols = list(byte_symbols().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump({t: i for i, t in enumerate(tokens)}, f, ensure_ascii=False)
    with open(os.path.join(out_dir, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        f.writelines(f"{a} {b}\n" for a, b in merges)
    write_tokenizer_config(out_dir)
    return out_dir


def write_tokenizer_config(out_dir):
    config = {"tokenizer_class": "CLIPTokenizer", "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
              "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "model_max_length": 77}
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump(config, f)


def wheel_bpe_files():
    """bpe_simple_vocab_16e6.txt.gz as shipped inside the clip-anytorch / open_clip_torch wheels, when installed."""
    found = []
    for module in ("clip", "open_clip"):
        try:
            package = __import__(module)
        except Exception:  # not installed, or fails to import: only its data file was wanted
            continue
        path = os.path.join(os.path.dirname(package.__file__), "bpe_simple_vocab_16e6.txt.gz")
        if os.path.exists(path):
            found.append(path)
    return found


def tokenizer_dir(model_dir, explicit):
    """(directory, where it came from) of the CLIP tokenizer files to load."""
    if explicit:
        return explicit, f"--tokenizer {explicit}"
    if any(os.path.exists(os.path.join(model_dir, f)) for f in TOKENIZER_FILES):
        return model_dir, f"the model directory {model_dir}"
    out_dir = tempfile.mkdtemp(prefix="clip-pyservice-tokenizer-")
    if all(os.path.exists(os.path.join(FIXTURE_TOKENIZER, f + ".gz")) for f in ("vocab.json", "merges.txt")):
        for name in ("vocab.json", "merges.txt"):
            with gzip.open(os.path.join(FIXTURE_TOKENIZER, name + ".gz"), "rb") as src, \
                    open(os.path.join(out_dir, name), "wb") as dst:
                dst.write(src.read())
        write_tokenizer_config(out_dir)
        return out_dir, f"{FIXTURE_TOKENIZER}/{{vocab.json,merges.txt}}.gz (openai/clip-vit-base-patch32's files)"
    for bpe in wheel_bpe_files():
        return bpe_to_hf_files(bpe, out_dir), f"vocab.json + merges.txt built from {bpe}"
    raise SystemExit(f"no tokenizer files in {model_dir}: pass --tokenizer DIR (vocab.json + merges.txt)")


# ---------------------------------------------------------------------------------------------------------------
# The service
# ---------------------------------------------------------------------------------------------------------------

class EmbeddingRequest(BaseModel):
    model: Optional[str] = None
    input: Union[str, List[str]]
    encoding_format: Literal["float", "base64"] = "float"
    modality: Optional[Literal["text", "image"]] = None
    normalize: bool = False


class State:
    model = None
    image_processor = None
    tokenizer = None
    model_name = "clip"
    ready = False
    load_error = None
    lock = None
    text_padding = "longest"
    started = time.time()
    requests = 0
    failed = 0
    items = {"image": 0, "text": 0}
    in_flight = 0
    seconds = 0.0
    counter_lock = threading.Lock()


S = State()
app = FastAPI()


def error(status, message, kind="invalid_request_error"):
    raise HTTPException(status_code=status, detail={"error": {"message": message, "type": kind}})


@app.exception_handler(HTTPException)
async def http_error(request, exc):
    body = exc.detail if isinstance(exc.detail, dict) else {"error": {"message": str(exc.detail)}}
    return JSONResponse(status_code=exc.status_code, content=body)


def decode_image(item, is_data_uri):
    if is_data_uri:
        header, sep, payload = item.partition(",")
        if not sep or ";base64" not in header:
            error(400, "an image data URI must be data:image/...;base64,<bytes>")
    else:
        payload = item
    try:
        raw = base64.b64decode(payload, validate=True)
        image = Image.open(io.BytesIO(raw))
        return image.convert("RGB")
    except (binascii.Error, ValueError, OSError) as e:
        error(400, f"unreadable image: {e}")


def features(out):
    """transformers 5 returns a ModelOutput (projected features in pooler_output); 4.x a tensor."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def run_model(fn):
    if S.lock is None:
        with torch.inference_mode():
            return fn()
    with S.lock, torch.inference_mode():
        return fn()


@app.post("/v1/embeddings")
def embeddings(req: EmbeddingRequest):
    if not S.ready:
        error(503, S.load_error or "model loading", "unavailable")
    items = [req.input] if isinstance(req.input, str) else req.input
    if not items:
        error(400, "input is empty")
    started = time.perf_counter()
    with S.counter_lock:
        S.in_flight += 1
    try:
        image_rows, text_rows = [], []
        for i, item in enumerate(items):
            if req.modality == "image":
                image_rows.append((i, decode_image(item, item.startswith("data:"))))
            elif req.modality is None and item.startswith("data:image/"):
                image_rows.append((i, decode_image(item, True)))
            else:
                text_rows.append((i, item))
        rows = [None] * len(items)
        tokens = 0
        if image_rows:
            pixels = S.image_processor(images=[im for _, im in image_rows], return_tensors="pt")["pixel_values"]
            out = run_model(lambda: features(S.model.get_image_features(pixel_values=pixels)))
            for (i, _), row in zip(image_rows, out):
                rows[i] = row
        if text_rows:
            enc = S.tokenizer([t for _, t in text_rows], padding=S.text_padding, truncation=True, max_length=77,
                              return_tensors="pt")
            tokens = int(enc["attention_mask"].sum())
            out = run_model(lambda: features(S.model.get_text_features(input_ids=enc["input_ids"],
                                                                       attention_mask=enc["attention_mask"])))
            for (i, _), row in zip(text_rows, out):
                rows[i] = row
        matrix = torch.stack(rows).float()
        if req.normalize:
            matrix = torch.nn.functional.normalize(matrix, dim=-1)
        matrix = matrix.numpy()
        data = []
        for i, row in enumerate(matrix):
            if req.encoding_format == "base64":
                value = base64.b64encode(row.astype("<f4").tobytes()).decode("ascii")
            else:
                value = row.tolist()
            data.append({"object": "embedding", "index": i, "embedding": value})
        with S.counter_lock:
            S.requests += 1
            S.items["image"] += len(image_rows)
            S.items["text"] += len(text_rows)
            S.seconds += time.perf_counter() - started
        return {"object": "list", "data": data, "model": req.model or S.model_name,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
    except HTTPException:
        with S.counter_lock:
            S.failed += 1
        raise
    finally:
        with S.counter_lock:
            S.in_flight -= 1


@app.get("/health")
def health():
    return {"status": "ok"}


@app.get("/ready")
def ready():
    if not S.ready:
        return JSONResponse(status_code=503, content={"status": S.load_error or "loading"})
    return {"status": "ready", "model": S.model_name}


@app.get("/metrics")
def metrics():
    with S.counter_lock:
        lines = [
            "# TYPE pyservice_requests_total counter", f"pyservice_requests_total {S.requests}",
            "# TYPE pyservice_requests_failed_total counter", f"pyservice_requests_failed_total {S.failed}",
            "# TYPE pyservice_items_total counter",
            f'pyservice_items_total{{modality="image"}} {S.items["image"]}',
            f'pyservice_items_total{{modality="text"}} {S.items["text"]}',
            "# TYPE pyservice_in_flight gauge", f"pyservice_in_flight {S.in_flight}",
            "# TYPE pyservice_request_seconds_total counter", f"pyservice_request_seconds_total {S.seconds:.6f}",
            "# TYPE pyservice_ready gauge", f"pyservice_ready {int(S.ready)}",
        ]
    return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")


def load(args):
    try:
        t0 = time.perf_counter()
        tok_dir, tok_source = tokenizer_dir(args.model, args.tokenizer)
        S.tokenizer = AutoTokenizer.from_pretrained(tok_dir)
        S.image_processor = AutoImageProcessor.from_pretrained(args.model)
        S.model = CLIPModel.from_pretrained(args.model, dtype=torch.float32).eval()
        print(f"python_service: loaded {args.model} in {time.perf_counter() - t0:.1f} s; tokenizer from "
              f"{tok_source} ({type(S.tokenizer).__name__}); image processor {type(S.image_processor).__name__}; "
              f"torch {torch.__version__} with {torch.get_num_threads()} threads; text padding {S.text_padding}; "
              f"model calls {'one at a time' if S.lock else 'concurrent'}", file=sys.stderr, flush=True)
        S.ready = True
    except Exception as e:  # reported by /ready and every request instead of a silent dead service
        S.load_error = f"load failed: {e!r}"
        print(f"python_service: {S.load_error}", file=sys.stderr, flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="/tmp/vitb32", help="Hugging Face CLIP directory")
    parser.add_argument("--tokenizer", help="directory with vocab.json + merges.txt when --model has none")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8101)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: all cores)")
    parser.add_argument("--model-name", help="the model string answered (default: the directory's name)")
    parser.add_argument("--text-padding", default="longest", choices=["longest", "max_length"],
                        help="longest: pad to the longest text of the request (the usual HF call); "
                             "max_length: pad every text to 77 tokens as clip.tokenize does")
    parser.add_argument("--no-lock", action="store_true", help="let concurrent requests call the model at once")
    parser.add_argument("--access-log", action="store_true", help="uvicorn's per-request log (off: it costs CPU)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    S.model_name = args.model_name or os.path.basename(os.path.normpath(args.model))
    S.lock = None if args.no_lock else threading.Lock()
    S.text_padding = args.text_padding
    threading.Thread(target=load, args=(args,), daemon=True).start()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=args.access_log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
