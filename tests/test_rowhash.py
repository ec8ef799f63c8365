"""The pinned row hash ``coralord-row-1``: golden values, the spec, layout independence, sensitivity."""

from __future__ import annotations

import datetime as dt
import hashlib
import struct
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from coralord_dagster import rowhash
from coralord_dagster.rowhash import ROW_HASH, canonical_type, row_hashes, rows_digest

# --------------------------------------------------------------------------------------------------
# A reference implementation of the module docstring's spec, in plain Python ints: if the docstring
# and the code disagree, the tests below say so.

M64 = (1 << 64) - 1


def mix(x: int) -> int:
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & M64
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def seed(tag: str) -> int:
    return int.from_bytes(hashlib.sha256(f"coralord-row-1/{tag}".encode()).digest()[:8], "little")


def key(j: int) -> int:
    return mix((seed("pos") + j * 0x9E3779B97F4A7C15) & M64)


K = seed("len") | 1


def seq(kind: str, items: list[int], n: int) -> int:
    s = sum(mix(x ^ key(j)) for j, x in enumerate(items)) & M64
    return ((s ^ seed(kind)) + n * K) & M64


def byte_words(b: bytes) -> list[int]:
    return [int.from_bytes(b[i : i + 8].ljust(8, b"\0"), "little") for i in range(0, max(1, len(b)), 8)]


def ref_kind(t: pa.DataType) -> str:
    if pa.types.is_dictionary(t):
        return ref_kind(t.value_type)
    for check, kind in [
        (pa.types.is_null, "null"),
        (pa.types.is_boolean, "bool"),
        (pa.types.is_signed_integer, "int"),
        (pa.types.is_unsigned_integer, "uint"),
        (pa.types.is_floating, "float"),
        (pa.types.is_string, "string"),
        (pa.types.is_large_string, "string"),
        (pa.types.is_binary, "binary"),
        (pa.types.is_large_binary, "binary"),
        (pa.types.is_fixed_size_binary, "binary"),
        (pa.types.is_struct, "struct"),
        (pa.types.is_map, "list"),
        (pa.types.is_list, "list"),
        (pa.types.is_large_list, "list"),
        (pa.types.is_fixed_size_list, "list"),
    ]:
        if check(t):
            return kind
    if pa.types.is_decimal(t):
        return f"decimal/{t.scale}"
    if pa.types.is_date32(t) or pa.types.is_date64(t):
        return "date[d]" if pa.types.is_date32(t) else "date[ms]"
    for check, name in [
        (pa.types.is_time, "time"),
        (pa.types.is_timestamp, "timestamp"),
        (pa.types.is_duration, "duration"),
    ]:
        if check(t):
            return f"{name}[{t.unit}]"
    raise AssertionError(t)


def ref_item(v: Any, t: pa.DataType) -> int:
    """The spec's item word of one Python value (as ``to_pylist`` gives it) of type ``t``."""
    kind = ref_kind(t)
    if v is None:
        return seed("null/" + kind)
    if pa.types.is_dictionary(t):
        return ref_item(v, t.value_type)
    if kind in ("bool", "int", "uint") or pa.types.is_temporal(t):  # temporal: given as its count
        return (int(v) & M64) ^ seed(kind)
    if kind == "float":
        w = 0x7FF8000000000000 if v != v else struct.unpack("<Q", struct.pack("<d", v))[0]
        return w ^ seed(kind)
    if kind in ("string", "binary"):
        b = v.encode() if isinstance(v, str) else v
        return seq(kind, byte_words(b), len(b))
    if kind.startswith("decimal/"):
        unscaled = int(v.scaleb(t.scale))
        return seq(kind, byte_words((unscaled & ((1 << 256) - 1)).to_bytes(32, "little")), 32)
    if kind == "struct":
        fields = [t.field(i) for i in range(t.num_fields)]
        return seq("struct", [ref_item(v[f.name], f.type) for f in fields], len(fields))
    if pa.types.is_map(t):
        entry = pa.struct([("key", t.key_type), ("value", t.item_type)])
        return ref_item([{"key": k, "value": x} for k, x in v], pa.list_(entry))
    return seq("list", [ref_item(x, t.value_type) for x in v], len(v))


