"""Where a benchmark ran: the CPU model and the extensions that decide the kernels' speed, read from /proc/cpuinfo as
`clip bench` reads them (plus a few it does not report: AVX-VNNI, AMX-FP16), its vendor, family and model numbers
(which tell, say, Zen 4 from Zen 5 when the model name is generic), cache sizes, and the cores this process may use.
Shared by the benchmark scripts; `machine_info()` is the JSON form, `machine_lines()` the printed header."""
import os

REPORTED_FLAGS = ["avx2", "fma", "avx_vnni", "avx512f", "avx512bw", "avx512vl", "avx512_bf16", "avx512_vnni",
                  "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "amx_fp16"]


def _cpuinfo_fields():
    try:
        info = open("/proc/cpuinfo").read()
    except OSError:
        return {}
    fields = {}
    for line in info.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_description():
    """(model name, [reported flags present])."""
    fields = _cpuinfo_fields()
    if not fields:
        return "unknown", []
    present = set(fields.get("flags", "").split())
    return fields.get("model name", "unknown"), [f for f in REPORTED_FLAGS if f in present]


def usable_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def cache_sizes():
    """{'L1d': '48K', 'L2': '2048K', 'L3': '266240K'} for CPU 0, from sysfs (per core or shared, as the kernel says)."""
    sizes = {}
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        entries = sorted(e for e in os.listdir(base) if e.startswith("index"))
    except OSError:
        return sizes
    for entry in entries:
        try:
            read = lambda name: open(os.path.join(base, entry, name)).read().strip()  # noqa: E731
            level, kind, size = read("level"), read("type"), read("size")
        except OSError:
            continue
        if kind == "Instruction":
            continue
        sizes[f"L{level}" + ("d" if kind == "Data" else "")] = size
    return sizes


def machine_info():
    """The machine as a JSON-ready dict."""
    fields = _cpuinfo_fields()
    model, flags = cpu_description()
    return {"cpu": model, "cpu_flags": flags, "vendor": fields.get("vendor_id", "unknown"),
            "cpu_family": fields.get("cpu family"), "cpu_model": fields.get("model"), "caches": cache_sizes(),
            "cores": usable_cores(), "logical_cpus": os.cpu_count()}


def cpu_line():
    model, flags = cpu_description()
    return f"{model} [{' '.join(flags)}], {usable_cores()} cores"


def machine_lines():
    """Two lines for the top of a table: the CPU with its flags, then vendor/family/model, caches and cores."""
    info = machine_info()
    caches = " ".join(f"{k} {v}" for k, v in info["caches"].items())
    return [f"cpu: {info['cpu']} [{' '.join(info['cpu_flags']) or 'none of the reported flags'}]",
            f"     {info['vendor']} family {info['cpu_family']} model {info['cpu_model']}; {caches}; "
            f"{info['cores']} usable cores of {info['logical_cpus']}"]
