"""Keep-fp32 sets as a user names them: `--keep-fp32 audio_encoder.0,audio_encoder.1`, a file (`keep_fp32.json` as
`parity locate` writes it, or a text file with one layer per line), or `none`. Layer names are PyTorch module
paths; each name goes to the network whose modules it names (the audio encoder's start with `audio_encoder`)."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ParityError

NETWORKS = ("unet", "audio_encoder")
NONE = "none"


def parse_keep_fp32(value: str) -> dict[str, list[str]]:
    """Per network, the layers `value` names; `none` keeps nothing in either network."""
    text = value.strip()
    if text.lower() == NONE:
        return {network: [] for network in NETWORKS}
    path = Path(text)
    if path.suffix in (".json", ".txt") or path.is_file():
        return _from_file(path)
    return _by_network([name.strip() for name in text.split(",") if name.strip()], "--keep-fp32")


def network_of(layer: str) -> str:
    return "audio_encoder" if layer.startswith(("audio_encoder", "AudioEncoder:")) else "unet"


def _from_file(path: Path) -> dict[str, list[str]]:
    if not path.is_file():
        raise ParityError(f"--keep-fp32 {path}: no such file (pass a keep_fp32.json written by parity locate, or layer names)")
    text = path.read_text()
    if path.suffix != ".json":
        return _by_network([line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")], str(path))
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParityError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    keep = document.get("keep_fp32") if isinstance(document, dict) else None
    if not isinstance(keep, dict) or not all(isinstance(v, list) and all(isinstance(n, str) for n in v) for v in keep.values()):
        raise ParityError(f'{path}: expected {{"keep_fp32": {{"audio_encoder": ["layer", ...]}}}} as parity locate writes it')
    unknown = sorted(set(keep) - set(NETWORKS))
    if unknown:
        raise ParityError(f"{path}: unknown network {unknown[0]!r} in keep_fp32; use unet or audio_encoder")
    return {network: list(layers) for network, layers in keep.items()}


def _by_network(names: list[str], where: str) -> dict[str, list[str]]:
    if not names:
        raise ParityError(f"{where}: no layer names; pass module paths such as audio_encoder.0, a keep_fp32.json, or none")
    keep: dict[str, list[str]] = {}
    for name in names:
        keep.setdefault(network_of(name), []).append(name)
    return keep
