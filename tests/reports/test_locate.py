"""The locate page: verdict line, the error plot (with an overflowed layer), the advice, every text escaped."""

from __future__ import annotations

import math
from dataclasses import replace

from synctalk_parity.harness.locate.types import KeepAdvice, LayerError, LocateResult
from synctalk_parity.reports.locate import render_locate, verdict_line


def _layer(index: int, name: str, introduced: float, propagated: float) -> LayerError:
    return LayerError(index, name, "Conv", f"node{index}", f"output of {name}", 2.0, 0.0, propagated, 1.0, 0.0, introduced, 0.0, 1e-2)


def _document(**changes) -> LocateResult:
    document = LocateResult("audio_encoder", "onnxruntime", "a.onnx", "fp16", "golden", 4,
                            [_layer(0, "audio_encoder.0.conv_block.0", 3e-4, 3e-4), _layer(1, "audio_encoder.11.conv_block.0", math.inf, math.inf),
                             _layer(2, "<b>x</b>", 0.0, math.nan)],
                            output_max_abs=math.inf, output_tolerance=0.01, instrumented_output_diff=0.0, seconds=1.0, notes=["a <note>"])
    return replace(document, **changes)


def test_the_verdict_names_the_first_layer_over_its_tolerance():
    line = verdict_line(_document())
    assert line.startswith("FAIL audio_encoder (onnxruntime, fp16, 4 samples): first layer that introduces error: audio_encoder.11.conv_block.0 (Conv)")
    assert "adds inf of its range (tolerance 0.01)" in line


def test_an_accumulated_miss_names_the_keep_set_that_fixes_it():
    advice = KeepAdvice("audio_encoder", ["audio_encoder.0", "audio_encoder.1"], passed=True, max_abs=0.0094, baseline_max_abs=0.016,
                        tolerance=0.01, evaluations=27, verification={"passed": True, "max_abs_diff_by_batch": {"1": 0.0054, "4": 0.0069}})
    document = _document(layers=_document().layers[:1], advice=advice, output_max_abs=0.016)  # no layer over its tolerance
    line = verdict_line(document)
    assert "no layer adds more than its tolerance" in line
    assert "responsible: audio_encoder.0, audio_encoder.1 (kept fp32, the output is within 0.0094; verified by export: batch 1 0.0054, batch 4 0.0069)" in line


def test_the_page_plots_every_layer_and_escapes_text():
    page = render_locate(_document())
    assert page.count("<polyline") == 2 and "<circle" in page  # propagated, introduced; the first introducing layer marked
    assert "&lt;b&gt;x&lt;/b&gt;" in page and "<b>x</b>" not in page and "a &lt;note&gt;" in page
    assert "NaN" not in page.split("<svg", 1)[1].split("</svg>", 1)[0]  # non-finite values drawn at the edge, not as NaN coordinates
