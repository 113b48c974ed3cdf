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
    """The library's files, test modules (`tests.rs`, and `loom_models.rs`
    for the loom models) left out."""
    for d, _, fs in os.walk(ROOT):
        for f in sorted(fs):
            if f.endswith(".rs") and f not in ("tests.rs", "loom_models.rs"):
                yield os.path.join(d, f)


def strip(src):
    """Code only: comments, string and char literals blanked, test modules
    (`#[cfg(test)]`/`#[cfg(all(test, ..))]` `mod ..`, inline or not) cut
    out by matching their braces."""
    out, i, n = [], 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
        elif src.startswith("/*", i):
            j = src.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            out.append('""')
            i = j + 1
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", src[i:i + 4]):
            m = re.match(r"'(\\.|[^\\'])'", src[i:i + 4])
            out.append("' '")
            i += len(m.group(0))
        else:
            out.append(c)
            i += 1
    code = "".join(out)
    pat = re.compile(r"#\[cfg\([^\]]*\btest\b[^\]]*\)\]\s*(pub(\(crate\))?\s+)?mod\s+\w+\s*(;|\{)")
    while True:
        m = pat.search(code)
        if not m:
            return code
        end = m.end()
        if m.group(3) == "{":
            depth = 1
            while end < len(code) and depth:
                depth += {"{": 1, "}": -1}.get(code[end], 0)
                end += 1
        code = code[: m.start()] + code[end:]


def reexports(mods):
    """Names the crate root re-exports (`pub use m::{a, b}` in lib.rs), by
    the module that defines them: `crate::Work` is an import of `pool::work`."""
    with open(os.path.join(ROOT, "lib.rs")) as f:
        src = strip(f.read())
    out = {}
    for m in re.finditer(r"pub use ([a-z_:]+)::(\{[^}]*\}|\w+)\s*;", src):
        mod = resolve(m.group(1).split("::"), mods)
        for name in re.findall(r"\w+", m.group(2)):
            out[name] = mod
    return out


def names(src, mods, here, roots):
    """The modules of `mods` a file of module `here` names through
    `crate::` (or `super::`)."""
    out = set()
    src = strip(src)
    parent = here.rsplit("::", 1)[0] if "::" in here else "crate"
    src = re.sub(r"\bsuper::", "crate::" + ("" if parent == "crate" else parent + "::"), src)
    src = src.replace("crate::crate::", "crate::")

    def add(parts):
        if parts and parts[0] in roots and roots[parts[0]]:
            out.add(roots[parts[0]])
        else:
            out.add(resolve(parts, mods) or ("crate" if parts else None))

    # `use crate::{a, b::c, d::{e, f}}`: each item.
    for g in re.finditer(r"crate::\{((?:[^{}]|\{[^{}]*\})*)\}", src):
        body = g.group(1)
        for item in re.finditer(r"([\w:]+)(?:::\{([^{}]*)\})?", body):
            head = [p for p in item.group(1).split("::") if p]
            if item.group(2):
                for sub in re.findall(r"\w+", item.group(2)):
                    add(head + [sub])
            elif head:
                add(head)
    for m in re.finditer(r"crate((?:::[A-Za-z_][A-Za-z0-9_]*)+)", src):
        add(m.group(1).strip(":").split("::"))
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
    roots = reexports(mods)
    g = {}
    for m, p in paths.items():
        with open(p) as f:
            deps = names(f.read(), mods, m, roots)
        # A module naming itself is not an import; naming one of its own
        # children is (`pool` names `pool::pwq`), so a child that names its
        # parent back closes a circle. `crate` is lib.rs (the root's own
        # items, like `crate::nr_cpus`).
        g[m] = {d for d in deps if d != m}
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


# The layer of crates/cmwq/src/LAYERS.md that holds the essential knot.
KNOT_LAYER = 3


def main():
    g = graph()
    circles = [c for c in sccs(g) if len(c) > 1]
    edges = sum(len(v) for v in g.values())
    print(f"{len(g)} files, {edges} imports between them")
    for c in sorted(circles, key=len, reverse=True):
        print(f"circle of {len(c)}: {' '.join(c)}")
    lay = layers()
    if not lay:
        print("no layers in crates/cmwq/src/LAYERS.md")
        return 1 if "--check" in sys.argv else 0
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
        figs = [re.search(r"largest circle:\s*(\d+)", text), re.search(r"upward imports:\s*(\d+)", text)]
        if not all(figs):
            print("FAIL: LAYERS.md must record 'largest circle: N' and 'upward imports: N'")
            return 1
        max_circle, max_upward = (int(f.group(1)) for f in figs)
        largest = max((len(c) for c in circles), default=1)
        bad = False
        if missing:
            print("FAIL: modules missing from LAYERS.md")
            bad = True
        if largest > max_circle:
            print(f"FAIL: a circle of {largest} files, LAYERS.md allows {max_circle}")
            bad = True
        # The knot is the one layer whose modules may name each other in a
        # circle; a circle anywhere else fails, whatever its size.
        knot = {m for m in g if layer_of(m, lay) == KNOT_LAYER}
        for c in circles:
            if not set(c) <= knot:
                print(f"FAIL: a circle outside the knot: {' '.join(c)}")
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