def ref_row_hashes(table: pa.Table) -> list[int]:
    counts = [  # temporal values as the counts of their unit (to_pylist would give datetimes)
        c.cast(pa.int32() if c.type.bit_width == 32 else pa.int64()) if pa.types.is_temporal(c.type) else c
        for c in table.columns
    ]
    rows = pa.table(counts, names=table.column_names).to_pylist()
    types = [f.type for f in table.schema]
    names = table.column_names
    return [
        mix(seq("struct", [ref_item(r[c], t) for c, t in zip(names, types, strict=True)], len(names)))
        for r in rows
    ]


class Tagged(pa.ExtensionType):  # pa.uuid() exists only from pyarrow 18
    def __init__(self) -> None:
        super().__init__(pa.binary(16), "coralord.test.tagged")

    def __arrow_ext_serialize__(self) -> bytes:
        return b""

    @classmethod
    def __arrow_ext_deserialize__(cls, storage_type: pa.DataType, serialized: bytes) -> Tagged:
        return cls()


def hashes(*columns: pa.Array | pa.ChunkedArray) -> list[int]:
    return row_hashes(pa.table({f"c{i}": c for i, c in enumerate(columns)})).tolist()


# --------------------------------------------------------------------------------------------------
# Golden values: a change here is a change of the algorithm, which must get a new ROW_HASH.


def golden_table() -> pa.Table:
    nan = float("nan")
    point = pa.struct(
        [("x", pa.int64()), ("inner", pa.struct([("s", pa.string()), ("l", pa.list_(pa.int16()))]))]
    )
    cols: dict[str, pa.Array] = {
        "null": pa.nulls(4),
        "bool": pa.array([True, False, None, True]),
        "int8": pa.array([-1, 0, None, 127], pa.int8()),
        "int16": pa.array([-32768, 1, 2, None], pa.int16()),
        "int32": pa.array([None, -5, 2**31 - 1, 0], pa.int32()),
        "int64": pa.array([-(2**63), 2**63 - 1, 0, None], pa.int64()),
        "uint8": pa.array([255, 0, None, 1], pa.uint8()),
        "uint16": pa.array([None, 65535, 0, 7], pa.uint16()),
        "uint32": pa.array([2**32 - 1, None, 0, 3], pa.uint32()),
        "uint64": pa.array([2**64 - 1, 0, None, 2**63], pa.uint64()),
        "float16": pa.array(
            np.array([1.5, -0.0, nan, 65504], dtype=np.float16), mask=np.array([0, 0, 0, 1], bool)
        ),
        "float32": pa.array([0.1, nan, None, -np.inf], pa.float32()),
        "float64": pa.array([0.0, -0.0, nan, 1e300]),
        "decimal128": pa.array(
            [Decimal("1.23"), Decimal("-0.01"), None, Decimal("99999999.99")], pa.decimal128(10, 2)
        ),
        "decimal256": pa.array([None, Decimal("-1e30"), Decimal("0"), Decimal("1.5")], pa.decimal256(40, 1)),
        "date32": pa.array([dt.date(1970, 1, 1), dt.date(1969, 12, 31), None, dt.date(2024, 2, 29)]),
        "date64": pa.array([0, -86_400_000, None, 1_700_000_000_000], pa.date64()),
        "time32s": pa.array([0, 86399, None, 1], pa.time32("s")),
        "time32ms": pa.array([None, 1, 2, 3], pa.time32("ms")),
        "time64us": pa.array([5, None, 7, 8], pa.time64("us")),
        "time64ns": pa.array([9, 10, None, 12], pa.time64("ns")),
        "ts_s": pa.array([0, -1, None, 1_700_000_000], pa.timestamp("s")),
        "ts_ns_utc": pa.array([1, None, 3, -(2**62)], pa.timestamp("ns", tz="UTC")),
        "ts_ms_paris": pa.array([None, 2, 3, 4], pa.timestamp("ms", tz="Europe/Paris")),
        "duration": pa.array([-1, 0, None, 10**15], pa.duration("ms")),
        "string": pa.array(["", "a", None, "longer than eight bytes, é"]),
        "large_string": pa.array(["12345678", "123456789", "", None], pa.large_string()),
        "string_view": pa.array([None, "view", "x" * 40, ""], pa.string_view()),
        "binary": pa.array([b"", b"\x00", None, b"\xff" * 17]),
        "large_binary": pa.array([b"ab", None, b"abcdefghi", b""], pa.large_binary()),
        "fixed_binary": pa.array([b"abc", None, b"\x00\x00\x00", b"xyz"], pa.binary(3)),
        "struct": pa.array(
            [
                {"x": 1, "inner": {"s": "p", "l": [1, 2]}},
                None,
                {"x": None, "inner": None},
                {"x": 4, "inner": {"s": None, "l": []}},
            ],
            point,
        ),
        "list": pa.array([[1, 2], [], None, [None]], pa.list_(pa.int64())),
        "large_list": pa.array([["a"], None, [], ["", None, "bc"]], pa.large_list(pa.string())),
        "fixed_list": pa.array([[1.0, 2.0], None, [nan, -0.0], [None, 3.0]], pa.list_(pa.float32(), 2)),
        "map": pa.array([[("k", 1)], [], None, [("a", None), ("b", 2)]], pa.map_(pa.string(), pa.int32())),
        "dictionary": pa.array(["red", None, "green", "red"]).dictionary_encode(),
        "nested": pa.array(
            [[{"v": [1]}, None], [], [{"v": None}, {"v": []}], None],
            pa.list_(pa.struct([("v", pa.list_(pa.int16()))])),
        ),
        "extension": pa.ExtensionArray.from_storage(
            Tagged(), pa.array([i.to_bytes(16, "big") if i != 2 else None for i in range(4)], pa.binary(16))
        ),
    }
    return pa.table(cols)


