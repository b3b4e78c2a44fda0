"""``nimbus invoke``: run a function once, locally through its app, or on a server.

Locally, ``TARGET`` is a function of the app in the current directory (or a parent),
a function directory, or a .wasm. A function that belongs to an app runs with the
app's settings (limits, env, grants) and its events are shaped by the app: an HTTP
request goes through the app's route table (``{params}`` extracted), ``--trigger
KIND`` builds the envelope its trigger would deliver. A directory or .wasm outside
any app runs as before, with ``--config``. The output is the response (stdout), the
log lines and the writes the invocation made (stderr); those writes are committed to
the data dir only with ``--commit``. An HTTP request to a route with gateway policies
goes through them as served (``gateway/policies/local.py``: credentials with ``--header``).
``--remote NAME`` invokes a deployed function.
"""

from __future__ import annotations

import argparse
import difflib
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from msgspec import Struct
from rich.console import Console
from rich.markup import escape

from host.cli.serving import choose_secrets_key, secrets_key_argument
from host.common.jsonable import jsonable
from host.errors import InvalidRequest, ManifestError

if TYPE_CHECKING:  # the manifest and the platform load when a command runs
    from host.manifest.app import Manifest
    from host.manifest.functions import FunctionSpec
    from host.platform.platform import InvocationResult, Platform

TRIGGER_KINDS = ("queue", "schedule", "storage", "event")

err = Console(stderr=True, highlight=False)
out = Console()


class Target(Struct, frozen=True):
    """What a local invoke runs: a function (of an app, or not) and where its module is."""

    name: str
    #: a function directory (built first) or a .wasm
    module: Path
    app: Manifest | None = None
    spec: FunctionSpec | None = None


def add_arguments(c: argparse.ArgumentParser) -> None:
    c.add_argument(
        "target",
        help="a function of the app here, a function dir or .wasm, or (--remote) a deployed name",
    )
    c.add_argument("--event", help="JSON: a full event (with 'kind') or the input of an invoke")
    c.add_argument("--http", nargs=2, metavar=("METHOD", "PATH"), help="an http event")
    c.add_argument("--body", help="request body for --http")
    c.add_argument(
        "--header",
        "-H",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="a request header for --http (repeatable): credentials for the route's "
        "gateway policies, e.g. 'x-api-key: KEY' or 'authorization: Bearer JWT'",
    )
    c.add_argument(
        "--trigger",
        choices=TRIGGER_KINDS,
        help="the envelope this trigger delivers; --event is then the message body "
        "(queue), the payload (event) or envelope fields (schedule, storage)",
    )
    c.add_argument("--config", help="JSON config for a function outside an app")
    c.add_argument("--commit", action="store_true", help="commit its writes to the data dir")
    c.add_argument("--remote", action="store_true", help="invoke a deployed function by name")
    secrets_key_argument(c)  # a local run opens the data dir's secrets itself


def cmd_invoke(args: argparse.Namespace, admin_client: Callable[[argparse.Namespace], Any]) -> int:
    if args.http and args.trigger:
        raise InvalidRequest("give either --http or --trigger, not both")
    if args.http and args.event:
        raise InvalidRequest("give either --event or --http (with --body), not both")
    if args.remote:
        try:  # the local app, when it has the function, shapes the event
            app = _app_here()
        except ManifestError:
            app = None
        if app is not None and args.target not in app.functions:
            app = None
        payload = _event(args, app, args.target)
        result = admin_client(args).invoke(args.target, payload)
        logs = [(line["level"], line["message"]) for line in result["logs"]]
        _show(logs, result["response"], None, commit=True)
        return 0
    target = resolve(args.target)
    event = _event(args, target.app, target.name)
    platform = _platform(args)
    try:
        run = _runner(args, target, platform)
        if args.http and target.app is not None:
            from host.gateway.policies.local import through_policies

            guarded = through_policies(
                target.app, platform, event, _headers(args), run, commit=args.commit
            )
            if guarded is not None:
                return _show_guarded(guarded, args.commit)
        local = run(target.name, event)
    finally:
        platform.close()
    logs = [(line.level, line.message) for line in local.logs]
    _show(logs, local.response, local.effects, commit=args.commit)
    return 0


def _show_guarded(outcome: Any, commit: bool) -> int:
    """The answer of a request through the route's policies, as a caller gets it."""
    names = ", ".join(outcome.policies)
    if outcome.refused:
        e = outcome.error
        err.print(
            f"[red]refused by the route's policies ({escape(names)}) before the function ran: "
            f"{outcome.status} {escape(str(e.get('kind')))}: {escape(str(e.get('message')))}[/]"
        )
        if outcome.hint():
            err.print(f"[yellow]next:[/] {escape(outcome.hint())}")
        out.print_json(json.dumps(jsonable(outcome.to_dict())))
        return 1
    err.print(f"[dim]through the route's policies: {escape(names)}[/]")
    result = outcome.result
    logs = [(line.level, line.message) for line in result.logs]
    _show(logs, outcome.to_dict(), result.effects, commit=commit)
    return 0


def _headers(args: argparse.Namespace) -> dict[str, str]:
    """``--header 'NAME: VALUE'`` options, with the host header a server would see."""
    headers = {"host": "localhost"}
    for raw in args.header:
        name, sep, value = raw.partition(":")
        if not sep or not name.strip() or any(c in raw for c in "\r\n\0"):
            raise InvalidRequest(f"--header {raw!r}: expected 'NAME: VALUE' on one line")
        try:
            raw.encode("latin-1")
        except UnicodeEncodeError:
            raise InvalidRequest(
                f"--header {raw!r}: HTTP headers are latin-1; encode other text (e.g. "
                "percent-encoding) first"
            ) from None
        headers[name.strip().lower()] = value.strip()
    return headers


