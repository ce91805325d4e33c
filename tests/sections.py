#!/usr/bin/env python3
"""sections.py ROOT HEADER... -- each header's section map is right: every
function declared under a "/* ---- name.c" line is defined in name.c (a
file of the core, pool/ or testing/)."""
import glob
import os
import re
import sys

root = sys.argv[1]
defined = {}
for path in (glob.glob(os.path.join(root, "pool", "*.c")) +
             glob.glob(os.path.join(root, "pool", "worker", "*.c")) +
             glob.glob(os.path.join(root, "testing", "*.c"))):
    with open(path) as f:
        text = f.read()
    for m in re.finditer(r"^[A-Za-z_][^\n;(]*?\b(pp__\w+)\([^;]*?\)\s*\{",
                         text, re.M | re.S):
        defined.setdefault(m.group(1), set()).add(os.path.basename(path))

wrong = 0
for header in sys.argv[2:]:
    section = None
    with open(header) as f:
        for n, line in enumerate(f, 1):
            m = re.match(r"/\* ---- (\w+\.c)", line)
            if m:
                section = m.group(1)
                continue
            m = re.match(r"[A-Za-z_][^(;]*?\b(pp__\w+)\(", line)
            if m and section and "static inline" not in line:
                where = defined.get(m.group(1), set())
                if section not in where:
                    print("%s:%d: %s is under %s but defined in %s" %
                          (header, n, m.group(1), section,
                           ", ".join(sorted(where)) or "no file"))
                    wrong += 1
sys.exit(1 if wrong else 0)