GOLDEN_HASHES = [16519040125766101438, 252562963370675999, 8657106104050749391, 17202140493274857783]
GOLDEN_DIGEST = "b63b267c6c2d87236c62599833f804a370c4ba9eaef2612c1e79b53a7a43592d"
#: Each column alone (the first 16 hex digits of its rows_digest): where a reimplementation differs.
GOLDEN_COLUMNS = {
    "null": "9d3e1458d6bba73a",
    "bool": "ce29d69307cb5607",
    "int8": "0fa15f9aefeef874",
    "int16": "5131aeef0542a594",
    "int32": "2c94b138aa0f585d",
    "int64": "02edb5f5e8314f42",
    "uint8": "903c5a33e006f8e7",
    "uint16": "3b55f703747136bb",
    "uint32": "9e5738af72ac8616",
    "uint64": "4cdea80bf9d4caa6",
    "float16": "ca1aefbf413182ae",
    "float32": "1aff938c05e2bf8e",
    "float64": "076da8952c1e79e7",
    "decimal128": "0dc9d5958a571d98",
    "decimal256": "fe2e37ef8cfa31b0",
    "date32": "9353796c5b3ce2c7",
    "date64": "933178236c02e7f6",
    "time32s": "4d99951782b06aa0",
    "time32ms": "9bdd1bfcd1e88e73",
    "time64us": "8f757e6a1b038004",
    "time64ns": "bb78abec05b738fa",
    "ts_s": "65f58952f84aabbb",
    "ts_ns_utc": "c9cae99bc7167ff3",
    "ts_ms_paris": "dad6921c41574e4e",
    "duration": "6c975034d2fe830e",
    "string": "ee3493fb4dac8ba1",
    "large_string": "a2a9471726ee4475",
    "string_view": "f6d90c0fac5aa221",
    "binary": "abb15a22ba5a4f5b",
    "large_binary": "ac2bbb4471976792",
    "fixed_binary": "580225918ede4a9b",
    "struct": "1fea62a242b30177",
    "list": "062c7307d4086a6b",
    "large_list": "31d9e11a4922e09a",
    "fixed_list": "9c2cfb23a043fb2a",
    "map": "39355db39819e05b",
    "dictionary": "1ab001d162692918",
    "nested": "76354a38abf694d8",
    "extension": "6e6f657db8fddde9",
}


def test_golden() -> None:
    table = golden_table()
    h = row_hashes(table)
    assert h.dtype == np.uint64
    assert h.tolist() == GOLDEN_HASHES
    assert rows_digest(h) == GOLDEN_DIGEST
    columns = {n: rows_digest(row_hashes(table.select([n])))[:16] for n in table.column_names}
    assert columns == GOLDEN_COLUMNS
    assert ROW_HASH == "coralord-row-1"


