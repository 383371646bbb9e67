"""Django's test runner, also writing each test's outcome to DJANGO_SUITE_RESULTS (JSON)."""

from __future__ import annotations

import json
import os
import traceback
import unittest
from typing import Any

from django.test.runner import DiscoverRunner


def _reason(err: Any) -> str:
    """The exception's last line, e.g. `OperationalError: (1298, 'Unknown ... time zone')`."""
    if isinstance(err, str):
        return err.strip().splitlines()[-1] if err.strip() else ""
    return traceback.format_exception_only(err[0], err[1])[-1].strip()


class RecordingResult(unittest.TextTestResult):
    """Records `id -> [outcome, reason]`; a failing subtest fails its test."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outcomes: dict[str, list[str]] = {}

    def record(self, test: Any, outcome: str, reason: str = "") -> None:
        if self.outcomes.get(test.id(), [""])[0] not in ("failure", "error"):
            self.outcomes[test.id()] = [outcome, reason]

    def addSuccess(self, test: Any) -> None:
        super().addSuccess(test)
        self.record(test, "success")

    def addFailure(self, test: Any, err: Any) -> None:
        super().addFailure(test, err)
        self.record(test, "failure", _reason(err))

    def addError(self, test: Any, err: Any) -> None:
        super().addError(test, err)
        self.record(test, "error", _reason(err))

    def addSkip(self, test: Any, reason: str) -> None:
        super().addSkip(test, reason)
        self.record(test, "skipped", reason)

    def addExpectedFailure(self, test: Any, err: Any) -> None:
        super().addExpectedFailure(test, err)
        self.record(test, "expected failure")

    def addUnexpectedSuccess(self, test: Any) -> None:
        super().addUnexpectedSuccess(test)
        self.record(test, "unexpected success")

    def addSubTest(self, test: Any, subtest: Any, err: Any) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:
            failed = issubclass(err[0], test.failureException) if not isinstance(err, str) else True
            self.record(test, "failure" if failed else "error", _reason(err))


class RecordingRunner(DiscoverRunner):
    def get_resultclass(self) -> Any:
        return super().get_resultclass() or RecordingResult

    def suite_result(self, suite: Any, result: Any, **kwargs: Any) -> Any:
        outcomes = getattr(result, "outcomes", {})
        with open(os.environ["DJANGO_SUITE_RESULTS"], "w", encoding="utf-8") as file:
            json.dump(outcomes, file, indent=0, sort_keys=True)
        return super().suite_result(suite, result, **kwargs)
