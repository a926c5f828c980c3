"""Turn FaceMend :class:`~facemend.nodes.spec.NodeDef` classes into ComfyUI V3 nodes.

Only imported inside ComfyUI (it imports ``comfy_api``): the one module that knows ComfyUI's node
system, together with :mod:`.routes`.
"""

from __future__ import annotations

from typing import Any

from comfy_api.latest import ComfyExtension, io, ui  # noqa: F401 - ComfyUI is present here

from ..nodes.spec import In, NodeDef, NodeResult, Out
from ..runtime import register_model_folders

_CUSTOM: dict[str, Any] = {}


def _custom(type_name: str) -> Any:
    if type_name not in _CUSTOM:
        _CUSTOM[type_name] = io.Custom(type_name)
    return _CUSTOM[type_name]


def _input(spec: In) -> Any:
    common: dict[str, Any] = {"display_name": spec.display_name, "optional": spec.optional, "tooltip": spec.tooltip}
    t = spec.type
    if t == "IMAGE":
        return io.Image.Input(spec.id, **common)
    if t == "MASK":
        return io.Mask.Input(spec.id, **common)
    if t == "INT":
        return io.Int.Input(spec.id, default=spec.default, min=spec.min, max=spec.max, step=spec.step, **common)
    if t == "FLOAT":
        return io.Float.Input(spec.id, default=spec.default, min=spec.min, max=spec.max, step=spec.step, **common)
    if t == "STRING":
        return io.String.Input(spec.id, default=spec.default, multiline=spec.multiline, **common)
    if t == "BOOLEAN":
        return io.Boolean.Input(spec.id, default=spec.default, **common)
    if t == "COMBO":
        # model_kind travels in the input's options (object_info) for the frontend extension.
        extra = {"facemend_model_kind": spec.model_kind} if spec.model_kind else None
        return io.Combo.Input(spec.id, options=spec.choices(), default=spec.default, extra_dict=extra, **common)
    return _custom(t).Input(spec.id, **common)


def _output(spec: Out) -> Any:
    kw = {"display_name": spec.name, "tooltip": spec.tooltip}
    if spec.type == "IMAGE":
        return io.Image.Output(**kw)
    if spec.type == "MASK":
        return io.Mask.Output(**kw)
    if spec.type == "STRING":
        return io.String.Output(**kw)
    if spec.type == "INT":
        return io.Int.Output(**kw)
    return _custom(spec.type).Output(**kw)


def _ui(cls: type[io.ComfyNode], payload: dict[str, Any]) -> Any:
    if not payload:
        return None
    out: dict[str, Any] = {}
    if "text" in payload:
        out["text"] = list(payload["text"])
    if "images" in payload:
        previews = [ui.PreviewImage(img, cls=cls).as_dict() for img in payload["images"]]
        out["images"] = [entry for p in previews for entry in p.get("images", [])]
    for k, v in payload.items():
        if k not in ("text", "images"):
            # ComfyUI merges UI payloads key by key as lists (execution.get_output_from_returns
            # iterates each value), so a bare string or dict would be split or break the merge.
            out[k] = list(v) if isinstance(v, (list, tuple)) else [v]
    return out


def to_comfy_node(node: type[NodeDef]) -> type[io.ComfyNode]:
    """Build the V3 ``io.ComfyNode`` subclass for ``node`` (same id, schema and behaviour)."""

    def define_schema(cls: type[io.ComfyNode]) -> io.Schema:
        return io.Schema(
            node_id=node.NODE_ID,
            display_name=node.DISPLAY_NAME,
            category=node.CATEGORY,
            description=node.DESCRIPTION,
            inputs=[_input(i) for i in node.inputs()],
            outputs=[_output(o) for o in node.OUTPUTS],
            is_output_node=node.OUTPUT_NODE,
        )

    def execute(cls: type[io.ComfyNode], **kwargs: Any) -> io.NodeOutput:
        result: NodeResult = node.execute(**kwargs)
        return io.NodeOutput(*result.outputs, ui=_ui(cls, result.ui))

    def fingerprint_inputs(cls: type[io.ComfyNode], **kwargs: Any) -> Any:
        return node.fingerprint(**kwargs)

    attrs: dict[str, Any] = {
        "__doc__": node.__doc__,
        "__module__": node.__module__,
        "define_schema": classmethod(define_schema),
        "execute": classmethod(execute),
    }
    if node.fingerprint.__func__ is not NodeDef.fingerprint.__func__:  # type: ignore[attr-defined]
        attrs["fingerprint_inputs"] = classmethod(fingerprint_inputs)
    return type(node.__name__, (io.ComfyNode,), attrs)


class FaceMendExtension(ComfyExtension):
    """The pack's V3 extension: registers model folders and lists the nodes."""

    def __init__(self, nodes: list[type[NodeDef]]) -> None:
        self._nodes = nodes

    async def on_load(self) -> None:
        register_model_folders()

    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        # ComfyUI 0.8 never calls on_load (nodes.load_custom_node only awaits get_node_list), so
        # the folders are registered here too (idempotent), before any schema lists models.
        register_model_folders()
        return [to_comfy_node(n) for n in self._nodes]
