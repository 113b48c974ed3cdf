#!/usr/bin/env python3
"""The library's import graph, by file: which `crate::` modules each file of
crates/cmwq/src names (in `use` lines and in paths), its strongly connected
components (circles), and the imports that run upward in the layer order of
crates/cmwq/src/LAYERS.md.

    .ci/imports.py            print circles and upward imports
    .ci/imports.py --check    fail if a module is missing from LAYERS.md, or
                              the largest circle or the number of upward
                              imports is above the figures LAYERS.md records
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crates", "cmwq", "src")


def module_of(path):
    rel = os.path.relpath(path, ROOT)[:-3]
    parts = rel.split(os.sep)
    if parts[-1] in ("mod", "lib"):
        parts = parts[:-1]
    return "::".join(parts) or "crate"


def files():
    for d, _, fs in os.walk(ROOT):
        for f in sorted(fs):
            if f.endswith(".rs"):
                yield os.path.join(d, f)


def strip(src):
    # Comments and string literals do not import anything; test modules
    # (`#[cfg(test)] mod tests { .. }` at the end of a file) are kept out.
    src = re.sub(r"//[^\n]*", "", src)
    src = re.sub(r'"(\\.|[^"\\])*"', '""', src)
    m = re.search(r"#\[cfg\(test\)\]\s*mod tests\b", src)
    if m:
        src = src[: m.start()]
    return src


def names(src, mods):
    """The modules of `mods` a file names through `crate::`."""
    out = set()
    src = strip(src)
    # Expand `use crate::{a, b::c}` groups.
    for g in re.finditer(r"crate::\{([^}]*(\{[^}]*\}[^}]*)*)\}", src):
        for item in re.split(r",", re.sub(r"\{[^}]*\}", "", g.group(1))):
            item = item.strip()
            if item:
                out.add(resolve(item.split("::"), mods))
    for m in re.finditer(r"crate((?:::[A-Za-z_][A-Za-z0-9_]*)+)", src):
        out.add(resolve(m.group(1).strip(":").split("::"), mods))
    out.discard(None)
    return out


def resolve(parts, mods):
    # The longest module path that is a file's module.
    for n in range(len(parts), 0, -1):
        cand = "::".join(parts[:n])
        if cand in mods:
            return cand
    return None


def graph():
    paths = {module_of(p): p for p in files()}
    mods = set(paths)
    g = {}
    for m, p in paths.items():
        with open(p) as f:
            deps = names(f.read(), mods)
        # A module's own children and itself are not imports.
        g[m] = {d for d in deps if d != m and not d.startswith(m + "::") and d != "crate"}
    return g


def sccs(g):
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            c = []
            while True:
                w = stack.pop()
                on.discard(w)
                c.append(w)
                if w == v:
                    break
            out.append(sorted(c))

    sys.setrecursionlimit(10000)
    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def layers():
    """Layer of each module from LAYERS.md: lines `N. name name ...`."""
    lay = {}
    path = os.path.join(ROOT, "LAYERS.md")
    if not os.path.exists(path):
        return lay
    for line in open(path):
        m = re.match(r"^\s*(\d+)\.\s+(.*)$", line)
        if not m:
            continue
        for name in re.findall(r"`([a-z_:]+)`", m.group(2)):
            lay[name] = int(m.group(1))
    return lay


def layer_of(m, lay):
    parts = m.split("::")
    for n in range(len(parts), 0, -1):
        k = "::".join(parts[:n])
        if k in lay:
            return lay[k]
    return None


def main():
    g = graph()
    circles = [c for c in sccs(g) if len(c) > 1]
    edges = sum(len(v) for v in g.values())
    print(f"{len(g)} files, {edges} imports between them")
    for c in sorted(circles, key=len, reverse=True):
        print(f"circle of {len(c)}: {' '.join(c)}")
    lay = layers()
    if not lay:
        return 0
    upward = []
    missing = sorted(m for m in g if layer_of(m, lay) is None and m != "crate")
    for m, deps in sorted(g.items()):
        lm = layer_of(m, lay)
        for d in sorted(deps):
            ld = layer_of(d, lay)
            if lm is None or ld is None:
                continue
            if ld > lm:
                upward.append((m, d, lm, ld))
    print(f"{len(upward)} upward imports (a module naming one of a higher layer):")
    for m, d, lm, ld in upward:
        print(f"  {m} ({lm}) -> {d} ({ld})")
    if missing:
        print("not in LAYERS.md:", " ".join(missing))
    if "--check" in sys.argv:
        text = open(os.path.join(ROOT, "LAYERS.md")).read()
        max_circle = int(re.search(r"largest circle: (\d+)", text).group(1))
        max_upward = int(re.search(r"upward imports: (\d+)", text).group(1))
        largest = max((len(c) for c in circles), default=1)
        bad = False
        if missing:
            print("FAIL: modules missing from LAYERS.md")
            bad = True
        if largest > max_circle:
            print(f"FAIL: a circle of {largest} files, LAYERS.md allows {max_circle}")
            bad = True
        if len(upward) > max_upward:
            print(f"FAIL: {len(upward)} upward imports, LAYERS.md allows {max_upward}")
            bad = True
        if not bad:
            print(f"ok: largest circle {largest} (allowed {max_circle}), "
                  f"{len(upward)} upward imports (allowed {max_upward})")
        return 1 if bad else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
