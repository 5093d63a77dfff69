"""Tests of the Python bindings (`import clip_rs`) against real references, never against themselves:

- the reference outputs that transformers computed for the committed tiny model
  (fixtures/models/hf_tiny_quickgelu/reference.safetensors, fixtures/cli/reference.json),
- `clip.tokenize` ids (fixtures/tokenizer/corpus.jsonl) and clip's preprocessing over Pillow
  (fixtures/images: uint8 crops and normalised tensors),
- the `clip` binary's `clip embed --json` output (CLIP_BIN, else target/debug/clip or target/release/clip),
- and, when clip-anytorch, torch and Pillow are importable, those packages live.

Run: scripts/python/ci_test.sh (debug build, no maturin) or scripts/python/test_bindings.sh (wheel).
"""

import gc
import hashlib
import json
import os
import pathlib
import re
import subprocess
import threading
import time

import numpy as np
import pytest

import clip_rs
from fixture_io import FIXTURES, REPO, image_manifest, normalize, read_bmp, read_jsonl, read_png, read_safetensors

TINY = str(FIXTURES / "models" / "hf_tiny_quickgelu")
EXAMPLES = [str(REPO / "examples" / name) for name in ("cat.jpg", "astronaut.jpg", "coffee.jpg")]
# The texts scripts/fixtures/gen_models.py tokenized for reference.safetensors (tiny_quickgelu()).
GEN_MODELS_TEXTS = [
    "a photo of a cat",
    "a diagram",
    "two dogs playing in the snow at night, seen from far away",
    "hello <|endoftext|> world",
    "",
]
OVER_LONG = "a photo of " + "a very " * 60 + "long caption"