def test_the_docstring_spec_is_the_algorithm() -> None:
    # The reference above follows the module docstring, not the code: kinds it covers must agree.
    table = golden_table()
    covered = [n for n, f in zip(table.column_names, table.schema, strict=True) if _covered(f.type)]
    assert len(covered) >= 20
    for name in covered:
        one = table.select([name])
        assert row_hashes(one).tolist() == ref_row_hashes(one), name
    assert row_hashes(table.select(covered)).tolist() == ref_row_hashes(table.select(covered))


def _covered(t: pa.DataType) -> bool:
    try:
        ref_kind(t)
    except AssertionError:
        return False
    children = [t.field(i).type for i in range(t.num_fields)] if pa.types.is_struct(t) else []
    if pa.types.is_map(t):
        children = [t.key_type, t.item_type]
    elif hasattr(t, "value_type"):
        children = [t.value_type]
    return all(_covered(c) for c in children)


def test_primitives_match_their_definitions() -> None:
    x = np.array([0, 1, 2**63, M64, 0x0123456789ABCDEF], dtype=np.uint64)
    assert rowhash._mix(x.copy()).tolist() == [mix(int(v)) for v in x]
    assert [int(rowhash._KEYS[j]) for j in (0, 1, 4095, 65535)] == [key(j) for j in (0, 1, 4095, 65535)]
    assert rowhash._keys_at(np.array([70_000, 10**12])).tolist() == [key(70_000), key(10**12)]
    assert rowhash._K == K and rowhash._seed("pos") == seed("pos")


def test_canonical_type() -> None:
    cases = [
        (pa.int8(), "int8"),
        (pa.uint64(), "uint64"),
        (pa.bool_(), "bool"),
        (pa.float16(), "float16"),
        (pa.decimal128(10, 2), "decimal128(10,2)"),
        (pa.decimal256(40, 0), "decimal256(40,0)"),
        (pa.date32(), "date32"),
        (pa.time32("ms"), "time32[ms]"),
        (pa.time64("ns"), "time64[ns]"),
        (pa.timestamp("us"), "timestamp[us]"),
        (pa.timestamp("ns", tz="Europe/Paris"), "timestamp[ns,Europe/Paris]"),
        (pa.duration("s"), "duration[s]"),
        (pa.large_string(), "large_string"),
        (pa.string_view(), "string_view"),
        (pa.binary(16), "fixed_size_binary[16]"),
        (pa.list_(pa.field("element", pa.float32(), nullable=False)), "list<float32>"),
        (pa.large_list(pa.string()), "large_list<string>"),
        (pa.list_(pa.int8(), 3), "fixed_size_list<int8>[3]"),
        (pa.list_view(pa.int32()), "list_view<int32>"),
        (pa.map_(pa.string(), pa.int64()), "map<string,int64>"),
        (pa.map_(pa.string(), pa.int64(), keys_sorted=True), "map<string,int64,keys_sorted>"),
        (pa.struct([("a", pa.int64()), ("b", pa.string())]), "struct<a:int64,b:string>"),
        (pa.struct([("a:b", pa.int64()), ("ü", pa.null())]), 'struct<"a:b":int64,"\\u00fc":null>'),
        (pa.dictionary(pa.int16(), pa.large_string()), "large_string"),
        (pa.run_end_encoded(pa.int32(), pa.float64()), "float64"),
        (Tagged(), "extension<coralord.test.tagged,fixed_size_binary[16]>"),
    ]
    assert [canonical_type(t) for t, _ in cases] == [text for _, text in cases]
    with pytest.raises(TypeError):
        canonical_type(pa.month_day_nano_interval())


# --------------------------------------------------------------------------------------------------
# Layout independence


