"""The Markdown report: headline verdicts, the per-stage table, failures verbatim, timing and benchmarks."""

from __future__ import annotations

from synctalk_parity.reports import markdown
from synctalk_parity.reports.view import STAGE_COLUMNS, load_runs

from .conftest import CLIP_STAGES, FRAME_STAGES, OUTPUT_FAILURE, UNET_FAILURE, failing_result, passing_result, write_run


def _table_rows(text: str, header_start: str) -> list[list[str]]:
    """The body rows of the first table whose header starts with `header_start`, as cell lists."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


def test_failing_run_headline_names_backend_precision_first_divergent_stage_and_diagnoses(failing_run):
    text = markdown.render(load_runs([failing_run]))
    headline = next(line for line in text.splitlines() if "FAIL" in line)
    assert headline.startswith("**❌ FAIL** — onnxruntime fp16")
    assert "9/13 stages within tolerance" in headline
    assert "first divergent stage `frame.unet_output`" in headline
    assert "`fp16_overflow`" in headline


def test_passing_run_headline(passing_run):
    text = markdown.render(load_runs([passing_run]))
    assert "**✅ PASS** — onnxruntime fp32; 13/13 stages within tolerance" in text
    assert "### Failures" not in text and "first divergent" not in text


def test_stage_table_has_every_stage_in_order_with_its_metrics(failing_run):
    text = markdown.render(load_runs([failing_run]))
    assert "| " + " | ".join(column.replace("|", "\\|") for column in STAGE_COLUMNS) + " |" in text
    rows = _table_rows(text, "| stage |")
    assert [row[0] for row in rows] == [*CLIP_STAGES, *FRAME_STAGES]
    by_stage = {row[0]: row for row in rows}
    assert by_stage["frame.unet_output"][2:5] == ["0.0391", "0.0012", "2.2e-06"]
    assert by_stage["frame.output"][6:8] == ["38.40", "0.9987"]  # PSNR, SSIM
    assert by_stage["frame.crop_328"][6] == "inf"  # identical frames: Infinity in result.json
    assert by_stage["audio.features"][8] == "0.99999994"  # cosine keeps the digits that matter
    assert by_stage["audio.pcm"][1] == "clip"
    assert [row[-1] for row in rows].count("FAIL") == 4


def test_failures_are_verbatim_in_code_blocks(failing_run):
    text = markdown.render(load_runs([failing_run]))
    assert f"```text\n{UNET_FAILURE}\n```" in text
    assert f"```text\n{OUTPUT_FAILURE}\n```" in text


def test_a_failure_holding_backticks_keeps_its_fence_intact(tmp_path):
    result = failing_result()
    result["comparison"]["stages"][-1]["failure"] = "frame.output: ```odd``` text"
    text = markdown.render(load_runs([write_run(tmp_path / "run", result, with_worst_pngs=False)]))
    assert "````text\nframe.output: ```odd``` text\n````" in text


def test_cells_escape_pipes_and_html(tmp_path):
    result = failing_result()
    result["comparison"]["diagnoses"][0]["message"] = "a | b <script>"
    text = markdown.render(load_runs([write_run(tmp_path / "run", result, with_worst_pngs=False)]))
    assert "a \\| b \\<script\\>" in text and "<script>" not in text


def test_timing_and_benchmark_tables(failing_run):
    text = markdown.render(load_runs([failing_run]))
    assert "**19.80 frames/s** over 12 frames" in text
    timing = _table_rows(text, "| stage or phase |")
    assert ["frame.unet_output", "0.410", "34.2"] in timing
    bench = _table_rows(text, "| backend | mode |")
    assert bench[1] == ["onnxruntime", "model", "4", "11.70", "11.20..11.90", "5", "-", "-", "5.82x", "-", "-", "114.3", "39%", "656", "-", "-"]
    assert bench[2] == ["onnxruntime", "end-to-end", "4", "10.30", "10.10..10.40", "5", "0.88x", "-", "5.12x", "9.71", "0.42",
                        "100.6", "-", "1020", "1.84", "9.30"]
    assert "Machine: 2-core x86_64, no GPU" in text


def test_several_runs_get_a_summary_and_a_section_each(passing_run, failing_run, bench_run):
    text = markdown.render(load_runs([passing_run, failing_run, bench_run]))
    summary = _table_rows(text, "| run |")
    assert [row[:4] for row in summary] == [
        ["onnxruntime-fp32", "onnxruntime", "fp32", "PASS"],
        ["onnxruntime-fp16", "onnxruntime", "fp16", "FAIL"],
        ["bench", "torch, onnxruntime", "-", "NOT COMPARED"],
    ]
    assert summary[1][4:7] == ["frame.unet_output", "4/13", "fp16_overflow"]
    assert [line for line in text.splitlines() if line.startswith("## ")] == [
        "## Summary", "## onnxruntime-fp32", "## onnxruntime-fp16", "## bench"]
    assert "**➖ NOT COMPARED** — torch, onnxruntime" in text


def test_numeric_columns_are_right_aligned_and_text_left(passing_run, failing_run):
    text = markdown.render(load_runs([passing_run, failing_run]))
    rule = text.splitlines()[text.splitlines().index(next(line for line in text.splitlines() if line.startswith("| run |"))) + 1]
    assert rule == "| --- | --- | --- | --- | --- | ---: | --- | ---: |"


def test_a_ratio_closer_to_1_than_8_digits_is_a_number_column():
    """`metric_text` writes a cosine of 1 - 8e-12 as "1-8e-12": the column stays numeric (right-aligned, and in HTML
    not wrapped at its hyphen)."""
    from synctalk_parity.reports.view import is_numeric_column, metric_text

    near_one = metric_text(1 - 8e-12, "ratio")
    assert near_one == "1-8e-12"
    assert is_numeric_column([near_one, metric_text(0.99, "ratio"), "-"])
    assert not is_numeric_column(["1-x"])


def test_problems_and_stages_not_compared_are_shown(tmp_path):
    result = passing_result()
    result["comparison"].update(passed=False, problems=["frame count: the candidate makes 11 output frames, the reference 12"],
                                not_compared={"reference_only": ["audio.pcm"], "candidate_only": []})
    text = markdown.render(load_runs([write_run(tmp_path / "run", result)]))
    assert ("**❌ FAIL** — onnxruntime fp32; 13/13 stages within tolerance; 13 of 13 stages compared; "
            "frame count: the candidate makes 11 output frames, the reference 12") in text
    assert "**comparison**\n\n```text\nframe count: the candidate makes 11 output frames, the reference 12\n```" in text
    assert "- not compared: reference only: audio.pcm" in text


def test_memory_by_video_length(failing_run):
    text = markdown.render(load_runs([failing_run]))
    assert _table_rows(text, "| backend | batch | frames |") == [["onnxruntime", "4", "50", "640"], ["onnxruntime", "4", "400", "644"]]
    assert "Growth from the shortest to the longest run: onnxruntime +4 MB" in text
