"""``nimbus new NAME --lang zig|c|python --trigger KIND``: a working function in one step.

Like ``spin new`` or ``wrangler init``: the function directory comes from a template
shipped in the package (``host/templates/LANG/TRIGGER.*``: a handler that logs its
event and answers JSON over HTTP or an output for the other kinds), the app's
nimbus.toml gains the function with its route or trigger (``host.manifest.edit``
keeps every byte already in the file), and the next commands are printed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from msgspec import Struct
from rich.console import Console
from rich.markup import escape

from host.errors import InvalidRequest

if TYPE_CHECKING:
    from host.manifest.edit import Addition

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
TRIGGERS = ("http", "queue", "schedule", "storage", "event")
#: a new schedule fires every five minutes until its cron is changed
DEFAULT_CRON = "*/5 * * * *"


class Language(Struct, frozen=True):
    """A guest language as ``nimbus new`` writes it: its entry file and template suffix."""

    name: str
    entry: str
    suffix: str
    label: str


LANGUAGES = {
    "zig": Language("zig", "main.zig", ".zig", "Zig"),
    "c": Language("c", "main.c", ".c", "C"),
    "python": Language("python", "handler.py", ".py", "Python"),
}

err = Console(stderr=True, highlight=False)


def add_command(sub: Any) -> None:
    c = sub.add_parser(
        "new",
        help="create a function from a template and add it to the app's nimbus.toml",
        description="create a function from a template and add it to the app's nimbus.toml",
    )
    c.set_defaults(handler=cmd_new)
    c.add_argument("name", help="the function's name ([A-Za-z][A-Za-z0-9_-]*)")
    c.add_argument("--lang", required=True, choices=sorted(LANGUAGES))
    c.add_argument("--trigger", default="http", choices=TRIGGERS, help="what runs it (http)")
    c.add_argument("--app", default=".", help="the app directory (holds nimbus.toml)")


def cmd_new(args: argparse.Namespace) -> None:
    from host.manifest.edit import add_function

    app = Path(args.app)
    lang = LANGUAGES[args.lang]
    name = _check_name(args.name)
    if app.exists() and not app.is_dir():
        raise InvalidRequest(f"{app} is a file; --app takes the app's directory")
    app.mkdir(parents=True, exist_ok=True)  # a new app starts with its first function
    fn_dir = app / name
    if fn_dir.exists():
        raise InvalidRequest(
            f"{fn_dir} exists already; pick another name, or remove the directory first"
        )
    manifest = app / "nimbus.toml"
    fn_dir.mkdir()
    try:
        entry = fn_dir / lang.entry
        entry.write_text(render_template(lang, args.trigger, name))
        add_function(manifest, addition(name, lang, args.trigger), f"{name}: added by `nimbus new`")
    except BaseException:
        shutil.rmtree(fn_dir, ignore_errors=True)
        raise
    err.print(f"[green]created[/] {entry} ({lang.label}, {args.trigger} trigger)")
    added = escape(f"[functions.{name}] and its {_what(args.trigger)}")
    err.print(f"[green]added[/] {added} to {manifest}")
    err.print("next:")
    for line in next_commands(app, name, args.trigger):
        err.print(f"  {line}")


def _check_name(name: str) -> str:
    from host.manifest.functions import FUNCTION_NAME

    if FUNCTION_NAME.match(name):
        return name
    words = re.split(r"[^a-z0-9_]+", name.lower())
    fixed = "-".join(w for w in words if w).lstrip("_0123456789")[:63]
    hint = f"; try {fixed!r}" if fixed and FUNCTION_NAME.match(fixed) else ""
    raise InvalidRequest(
        f"{name!r} is not a function name: lower-case letters, digits, '_' and '-', "
        f"starting with a letter, at most 63{hint}"
    )


def _what(trigger: str) -> str:
    return "routes" if trigger == "http" else f"[[triggers.{trigger}]]"


def resources(name: str, trigger: str) -> dict[str, str]:
    """The template's placeholders: the queue, schedule, bucket or topic it uses."""
    resource = f"{name}.*" if trigger == "event" else name
    return {"name": name, "resource": resource, "topic": f"{name}.created"}


def render_template(lang: Language, trigger: str, name: str) -> str:
    text = (TEMPLATES / lang.name / f"{trigger}{lang.suffix}").read_text()
    for key, value in resources(name, trigger).items():
        text = text.replace("{{" + key + "}}", value)
    return text


def addition(name: str, lang: Language, trigger: str) -> Addition:
    """The function's table and its route or trigger, as ``nimbus new`` adds them."""
    from host.manifest.edit import Addition

    res = resources(name, trigger)
    routes: list[dict[str, Any]] = []
    triggers: dict[str, list[dict[str, Any]]] = {}
    if trigger == "http":
        routes = [
            {"method": "GET", "path": f"/{name}", "function": name},
            {"method": "GET", "path": f"/{name}/{{name}}", "function": name},
        ]
    elif trigger == "queue":
        triggers["queue"] = [{"queue": res["resource"], "function": name}]
    elif trigger == "schedule":
        triggers["schedule"] = [{"name": name, "cron": DEFAULT_CRON, "function": name}]
    elif trigger == "storage":
        triggers["storage"] = [{"bucket": res["resource"], "function": name}]
    else:
        triggers["event"] = [{"topic": res["resource"], "function": name}]
    return Addition(
        name,
        {"source": name},
        notes={"source": f"{lang.label}: {name}/{lang.entry}"},
        routes=routes,
        triggers=triggers,
    )


def next_commands(app: Path, name: str, trigger: str) -> list[str]:
    """What to run next, from where the user stands."""
    lines = []
    if app.resolve() != Path.cwd().resolve():
        lines.append(f"cd {os.path.relpath(app)}")
    res = resources(name, trigger)
    if trigger == "http":
        lines.append(f"nimbus invoke {name} --http GET /{name}/ada   # build and run it once")
    else:
        lines.append(f"nimbus invoke {name} --trigger {trigger}   # build and run it once")
    lines.append("nimbus dev   # serve the app; saving a file rebuilds and redeploys it")
    lines.append(
        {
            "http": f"curl http://127.0.0.1:8080/{name}/ada",
            "queue": f"nimbus queue send {name} '{{\"n\": 1}}'",
            "schedule": f"nimbus schedules   # '{DEFAULT_CRON}': every five minutes",
            "storage": f"nimbus blob put {name} hello.txt ./hello.txt --content-type text/plain",
            "event": f"nimbus publish {res['topic']} '{{\"id\": 1}}'",
        }[trigger]
    )
    return lines