def test_layout_does_not_matter() -> None:
    table = golden_table()
    expected = row_hashes(table).tolist()
    # Chunked in different places, column by column.
    columns = [c.combine_chunks() for c in table.columns]
    pieces = [pa.chunked_array([a.slice(0, 1), a.slice(1, 0), a.slice(1, 2), a.slice(3)]) for a in columns]
    rechunked = pa.table(pieces, names=table.column_names)
    assert row_hashes(rechunked).tolist() == expected
    assert row_hashes(table.combine_chunks().to_batches()[0]).tolist() == expected
    # Sliced (non-zero offsets at every level).
    for start in range(4):
        assert row_hashes(table.slice(start)).tolist() == expected[start:]
        assert row_hashes(table.slice(start, 1)).tolist() == expected[start : start + 1]
    # Nested values sliced inside their parents.
    big = pa.concat_tables([table] * 3).combine_chunks()
    assert row_hashes(big.slice(5, 4)).tolist() == expected[1:] + expected[:1]


def test_type_variants_are_value_identical() -> None:
    s = pa.array(["ab", "", None, "a much longer string of bytes", "x" * 100])
    variants = [
        s.cast(pa.large_string()),
        s.cast(pa.string_view()),
        s.dictionary_encode(),
        pc.run_end_encode(s),
    ]
    assert all(hashes(v) == hashes(s) for v in variants)
    b = s.cast(pa.binary())
    assert hashes(b.cast(pa.large_binary())) == hashes(b.cast(pa.binary_view())) == hashes(b)
    assert hashes(pa.array([b"abc", None], pa.binary(3))) == hashes(pa.array([b"abc", None]))
    ints = pa.array([1, -2, None, 2**31 - 1], pa.int64())
    assert hashes(ints.cast(pa.int32())) == hashes(ints) == hashes(ints.dictionary_encode())
    floats = pa.array([0.5, -0.0, None, float("inf"), float("nan")])
    assert hashes(floats.cast(pa.float32())) == hashes(floats) == hashes(floats.cast(pa.float16()))
    lists = pa.array([[1, 2], [], None, [None], [3]], pa.list_(pa.int64()))
    view = pa.ListViewArray.from_arrays(
        pa.array([0, 2, 0, 3, 4], pa.int32()),
        pa.array([2, 0, 0, 1, 1], pa.int32()),
        pa.array([1, 2, 7, None, 3]),
        mask=pa.array([False, False, True, False, False]),
    )
    assert hashes(lists.cast(pa.large_list(pa.int64()))) == hashes(lists) == hashes(view)
    coded = pa.ListArray.from_arrays(lists.offsets, lists.values.dictionary_encode(), mask=lists.is_null())
    assert hashes(coded) == hashes(lists)
    pairs = pa.array([[1, 2], None, [3, None]], pa.list_(pa.int64(), 2))
    assert hashes(pairs) == hashes(pairs.cast(pa.list_(pa.int64())))
    entries = pa.struct([("k", pa.string()), ("v", pa.int8())])
    maps = pa.array([[("a", 1)], [], None], pa.map_(pa.string(), pa.int8()))
    assert hashes(maps) == hashes(pa.array([[{"k": "a", "v": 1}], [], None], pa.list_(entries)))
    ts = pa.array([0, 1, None], pa.timestamp("us"))
    assert hashes(ts) == hashes(ts.cast(pa.timestamp("us", tz="UTC")))
    assert hashes(pa.ExtensionArray.from_storage(Tagged(), pa.array([b"0" * 16], pa.binary(16)))) == hashes(
        pa.array([b"0" * 16])
    )
    d = pa.array([Decimal("1.5"), None, Decimal("-2.25")], pa.decimal128(10, 2))
    assert hashes(d) == hashes(d.cast(pa.decimal256(50, 2)))
    if hasattr(pa, "decimal32"):  # pyarrow >= 19
        assert hashes(d) == hashes(d.cast(pa.decimal32(9, 2))) == hashes(d.cast(pa.decimal64(18, 2)))


def test_buffer_alignment_does_not_matter() -> None:
    values = ["", "a", "bcdefghij", "klmnopqrstuvwxyz", "0123456", "x" * 33, "é"]
    data = "".join(values).encode()
    offsets = pa.array(np.cumsum([0] + [len(v.encode()) for v in values]).astype(np.int32)).buffers()[1]
    expected = hashes(pa.array(values))
    for shift in range(8):  # the data at every alignment, ending exactly at the buffer's end
        buf = pa.py_buffer(b"#" * shift + data)[shift:]
        assert hashes(pa.Array.from_buffers(pa.string(), len(values), [None, offsets, buf])) == expected
        assert hashes(pa.Array.from_buffers(pa.string(), 3, [None, offsets, buf], offset=4)) == expected[4:]


