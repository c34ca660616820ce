#!/usr/bin/env python3
"""Lint: no cycle between the modules of a crate, and no source file over 600 lines of code.

Usage: check-module-graph.py [ROOT]     check every crate under ROOT (default: the repository)
       check-module-graph.py --self-test

A crate is a directory of ROOT with a `src/` directory. Its modules are its files:
`src/lib.rs` or `src/main.rs` is the crate root, `src/a.rs` and `src/a/mod.rs` are `a`,
`src/a/b.rs` is `a::b`. `src/bin/` (separate binaries) is not looked at, and inline
`mod x { .. }` blocks count as part of their file.

What is an edge A -> B (module A names module B or an item defined in B):
- a path starting with `crate::`, `super::` or `self::`, in a `use` statement (braces
  expanded) or in code: it goes to the deepest module the path names (`crate::a::b::Item`
  is `a::b` if that module exists, else `a`). So a child's `use super::Item` is an edge to
  its parent, and `super::sibling::Item` one to the sibling.
- a path starting with the name of a child module of A (`child::f()`, `use child::X`).
- a `pub use` re-export counts only if the module's own code names what it re-exports (a
  directory's `mod.rs` re-exporting its children is not a dependency of it); `mod x;`
  declarations are not edges.

What is ignored: comments (doc comments included, so doc links are not edges), string and
character literals, `#[cfg(test)] mod .. { .. }` blocks, modules declared `#[cfg(test)]`
(test support files), and paths to other crates (`use std::..`, `use vfnvme_spec::..`).
The parse is textual (no macro expansion, no name resolution beyond the above): a path
built by a macro, or a method called on a type of another module, is not seen.

Lines of code: the lines of a file that hold code once comments, blank lines and
`#[cfg(test)] mod` blocks are removed. Test support files are not measured.

Exits 1 with a message naming each cycle (every edge of it with the line that makes it)
and each file over the limit; 0 when there is nothing to report.
"""

import os
import re
import sys
import tempfile

MAX_LINES_OF_CODE = 600

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
PATH_IN_CODE = re.compile(r"(?<![\w:])((?:crate|super|self|" + IDENT + r")(?:::" + IDENT + r")+)")
USE_STATEMENT = re.compile(r"(?<![\w:])(pub(?:\([^)]*\))?\s+)?use\s+([^;]*);", re.S)
MOD_DECLARATION = re.compile(r"((?:#\[[^\]]*\]\s*)*)(?:pub(?:\([^)]*\))?\s+)?mod\s+(" + IDENT + r")\s*;")
TEST_MOD_BLOCK = re.compile(r"#\[cfg\(test\)\]\s*(?:#\[[^\]]*\]\s*)*(?:pub(?:\([^)]*\))?\s+)?mod\s+" + IDENT + r"\s*\{")


