"""UI-format workflows (what the ComfyUI frontend saves): schemas, checks, conversion to API format.

Used by ``tests/unit/test_example_workflows.py`` (schemas from FaceMend's own node definitions
and ``tests/data/core_nodes.json``) and by the live-server tests (schemas from ``/object_info``).

A *schema* is an ``/object_info`` entry: ``input`` (``required``/``optional``: name ->
``[type, options]``, where a combo's type is ``"COMBO"`` or the list of its choices),
``input_order``, ``output`` and ``output_name``.

The frontend's rules mirrored here (ComfyUI frontend 1.35):

- widgets are the inputs of type INT, FLOAT, STRING, BOOLEAN or COMBO, required ones first, each
  group in ``input_order``; ``widgets_values`` holds their values in that order;
- an INT input with ``control_after_generate`` (or, when the option is absent, named ``seed`` or
  ``noise_seed``) is followed by a ``control_after_generate`` widget (``fixed``, ``increment``,
  ``decrement`` or ``randomize``); a FLOAT or COMBO input only when the option is true;
- an input with ``image_upload`` is followed by an ``upload`` widget (value ``"image"``);
- ``Note``, ``MarkdownNote``, ``Reroute`` and ``PrimitiveNode`` live only in the frontend.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES_DIR = ROOT / "example_workflows"
CORE_NODES_FILE = ROOT / "tests" / "data" / "core_nodes.json"

VIRTUAL_NODES = frozenset({"Note", "MarkdownNote", "Reroute", "PrimitiveNode"})
WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})
CONTROL_VALUES = ("fixed", "increment", "decrement", "randomize")
#: Node modes: 0 = always, 2 = muted (never), 4 = bypassed. Muted/bypassed nodes are not sent.
ACTIVE_MODES = (0, 3)

Schema = Mapping[str, Any]


def load_workflow(path: Path) -> dict[str, Any]:
    """Read a UI-format workflow JSON."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def example_paths() -> list[Path]:
    """The example workflows shipped in ``example_workflows/``."""
    return sorted(EXAMPLES_DIR.glob("*.json"))


def load_core_nodes() -> dict[str, Any]:
    """``tests/data/core_nodes.json``: ``{"nodes": {type: schema}, "file_inputs": [[type, input], ...]}``."""
    with open(CORE_NODES_FILE, encoding="utf-8") as f:
        return json.load(f)


def facemend_schemas() -> dict[str, dict[str, Any]]:
    """``/object_info``-style schemas of FaceMend's nodes, built from ``facemend.nodes.all_nodes()``
    exactly as ``extension/v3.py`` declares them to ComfyUI (without ComfyUI)."""
    from facemend.nodes import all_nodes

    out: dict[str, dict[str, Any]] = {}
    for node in all_nodes():
        required: dict[str, Any] = {}
        optional: dict[str, Any] = {}
        for spec in node.inputs():
            opts: dict[str, Any] = {"tooltip": spec.tooltip}
            for attr in ("default", "min", "max", "step"):
                if getattr(spec, attr) is not None:
                    opts[attr] = getattr(spec, attr)
            if spec.type == "COMBO":
                opts["options"] = spec.choices() if spec.model_kind is None else []
                if spec.model_kind:
                    opts["facemend_model_kind"] = spec.model_kind
            (optional if spec.optional else required)[spec.id] = [spec.type, opts]
        out[node.NODE_ID] = {
            "name": node.NODE_ID,
            "input": {"required": required, "optional": optional},
            "input_order": {"required": list(required), "optional": list(optional)},
            "output": [o.type for o in node.OUTPUTS],
            "output_name": [o.name for o in node.OUTPUTS],
        }
    return out


def offline_schemas() -> dict[str, dict[str, Any]]:
    """FaceMend's schemas plus the recorded core ones."""
    return {**load_core_nodes()["nodes"], **facemend_schemas()}


def input_type(entry: list[Any]) -> str:
    """``"COMBO"`` for old-style combos (a list of choices), else the declared type."""
    return "COMBO" if isinstance(entry[0], list) else str(entry[0])


def input_options(entry: list[Any]) -> dict[str, Any]:
    return entry[1] if len(entry) > 1 and isinstance(entry[1], dict) else {}


def combo_choices(entry: list[Any]) -> list[Any]:
    return list(entry[0]) if isinstance(entry[0], list) else list(input_options(entry).get("options", []))


def _ordered_inputs(schema: Schema) -> list[tuple[str, list[Any], bool]]:
    """(name, entry, optional) in the frontend's order: required then optional, each in input_order."""
    result = []
    for group in ("required", "optional"):
        entries = schema.get("input", {}).get(group, {}) or {}
        order = (schema.get("input_order") or {}).get(group) or list(entries)
        result += [(name, entries[name], group == "optional") for name in order if name in entries]
    return result