def test_what_is_under_a_null_does_not_matter() -> None:
    mask = pa.py_buffer(np.packbits(np.array([1, 0, 1], bool), bitorder="little").tobytes())
    ints = pa.Array.from_buffers(pa.int64(), 3, [mask, pa.py_buffer(np.array([1, 99, 3]).tobytes())])
    assert hashes(ints) == hashes(pa.array([1, None, 3]))
    offsets = pa.py_buffer(np.array([0, 1, 5, 6], np.int32).tobytes())
    strings = pa.Array.from_buffers(pa.string(), 3, [mask, offsets, pa.py_buffer(b"agarbc")])
    assert hashes(strings) == hashes(pa.array(["a", None, "c"]))
    lists = pa.Array.from_buffers(pa.list_(pa.int64()), 3, [mask, offsets], children=[pa.array(range(6))])
    assert hashes(lists) == hashes(pa.array([[0], None, [5]]))
    inner = pa.array([1, 2, 3])
    structs = pa.StructArray.from_arrays([inner], ["a"], mask=pa.array([False, True, False]))
    assert hashes(structs) == hashes(pa.array([{"a": 1}, None, {"a": 3}]))
    dicts = pa.DictionaryArray.from_buffers(
        pa.dictionary(pa.int32(), pa.string()),
        3,
        [mask, pa.py_buffer(np.array([0, 77, 1], np.int32).tobytes())],
        pa.array(["x", "y"]),
    )
    assert hashes(dicts) == hashes(pa.array(["x", None, "y"]))


