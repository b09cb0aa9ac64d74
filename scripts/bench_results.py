"""bench/results.json, shared by the benchmark scripts (run from the repository root): each adds
or replaces its own section and leaves the others as they are."""
import datetime
import json
import os
import subprocess

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
