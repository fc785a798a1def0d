#!/usr/bin/env bash
# A wheelhouse for an offline GPU node whose Python already has a CUDA JAX (0.10 to 0.12).
#
# Where the network is (any OS; pip downloads wheels for the *target* Python):
#   benchmarks/offline_wheelhouse.sh [PYTHON_VERSION=3.11] [OUT=wheelhouse]
# copies OUT/ (plus this repository) to the node; there, with no network:
#   python -m pip install --no-index --find-links=wheelhouse --no-deps -r wheelhouse/requirements.txt
#   python -m pip install --no-index --find-links=wheelhouse --no-deps -e .   # setuptools from the wheelhouse
#   python train.py --config=configs/ddpm/quickstart.py --workdir=/tmp/qs
#
# The wheelhouse holds our dependencies and theirs, resolved against the pins of
# pyproject.toml for manylinux x86_64 (glibc 2.28+) and the target Python, less what the node's
# JAX already brings (jax, jaxlib, its CUDA plugins and nvidia-* wheels, numpy, scipy,
# ml_dtypes, opt_einsum): no JAX or CUDA wheel is in it. Measured 2026-12-03 for
# Python 3.11: 41 wheels, 51 MB (tensorstore 21 MB, scikit-learn 9 MB, pillow 7 MB).
set -euo pipefail
cd "$(dirname "$0")/.."
PYV="${1:-3.11}"
OUT="${2:-wheelhouse}"
PY="${PYTHON:-python3}"
# manylinux tags a glibc >= 2.28 x86_64 node accepts (jaxlib and tensorstore need 2.27+).
PLATFORMS=()
for tag in ${PLATFORM_TAGS:-manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 linux_x86_64}; do
  PLATFORMS+=(--platform "$tag")
done
mkdir -p "$OUT"
REPORT="$(mktemp)"
# 1. Resolve the light core for the target Python and platform (nothing is installed).
"$PY" -m pip install --quiet --dry-run --ignore-installed --report "$REPORT" \
  --python-version "$PYV" "${PLATFORMS[@]}" --only-binary=:all: \
  --target "$(mktemp -d)" .
# 2. Everything it needs but the JAX stack the node has, pinned.
"$PY" - "$REPORT" "$OUT/requirements.txt" <<'PYEOF'
import json, re, sys
report, out = sys.argv[1:]
skip = re.compile(r"^(jax|jaxlib|jax[-_]cuda.*|jax[-_]plugin.*|nvidia[-_].*|numpy|scipy|"
                  r"ml[-_]dtypes|opt[-_]einsum|diffusion)$", re.I)
pins = sorted(f"{i['metadata']['name']}=={i['metadata']['version']}"
              for i in json.load(open(report))["install"]
              if not skip.match(i["metadata"]["name"]))
open(out, "w").write("\n".join(pins) + "\n")
print(f"{len(pins)} packages -> {out}")
PYEOF
# 3. Their wheels for the target Python, without their dependencies (step 1 listed them).
"$PY" -m pip download --quiet --no-deps --dest "$OUT" -r "$OUT/requirements.txt" \
  --python-version "$PYV" "${PLATFORMS[@]}" --only-binary=:all:
# setuptools builds this repository's own package on the node (pip install -e .).
"$PY" -m pip download --quiet --no-deps --dest "$OUT" "setuptools>=68" \
  --python-version "$PYV" "${PLATFORMS[@]}" --only-binary=:all:
rm -f "$REPORT"
if ls "$OUT" | grep -Eiq '^(jax|jaxlib|nvidia)[-_]'; then
  echo "error: a JAX/CUDA wheel got into $OUT" >&2; exit 1
fi
echo "wheelhouse $OUT for Python $PYV: $(ls "$OUT"/*.whl | wc -l) wheels, $(du -sh "$OUT" | cut -f1)"
