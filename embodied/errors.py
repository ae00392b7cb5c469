class EmbodiedError(Exception):
    """A user-facing error: the CLI prints its message as one line and exits non-zero.

    The message names the file, field or value at fault and what was expected.
    """


def check_fields(cls: type, d: dict, where: str) -> None:
    """`d` holds only fields of dataclass `cls`, each of its annotated type (an int may stand for a float);
    else one error naming the field after `where` (`policy.`, `model.vision.`, `ckpt/config.json: `): a
    hand-edited config.json fails here, not deep in torch."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise EmbodiedError(f"{where.rstrip(':. ')}: unknown field(s) {unknown}; expected some of {sorted(known)}")
    for key, value in d.items():
        if not _fits(value, hints[key]):
            raise EmbodiedError(f"{where}{key}={value!r}: expected {_describe(hints[key])}")


def _describe(hint) -> str:
    """int -> 'an integer', float | None -> 'a number or null': the words of the CLI's own checks."""
    import types
    import typing

    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(hint))
    words = {int: "an integer", float: "a number", bool: "true or false", str: "a string", list: "a list",
             dict: "a mapping", type(None): "null"}
    return words.get(typing.get_origin(hint) or hint, getattr(hint, "__name__", str(hint)))


def _fits(value, hint) -> bool:
    import types
    import typing

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint is list or origin is list or hint is tuple or origin is tuple:
        item = args[0] if args and origin is list else None
        return isinstance(value, (list, tuple)) and (item is None or all(_fits(v, item) for v in value))
    if hint is dict or origin is dict:
        return isinstance(value, dict)
    return True  # Any, nested configs (checked on their own), Literal: left to the code that reads them


_interrupted = False


def _on_sigint(signum, frame) -> None:
    global _interrupted
    _interrupted = True
    raise KeyboardInterrupt


def watch_interrupts() -> None:
    """Ctrl-C raises KeyboardInterrupt as Python's default handler does, and is also remembered. An interrupt that
    lands inside numba-compiled robosuite code (its controller) comes out as another exception, which a wrapper
    that keeps a run going past simulator failures would take for one; `interrupted()` tells them apart.
    A SIGINT that is ignored (a job started in the background) stays ignored."""
    import signal
    import threading

    main = threading.current_thread() is threading.main_thread()
    if main and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_sigint)


def interrupted(exc: BaseException | None = None) -> bool:
    """Whether Ctrl-C was pressed in this process, or caused `exc` (anywhere in its chain)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return _interrupted
