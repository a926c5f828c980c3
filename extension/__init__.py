"""The extension room: the only code (with the root ``__init__``) that knows it runs inside ComfyUI.

- :mod:`.v3`: turns :mod:`facemend.nodes` into ComfyUI V3 nodes (imports ``comfy_api``; inside
  ComfyUI only).
- :mod:`.routes`: the ``/facemend/...`` HTTP routes the web extension calls (its handlers are plain
  functions, tested without ComfyUI).
"""
