"""Small value classes for the modules on a container's start path, without ``dataclasses``.

``dataclasses`` imports ``inspect`` (and with it ``ast``, ``dis``, ``tokenize``): about 8 ms,
paid by every ``ketch run`` before the container starts, which is a tenth of the whole run. The
value classes that path touches (digests, references, image records, container options) derive
from :class:`Record` instead, which gives what their dataclass declarations gave: an ``__init__``
taking the fields by position or name with defaults, ``__repr__`` and ``__eq__`` as a dataclass
writes them, and, for ``frozen`` classes, immutability and hashing; ``order`` adds comparisons
by field order. Modules off that path keep using dataclasses.

    class Digest(Record, frozen=True, order=True):
        __slots__ = ("algorithm", "encoded")
"""

from __future__ import annotations

_FACTORIES = (list, dict, set)


class Record:
    __slots__ = ()
    _fields: tuple[str, ...] = ()
    _defaults: dict = {}  # field -> default value, or list/dict/set for a fresh empty one
    _frozen = False

    def __init_subclass__(cls, *, frozen: bool = False, order: bool = False, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("__slots__", ())
        cls._fields = tuple(getattr(cls.__base__, "_fields", ())) + tuple(own)
        cls._defaults = {**getattr(cls.__base__, "_defaults", {}), **cls.__dict__.get("_defaults", {})}
        cls._frozen = frozen or getattr(cls.__base__, "_frozen", False)
        if cls._frozen:
            cls.__hash__ = lambda self: hash(self._values())  # type: ignore[method-assign]
        else:
            cls.__hash__ = None  # type: ignore[assignment]  # mutable and equal by value: unhashable
        if order:
            for name, test in (("__lt__", lambda a, b: a < b), ("__le__", lambda a, b: a <= b),
                               ("__gt__", lambda a, b: a > b), ("__ge__", lambda a, b: a >= b)):
                setattr(cls, name, _comparison(test))

    def __init__(self, *args, **kwargs) -> None:
        if len(args) > len(self._fields):
            raise TypeError(f"{type(self).__name__}() takes {len(self._fields)} arguments, {len(args)} given")
        values = dict(zip(self._fields, args))
        for name, value in kwargs.items():
            if name not in self._fields:
                raise TypeError(f"{type(self).__name__}() got an unexpected argument {name!r}")
            if name in values:
                raise TypeError(f"{type(self).__name__}() got two values for {name!r}")
            values[name] = value
        for name in self._fields:
            if name in values:
                value = values[name]
            elif name in self._defaults:
                default = self._defaults[name]
                value = default() if default in _FACTORIES else default
            else:
                raise TypeError(f"{type(self).__name__}() is missing the argument {name!r}")
            object.__setattr__(self, name, value)

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


def _comparison(test):
    def compare(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        return test(self._values(), other._values())

    return compare
