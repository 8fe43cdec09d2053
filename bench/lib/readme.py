#!/usr/bin/env python3
"""readme.py RESULT.md README.md: put the latest benchmark table into the README,
between the `<!-- bench:start -->` and `<!-- bench:end -->` markers."""
import re
import sys
from pathlib import Path

res, readme = Path(sys.argv[1]), Path(sys.argv[2])
text = res.read_text()
title = text.splitlines()[0].lstrip("# ").strip()
body = text.split("\n", 1)[1].strip()
block = (
    "<!-- bench:start -->\n"
    f"Latest run ({title}; file [`{res.as_posix().split('bench/', 1)[-1]}`](bench/{res.as_posix().split('bench/', 1)[-1]})):\n\n"
    f"{body}\n"
    "<!-- bench:end -->"
)
r = readme.read_text()
if "<!-- bench:start -->" not in r:
    print("README has no bench markers; not updated", file=sys.stderr)
    sys.exit(0)
r = re.sub(r"<!-- bench:start -->.*?<!-- bench:end -->", lambda _: block, r, flags=re.S)
readme.write_text(r)
print(f"README benchmark section updated from {res}")
