"""Shared by the benchmark scripts (run from the repository root): bench/results.json, where
each adds or replaces its own section and leaves the others as they are, and `measure`.

`python3 scripts/bench_results.py measure OUT CMD...` runs CMD with its stdout to OUT and prints
{"seconds", "peak_rss_mib", "rc"} (the peak RSS of the child)."""
import datetime
import json
import os
import resource
import subprocess
import sys
import time

PATH = "bench/results.json"


def stamp():
    """The date (UTC) and short commit of a run, to head its section."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "commit": commit}


def merge(key, section, update=False):
    """Sets `key` to `section` (with `update`, merged over what the key held) in PATH."""
    out = json.load(open(PATH)) if os.path.exists(PATH) else {}
    out[key] = {**out.get(key, {}), **section} if update else section
    with open(PATH, "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")


def measure(out, cmd):
    """Runs `cmd` with its stdout to the file `out`: wall seconds, the child's peak RSS, exit code."""
    t = time.monotonic()
    with open(out, "wb") as f:
        rc = subprocess.run(cmd, stdout=f).returncode
    secs = time.monotonic() - t
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"seconds": round(secs, 3), "peak_rss_mib": round(rss, 1), "rc": rc}


if __name__ == "__main__" and sys.argv[1:2] == ["measure"]:
    print(json.dumps(measure(sys.argv[2], sys.argv[3:])))