def _show(
    logs: list[tuple[str, str]], response: Any, effects: list[dict[str, Any]] | None, commit: bool
) -> None:
    for level, message in logs:
        err.print(f"[dim]{level}[/] {escape(message)}")
    out.print_json(json.dumps(jsonable(response)))
    if effects is None:
        return
    if not effects:
        err.print("[dim]effects: none[/]")
        return
    head = "committed" if commit else "would commit (a dry run: nothing kept; --commit applies)"
    err.print(f"[bold]effects[/] {head}:")
    for effect in effects:
        err.print(f"  {escape(json.dumps(jsonable(effect)))}")


def _event(args: argparse.Namespace, app: Manifest | None, name: str) -> dict[str, Any] | Any:
    from host.cli.envelopes import http_event, trigger_event

    given = json.loads(args.event) if args.event else None
    if args.http:
        method, path = args.http
        event = http_event(method, path, args.body, app, name if app is not None else None)
        event["headers"] = _headers(args)
        return event
    if args.header:
        raise InvalidRequest("--header goes with --http")
    if args.trigger:
        return trigger_event(args.trigger, app, name, given)
    return given


# --- finding what to run -------------------------------------------------------------


def _app_here() -> Manifest | None:
    """The app of the current directory or the nearest parent holding a nimbus.toml."""
    from host.manifest.app import load_manifest

    here = Path.cwd()
    for d in (here, *here.parents):
        if (d / "nimbus.toml").is_file():
            return load_manifest(d)
    return None


def resolve(target: str) -> Target:
    """A function name of the app here; else a directory (of an app's function, when
    its parent's nimbus.toml says so) or a .wasm."""
    path = Path(target)
    app = _app_here() if not path.exists() or "/" not in target else None
    if app is not None and target in app.functions:
        return _of_app(app, target)
    if path.is_dir():
        owner = _owner(path.resolve())
        return owner or Target(path.resolve().name, path)
    if path.is_file():
        return Target(path.stem, path)
    known = sorted(app.functions) if app is not None else []
    near = difflib.get_close_matches(target, known, n=1)
    hint = f"; did you mean {near[0]!r}?" if near else ""
    where = f" of the app at {app.path} ({', '.join(known) or 'no functions'})" if app else ""
    raise InvalidRequest(
        f"{target}: no such function{where}, function directory or .wasm{hint} "
        "(a deployed function: nimbus invoke --remote NAME)"
    )


def _of_app(app: Manifest, name: str) -> Target:
    spec = app.functions[name]
    module = spec.source if spec.source is not None else spec.wasm
    assert module is not None
    return Target(name, module, app, spec)


def _owner(src: Path) -> Target | None:
    """The function of the app around ``src`` built from it, when exactly one is."""
    from host.manifest.app import load_manifest

    for d in (src.parent, Path.cwd()):
        if not (d / "nimbus.toml").is_file():
            continue
        try:
            app = load_manifest(d)
        except ManifestError as e:
            err.print(f"[yellow]note:[/] running {src} on its own: {e}")
            return None
        names = [n for n, s in app.functions.items() if s.source == src]
        if len(names) == 1:
            return _of_app(app, names[0])
        if names:
            err.print(
                f"[yellow]note:[/] {', '.join(names)} are all built from {src}; running it on "
                f"its own (for one of them: nimbus invoke NAME in {d})"
            )
            return None
    return None


def _platform(args: argparse.Namespace) -> Platform:
    from host.platform.platform import Platform

    choose_secrets_key(args.secrets_key)
    return Platform(Path(args.data))


def _runner(
    args: argparse.Namespace, target: Target, platform: Platform
) -> Callable[[str, Any], InvocationResult]:
    """Runs ``target`` (or, by name, another function of its app: an authorizer) on
    ``platform``; only ``target``'s writes are committed, and only with ``--commit``."""

    def run(name: str, event: Any) -> InvocationResult:
        this = target if name == target.name else _of_app(_app_of(target), name)
        wasm = _module(this)
        spec = _spec(args, this, wasm)
        if not (isinstance(event, dict) and "kind" in event):
            event = {"kind": "invoke", "input": event}
        commit = args.commit and this is target
        return platform.invoke_module(spec, wasm.read_bytes(), event, commit=commit)

    return run


def _app_of(target: Target) -> Manifest:
    if target.app is None:
        raise InvalidRequest(f"{target.name} is not part of an app")
    return target.app


def _module(target: Target) -> Path:
    from host.toolchain.builder import build_function

    if target.module.is_dir():
        with err.status(f"building {target.module}…"):
            return build_function(target.module, target.name).wasm
    return target.module


def _spec(args: argparse.Namespace, target: Target, wasm: Path) -> FunctionSpec:
    from host.manifest.functions import function_spec_from_dict

    if target.spec is not None:
        if args.config:
            raise InvalidRequest(
                f"{target.name} is configured by {target.app.path if target.app else 'its app'}; "
                "--config is for a function outside an app"
            )
        return target.spec
    config = json.loads(args.config) if args.config else {}
    config.setdefault("wasm", str(wasm))
    return function_spec_from_dict(target.name, config, where="--config")