def test_slices_and_blocks_do_not_matter(monkeypatch: pytest.MonkeyPatch) -> None:
    # Long values, long lists, several row slices: the same hashes when cut in tiny pieces.
    rng = np.random.default_rng(5)
    n = 1000
    lens = rng.integers(0, 60, n)
    table = pa.table(
        {
            "b": pa.array([rng.bytes(k) for k in lens]),
            "l": pa.array([rng.integers(0, 9, k).tolist() for k in lens // 4], pa.list_(pa.int8())),
            "s": pa.array([{"x": int(k), "t": "y" * int(k)} for k in lens]),
            "d": pa.array([str(k % 7) for k in lens]).dictionary_encode(),
        }
    )
    expected = row_hashes(table).tolist()
    assert expected == ref_row_hashes(table)
    monkeypatch.setattr(rowhash, "_ROWS", 97)
    monkeypatch.setattr(rowhash, "_BLOCK", 13)
    assert row_hashes(table).tolist() == expected
    monkeypatch.setattr(rowhash, "_N_KEYS", 2)  # positions past the key table are computed
    assert row_hashes(table).tolist() == expected


# --------------------------------------------------------------------------------------------------
# Sensitivity


def test_every_change_shows() -> None:
    base = "the quick brown fox jumps over"
    for i in range(len(base)):  # one byte, anywhere in a multi-word value
        edited = base[:i] + chr(ord(base[i]) ^ 1) + base[i + 1 :]
        assert hashes(pa.array([edited])) != hashes(pa.array([base]))
    pairs = [
        ([pa.array(["ab"]), pa.array(["c"])], [pa.array(["a"]), pa.array(["bc"])]),  # a byte moves over
        ([pa.array([1]), pa.array([2])], [pa.array([2]), pa.array([1])]),  # two columns swap values
        ([pa.array(["ab", "c"])], [pa.array(["a", "bc"])]),
        ([pa.array([[1], [2]])], [pa.array([[1, 2], []])]),
        ([pa.array(["ab"])], [pa.array([b"ab"])]),  # text is not bytes
        ([pa.array(["ab"])], [pa.array(["ab\0"])]),  # zero padding is not a value
        ([pa.array([[1, 2]])], [pa.array([[2, 1]])]),
        ([pa.array([{"a": 1, "b": 2}])], [pa.array([{"a": 2, "b": 1}])]),
        ([pa.array([0.0])], [pa.array([-0.0])]),
        ([pa.array([1], pa.int64())], [pa.array([1], pa.uint64())]),
        ([pa.array([1], pa.int64())], [pa.array([1], pa.timestamp("s"))]),
        ([pa.array([1], pa.timestamp("s"))], [pa.array([1], pa.timestamp("ms"))]),
    ]
    for a, b in pairs:
        assert hashes(*a) != hashes(*b), (a, b)
    # Nulls differ from every simple value of their type, and from each other's kinds.
    for values in (
        [None, "", "\0"],
        [None, b""],
        [None, 0, -1],
        [None, True, False],
        [None, 0.0, float("nan")],
        [None, [], [None]],
        [None, {"a": None}],
        [None, {}],
    ):
        arr = pa.array(values) if values != [None, {}] else pa.array([None, {}], pa.struct([]))
        assert len(set(hashes(arr))) == len(values), values
    one_null = pa.array([1, 2, None, 4])
    assert hashes(one_null)[:2] == hashes(pa.array([1, 2, 3, 4]))[:2]
    assert hashes(one_null)[2] != hashes(pa.array([1, 2, 3, 4]))[2]


def test_no_collisions_among_random_distinct_rows() -> None:
    rng = np.random.default_rng(20240601)
    n = 100_000
    words = np.array(["", "a", "b", "ab", "ba", "abc", "aaaaaaaab", "baaaaaaaa"])
    ints, int_nulls = rng.integers(-100, 100, n), rng.random(n) < 0.1
    word_ids, word_nulls = rng.integers(0, len(words), n), rng.random(n) < 0.1
    floats = rng.choice([0.0, -0.0, 1.0, np.nan, np.inf], n)
    lengths = rng.integers(0, 4, n)
    bits = rng.integers(0, 2, int(lengths.sum()))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    table = pa.table(
        {
            "i": pa.array(ints, mask=int_nulls),
            "u": pa.array((ints % 4).astype(np.uint8)),
            "f": pa.array(floats),
            "s": pa.array(words[word_ids], mask=word_nulls),
            "l": pa.ListArray.from_arrays(pa.array(offsets), pa.array(bits)),
        }
    )
    h = row_hashes(table)
    # The distinct rows, each encoded as integers: a list as 2**len + its bits.
    position = np.arange(len(bits)) - np.repeat(offsets[:-1], lengths)
    list_code = np.bincount(np.repeat(np.arange(n), lengths), bits << position, minlength=n) + (1 << lengths)
    rows = np.stack(
        [
            np.where(int_nulls, 1000, ints),
            ints % 4,
            floats.view(np.int64),  # numpy's NaN has the canonical bits
            np.where(word_nulls, -1, word_ids),
            list_code,
        ],
        axis=1,
    )
    distinct = len(np.unique(rows, axis=0))
    assert distinct > 50_000
    assert len(np.unique(h)) == distinct
    # The low bits that cut parts are uniform: about 1/64 of distinct rows have the low 6 bits set.
    ids = row_hashes(pa.table({"id": np.arange(n)}))
    assert abs(np.count_nonzero((ids & np.uint64(63)) == 63) - n / 64) < 5 * (n / 64) ** 0.5


# --------------------------------------------------------------------------------------------------
# Edges and errors


def test_empty_and_columnless_tables() -> None:
    assert row_hashes(pa.table({"x": pa.array([], pa.int64())})).tolist() == []
    assert row_hashes(pa.table({"x": [1, 2]}).select([])).tolist() == [0, 0]
    assert row_hashes(pa.table({})).dtype == np.uint64
    assert rows_digest(np.zeros(0, dtype=np.uint64)) == hashlib.sha256(b"").hexdigest()


def test_unsupported_types_name_the_column() -> None:
    union = pa.UnionArray.from_sparse(pa.array([0], pa.int8()), [pa.array([1])])
    with pytest.raises(TypeError, match="column 'u'.*union"):
        row_hashes(pa.table({"ok": [1], "u": union}))
    nested = pa.array([[(1, 2, 3)]], pa.list_(pa.month_day_nano_interval()))
    with pytest.raises(TypeError, match="column 'deep'.*month_day_nano"):
        row_hashes(pa.table({"deep": nested}))
