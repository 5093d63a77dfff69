"""Where a benchmark ran: the CPU model and the extensions that decide the kernels' speed, read from /proc/cpuinfo as
`clip bench` reads them, and the cores this process may use. Shared by the benchmark scripts."""
import os

REPORTED_FLAGS = ["avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_bf16", "avx512_vnni", "avx512_fp16",
                  "amx_tile", "amx_bf16", "amx_int8"]


def cpu_description():
    """(model name, [reported flags present])."""
    try:
        info = open("/proc/cpuinfo").read()
    except OSError:
        return "unknown", []
    fields = {}
    for line in info.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    present = set(fields.get("flags", "").split())
    return fields.get("model name", "unknown"), [f for f in REPORTED_FLAGS if f in present]


def usable_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def cpu_line():
    model, flags = cpu_description()
    return f"{model} [{' '.join(flags)}], {usable_cores()} cores"
