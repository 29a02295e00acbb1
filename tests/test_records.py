"""ketch.records.Record: what the value classes on the start path rely on, as dataclasses gave it."""

import copy
import pickle

import pytest

from ketch.oci.digest import Digest
from ketch.oci.reference import Reference, parse_reference
from ketch.records import Record


class Point(Record, frozen=True, order=True):
    __slots__ = ("x", "y")
    _defaults = {"y": 0}


class Bag(Record):
    __slots__ = ("name", "items")
    _defaults = {"items": list}


def test_init_defaults_and_errors():
    assert Point(1) == Point(1, 0) == Point(x=1, y=0)
    assert repr(Point(1, 2)) == "Point(x=1, y=2)"
    with pytest.raises(TypeError):
        Point()
    with pytest.raises(TypeError):
        Point(1, y=2, z=3)
    with pytest.raises(TypeError):
        Point(1, x=1)
    a, b = Bag("a"), Bag("b")
    a.items.append(1)
    assert b.items == []  # a fresh list each


def test_frozen_hash_order_and_mutable_unhashable():
    p = Point(1, 2)
    with pytest.raises(AttributeError):
        p.x = 3
    assert {Point(1, 2): "v"}[Point(1, 2)] == "v"
    assert sorted([Point(2, 0), Point(1, 5), Point(1, 2)]) == [Point(1, 2), Point(1, 5), Point(2, 0)]
    assert Point(1, 2) != (1, 2)
    bag = Bag("x")
    bag.name = "y"
    with pytest.raises(TypeError):
        hash(bag)


def test_copy_pickle_and_the_oci_values():
    ref = parse_reference("busybox@sha256:" + "a" * 64)
    assert pickle.loads(pickle.dumps(ref)) == ref and copy.deepcopy(ref) == ref
    assert ref == Reference("docker.io", "library/busybox", None, Digest("sha256", "a" * 64))
    assert Digest.parse("sha256:" + "b" * 64) > Digest.parse("sha256:" + "a" * 64)
    assert len({Digest("sha256", "a" * 64), Digest("sha256", "a" * 64)}) == 1