def widget_slots(schema: Schema) -> list[tuple[str, str]]:
    """``(kind, input name)`` per ``widgets_values`` entry: kind is ``"value"``, ``"control"``
    (``control_after_generate`` of the input before it) or ``"upload"``."""
    slots: list[tuple[str, str]] = []
    for name, entry, _ in _ordered_inputs(schema):
        kind = input_type(entry)
        if kind not in WIDGET_TYPES:
            continue
        opts = input_options(entry)
        slots.append(("value", name))
        control = opts.get("control_after_generate")
        if kind == "INT" and control is None:
            control = name in ("seed", "noise_seed")
        if control and kind in ("INT", "FLOAT", "COMBO"):
            slots.append(("control", name))
        if opts.get("image_upload"):
            slots.append(("upload", name))
    return slots


def socket_inputs(schema: Schema) -> list[tuple[str, str, bool]]:
    """``(name, type, optional)`` of the inputs that are sockets (not widgets)."""
    return [(n, input_type(e), opt) for n, e, opt in _ordered_inputs(schema) if input_type(e) not in WIDGET_TYPES]


def _all_inputs(schema: Schema) -> dict[str, list[Any]]:
    return {n: e for n, e, _ in _ordered_inputs(schema)}


def _value_problem(name: str, entry: list[Any], value: Any, check_choices: bool) -> str | None:
    kind = input_type(entry)
    opts = input_options(entry)
    if kind in ("INT", "FLOAT"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{name}: {value!r} is not a number"
        if kind == "INT" and not float(value).is_integer():
            return f"{name}: {value!r} is not an integer"
        if "min" in opts and value < opts["min"] or "max" in opts and value > opts["max"]:
            return f"{name}: {value!r} is outside [{opts.get('min')}, {opts.get('max')}]"
    elif kind == "BOOLEAN" and not isinstance(value, bool):
        return f"{name}: {value!r} is not a boolean"
    elif kind == "STRING" and not isinstance(value, str):
        return f"{name}: {value!r} is not a string"
    elif kind == "COMBO" and check_choices and value not in combo_choices(entry):
        return f"{name}: {value!r} is not one of {combo_choices(entry)[:12]}"
    return None


def check_workflow(
    workflow: Mapping[str, Any],
    schemas: Mapping[str, Schema],
    free_choices: Iterable[tuple[str, str]] = (),
) -> list[str]:
    """Every problem that would stop ``workflow`` from loading cleanly or running (empty = fine).

    Args:
        workflow: a UI-format workflow.
        schemas: node type -> ``/object_info`` entry.
        free_choices: ``(node type, input)`` combos whose choices depend on the installation
            (model and image file lists); their values are not checked against the choices.
    """
    problems: list[str] = []
    free = {tuple(x) for x in free_choices}
    nodes = {n["id"]: n for n in workflow.get("nodes", [])}
    links = {link[0]: link for link in workflow.get("links", [])}
    for node in nodes.values():
        where = f"node {node['id']} ({node['type']})"
        if node["type"] in VIRTUAL_NODES:
            continue
        schema = schemas.get(node["type"])
        if schema is None:
            problems.append(f"{where}: unknown node type")
            continue
        entries = _all_inputs(schema)
        # widget values, by position
        slots = widget_slots(schema)
        values = list(node.get("widgets_values") or [])
        if len(values) != len(slots):
            problems.append(f"{where}: {len(values)} widget values for {len(slots)} widgets {[s[1] for s in slots]}")
        else:
            for (kind, name), value in zip(slots, values):
                if kind == "control" and value not in CONTROL_VALUES:
                    problems.append(f"{where}: control_after_generate of {name} is {value!r}")
                elif kind == "value":
                    p = _value_problem(name, entries[name], value, (node["type"], name) not in free
                                       and not input_options(entries[name]).get("facemend_model_kind"))
                    if p:
                        problems.append(f"{where}: {p}")
        # input slots: names and types as declared; required sockets connected
        linked = set()
        for i, slot in enumerate(node.get("inputs") or []):
            name = slot.get("name")
            if name == "upload" and slot.get("type") == "IMAGEUPLOAD":
                continue
            if name not in entries:
                problems.append(f"{where}: input {name!r} does not exist (inputs: {list(entries)})")
                continue
            if slot.get("type") != input_type(entries[name]) and input_type(entries[name]) != "COMBO":
                problems.append(f"{where}: input {name!r} has type {slot.get('type')}, schema says {input_type(entries[name])}")
            if slot.get("link") is not None:
                link = links.get(slot["link"])
                if link is None or link[3] != node["id"] or link[4] != i:
                    problems.append(f"{where}: input {name!r} points at link {slot['link']} that does not end here")
                linked.add(name)
        for name, kind, optional in socket_inputs(schema):
            if not optional and name not in linked:
                problems.append(f"{where}: required input {name!r} ({kind}) is not connected")
        # outputs: names and types as declared
        outs = list(zip(schema.get("output", []), schema.get("output_name", [])))
        for j, slot in enumerate(node.get("outputs") or []):
            if j >= len(outs):
                problems.append(f"{where}: output {j} ({slot.get('name')}) does not exist")
            elif slot.get("type") != outs[j][0] or slot.get("name") not in (outs[j][1], outs[j][0]):
                problems.append(f"{where}: output {j} is {slot.get('name')}:{slot.get('type')}, schema says {outs[j][1]}:{outs[j][0]}")
    for link_id, origin, o_slot, target, t_slot, kind in (tuple(link[:6]) for link in links.values()):
        a, b = nodes.get(origin), nodes.get(target)
        if a is None or b is None:
            problems.append(f"link {link_id}: joins missing node {origin if a is None else target}")
            continue
        if a["type"] in VIRTUAL_NODES or b["type"] in VIRTUAL_NODES:
            continue
        sa, sb = schemas.get(a["type"]), schemas.get(b["type"])
        if sa is None or sb is None:
            continue
        outputs = sa.get("output", [])
        if o_slot >= len(outputs) or outputs[o_slot] != kind:
            problems.append(f"link {link_id}: {a['type']} output {o_slot} is not {kind}")
        else:
            ui_outputs = a.get("outputs") or []
            listed = (ui_outputs[o_slot].get("links") or []) if o_slot < len(ui_outputs) else []
            if link_id not in listed:
                problems.append(f"link {link_id}: not listed on {a['type']} output {o_slot}")
        t_inputs = b.get("inputs") or []
        if t_slot >= len(t_inputs):
            problems.append(f"link {link_id}: {b['type']} has no input slot {t_slot}")
            continue
        name = t_inputs[t_slot].get("name")
        entry = _all_inputs(sb).get(name)
        if entry is not None and input_type(entry) != kind and not (input_type(entry) == "COMBO" and kind == "COMBO"):
            problems.append(f"link {link_id}: {a['type']} {kind} -> {b['type']}.{name} ({input_type(entry)})")
    return problems


def ui_to_api(workflow: Mapping[str, Any], schemas: Mapping[str, Schema]) -> dict[str, dict[str, Any]]:
    """The API-format prompt the frontend would queue for ``workflow`` (what ``POST /prompt`` takes).

    Widget values become inputs by name (``control_after_generate`` and ``upload`` values are
    frontend-only); links become ``[origin node id, output slot]``; frontend-only, muted and
    bypassed nodes are left out.
    """
    nodes = {n["id"]: n for n in workflow.get("nodes", [])}
    links = {link[0]: link for link in workflow.get("links", [])}
    prompt: dict[str, dict[str, Any]] = {}
    for node in nodes.values():
        if node["type"] in VIRTUAL_NODES or node.get("mode", 0) not in ACTIVE_MODES:
            continue
        schema = schemas[node["type"]]
        inputs: dict[str, Any] = {}
        values = list(node.get("widgets_values") or [])
        for (kind, name), value in zip(widget_slots(schema), values):
            if kind == "value":
                inputs[name] = value
        for slot in node.get("inputs") or []:
            if slot.get("link") is not None and slot["name"] in _all_inputs(schema):
                link = links[slot["link"]]
                inputs[slot["name"]] = [str(link[1]), link[2]]
        prompt[str(node["id"])] = {
            "class_type": node["type"],
            "inputs": inputs,
            "_meta": {"title": node.get("title") or node["type"]},
        }
    return prompt


def core_subset(object_info: Mapping[str, Schema], types: Iterable[str], file_inputs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """The ``core_nodes.json`` content for ``types`` from a live ``/object_info``: only what the
    checks read (inputs, their order, outputs); install-specific file lists are emptied."""
    files = {tuple(x) for x in file_inputs}
    nodes: dict[str, Any] = {}
    for t in sorted(set(types)):
        info = object_info[t]
        inputs: dict[str, Any] = {}
        for group in ("required", "optional"):
            entries = {}
            for name, entry in (info.get("input", {}).get(group) or {}).items():
                entry = list(entry)
                opts = {k: v for k, v in input_options(entry).items() if k not in ("tooltip",)}
                if (t, name) in files:
                    if isinstance(entry[0], list):
                        entry[0] = []
                    opts.pop("options", None)
                entries[name] = [entry[0], opts] if opts or len(entry) > 1 else [entry[0]]
            if entries:
                inputs[group] = entries
        nodes[t] = {
            "name": t,
            "python_module": info.get("python_module"),
            "input": inputs,
            "input_order": info.get("input_order") or {g: list(v) for g, v in inputs.items()},
            "output": list(info.get("output", [])),
            "output_name": list(info.get("output_name", [])),
        }
    return {"nodes": nodes, "file_inputs": sorted([list(x) for x in files])}
