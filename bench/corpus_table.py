"""Print the corpus table: per technique, hubgate's verdict beside fickling's and modelscan's (standalone).

fickling and modelscan are run the way a user runs them on the file as named (fickling's scan_file /
scan_zip_archive; modelscan's ModelScan().scan, which picks scanners by file extension). "skipped" means
modelscan had no scanner for the name; "error" means the tool could not parse the file.

    .venv/bin/python bench/corpus_table.py [--markdown]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()

    from proxy.scan import scan_path
    from tests.corpus import build_all, fickling_standalone, modelscan_standalone

    with tempfile.TemporaryDirectory(prefix="hubgate-corpus-") as tmp:
        marker = Path(tmp) / "PWNED"
        samples = build_all(Path(tmp) / "files", marker)
        rows = []
        for s in samples:
            ours = scan_path(s.path).verdict.value
            rows.append(
                (
                    s.technique,
                    "hostile" if s.hostile else "benign",
                    ours,
                    fickling_standalone(s.path),
                    modelscan_standalone(s.path),
                )
            )
        assert not marker.exists(), "a payload executed"
    if args.markdown:
        print("| technique | kind | hubgate | fickling | modelscan |")
        print("|---|---|---|---|---|")
        for r in rows:
            print("| " + " | ".join(r) + " |")
    else:
        print(f"{'technique':42} {'kind':8} {'hubgate':8} {'fickling':9} {'modelscan':9}")
        for r in rows:
            print(f"{r[0]:42} {r[1]:8} {r[2]:8} {r[3]:9} {r[4]:9}")

    def missed(col: int) -> int:
        return sum(1 for r in rows if r[1] == "hostile" and r[col] not in ("unsafe", "error"))

    def false_alarms(col: int) -> int:
        return sum(1 for r in rows if r[1] == "benign" and r[col] != "clean")

    print()
    for col, name in ((2, "hubgate"), (3, "fickling"), (4, "modelscan")):
        print(f"{name:10} hostile missed: {missed(col):2}   benign not clean: {false_alarms(col):2}   of {len(rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
