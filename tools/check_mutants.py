"""Apply each mutant the audit of issue 9 found surviving, one at a time, in a scratch copy of the
tree, and run the test meant to kill it there. Every test must fail on its mutant and pass on the
unmutated tree. Usage: ``.venv/bin/python tools/check_mutants.py [name ...]``.

The tree is copied (without ``.venv``) to a temporary directory and the tests run there with
``PYTHONPATH`` pointing at the copy, so the checkout itself is never modified.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    #: 1-based line in the current tree (re-anchored after the engine changes of issues 11 and 13;
    #: the audit's 0199c25 lines are in issue 9's table), the text it must contain, and its
    #: replacement. When the line moved, the one line that holds the text is used; a text found on
    #: no line or on several is reported, not applied.
    line: int
    old: str
    new: str
    tests: tuple[str, ...]


S = "tests/sending/test_attempt.py::"
CANCEL = S + "test_a_cancelled_campaigns_uncertain_batch_is_reconciled_never_resent_and_every_message_ends_final"
MUTANTS = [
    Mutant("cancel-resends", "dispatcher/sending/attempt.py", 105, "if self.claim.kind == ClaimKind.RECONCILE:",
           "if False:", (CANCEL,)),
    Mutant("cancel-leaves-unknown", "dispatcher/sending/attempt.py", 106, 'ledger.encode("cancelled"',
           'ledger.encode("unknown"',
           (CANCEL, S + "test_a_cancel_reconcile_whose_claim_was_taken_over_meanwhile_still_ends_every_message_final")),
    Mutant("already-used-rejected", "dispatcher/sending/attempt.py", 287, "if rejected.already_used:", "if False:",
           (S + "test_an_already_used_answer_to_a_resend_counts_as_sent_not_rejected",
            "tests/sending/test_dispatch_integration.py::"
            "test_with_client_id_uniqueness_on_a_resend_answered_already_used_counts_as_sent")),
    Mutant("give-up-fails-uncertain", "dispatcher/sending/attempt.py", 321,
           "uncertain = set(self.todo) if self.needs_reconcile else self.unknown",
           "uncertain = self.unknown",
           (S + "test_giving_up_on_an_uncertain_batch_leaves_its_messages_unknown_for_reconcile_not_failed",)),
    Mutant("give-up-fails-all", "dispatcher/sending/attempt.py", 321,
           "uncertain = set(self.todo) if self.needs_reconcile else self.unknown", "uncertain = set()",
           (S + "test_giving_up_on_an_uncertain_batch_leaves_its_messages_unknown_for_reconcile_not_failed",)),
    Mutant("retry-reposts-final", "dispatcher/sending/attempt.py", 82,
           'if i not in existing or existing[i].status == "unknown"]', "]",
           (S + "test_a_retry_posts_only_the_messages_without_a_final_record",)),
    Mutant("expiry-skips-reconcile", "dispatcher/sending/attempt.py", 167, "if self.needs_reconcile and self.todo:",
           "if False:", (S + "test_a_batch_whose_window_never_opens_is_reconciled_before_its_messages_expire",)),
    Mutant("no-pause-after-429", "dispatcher/sending/attempt.py", 123, "self.s.limiter.pause_until(", "(",
           (S + "test_a_429_pauses_the_lane_for_every_worker_until_its_reset",
            S + "test_a_429_on_the_list_endpoint_pauses_reconciling_for_every_worker")),
    Mutant("no-pause-at-remaining-0", "dispatcher/sending/attempt.py", 259,
           "self.s.limiter.observe(self.s.bulk_lane, self.s.client.rate_limits.get(\"POST /sms/bulk\"))", "pass",
           (S + "test_a_response_with_no_requests_remaining_pauses_the_lane_before_any_429",)),
    Mutant("reconcile-skips-limiter", "dispatcher/sending/attempt.py", 195,
           "wait = self.s.limiter.acquire(self.lane, 1, self.s.settings.max_slot_wait_s)", "wait = 0.0",
           (S + "test_reconciling_waits_for_the_list_endpoints_rate_limit",)),
    Mutant("headroom-over-limit", "dispatcher/sending/ratelimit.py", 26, "HEADROOM = 0.98", "HEADROOM = 1.05",
           ("tests/sending/test_ratelimit.py::test_four_processes_together_never_exceed_the_lane_rate",)),
]


def run_tests(tree: Path, tests: tuple[str, ...]) -> int:
    """Exit code of pytest over ``tests`` in ``tree``: 1 when one fails (the first failure stops it)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests]
    return subprocess.run(cmd, cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode


def locate(lines: list[str], mutant: Mutant) -> int | None:
    """The 0-based index of the line to mutate: the anchored line, else the only line holding the text."""
    if mutant.line <= len(lines) and mutant.old in lines[mutant.line - 1]:
        return mutant.line - 1
    holding = [i for i, line in enumerate(lines) if mutant.old in line]
    return holding[0] if len(holding) == 1 else None


def main(names: list[str]) -> int:
    chosen = [m for m in MUTANTS if not names or m.name in names]
    bad = 0
    with tempfile.TemporaryDirectory(prefix="mutants-") as scratch:
        tree = Path(scratch) / "tree"
        shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(".venv", ".git", "*_cache", "__pycache__",
                                                                  "mutants"))
        for mutant in chosen:
            target = tree / mutant.path
            original = target.read_text()
            lines = original.splitlines(keepends=True)
            index = locate(lines, mutant)
            if index is None:
                print(f"{mutant.name}: {mutant.path} holds {mutant.old!r} on no line, or on several")
                bad += 1
                continue
            if run_tests(tree, mutant.tests) != 0:
                print(f"{mutant.name}: its test fails on the unmutated tree")
                bad += 1
                continue
            lines[index] = lines[index].replace(mutant.old, mutant.new)
            target.write_text("".join(lines))
            try:
                code = run_tests(tree, mutant.tests)
            finally:
                target.write_text(original)
            verdict = "killed" if code == 1 else f"SURVIVED (pytest exit {code})"
            bad += code != 1
            print(f"{mutant.name}: {mutant.path}:{index + 1} {mutant.old!r} -> {mutant.new!r}: {verdict}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
