"""The Prometheus alert rules (deploy/prometheus/alerts.yml) pass `promtool check rules` (Debian's
`prometheus` package ships promtool; the test is skipped where it is not installed), and each has a
line in the README's runbook; `promtool test rules` runs their unit tests (alerts_test.yml).
tests/console/test_alert_metrics.py checks the series they read."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
#: The README heading of the runbook: one line per alert.
RUNBOOK_HEADING = "#### Alert runbook"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed (apt-get install prometheus)")
def test_the_alert_rules_pass_promtool_check_rules() -> None:
    result = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 6 rules found" in result.stdout


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed (apt-get install prometheus)")
def test_each_alert_fires_on_its_situation_and_not_on_its_look_alike() -> None:
    # deploy/prometheus/alerts_test.yml: synthetic series (a campaign waiting for its send window, a
    # paused one, one making progress must not page as stalled), checked by `promtool test rules`.
    result = subprocess.run(["promtool", "test", "rules", str(RULES.with_name("alerts_test.yml"))],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def rules() -> list[dict[str, Any]]:
    """Every alert rule of the file, in order."""
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"]]


def runbook() -> str:
    """The README's alert runbook section (from its heading to the next heading)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(RUNBOOK_HEADING)
    end = text.find("\n#", start + len(RUNBOOK_HEADING))
    return text[start:end if end > 0 else len(text)]


def test_every_alert_has_a_line_in_the_readme_runbook() -> None:
    section = runbook()
    names = [rule["alert"] for rule in rules()]
    assert len(names) == 6
    missing = [name for name in names if f"`{name}`" not in section]
    assert not missing, f"README's {RUNBOOK_HEADING!r} lacks {missing}"


def test_every_alert_rule_names_a_summary_a_runbook_line_and_a_severity() -> None:
    for rule in rules():
        assert rule["labels"]["severity"] in {"page", "ticket"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["runbook"], rule["alert"]
