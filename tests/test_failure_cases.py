"""Every case of the failure-case table (tests/failure_cases.py) as a test of the slow tier."""

import pytest

from tests.failure_cases import CASES, run_case

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_failure_case(case):
    row = run_case(case)
    assert row["result"] == "PASS", row
