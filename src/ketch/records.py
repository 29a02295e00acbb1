"""Small value classes for the modules on a container's start path, without ``dataclasses``.

``dataclasses`` imports ``inspect`` (and with it ``ast``, ``dis``, ``tokenize``): about 8 ms,
paid by every ``ketch run`` before the container starts, which is a tenth of the whole run. The
value classes that path touches (digests, references, image records, container options) derive
from :class:`Record` instead, which gives what their dataclass declarations gave: an ``__init__``
taking the fields by position or name with defaults, ``__repr__`` and ``__eq__`` as a dataclass
writes them, and, for ``frozen`` classes, immutability and hashing; ``order`` adds comparisons
by field order. Modules off that path keep using dataclasses.

    class Digest(Record, frozen=True, order=True):
        algorithm: str
        encoded: str = "sha256"
        labels: dict[str, str] = field(default_factory=dict)

A field is an annotated class attribute (its value, if any, the default; ``field(default_factory=
...)`` for a fresh one per instance); the class gets ``__slots__`` made from them. Type checkers
see a Record as the dataclass it behaves as (``typing.dataclass_transform``, PEP 681). Classes
may still spell ``__slots__`` and ``_defaults`` out themselves.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # (typing costs milliseconds to import: not on a container's start path)
    from typing import Any, dataclass_transform
else:
    def dataclass_transform(**_kwargs):
        return lambda cls: cls

_FACTORIES = (list, dict, set)


class _Factory:
    __slots__ = ("make",)

    def __init__(self, make) -> None:
        self.make = make


def field(*, default_factory) -> Any:
    """A field whose default is made fresh for each instance (``default_factory()``)."""
    return _Factory(default_factory)


class _RecordType(type):
    """Turns annotated class attributes into ``__slots__`` and defaults (a class attribute of the
    same name as a slot is not allowed, so the defaults move to ``_defaults``)."""

    def __new__(mcs, name, bases, namespace, **kwargs):
        if "__slots__" not in namespace:
            own = tuple(n for n in namespace.get("__annotations__", {}) if not n.startswith("_"))
            defaults = {n: namespace.pop(n) for n in own if n in namespace}
            namespace["__slots__"] = own
            namespace["_defaults"] = {**namespace.get("_defaults", {}), **defaults}
        return super().__new__(mcs, name, bases, namespace, **kwargs)


@dataclass_transform(field_specifiers=(field,))
class Record(metaclass=_RecordType):
    __slots__ = ()
    _fields: tuple[str, ...] = ()
    _field_set: frozenset[str] = frozenset()
    _defaults: dict = {}
    _factories: dict = {}  # field -> what makes its default (list, dict, set, a field()'s factory)
    _plain_defaults: dict = {}  # field -> default value, or list/dict/set for a fresh empty one
    _frozen = False

    def __init_subclass__(cls, *, frozen: bool = False, order: bool = False, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("__slots__", ())
        cls._fields = tuple(getattr(cls.__base__, "_fields", ())) + tuple(own)
        cls._defaults = {**getattr(cls.__base__, "_defaults", {}), **cls.__dict__.get("_defaults", {})}
        cls._frozen = frozen or getattr(cls.__base__, "_frozen", False)
        cls._field_set = frozenset(cls._fields)
        cls._factories = {name: default.make if isinstance(default, _Factory) else default
                          for name, default in cls._defaults.items()
                          if isinstance(default, _Factory) or default in _FACTORIES}
        cls._plain_defaults = {name: default for name, default in cls._defaults.items() if name not in cls._factories}
        if cls._frozen:
            cls.__hash__ = _hash  # type: ignore[method-assign,assignment]
        else:
            cls.__hash__ = None  # type: ignore[assignment]  # mutable and equal by value: unhashable
        if order:
            for name, test in (("__lt__", lambda a, b: a < b), ("__le__", lambda a, b: a <= b),
                               ("__gt__", lambda a, b: a > b), ("__ge__", lambda a, b: a >= b)):
                setattr(cls, name, _comparison(test))

    def __init__(self, *args, **kwargs) -> None:
        cls = type(self)
        fields = cls._fields
        if args:
            if len(args) > len(fields):
                raise TypeError(f"{cls.__name__}() takes {len(fields)} arguments, {len(args)} given")
            given = dict(zip(fields, args))
            twice = given.keys() & kwargs.keys()
            if twice:
                raise TypeError(f"{cls.__name__}() got two values for {sorted(twice)[0]!r}")
            kwargs = {**given, **kwargs}
        unknown = kwargs.keys() - cls._field_set
        if unknown:
            raise TypeError(f"{cls.__name__}() got an unexpected argument {sorted(unknown)[0]!r}")
        plain, factories = cls._plain_defaults, cls._factories
        set_field = object.__setattr__
        for name in fields:  # (the hot loop of a 100-field record: one dict lookup per field)
            if name in kwargs:
                value = kwargs[name]
            elif name in plain:
                value = plain[name]
            elif name in factories:
                value = factories[name]()
            else:
                raise TypeError(f"{cls.__name__}() is missing the argument {name!r}")
            set_field(self, name, value)

    def __setattr__(self, name: str, value) -> None:
        if self._frozen:
            raise AttributeError(f"cannot assign to field {name!r} of a frozen {type(self).__name__}")
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        if self._frozen:
            raise AttributeError(f"cannot delete field {name!r} of a frozen {type(self).__name__}")
        object.__delattr__(self, name)

    def _values(self) -> tuple:
        return tuple(getattr(self, name) for name in self._fields)

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self._fields}

    def __eq__(self, other) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__qualname__}({inner})"

    def __reduce__(self):  # copy and pickle: rebuilt from the fields
        return (self.__class__, self._values())


def _hash(self: Record) -> int:
    return hash(self._values())


def _comparison(test):
    def compare(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        return test(self._values(), other._values())

    return compare
