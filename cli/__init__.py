"""The command layer: `parity ...` as thin typer commands over the library, results rendered with rich.

One module per command (`run`, `compare`, `export`, `doctor`, `bench`, `report`, `bundle`), each
registering itself on the app in `cli/app.py`. A command parses its options, calls one library
function and renders what it returns. Nothing heavy (torch, onnx, coremltools, OpenCV) is imported
when a command module is imported, so `parity --help` answers at once: the library is imported
inside the command's body.
"""

from __future__ import annotations

from .app import app, main

__all__ = ["app", "main"]
