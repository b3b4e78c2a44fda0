"""Log lines, captured by the host with the invocation's request id."""

from nimbus.host import log as _log


def debug(message: str) -> None:
    _log(0, message)


def info(message: str) -> None:
    _log(1, message)


def warn(message: str) -> None:
    _log(2, message)


def error(message: str) -> None:
    _log(3, message)
