"""Summarise a finished ``mutmut run`` (``make mutate``): the kill rate per module and overall, and
every surviving mutant by name, skipping those listed as equivalent in ``tools/equivalent_mutants.txt``
(one mutant name per line, then ``#`` and the reason).

Counts come from mutmut's own result files (``mutants/**/*.py.meta``), classified by mutmut's
own table: killed, timeout and "caught by type check" count as killed; survived, "no tests" and
suspicious as survivors; skipped and not checked mutants are left out.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from mutmut.stats import status_by_exit_code

ROOT = Path(__file__).resolve().parent.parent
KILLED = {"killed", "timeout", "caught by type check", "segfault"}
SURVIVED = {"survived", "no tests", "suspicious"}


def equivalents() -> dict[str, str]:
    path = ROOT / "tools" / "equivalent_mutants.txt"
    found: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            name, _, reason = line.partition("#")
            if name.strip() and not line.startswith("#"):
                found[name.strip()] = reason.strip()
    return found


def main() -> int:
    metas = sorted((ROOT / "mutants").rglob("*.py.meta"))
    if not metas:
        print("no mutmut results: run `make mutate` first")
        return 1
    equivalent = equivalents()
    killed: Counter[str] = Counter()
    total: Counter[str] = Counter()
    survivors: list[str] = []
    killed_equivalents: list[str] = []
    left_out = 0
    not_run = 0
    for meta in metas:
        module = meta.name.removesuffix(".meta")
        for name, code in json.loads(meta.read_text()).get("exit_code_by_key", {}).items():
            status = status_by_exit_code[code]
            if status not in KILLED | SURVIVED:
                not_run += 1
                continue
            if name in equivalent:
                if status in KILLED:
                    killed_equivalents.append(name)
                left_out += 1
                continue
            total[module] += 1
            if status in KILLED:
                killed[module] += 1
            else:
                survivors.append(f"{name} ({status})")
    for module in sorted(total):
        print(f"{module:14} {killed[module]:5} of {total[module]:5} killed ({killed[module] / total[module]:.1%})")
    all_killed, all_total = sum(killed.values()), sum(total.values())
    print(f"{'overall':14} {all_killed:5} of {all_total:5} killed ({all_killed / max(1, all_total):.1%}); "
          f"{left_out} equivalent mutants left out; {not_run} not run")
    if killed_equivalents:
        print("listed as equivalent yet killed (take them off the list):", *killed_equivalents, sep="\n  ")
    print("survivors:", *survivors, sep="\n  ")
    return 0


if __name__ == "__main__":
    sys.exit(main())