def assert_close(ours, reference, rel=1e-4, what=""):
    """max |ours - reference| <= rel * max |reference| (DESIGN.md's tolerance for f32 features)."""
    ours, reference = np.asarray(ours, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    assert ours.shape == reference.shape, (what, ours.shape, reference.shape)
    scale = max(np.abs(reference).max(), 1e-30)
    diff = np.abs(ours - reference).max() / scale
    assert diff <= rel, f"{what}: max relative diff {diff:.3g} > {rel}"


@pytest.fixture(scope="module")
def model():
    return clip_rs.load(TINY)


@pytest.fixture(scope="module")
def cli_reference():
    with open(FIXTURES / "cli" / "reference.json", encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def model_reference():
    return read_safetensors(FIXTURES / "models" / "hf_tiny_quickgelu" / "reference.safetensors")


# ---------------------------------------------------------------------------------------------------------------
# Module, loading, properties


def test_version_is_the_workspace_version():
    text = (REPO / "Cargo.toml").read_text(encoding="utf-8")
    section = text[text.index("[workspace.package]") :]
    version = re.search(r'^version\s*=\s*"([^"]+)"', section, re.M).group(1)
    assert clip_rs.__version__ == version


def test_properties_come_from_the_model_files(model):
    with open(FIXTURES / "models" / "hf_tiny_quickgelu" / "config.json", encoding="utf-8") as f:
        config = json.load(f)
    assert model.embedding_dim == config["projection_dim"] == 20
    assert model.image_size == config["vision_config"]["image_size"] == 32
    assert model.context_length == config["text_config"]["max_position_embeddings"] == 77
    assert model.dtype == "f32"
    text = repr(model)
    assert text.startswith("clip_rs.Model(") and repr(TINY) in text and "embedding_dim=20" in text


def test_load_failures_raise_clip_error():
    assert issubclass(clip_rs.ClipError, Exception)
    with pytest.raises(clip_rs.ClipError, match="no-such-model"):
        clip_rs.load(str(REPO / "no-such-model"))


def test_bad_load_arguments_raise_value_error():
    with pytest.raises(ValueError, match="unknown dtype"):
        clip_rs.load(TINY, dtype="f64")
    with pytest.raises(ValueError, match="threads"):
        clip_rs.load(TINY, threads=0)


@pytest.mark.parametrize("dtype", ["bf16", "int8", "auto"])
def test_reduced_precisions_stay_close_to_the_reference(dtype, model_reference):
    # The CLI documents bf16 within cosine 0.9995 and int8 within 0.995 of f32; auto resolves to one of them.
    reduced = clip_rs.load(TINY, dtype=dtype)
    if dtype == "auto":
        assert reduced.dtype in ("f32", "bf16", "int8")
        dtype = reduced.dtype
    assert reduced.dtype == dtype
    ours = reduced.encode_texts(GEN_MODELS_TEXTS, normalize=True)
    reference = model_reference["text_features"]
    reference = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    cosine = (ours * reference).sum(axis=1)
    assert cosine.min() > {"f32": 0.99999, "bf16": 0.9995, "int8": 0.995}[dtype], cosine


# ---------------------------------------------------------------------------------------------------------------
# Tokenizer: clip.tokenize's ids (fixtures/tokenizer/corpus.jsonl, made with clip-anytorch 2.6.0)


@pytest.fixture(scope="module")
def corpus():
    return read_jsonl(FIXTURES / "tokenizer" / "corpus.jsonl")


def padded(ids, length=77):
    return np.array(ids + [0] * (length - len(ids)), dtype=np.int32)


def test_tokenize_matches_clip_on_the_corpus(corpus):
    ids = clip_rs.tokenize([case["text"] for case in corpus], truncate=True)
    assert ids.dtype == np.int32 and ids.shape == (len(corpus), 77)
    reference = np.stack([padded(case["ids"]) for case in corpus])
    mismatched = np.nonzero((ids != reference).any(axis=1))[0]
    assert len(mismatched) == 0, [corpus[i]["text"] for i in mismatched[:5]]


def test_tokenize_refuses_over_long_texts_as_clip_does(corpus):
    fits = [case["text"] for case in corpus if not case["too_long"]]
    assert clip_rs.tokenize(fits).shape == (len(fits), 77)
    too_long = [case["text"] for case in corpus if case["too_long"]]
    assert too_long
    for text in too_long[:50]:
        with pytest.raises(ValueError, match=r"more than the context length 77"):
            clip_rs.tokenize([text])


def test_tokenize_accepts_one_string_and_other_lengths():
    one = clip_rs.tokenize("a photo of a cat")
    assert one.shape == (1, 77)
    np.testing.assert_array_equal(one[0], padded([49406, 320, 1125, 539, 320, 2368, 49407]))
    short = clip_rs.tokenize(["a photo of a cat"], context_length=5, truncate=True)
    np.testing.assert_array_equal(short[0], [49406, 320, 1125, 539, 49407])
    assert clip_rs.tokenize([]).shape == (0, 77)
    with pytest.raises(ValueError):
        clip_rs.tokenize(["x"], context_length=1)
    with pytest.raises(TypeError):
        clip_rs.tokenize(["ok", 3])


def test_model_tokenize_matches_the_reference_ids(model, model_reference, cli_reference):
    np.testing.assert_array_equal(model.tokenize(GEN_MODELS_TEXTS), model_reference["input_ids"])
    np.testing.assert_array_equal(model.tokenize(cli_reference["texts"]), cli_reference["text_tokens"])


# ---------------------------------------------------------------------------------------------------------------
# Text embeddings: transformers' get_text_features on clip.tokenize ids


def test_encode_texts_matches_transformers(model, model_reference, cli_reference):
    features = model.encode_texts(GEN_MODELS_TEXTS)
    assert features.dtype == np.float32 and features.shape == (5, 20)
    assert_close(features, model_reference["text_features"], what="gen_models texts")
    assert_close(model.encode_texts(cli_reference["texts"]), cli_reference["text_features"], what="gen_cli texts")


def test_encode_texts_normalize_gives_unit_rows(model, model_reference):
    features = model.encode_texts(GEN_MODELS_TEXTS, normalize=True)
    reference = model_reference["text_features"]
    assert_close(features, reference / np.linalg.norm(reference, axis=1, keepdims=True), what="normalised")


def test_encode_texts_over_long_raises_unless_truncating(model, model_reference):
    with pytest.raises(ValueError, match=r'^text ".*" is \d+ tokens, more than the context length 77$'):
        model.encode_texts(["fine", OVER_LONG])
    truncated = model.encode_texts([OVER_LONG], truncate=True)
    assert truncated.shape == (1, 20) and np.isfinite(truncated).all()


def test_encode_texts_empty_list(model):
    empty = model.encode_texts([])
    assert empty.shape == (0, 20) and empty.dtype == np.float32


# ---------------------------------------------------------------------------------------------------------------
# Preprocessing: clip.clip._transform(n) over Pillow (fixtures/images, Pillow 13 + torchvision 0.29)


def test_preprocess_matches_clip_on_every_fixture_image(model):
    """Every fixture image the reference resized to 32 (the tiny model's size): the uint8 crop that clip's
    transform produced (refs/*_n32.png), normalised as torchvision does, equals our tensor."""
    checked = 0
    for case in image_manifest():
        if 32 not in case["sizes"]:
            continue
        ours = model.preprocess(str(FIXTURES / "images" / "inputs" / case["file"]))
        assert ours.dtype == np.float32 and ours.shape == (3, 32, 32)
        crop = read_png(FIXTURES / "images" / "refs" / f"{case['name']}_n32.png")
        diff = np.abs(ours - normalize(crop)).max()
        assert diff <= 1e-6, f"{case['name']}: max |diff| {diff}"
        checked += 1
    assert checked >= 80


def test_preprocess_matches_clip_normalised_tensors(model):
    checked = 0
    for case in image_manifest():
        if 32 not in case["normalized"]:
            continue
        reference = np.load(FIXTURES / "images" / "refs" / f"{case['name']}_n32.npy")
        ours = model.preprocess(str(FIXTURES / "images" / "inputs" / case["file"]))
        assert np.abs(ours - reference).max() <= 1e-6, case["name"]
        checked += 1
    assert checked >= 3


def fixture_array(name):
    """A fixture input decoded here, checked to be exactly the pixels Pillow's Image.open gives."""
    case = next(c for c in image_manifest() if c["name"] == name)
    pixels = read_bmp(FIXTURES / "images" / "inputs" / case["file"])
    assert hashlib.sha256(pixels.tobytes()).hexdigest() == case["pixels_sha256"], name
    assert pixels.shape[:2] == (case["height"], case["width"])
    return case, pixels


@pytest.mark.parametrize("name", ["bmp_rgb24", "bmp_topdown", "bmp_l", "bmp_v4_bgra"])
def test_preprocess_of_numpy_arrays_matches_clip(model, name):
    """RGB (HxWx3), grey (HxW) and RGBA (HxWx4) arrays are preprocessed as Pillow images of that mode."""
    case, pixels = fixture_array(name)
    crop = read_png(FIXTURES / "images" / "refs" / f"{name}_n32.png")
    for array in (pixels, np.asfortranarray(pixels), pixels[::-1][::-1]):
        ours = model.preprocess(array)
        assert np.abs(ours - normalize(crop)).max() <= 1e-6, name


def test_preprocess_errors(model):
    with pytest.raises(ValueError, match="cannot read image"):
        model.preprocess(str(REPO / "no-such-image.jpg"))
    with pytest.raises(ValueError, match="cannot decode image"):
        model.preprocess(b"not an image")
    with pytest.raises(TypeError, match="uint8"):
        model.preprocess(np.zeros((8, 8, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="shape"):
        model.preprocess(np.zeros((8, 8, 5), dtype=np.uint8))
    with pytest.raises(TypeError):
        model.preprocess(3.5)


# ---------------------------------------------------------------------------------------------------------------
# Image embeddings: transformers' get_image_features on clip's preprocessing of examples/*.jpg


def test_encode_images_from_paths_bytes_and_arrays_match_transformers(model, cli_reference):
    reference = np.array(cli_reference["image_features"])
    assert [str(REPO / p) for p in cli_reference["images"]] == EXAMPLES
    as_bytes = [pathlib.Path(p).read_bytes() for p in EXAMPLES]
    for what, items in [
        ("str paths", EXAMPLES),
        ("pathlib paths", [pathlib.Path(p) for p in EXAMPLES]),
        ("bytes", as_bytes),
        ("bytearray", [bytearray(b) for b in as_bytes]),
        ("tuple", tuple(EXAMPLES)),
    ]:
        features = model.encode_images(items)
        assert features.dtype == np.float32 and features.shape == (3, 20), what
        assert_close(features, reference, what=what)
    normalised = model.encode_images(EXAMPLES, normalize=True)
    assert_close(normalised, reference / np.linalg.norm(reference, axis=1, keepdims=True), what="normalised")


def test_encode_images_of_arrays_equal_those_of_their_files(model):
    items, arrays = [], []
    for name in ("bmp_rgb24", "bmp_l", "bmp_v4_bgra"):
        case, pixels = fixture_array(name)
        items.append(str(FIXTURES / "images" / "inputs" / case["file"]))
        arrays.append(pixels)
    np.testing.assert_array_equal(model.encode_images(arrays), model.encode_images(items))
    batch = np.stack([arrays[0]] * 3)  # N x H x W x 3
    np.testing.assert_array_equal(model.encode_images(batch), model.encode_images([items[0]] * 3))


def test_encode_images_errors(model, cli_reference):
    missing = str(REPO / "no-such-image.jpg")
    with pytest.raises(ValueError, match=r"^item 1: cannot read image .*no-such-image\.jpg"):
        model.encode_images([EXAMPLES[0], missing, b"garbage"])
    with pytest.raises(ValueError, match=r"^item 2: cannot decode image <bytes>"):
        model.encode_images([EXAMPLES[0], EXAMPLES[1], b"garbage", missing])
    rows = model.encode_images([missing, EXAMPLES[0], b"garbage", EXAMPLES[2]], on_error="nan")
    assert rows.shape == (4, 20)
    assert np.isnan(rows[0]).all() and np.isnan(rows[2]).all()
    reference = np.array(cli_reference["image_features"])
    assert_close(rows[[1, 3]], reference[[0, 2]], what="rows beside failures")
    with pytest.raises(TypeError, match="item 1"):
        model.encode_images([EXAMPLES[0], 42])
    with pytest.raises(TypeError, match="item 0"):
        model.encode_images([np.zeros((8, 8, 3), dtype=np.int64)], on_error="nan")
    with pytest.raises(TypeError, match="list"):
        model.encode_images(EXAMPLES[0])
    with pytest.raises(TypeError, match="list"):
        model.encode_images(np.zeros((8, 8, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="on_error"):
        model.encode_images(EXAMPLES, on_error="skip")
    empty = model.encode_images([])
    assert empty.shape == (0, 20) and empty.dtype == np.float32


# ---------------------------------------------------------------------------------------------------------------
# Equality with the `clip` binary


def cli_binary():
    for candidate in (os.environ.get("CLIP_BIN"), REPO / "target" / "debug" / "clip", REPO / "target" / "release" / "clip"):
        if candidate and pathlib.Path(candidate).is_file():
            return str(candidate)
    if os.environ.get("CLIP_RS_REQUIRE_CLI"):
        pytest.fail("no clip binary: set CLIP_BIN or build it (cargo build -p clip-cli)")
    pytest.skip("no clip binary (set CLIP_BIN or cargo build -p clip-cli)")


def clip_embed(*args):
    done = subprocess.run(
        [cli_binary(), "embed", "--json", "-q", "--model", TINY, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "CLIP_THREADS": "2"},
    )
    return done


def test_images_equal_clip_embed(model):
    missing = str(REPO / "no-such-image.jpg")
    for flags, normalise in [([], False), (["--normalize"], True)]:
        done = clip_embed("--image", *EXAMPLES, missing, *flags)
        rows = json.loads(done.stdout)
        assert rows[3] is None
        ours = model.encode_images(EXAMPLES + [missing], normalize=normalise, on_error="nan")
        assert_close(ours[:3], np.array(rows[:3]), rel=1e-6, what=f"clip embed {flags}")
        # The binary reports the failed file with the library's message, as the ValueError does.
        with pytest.raises(ValueError) as raised:
            model.encode_images([missing])
        assert f"error: {str(raised.value).split(': ', 1)[1]}" in done.stderr


def test_texts_equal_clip_embed(model, corpus):
    texts = GEN_MODELS_TEXTS + [case["text"] for case in corpus[::400] if not case["too_long"]]
    for flags, kwargs in [([], {}), (["--normalize"], {"normalize": True}), (["--truncate"], {"truncate": True})]:
        args = ["--text", *texts] if "--truncate" not in flags else ["--text", *texts, OVER_LONG]
        done = clip_embed(*args, *flags)
        assert done.returncode == 0, done.stderr
        ours = model.encode_texts(texts if "--truncate" not in flags else texts + [OVER_LONG], **kwargs)
        assert_close(ours, np.array(json.loads(done.stdout)), rel=1e-6, what=f"clip embed {flags}")


def test_over_long_text_message_is_the_binarys(model):
    done = clip_embed("--text", OVER_LONG)
    assert done.returncode != 0
    with pytest.raises(ValueError) as raised:
        model.encode_texts([OVER_LONG])
    assert f"error: {raised.value}" in done.stderr


# ---------------------------------------------------------------------------------------------------------------
# The GIL is released while the library works


@pytest.fixture(scope="module")
def many_images():
    return [pathlib.Path(p).read_bytes() for p in EXAMPLES] * 60


@pytest.mark.parametrize("method", ["encode_images", "encode_texts"])
def test_python_threads_run_while_rust_works(model, many_images, method):
    calls = {
        "encode_images": lambda: model.encode_images(many_images),
        "encode_texts": lambda: model.encode_texts([f"a photo of {i} cats sitting on a mat" for i in range(4000)]),
    }
    ticks = []
    stop = threading.Event()

    def spin():
        # Mostly asleep: a busy loop would take a core from the library's low-priority decoding threads.
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.002)

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        time.sleep(0.05)
        start = time.perf_counter()
        calls[method]()
        end = time.perf_counter()
    finally:
        stop.set()
        spinner.join()
    during = [t for t in ticks if start <= t <= end]
    duration = end - start
    # Holding the GIL for the whole call would freeze the spinner: no tick, or one long gap, during the call.
    gaps = np.diff([start] + during + [end])
    assert len(during) >= 3, f"{len(during)} ticks in {duration:.3f} s"
    assert gaps.max() < max(0.5 * duration, 0.05), f"the Python thread stalled {gaps.max():.3f} s of {duration:.3f} s"


def test_two_threads_encode_concurrently(model, many_images):
    expected_images = model.encode_images(many_images)
    texts = [f"a photo of {i} cats" for i in range(300)]
    expected_texts = model.encode_texts(texts)
    results, errors = {}, []
    barrier = threading.Barrier(2)

    def work(name, call):
        try:
            barrier.wait()
            results[name] = call()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [
        threading.Thread(target=work, args=("images", lambda: model.encode_images(many_images))),
        threading.Thread(target=work, args=("images2", lambda: model.encode_images(many_images[::-1]))),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    np.testing.assert_array_equal(results["images"], expected_images)
    np.testing.assert_array_equal(results["images2"], expected_images[::-1])
    # Texts from another thread while images encode.
    worker = threading.Thread(target=work, args=("texts", lambda: model.encode_texts(texts)))
    barrier = threading.Barrier(2)
    worker.start()
    work("images3", lambda: model.encode_images(many_images))
    worker.join(timeout=300)
    assert not errors, errors
    np.testing.assert_array_equal(results["texts"], expected_texts)
    np.testing.assert_array_equal(results["images3"], expected_images)


def test_a_model_outlives_its_arrays(many_images):
    local = clip_rs.load(TINY)
    rows = local.encode_images(many_images[:3])
    del local
    gc.collect()
    assert rows.shape == (3, 20) and np.isfinite(rows).all()


# ---------------------------------------------------------------------------------------------------------------
# Live comparisons with the reference packages, when installed (clip-anytorch, torch, Pillow; transformers)


@pytest.fixture(scope="module")
def reference_clip():
    pytest.importorskip("torch")
    pytest.importorskip("PIL")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # clip-anytorch imports pkg_resources
        return pytest.importorskip("clip")


def test_live_tokenize_equals_clip(reference_clip, corpus):
    texts = [case["text"] for case in corpus[::7]] + ["Hello, World! &amp; friends", "🙂 emoji and CJK 猫", OVER_LONG]
    for context_length in (77, 16):
        reference = reference_clip.tokenize(texts, context_length=context_length, truncate=True).numpy()
        np.testing.assert_array_equal(clip_rs.tokenize(texts, context_length=context_length, truncate=True), reference)
    with pytest.raises(RuntimeError):
        reference_clip.tokenize([OVER_LONG])
    with pytest.raises(ValueError):
        clip_rs.tokenize([OVER_LONG])


def test_live_preprocess_equals_clip(reference_clip, model):
    from PIL import Image

    import warnings

    transform = reference_clip.clip._transform(model.image_size)
    checked = 0
    for case in image_manifest():
        path = FIXTURES / "images" / "inputs" / case["file"]
        with Image.open(path) as image, warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # Pillow on palette images with byte transparency
            reference = transform(image).numpy()
        assert np.abs(model.preprocess(str(path)) - reference).max() <= 1e-6, case["name"]
        checked += 1
    rng = np.random.default_rng(0)
    for shape in [(40, 50, 3), (33, 32, 3), (61, 23), (17, 90, 4), (1, 1, 3), (300, 7, 3)]:
        array = rng.integers(0, 256, size=shape, dtype=np.uint8)
        reference = transform(Image.fromarray(array)).numpy()
        assert np.abs(model.preprocess(array) - reference).max() <= 1e-6, shape
        checked += 1
    assert checked > 90


def test_live_image_features_equal_transformers(reference_clip, model):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    reference_model = transformers.CLIPModel.from_pretrained(TINY, dtype=torch.float32).eval()
    rng = np.random.default_rng(1)
    arrays = [rng.integers(0, 256, size=(48 + 7 * i, 40 + 3 * i, 3), dtype=np.uint8) for i in range(4)]
    pixels = torch.from_numpy(np.stack([model.preprocess(a) for a in arrays]))
    with torch.no_grad():
        out = reference_model.get_image_features(pixel_values=pixels)
    reference = (out.pooler_output if hasattr(out, "pooler_output") else out).numpy()
    assert_close(model.encode_images(arrays), reference, what="random arrays")


# ---------------------------------------------------------------------------------------------------------------
# fork(): the library's worker threads do not survive it; a forked child computes without them (scoped threads)


def _encode_in_forked_child(queue):
    try:
        queue.put(clip_rs.load(TINY).encode_texts(["a photo of a cat"] * 8).tolist())
    except Exception as e:  # reported to the parent, which fails the test with it
        queue.put(f"{type(e).__name__}: {e}")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() here")
def test_a_forked_child_computes_like_its_parent(model):
    import multiprocessing
    import warnings

    expected = model.encode_texts(["a photo of a cat"] * 8)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Python 3.12+ warns about fork() with threads
        child = context.Process(target=_encode_in_forked_child, args=(queue,))
        child.start()
    child.join(60)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child hung")
    outcome = queue.get(timeout=10)
    assert not isinstance(outcome, str), outcome
    np.testing.assert_array_equal(np.asarray(outcome, dtype=np.float32), expected)
