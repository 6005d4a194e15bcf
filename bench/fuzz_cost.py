"""What a fresh database per generated case costs (issue 24 item 4).

Runs the FastAPI example's stateless fuzz test (``examples/fastapi/tests/test_bookshelf_fuzz.py``,
schemathesis cases for 11 operations, the editor logged in) with a fresh database per case and with
``BOOKSHELF_FUZZ_SHARED_DB=1`` (one database), alternating, and reads each run's request count and
test call time from the terminal summary. Prints a Markdown row and appends it to RESULTS.md.

    .venv/bin/python bench/fuzz_cost.py --rounds 3 --examples 60
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BOOKSHELF = ROOT / "examples" / "fastapi"


def run(examples: int, shared: bool) -> tuple[float, int, list[float]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "NOCRUD_", "BOOKSHELF_"))}
    env["BOOKSHELF_FUZZ_EXAMPLES"] = str(examples)
    if shared:
        env["BOOKSHELF_FUZZ_SHARED_DB"] = "1"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist",
         "tests/test_bookshelf_fuzz.py", "-k", "every_case"],
        cwd=BOOKSHELF, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    out = done.stdout
    match = re.search(r"^\s+([\d.]+)s\s+tests/test_bookshelf_fuzz.py::test_every_case\S* \((\w+), (\d+) requests\)", out, re.M)
    if not match or match[2] != "passed":
        raise SystemExit(f"run failed:\n{out[-3000:]}")
    handoffs = re.search(r"handoff p50 ([\d.]+) ms", out)
    return float(match[1]), int(match[3]), [float(handoffs[1])] if handoffs else []


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--examples", type=int, default=60)
    args = parser.parse_args()
    fresh, shared, p50 = [], [], []
    requests = {}
    for _ in range(args.rounds):
        for mode in ("fresh", "shared"):
            seconds, count, handoff = run(args.examples, mode == "shared")
            (shared if mode == "shared" else fresh).append(seconds)
            requests[mode] = count
            if mode == "fresh":
                p50 += handoff
    cases = requests["fresh"] - 1  # the /me check of the baked login
    f, s = statistics.median(fresh), statistics.median(shared)
    added = (f - s) / cases * 1000
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = (
        "\n## A fresh database per generated case (issue 24)\n\n"
        f"`.venv/bin/python bench/fuzz_cost.py --rounds {args.rounds} --examples {args.examples}`\n\n"
        f"Machine: `nproc` {os.cpu_count()}, Linux {platform.release()}, Python {platform.python_version()}, {when}\n\n"
        "FastAPI example, stateless schemathesis cases for 11 operations as the editor, `-p no:xdist`;"
        " medians of the test's call time over the rounds, alternating modes.\n\n"
        "| mode | cases | test time | cases/s | added per case | handoff p50 |\n|---|---|---|---|---|---|\n"
        f"| fresh database per case | {cases} | {f:.2f} s | {cases / f:.0f} | {added:.1f} ms | "
        f"{statistics.median(p50) if p50 else float('nan'):.2f} ms |\n"
        f"| one database (`BOOKSHELF_FUZZ_SHARED_DB=1`) | {requests['shared'] - 1} | {s:.2f} s | "
        f"{(requests['shared'] - 1) / s:.0f} | - | - |\n"
    )
    print(text)
    with (ROOT / "bench" / "RESULTS.md").open("a") as results:
        results.write(text)


if __name__ == "__main__":
    main()
