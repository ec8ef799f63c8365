"""Descriptor and subset files read as data: bounded, safe YAML whose errors name the file.

A file from someone else's registry must not make the reader allocate without end, run code or echo what
it holds: the text must be UTF-8 of bounded size, YAML is read with the safe loader (libyaml's when the
wheel has it: sensors re-read every descriptor on every tick), and the node tree is checked for depth,
size and alias use before any Python value is built.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import yaml

from coralord_dagster.errors import DescriptorError

# libyaml's loader when the wheel has it: sensors re-read every descriptor on every tick.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

#: Bounds on a descriptor or subset file. A file from someone else's registry must not make the reader
#: allocate without end: a YAML alias bomb ("billion laughs") is a few hundred bytes that expand to
#: billions of values, and everything downstream (validation, dumping, hashing) walks the expansion.
MAX_FILE_BYTES = 1 << 20
MAX_YAML_DEPTH = 64  # nested mappings/lists; libyaml alone allows 1000, deeper than Python recursion
MAX_YAML_NODES = 100_000  # values after expanding aliases
MAX_YAML_ALIASES = 100  # uses of '*anchor'


def read_text(path: Path, what: str) -> str:
    """The UTF-8 text of a descriptor or subset file; errors name the file and never echo its bytes."""
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise DescriptorError(f"{path}: cannot read {what} (not a regular file)")
        if st.st_size > MAX_FILE_BYTES:
            raise DescriptorError(f"{path}: {what} too large ({st.st_size} bytes, at most {MAX_FILE_BYTES})")
        with path.open("rb") as f:
            data = f.read(st.st_size + 1)  # read(MAX_FILE_BYTES) would allocate that much every time
            if len(data) > st.st_size:  # it grew meanwhile: still read only this far
                data += f.read(MAX_FILE_BYTES + 1 - len(data))
    except OSError as e:
        raise DescriptorError(f"{path}: cannot read {what} ({e.strerror or e})") from None
    if len(data) > MAX_FILE_BYTES:
        raise DescriptorError(f"{path}: {what} too large (more than {MAX_FILE_BYTES} bytes)")
    try:
        if b"\0" in data:  # UTF-16 of ASCII text is valid UTF-8 byte by byte, but full of NULs
            raise UnicodeDecodeError("utf-8", data, data.index(b"\0"), data.index(b"\0") + 1, "NUL byte")
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DescriptorError(
            f"{path}: line {line}: not UTF-8 text (binary, UTF-16 or Latin-1?); save the {what} as UTF-8"
        ) from None


def yaml_load(text: str, path: Path) -> Any:
    """Parse YAML ``text`` of ``path`` with libyaml's safe loader, within the bounds above.

    The document is composed first (libyaml shares an anchored node among its aliases, so a bomb is
    still small here), its nodes are counted as if expanded, and only then built into Python values.
    """
    # A character is 1 to 4 bytes: most texts need no encoding to be measured.
    if (
        len(text) > MAX_FILE_BYTES // 4
        and (size := len(text.encode("utf-8", "surrogatepass"))) > MAX_FILE_BYTES
    ):
        raise DescriptorError(f"{path}: file too large ({size} bytes, at most {MAX_FILE_BYTES})")
    loader = _LOADER(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        # Without a '*' the text holds no alias, and only its depth and size need a look (sensors
        # re-read every descriptor on every tick).
        if "*" in text:
            _check_yaml_bounds(node, path)
        else:
            _check_yaml_depth(node, path)
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise DescriptorError(f"{path}:{where}: invalid YAML ({problem}); fix the syntax") from None
    except (ValueError, OverflowError, RecursionError) as e:  # e.g. an integer of 5000 digits
        if isinstance(e, DescriptorError):
            raise
        raise DescriptorError(f"{path}: invalid YAML value ({one_line(e)}); fix the value") from None
    finally:
        loader.dispose()


def _check_yaml_bounds(root: yaml.Node, path: Path) -> None:
    """Refuse a composed document that nests deeper than, or expands to more nodes or alias uses than,
    the bounds allow. Iterative, and each distinct node is visited once: a bomb is refused at once."""
    scalar, mapping = yaml.ScalarNode, yaml.MappingNode
    expanded: dict[int, int] = {}  # id(collection) -> its node count with aliases expanded
    scalars: set[int] = set()
    ancestors: set[int] = set()
    aliases = 0
    stack: list[tuple[yaml.Node, int, bool]] = [] if type(root) is scalar else [(root, 1, False)]

    def refuse(node: yaml.Node, why: str) -> DescriptorError:
        return DescriptorError(f"{path}: line {node.start_mark.line + 1}: {why}; simplify the file")

    while stack:
        node, depth, finished = stack.pop()
        key = id(node)
        children = [n for pair in node.value for n in pair] if type(node) is mapping else node.value
        if finished:
            ancestors.discard(key)
            expanded[key] = count = 1 + sum(expanded.get(id(c), 1) for c in children)
            if count > MAX_YAML_NODES:
                raise refuse(node, f"YAML aliases expand to more than {MAX_YAML_NODES} values")
            continue
        if key in expanded:  # a collection met again: an alias of an anchor
            aliases += 1
        elif key in ancestors:
            raise refuse(node, "a YAML alias refers to a node that contains it")
        elif depth > MAX_YAML_DEPTH:
            raise refuse(node, f"values nested more than {MAX_YAML_DEPTH} levels deep")
        else:
            ancestors.add(key)
            stack.append((node, depth, True))
            for c in children:
                if type(c) is not scalar:
                    stack.append((c, depth + 1, False))
                elif id(c) in scalars:  # a scalar met again: an alias too
                    aliases += 1
                else:
                    scalars.add(id(c))
        if aliases > MAX_YAML_ALIASES:
            raise refuse(node, f"more than {MAX_YAML_ALIASES} YAML aliases (*name)")


def _check_yaml_depth(root: yaml.Node, path: Path) -> None:
    """:func:`_check_yaml_bounds` for a document without aliases: its collections walked once."""
    scalar, mapping = yaml.ScalarNode, yaml.MappingNode
    nodes = 1
    stack: list[tuple[yaml.Node, int]] = [] if type(root) is scalar else [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_YAML_DEPTH:
            raise DescriptorError(
                f"{path}: line {node.start_mark.line + 1}: values nested more than {MAX_YAML_DEPTH} levels "
                "deep; simplify the file"
            )
        children = [n for pair in node.value for n in pair] if type(node) is mapping else node.value
        nodes += len(children)
        stack += [(c, depth + 1) for c in children if type(c) is not scalar]
    if nodes > MAX_YAML_NODES:
        raise DescriptorError(f"{path}: more than {MAX_YAML_NODES} values; simplify the file")


def one_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0][:300] if lines else type(e).__name__


def kind_of(data: Any) -> str:
    """What a YAML document is, without its content (a misplaced file may hold a token)."""
    if data is None:
        return "an empty document"
    kinds = {list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return next((v for t, v in kinds.items() if isinstance(data, t)), f"a {type(data).__name__} value")
