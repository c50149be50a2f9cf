"""``make bench``: every benchmark, one after the other, each beside its baseline in the same run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = ["bench_preflight.py", "bench_sandbox.py", "bench_dispatch.py", "bench_webhook.py", "bench_scale.py",
           "bench_faults.py"]


def main() -> int:
    failed = 0
    for name in BENCHES:
        path = HERE / name
        if not path.exists():
            print(f"(skipping {name}: not present)")
            continue
        print(f"\n=== {name} ===", flush=True)
        failed |= subprocess.call([sys.executable, str(path), *sys.argv[1:]])
    return failed


if __name__ == "__main__":
    sys.exit(main())
