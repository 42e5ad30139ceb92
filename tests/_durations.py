"""Refresh ``tests/durations.json``: each test file's seconds, from a junit report of a run.

    pytest -n 3 --dist loadfile --junitxml=/tmp/suite.xml
    python tests/_durations.py /tmp/suite.xml

``conftest.pytest_collection_modifyitems`` starts the longest files first, so that the run
does not end on a long file alone on one worker while the others sit idle.
"""

from __future__ import annotations

import collections
import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

TABLE = Path(__file__).with_name("durations.json")


_SUBTEST = re.compile(r"\[(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS) /")
"""A schemathesis subtest (one operation of tests/api/test_openapi_contract.py)."""


def main(report: str) -> None:
    seconds: dict[str, float] = collections.defaultdict(float)
    for case in ET.parse(report).getroot().iter("testcase"):
        if _SUBTEST.search(case.get("name", "")):  # its time is inside its test's already
            continue
        module = case.get("classname", "").split(".")
        while module and not module[-1].startswith("test_"):  # a test class's name
            module.pop()
        if module:
            seconds["/".join(module) + ".py"] += float(case.get("time", 0))
    TABLE.write_text(json.dumps({k: round(v, 1) for k, v in sorted(seconds.items())}, indent=1) + "\n")
    print(f"{TABLE}: {len(seconds)} files, {sum(seconds.values()):.0f} s")


if __name__ == "__main__":
    main(sys.argv[1])
