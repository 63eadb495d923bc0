"""The bulk path (rgrad.values, rgrad.set_data) takes exactly what Value() takes.

The reference is the scalar path: every number a bulk call refuses, Value()
refuses too, and every number it takes gives the data Value() gives. Refusals
name what was refused and change nothing."""
import datetime
import decimal
import fractions

import pytest

import rgrad
from rgrad import Value

np = pytest.importorskip("numpy")


def _refused_by_value(x):
    try:
        Value(x)
    except (TypeError, ValueError):
        return True
    return False


# arrays the bulk path used to convert (None became NaN, complex lost its
# imaginary part, strings were parsed) and must now refuse
BAD_ARRAYS = {
    "object array holding None": np.array([1.0, None, 3.0], dtype=object),
    "object array holding a Decimal": np.array([1.0, 2.0, decimal.Decimal("3.5")], dtype=object),
    "object array holding a str": np.array([1.0, "2.0", 3.0], dtype=object),
    "object array holding a complex": np.array([1.0, 2.0, 1 + 2j], dtype=object),
    "complex128": np.array([1 + 2j, 3.0, 4.0]),
    "complex64": np.array([1.0, 2.0, 3.0], dtype=np.complex64),
    "str": np.array(["1.5", "2", "3"]),
    "bytes": np.array([b"1.5", b"2", b"3"]),
    "datetime64": np.array(["2020-01-01", "2021-01-01", "2022-01-01"], dtype="datetime64[D]"),
    "timedelta64": np.array([1, 2, 3], dtype="timedelta64[s]"),
    "structured": np.zeros(3, dtype=[("a", "f8")]),
    "masked": np.ma.masked_array([1.0, 2.0, 3.0], mask=[False, True, False]),
}


@pytest.mark.parametrize("name", sorted(BAD_ARRAYS))
def test_values_refuses_arrays_whose_items_value_refuses(name):
    arr = BAD_ARRAYS[name]
    if arr.dtype.kind == "O":   # the scalar path agrees, item by item
        assert any(_refused_by_value(x) for x in arr)
    with pytest.raises(TypeError) as e:
        rgrad.values(arr)
    assert str(e.value).startswith("values: ")


@pytest.mark.parametrize("name", sorted(BAD_ARRAYS))
def test_set_data_refuses_them_and_writes_nothing(name):
    vs = rgrad.values([7.0, 8.0, 9.0])
    with pytest.raises(TypeError):
        rgrad.set_data(vs, BAD_ARRAYS[name])
    assert [v.data for v in vs] == [7.0, 8.0, 9.0]


def test_refusals_name_the_item_and_its_type():
    with pytest.raises(TypeError, match=r"item 1 is 'NoneType'"):
        rgrad.values(np.array([1.0, None], dtype=object))
    with pytest.raises(TypeError, match=r"item \(1, 0\) is 'Decimal'"):
        rgrad.values(np.array([[1.0, 2.0], [decimal.Decimal(1), 3.0]], dtype=object))
    with pytest.raises(TypeError, match=r"item 2 is 'complex'"):
        rgrad.values([1.0, 2.0, 3j])
    with pytest.raises(TypeError, match="complex128"):
        rgrad.values(np.array([1j]))
    with pytest.raises(TypeError, match="masked"):
        rgrad.values(np.ma.masked_array([1.0], mask=[True]))
    with pytest.raises(TypeError, match=r"set_data: item 1 is 'float', not a Value"):
        rgrad.set_data([Value(1.0), 2.0], [1.0, 2.0])


@pytest.mark.parametrize("seq", [
    [1.0, None], [decimal.Decimal("1.5")], [1 + 0j], ["1.0"], [b"1"],
    [np.datetime64("2020-01-01")], [datetime.date(2020, 1, 1)], [np.complex128(1)],
], ids=repr)
def test_sequences_are_refused_where_value_refuses_an_item(seq):
    assert any(_refused_by_value(x) for x in seq)
    vs = rgrad.values([0.5] * len(seq))
    with pytest.raises(TypeError):
        rgrad.values(seq)
    with pytest.raises(TypeError):
        rgrad.set_data(vs, seq)
    assert [v.data for v in vs] == [0.5] * len(seq)


@pytest.mark.parametrize("xs", ["123", b"12", bytearray(b"12")], ids=repr)
def test_a_string_or_bytes_is_not_a_sequence_of_numbers(xs):
    # iterating bytes gives ints: Value(b"12") is refused, so is this
    assert _refused_by_value(xs)
    with pytest.raises(TypeError, match="sequence of real numbers"):
        rgrad.values(xs)


def test_an_int_too_large_for_a_float_overflows_as_value_does():
    with pytest.raises(OverflowError):
        Value(10 ** 400)
    with pytest.raises(OverflowError, match="item 1"):
        rgrad.values([1, 10 ** 400])


GOOD = {
    "bool": np.array([True, False, True]),
    "int8": np.array([-128, 0, 127], dtype=np.int8),
    "uint64": np.array([0, 2 ** 53, 2 ** 64 - 1], dtype=np.uint64),
    "int64": np.array([-(2 ** 63), 5, 2 ** 63 - 1], dtype=np.int64),
    "float16": np.array([0.5, -2.0, 65504.0], dtype=np.float16),
    "float32": np.array([0.1, -1e30, 3.0], dtype=np.float32),
    "float64 2-d": np.array([[0.1, -2.5], [np.inf, -0.0]]),
    "object of numbers": np.array([1, 2.5, fractions.Fraction(1, 3), np.float32(0.1)],
                                  dtype=object),
    "python numbers": [1, 2.5, True, fractions.Fraction(2, 3), np.int16(-4), np.float64(1e300)],
}


@pytest.mark.parametrize("name", sorted(GOOD))
def test_real_numbers_give_the_data_value_gives(name):
    xs = GOOD[name]
    items = list(np.asarray(xs, dtype=object).ravel()) if hasattr(xs, "dtype") else xs
    want = [float(x) for x in items]   # the scalar path: Value(x).data == float(x)
    if not (hasattr(xs, "dtype") and xs.dtype.kind == "b"):
        assert [Value(x).data for x in items] == want
    got = [v.data for v in rgrad.values(xs)]
    assert np.array_equal(got, want) and np.signbit(got).tolist() == np.signbit(want).tolist()
    vs = rgrad.values([0.0] * len(want))
    rgrad.set_data(vs, xs)
    assert np.array_equal(rgrad.get_data(vs), want)
