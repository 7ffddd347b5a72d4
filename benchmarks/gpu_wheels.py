"""Ray as ONE carry for a lent GPU machine (torch there, no Ray, no registry; 64 MiB per call).

The ray wheel is 79 MB, mostly a Java jar that a Python job never loads: this writes a copy
without ``ray/jars``, ``ray/rllib`` and ``ray/llm`` (about 45 MB) beside the other wheels that
``../shared/tools/gpu-wheels.sh`` downloads, so one call installs everything. Run that script
first, then ``python3 benchmarks/gpu_wheels.py``; carry ``.whl/one`` and begin the command with
``python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/one/*.whl``.
"""

from __future__ import annotations

import glob
import shutil
import sys
import zipfile
from pathlib import Path

DROP = ("ray/jars/", "ray/rllib/", "ray/llm/")


def main() -> int:
    src = sorted(glob.glob("/tmp/gpu-wheels/ray-*.whl"))
    if not src:
        print("run ../shared/tools/gpu-wheels.sh first (it downloads the ray wheel to /tmp/gpu-wheels)", file=sys.stderr)
        return 2
    out = Path(".whl/one")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    dst = out / Path(src[-1]).name
    with zipfile.ZipFile(src[-1]) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            if info.filename.startswith(DROP):
                continue
            data = zin.read(info)
            if info.filename.endswith(".dist-info/RECORD"):
                data = b"".join(line + b"\n" for line in data.splitlines() if not line.decode().startswith(DROP))
            zout.writestr(info, data)
    for whl in glob.glob(".whl/b/*.whl"):
        shutil.copy(whl, out)
    total = sum(p.stat().st_size for p in out.iterdir())
    print(f"{out}: {len(list(out.iterdir()))} wheels, {total / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