def strip_comments_and_literals(text):
    """The text with comments and literals blanked out; newlines are kept, so line numbers hold."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    out.append("\n" if text[i] == "\n" else "")
                    i += 1
        elif c in "rb" and re.match(r"(?:br|r)#*\"", text[i:i + 260]) and not re.match(r"\w", text[i - 1:i] or " "):
            m = re.match(r"(?:br|r)(#*)\"", text[i:])
            close = '"' + m.group(1)
            end = text.find(close, i + m.end())
            end = n if end < 0 else end + len(close)
            out.append('""' + "\n" * text.count("\n", i, end))
            i = end
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j + 1
        elif c == "'":
            m = re.match(r"'(?:\\(?:x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]+\}|.)|[^\\'])'", text[i:])
            if m:
                out.append("' '")
                i += m.end()
            else:  # a lifetime
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def blank_test_blocks(code):
    """`code` with every `#[cfg(test)] mod x { .. }` block blanked (newlines kept)."""
    while True:
        m = TEST_MOD_BLOCK.search(code)
        if not m:
            return code
        depth, j = 1, m.end()
        while j < len(code) and depth:
            depth += {"{": 1, "}": -1}.get(code[j], 0)
            j += 1
        code = code[:m.start()] + re.sub(r"[^\n]", " ", code[m.start():j]) + code[j:]


def expand_use_tree(tree):
    """`a::{b, c::{d, e as f}}` -> ['a::b', 'a::c::d', 'a::c::e'] (renames dropped)."""
    tree = re.sub(r"\s+", " ", tree).strip()
    if "{" not in tree:
        return [re.sub(r"\s+as\s+\w+$", "", tree).strip()]
    head, rest = tree.split("{", 1)
    body = rest[: rest.rfind("}")]
    parts, depth, start = [], 0, 0
    for k, ch in enumerate(body):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(body[start:k])
            start = k + 1
    parts.append(body[start:])
    paths = []
    for part in filter(str.strip, parts):
        for sub in expand_use_tree(part):
            paths.append(head.rstrip(":").rstrip() + "::" + sub if head.strip() else sub)
    return paths


class Crate:
    def __init__(self, name, src):
        self.name = name
        self.files = {}  # module path (tuple) -> file
        for directory, dirs, files in os.walk(src):
            if os.path.relpath(directory, src) == "bin":
                dirs[:] = []
                continue
            dirs.sort()
            for f in sorted(files):
                if f.endswith(".rs"):
                    path = os.path.join(directory, f)
                    rel = os.path.relpath(path, src)[:-3].split(os.sep)
                    if rel[-1] in ("mod", "lib", "main") and (rel[-1] == "mod" or len(rel) == 1):
                        rel = rel[:-1]
                    self.files[tuple(rel)] = path
        self.code = {}
        self.test_only = set()
        for module, path in self.files.items():
            with open(path, encoding="utf-8") as f:
                self.code[module] = blank_test_blocks(strip_comments_and_literals(f.read()))
        for module, code in self.code.items():
            for attrs, child in MOD_DECLARATION.findall(code):
                if "cfg(test)" in attrs.replace(" ", ""):
                    self.test_only.add(module + (child,))
        # a module under a test-only one is test-only too
        self.modules = {m for m in self.files if not any(m[: len(t)] == t for t in self.test_only)}

    def children(self, module):
        return {m[-1] for m in self.modules if len(m) == len(module) + 1 and m[:-1] == module}

    def resolve(self, module, path):
        """The module `path`, written in `module`, points into; None for other crates."""
        segments = path.split("::")
        if segments[0] == "crate":
            base, segments = (), segments[1:]
        elif segments[0] in ("super", "self"):
            base = module
            while segments and segments[0] in ("super", "self"):
                if segments.pop(0) == "super":
                    base = base[:-1]
        elif segments[0] in self.children(module):
            base = module
        else:
            return None
        target = base
        for segment in segments:
            if target + (segment,) in self.modules:
                target = target + (segment,)
            else:
                break
        return target

    def edges(self):
        """{module: {target: (line number, line text)}}: the first line making each edge."""
        result = {m: {} for m in self.modules}
        for module in self.modules:
            code = self.code[module]
            lines = code.split("\n")
            with open(self.files[module], encoding="utf-8") as f:
                source_lines = f.read().split("\n")

            def add(target, offset):
                if target is None or target == module or target in result[module]:
                    return
                number = code.count("\n", 0, offset) + 1
                result[module][target] = (number, source_lines[number - 1].strip())

            uses = list(USE_STATEMENT.finditer(code))
            body = code
            for m in reversed(uses):
                body = body[: m.start()] + re.sub(r"[^\n]", " ", m.group(0)) + body[m.end():]
            for m in uses:
                for path in expand_use_tree(m.group(2)):
                    name = path.split("::")[-1]
                    if name in ("self", "*"):
                        path = path.rsplit("::", 1)[0]
                        name = path.split("::")[-1]
                    reexport_only = m.group(1) and not re.search(r"(?<![\w])" + re.escape(name) + r"(?!\w)", body)
                    if not reexport_only:
                        add(self.resolve(module, path), m.start())
            for m in PATH_IN_CODE.finditer(body):
                add(self.resolve(module, m.group(1)), m.start())
            del lines
        return result

    def lines_of_code(self, module):
        return sum(1 for line in self.code[module].split("\n") if line.strip())


def name(module):
    return "::".join(module) or "crate root"


def strongly_connected(edges):
    index, low, stack, on_stack, groups = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return groups


def one_cycle(edges, group):
    """A shortest cycle through the first module of `group`, as a list of modules."""
    start, members = group[0], set(group)
    paths, seen = {start: [start]}, {start}
    frontier = [start]
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(edges[v]):
                if w == start:
                    return paths[v] + [start]
                if w in members and w not in seen:
                    seen.add(w)
                    paths[w] = paths[v] + [w]
                    following.append(w)
        frontier = following
    return group + [start]


def check(root):
    """Problems found under `root`, as messages."""
    problems = []
    for entry in sorted(os.listdir(root)):
        src = os.path.join(root, entry, "src")
        if entry.startswith(".") or entry in ("build", "target-dir") or not os.path.isdir(src):
            continue
        crate = Crate(entry, src)
        edges = crate.edges()
        for group in strongly_connected(edges):
            cycle = one_cycle(edges, group)
            lines = [f"{entry}: module cycle {' -> '.join(name(m) for m in cycle)}"]
            for a, b in zip(cycle, cycle[1:]):
                number, text = edges[a][b]
                path = os.path.relpath(crate.files[a], root)
                lines.append(f"    {name(a)} -> {name(b)}: {path}:{number}: {text}")
            problems.append("\n".join(lines))
        for module in sorted(crate.modules):
            count = crate.lines_of_code(module)
            if count > MAX_LINES_OF_CODE:
                path = os.path.relpath(crate.files[module], root)
                problems.append(
                    f"{path}: {count} lines of code (tests and comments excluded), more than "
                    f"{MAX_LINES_OF_CODE}: split it by concern"
                )
    return problems


def self_test():
    files = {
        "demo/src/lib.rs": "mod a;\nmod b;\npub use a::Thing;\n",
        "demo/src/a/mod.rs": (
            "//! Names `b::Other` in a comment only: not an edge.\n"
            "mod child;\nuse child::helper;\npub struct Thing;\n"
            "pub fn f() -> u32 { helper() }\n"
            "#[cfg(test)]\nmod tests {\n    use crate::b::Other;\n}\n"
        ),
        "demo/src/a/child.rs": "use super::Thing;\npub fn helper() -> u32 { let _ = \"super::x\"; 1 }\n",
        "demo/src/b.rs": "use std::fmt;\npub struct Other;\n" + "fn g() {}\n" * (MAX_LINES_OF_CODE + 1),
    }
    with tempfile.TemporaryDirectory() as root:
        for path, text in files.items():
            os.makedirs(os.path.dirname(os.path.join(root, path)), exist_ok=True)
            with open(os.path.join(root, path), "w", encoding="utf-8") as f:
                f.write(text)
        problems = check(root)
        cycles = [p for p in problems if "module cycle" in p]
        long_files = [p for p in problems if "lines of code" in p]
        assert len(cycles) == 1 and "a -> a::child -> a" in cycles[0], problems
        assert "demo/src/a/child.rs:1: use super::Thing;" in cycles[0], cycles[0]
        assert "demo/src/a/mod.rs:3: use child::helper;" in cycles[0], cycles[0]
        assert len(long_files) == 1 and long_files[0].startswith("demo/src/b.rs:"), problems
        # importing the item from a leaf instead of the parent breaks the cycle
        with open(os.path.join(root, "demo/src/a/child.rs"), "w", encoding="utf-8") as f:
            f.write("pub fn helper() -> u32 { 1 }\n")
        assert not [p for p in check(root) if "module cycle" in p], check(root)
    print("check-module-graph: self-test passed")


def main(argv):
    if argv[1:] == ["--self-test"]:
        self_test()
        return 0
    root = argv[1] if len(argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    problems = check(root)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"check-module-graph: {len(problems)} problem(s); modules import downward only "
              "(children import siblings by path, not items of their parent)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
