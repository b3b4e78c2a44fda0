"""A workflow run drawn as a graph: where each step sits and what happened to it.

The layout is layered: steps by their distance from the start (top to bottom),
handlers in a column on the right (they are reached only by failures), the end at
the bottom. Each node carries what the run's history says about the step (ran,
attempts and the delays between them, failed, chose, running, not reached), and each
edge whether the run went along it. The template turns this into inline SVG.
"""

from __future__ import annotations

import itertools
from collections import deque
from typing import Any

from msgspec import Struct, field

from host.manifest.workflows import END, Workflow

NODE_W, NODE_H = 190, 58
GAP_X, GAP_Y = 36, 46
MARGIN = 16


class Node(Struct):
    """One step (or the end) placed on the canvas, with its fate in this run."""

    name: str
    kind: str  # "task", "choice", "handler" or "end"
    function: str
    x: int = 0
    y: int = 0
    status: str = "pending"  # pending, running, succeeded, failed, chose, retried
    attempts: list[dict[str, Any]] = field(default_factory=list)
    delays_ms: list[int] = field(default_factory=list)

    @property
    def cx(self) -> int:
        return self.x + NODE_W // 2

    @property
    def label(self) -> str:
        if self.kind == "end":
            return "end"
        n = len([a for a in self.attempts if a["status"] in ("succeeded", "failed")])
        parts = [self.kind if self.kind != "task" else self.function]
        if n > 1:
            parts.append(f"{n} attempts")
        return " · ".join(parts)


class Edge(Struct, frozen=True):
    """A transition of the definition; ``taken`` when this run followed it."""

    source: str
    target: str
    kind: str  # "success", "failure", "choice", "default"
    taken: bool
    path: str


class Graph(Struct):
    nodes: list[Node]
    edges: list[Edge]
    width: int
    height: int


def _edges_of(wf: Workflow) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    for step in wf.steps.values():
        if step.type == "choice":
            out += [(step.name, c.next, "choice") for c in step.choices]
            out.append((step.name, step.default, "default"))
        else:
            out.append((step.name, step.on_success, "success"))
            if step.on_failure != END:
                out.append((step.name, step.on_failure, "failure"))
    return out


def _layers(wf: Workflow) -> dict[str, int]:
    depth = {wf.start: 0}
    todo = deque([wf.start])
    while todo:
        name = todo.popleft()
        step = wf.steps[name]
        for target in step.targets():
            if target != END and target not in depth and not wf.steps[target].handler:
                depth[target] = depth[name] + 1
                todo.append(target)
    return depth


def build_graph(wf: Workflow, run: dict[str, Any]) -> Graph:
    """Lay out ``wf`` and mark what ``run`` did at each step."""
    depth = _layers(wf)
    main_rows = (max(depth.values()) + 1) if depth else 1
    rows: dict[int, list[str]] = {}
    for name, d in sorted(depth.items(), key=lambda kv: kv[1]):
        rows.setdefault(d, []).append(name)
    widest = max((len(v) for v in rows.values()), default=1)
    nodes: dict[str, Node] = {}
    for d, names in rows.items():
        offset = (widest - len(names)) * (NODE_W + GAP_X) // 2
        for i, name in enumerate(names):
            step = wf.steps[name]
            nodes[name] = Node(
                name,
                "choice" if step.type == "choice" else "task",
                step.function,
                MARGIN + offset + i * (NODE_W + GAP_X),
                MARGIN + d * (NODE_H + GAP_Y),
            )
    handler_x = MARGIN + widest * (NODE_W + GAP_X) + GAP_X
    handlers = [s for s in wf.steps.values() if s.handler or s.name not in depth]
    for i, step in enumerate(handlers):
        y = MARGIN + i * (NODE_H + GAP_Y) + (NODE_H + GAP_Y) // 2
        nodes[step.name] = Node(step.name, "handler", step.function, handler_x, y)
    end_y = MARGIN + max(main_rows, len(handlers) + 1) * (NODE_H + GAP_Y)
    end_x = MARGIN + (widest - 1) * (NODE_W + GAP_X) // 2
    nodes[END] = Node(END, "end", "", end_x, end_y)
    _mark(nodes, run)
    taken = _taken(run)
    edges = [
        Edge(s, t, kind, (s, t) in taken, _path(nodes[s], nodes[t])) for s, t, kind in _edges_of(wf)
    ]
    width = (handler_x + NODE_W + MARGIN) if handlers else (MARGIN * 2 + widest * (NODE_W + GAP_X))
    return Graph(list(nodes.values()), edges, width, end_y + NODE_H + MARGIN)


def _mark(nodes: dict[str, Node], run: dict[str, Any]) -> None:
    for h in run.get("history", []):
        node = nodes.get(h["step"])
        if node is not None:
            node.attempts.append(h)
    for node in nodes.values():
        ran = [a for a in node.attempts if a["status"] in ("succeeded", "failed")]
        node.delays_ms = [int(b["started_ms"] - a["ended_ms"]) for a, b in itertools.pairwise(ran)]
        final = (run.get("steps") or {}).get(node.name, {}).get("status")
        if run.get("current") == node.name and run.get("status") == "running":
            node.status = "retrying" if ran else "running"
        elif final in ("succeeded", "failed"):
            node.status = "retried" if final == "succeeded" and len(ran) > 1 else final
        elif any(a["status"] == "chose" for a in node.attempts):
            node.status = "chose"
    if run.get("status") in ("succeeded", "failed"):
        nodes[END].status = run["status"]


def _taken(run: dict[str, Any]) -> set[tuple[str, str]]:
    steps = [h["step"] for h in run.get("history", [])]
    distinct = [s for i, s in enumerate(steps) if i == 0 or steps[i - 1] != s]
    pairs = set(itertools.pairwise(distinct))
    if distinct and run.get("status") in ("succeeded", "failed"):
        pairs.add((distinct[-1], END))
    return pairs


def _path(a: Node, b: Node) -> str:
    """An SVG path from ``a`` to ``b``: down between rows, sideways into a handler."""
    if b.kind == "handler":
        x1, y1 = a.x + NODE_W, a.y + NODE_H // 2
        x2, y2 = b.x, b.y + NODE_H // 2
        mid = (x1 + x2) // 2
        return f"M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}"
    if a.kind == "handler":  # down the handler column, then into the target's side
        x1, y1 = a.cx, a.y + NODE_H
        x2, y2 = b.x + NODE_W, b.y + NODE_H // 2
        return f"M{x1},{y1} C{x1},{y2} {x1},{y2} {x2},{y2}"
    x1, y1 = a.cx, a.y + NODE_H
    x2, y2 = b.cx, b.y
    if y2 <= y1:  # a back edge: loop round on the left
        left = min(a.x, b.x) - GAP_X // 2
        return f"M{a.x},{a.y + NODE_H // 2} C{left},{a.y} {left},{b.y + NODE_H} {b.x},{b.y + 8}"
    mid = (y1 + y2) // 2
    return f"M{x1},{y1} C{x1},{mid} {x2},{mid} {x2},{y2}"
