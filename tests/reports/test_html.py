"""The HTML report: one self-contained, escaped page with the verdict, stage table, PSNR plots and the worst frame;
and that it really renders (headless Chromium: a screenshot that is not blank, every embedded image decoded)."""

from __future__ import annotations

import base64
import math
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest

from synctalk_parity.reports import html, write_reports
from synctalk_parity.reports.view import load_runs

from .conftest import CLIP_STAGES, FRAME_STAGES, failing_result, worst_frames, write_run

CHROMIUM = next((path for path in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if path), None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (Debian: apt-get install chromium); CI installs it")
EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*(?!["']?(?:data:|#))|url\((?!["']?data:)|<link\b|@import""", re.IGNORECASE)


def _images(page: str) -> list[np.ndarray]:
    return [cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_COLOR)
            for data in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def test_page_is_self_contained(failing_run, passing_run):
    page = html.render(load_runs([passing_run, failing_run]))
    assert not EXTERNAL.search(page), EXTERNAL.search(page)
    assert "<script" not in page and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_verdict_stage_table_and_failures(failing_run):
    page = html.render(load_runs([failing_run]))
    assert '<div class="verdict fail">FAIL — onnxruntime fp16; 9/13 stages within tolerance; 13 of 13 stages compared; first divergent stage frame.unet_output; diagnoses: fp16_overflow</div>' in page
    stage_table = re.search(r"<h3>Stages</h3>\n<table>.*?</table>", page).group(0)
    stage_rows = re.findall(r'<tr( class="failed")?><td class="name">([a-z_.0-9]+(?:<wbr>[a-z_.0-9]+)*)</td>', stage_table)
    assert [name.replace("<wbr>", "") for _, name in stage_rows] == [*CLIP_STAGES, *FRAME_STAGES]
    assert [name.replace("<wbr>", "") for failed, name in stage_rows if failed] == ["frame.unet_output", "frame.mouth", "frame.pasted_region", "frame.output"]
    assert "<h4>frame.output</h4><pre>frame.output: frame 7: PSNR 38.41 dB &lt; 45 dB;" in page
    assert "<h3>Benchmark</h3>" in page and "<td class=\"num\">5.82x</td>" in page


def test_text_from_result_json_is_escaped(tmp_path):
    result = failing_result(backend="<script>alert(1)</script>")
    result["comparison"]["diagnoses"][0]["message"] = '"><img src=x onerror=alert(2)>'
    page = html.render(load_runs([write_run(tmp_path / "run", result, with_worst_pngs=False)]))
    assert "<script>alert(1)" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&quot;&gt;&lt;img src=x onerror=alert(2)&gt;" in page


def test_psnr_plot_per_frame_stage_with_gate_line(failing_run):
    page = html.render(load_runs([failing_run]))
    plots = re.findall(r'<svg xmlns="http://www.w3.org/2000/svg" class="plot".*?</svg>', page)
    assert len(plots) == 4  # unet_output, mouth, pasted_region, output; crop_328 is identical on every frame
    assert "Identical on every frame (PSNR ≥ 100 dB): frame.crop_328." in page
    for plot in plots:
        svg = ET.fromstring(plot)
        assert svg.find("{http://www.w3.org/2000/svg}polyline") is not None
        assert len(svg.findall("{http://www.w3.org/2000/svg}circle")) == 12
    assert "gate 45 dB" in plots[0] and "frame.unet_output — FAIL, lowest 38.40 dB; 3 identical frame(s) (≥ 100 dB)" in page


def _with_lip_sync(result: dict, offset: int) -> dict:
    from synctalk_parity.harness.verdict.lip_sync import measure_lip_sync
    from synctalk_parity.harness.verdict.result import to_json

    rng = np.random.default_rng(5)
    reference = np.convolve(rng.normal(size=120), np.ones(3) / 3, mode="same")
    candidate = np.roll(reference, offset)
    return {**result, "lip_sync": to_json(measure_lip_sync(candidate, reference=reference))}


def test_lip_sync_is_plotted_over_the_clip(tmp_path):
    run = write_run(tmp_path / "run", _with_lip_sync(failing_result(), 2), with_worst_pngs=False)
    page = html.render(load_runs([run]))
    section = re.search(r"<h3>Lip sync</h3>\n(.*?)</section>", page, re.DOTALL).group(1)
    assert "lip sync against the reference: offset +2 frames (+80 ms, the mouth is late)" in section
    svg = ET.fromstring(re.search(r"<svg .*?</svg>", section).group(0))
    ns = "{http://www.w3.org/2000/svg}"
    lines = svg.findall(f"{ns}polyline")
    assert [line.get("class") for line in lines] == ["sync-reference", "series"]
    assert all(len(line.get("points").split()) == 120 for line in lines)  # a point per frame, both motions
    windows = svg.findall(f"{ns}rect[@class='sync-window']")
    assert len(windows) == 3  # 50-frame windows every 25 frames over 120 frames
    labels = [t.text for t in svg.findall(f"{ns}text")]
    assert labels.count("+2") == 3  # each window's offset written on it
    from synctalk_parity.reports import markdown

    text = markdown.render(load_runs([run]))
    assert "## Lip sync" in text and "| 0..49 | +2 |" in text


def test_lip_sync_not_measured_says_so_under_its_plot(tmp_path):
    """A mouth that hardly moves is not measured: the motion is still plotted, alone (no empty score panel), and the
    caption says no window is scored (it read "each -frame window" before)."""
    from synctalk_parity.harness.verdict.lip_sync import measure_lip_sync
    from synctalk_parity.harness.verdict.result import to_json

    still = measure_lip_sync(np.random.default_rng(5).normal(size=120), reference=np.full(120, 7.0))
    run = write_run(tmp_path / "run", {**failing_result(), "lip_sync": to_json(still)}, with_worst_pngs=False)
    section = re.search(r"<h3>Lip sync</h3>\n(.*?)</section>", html.render(load_runs([run])), re.DOTALL).group(1)
    assert "not measured" in section and "No window is scored" in section and "-frame window" not in section
    svg = ET.fromstring(re.search(r"<svg.*?</svg>", section, re.DOTALL).group(0))
    areas = svg.findall("{http://www.w3.org/2000/svg}rect[@class='plot-area']")
    assert len(areas) == 1 and "Above" not in section  # the motion alone: no empty score panel under it
    scored = measure_lip_sync(np.sin(np.arange(120) / 3.0), reference=np.sin(np.arange(120) / 3.0))
    assert len(ET.fromstring(html.lip_sync_svg(scored)).findall("{http://www.w3.org/2000/svg}rect[@class='plot-area']")) == 2


def test_a_clip_score_without_a_scored_window_draws_no_score_line():
    """The clip's dashed score line belongs to the score panel: when no window holds a score (too short for any lag
    in each window) there is no panel, and the line was drawn at its zero height over the frame axis."""
    from synctalk_parity.harness.verdict.types import LipSync, SyncWindow

    motion = [float(v) for v in np.sin(np.arange(40) / 3.0)]
    sync = LipSync("reference", 40, 25.0, 5, 0, 0.9, 0.9, [SyncWindow(0, 40, None, None)], motion, motion)
    svg = ET.fromstring(html.lip_sync_svg(sync))
    ns = "{http://www.w3.org/2000/svg}"
    assert len(svg.findall(f"{ns}rect[@class='plot-area']")) == 1 and not svg.findall(f"{ns}line[@class='threshold']")


def test_plot_marks_nan_frames_and_puts_identical_frames_above_the_scale():
    svg = ET.fromstring(html.psnr_plot_svg("frame.output", [0, 1, 2, 3, 4], [math.inf, 40.0, math.nan, 30.0, 100.0], threshold=35.0))
    ns = "{http://www.w3.org/2000/svg}"
    assert len(svg.findall(f"{ns}rect[@class='nan-mark']")) == 1
    heights = {float(c.get("cx")): float(c.get("cy")) for c in svg.findall(f"{ns}circle")}
    ys = [heights[x] for x in sorted(heights)]
    assert len(ys) == 4 and ys[0] == ys[3] < ys[1] < ys[2]  # identical (∞ or the 100 dB cap) above 40 dB above 30 dB
    labels = [t.text for t in svg.findall(f"{ns}text")]
    assert labels.count("≥100") == 1 and "100" not in labels and "gate 35 dB" in labels  # the dB scale stops near the data


def test_worst_frame_side_by_side_with_difference_heat_map_and_zoom(failing_run):
    page = html.render(load_runs([failing_run]))
    images = _images(page)
    assert len(images) == 7  # reference, candidate, difference, heat map, zoomed reference, candidate, difference
    reference, _ = worst_frames()
    shown_reference = images[0]
    assert shown_reference.shape == (360, 640, 3)  # 1280x720 shown at 1/2
    assert np.abs(shown_reference.astype(int) - cv2.resize(reference, (640, 360), interpolation=cv2.INTER_AREA)).max() == 0
    difference = images[2]
    assert difference.max() == min(255, 14 * html.DIFF_GAIN)
    assert "Frame 7: 21,197 of 921,600 pixels differ" in page and "largest channel difference 14" in page
    assert "Zoom on the region that differs (x 526–754, y 432–548)" in page


def test_single_pixel_difference_survives_downscaling():
    reference = np.full((720, 1280, 3), 100, np.uint8)
    candidate = reference.copy()
    candidate[301, 777, 1] = 103
    panels = html.worst_frame_panels(reference, candidate)
    difference = cv2.imdecode(np.frombuffer(panels.difference, np.uint8), cv2.IMREAD_COLOR)
    heat = cv2.imdecode(np.frombuffer(panels.heat_map, np.uint8), cv2.IMREAD_COLOR)
    assert panels.scale == 2 and difference.shape == (360, 640, 3)
    assert difference[150, 388, 1] == 3 * html.DIFF_GAIN and np.count_nonzero(difference) == 1
    assert heat[150, 388].sum() > heat[0, 0].sum() + 300  # the hottest colour against the coldest
    assert (panels.max_abs, panels.pixels_differing) == (3, 1)
    assert panels.zoom_box == (769, 293, 786, 310)


def test_identical_frames_have_no_zoom_and_a_black_heat_map():
    frame = np.full((48, 64, 3), 9, np.uint8)
    panels = html.worst_frame_panels(frame, frame.copy())
    assert panels.zoom is None and panels.max_abs == 0 and panels.scale == 1


def test_page_says_when_the_worst_frame_is_absent(passing_run, tmp_path):
    page = html.render(load_runs([passing_run]))
    assert "No worst frame recorded in result.json" in page and "data:image" not in page
    missing = write_run(tmp_path / "missing", failing_result(), with_worst_pngs=False)
    page = html.render(load_runs([missing]))
    assert f"Worst frame 7: image not found: {missing / 'worst' / 'reference_00007.png'}" in page


def test_page_says_when_worst_frames_differ_in_size(tmp_path):
    run = write_run(tmp_path / "run", failing_result())
    cv2.imwrite(str(run / "worst" / "candidate_00007.png"), np.zeros((100, 200, 3), np.uint8))
    page = html.render(load_runs([run]))
    assert "sizes differ (reference 1280x720, candidate 200x100); no difference image." in page
    assert len(_images(page)) == 2


def test_several_runs_have_a_summary_and_a_section_each(passing_run, failing_run):
    page = html.render(load_runs([passing_run, failing_run]))
    assert re.findall(r"<h2>(.*?)</h2>", page) == ["Summary", "onnxruntime-fp32", "onnxruntime-fp16"]
    assert '<td class="verdict-cell pass">PASS</td>' in page and '<td class="verdict-cell fail">FAIL</td>' in page


RENDER_CHECK = """<script>window.addEventListener("load", () => {
  const images = [...document.images], marker = document.createElement("div");
  marker.id = "render-check";
  marker.dataset.images = images.length;
  marker.dataset.decoded = images.filter(image => image.complete && image.naturalWidth > 0).length;
  marker.dataset.plots = document.querySelectorAll("svg.plot").length;
  document.body.appendChild(marker);
});</script></body>"""


def _chromium(tmp_path: Path, page: Path, *args: str) -> str:
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
               f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=5000", *args, page.as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


WIDTH_CHECK = r"""<script>window.addEventListener("load", () => {
  const marker = document.createElement("div"), tables = [...document.querySelectorAll("table")];
  marker.id = "width-check";
  marker.dataset.tables = tables.length;
  marker.dataset.right = Math.ceil(Math.max(...tables.map(table => table.getBoundingClientRect().right)));
  marker.dataset.page = document.documentElement.clientWidth;
  const midWord = [...document.querySelectorAll("td.name, td.text")].filter(cell => {  // a line that ends inside a word
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    let top = null, last = " ";
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      for (let i = 0; i < node.length; i++) {
        const range = document.createRange();
        range.setStart(node, i); range.setEnd(node, i + 1);
        const now = range.getBoundingClientRect().top;
        if (top !== null && now > top + 2 && !/[\s._\/,;:-]/.test(last) && !/\s/.test(node.data[i])) return true;
        top = now; last = node.data[i];
      }
    }
    return false;
  });
  marker.dataset.midword = midWord.map(cell => cell.textContent).join(" | ");
  document.body.appendChild(marker);
});</script></body>"""


@needs_chromium
def test_tables_fit_a_1000_pixel_window(failing_run, passing_run, tmp_path, width=1000):
    """Every table (the stage table's result column last) stays inside the page: its text cells and headers wrap
    (between words, or at a stage name's dots), and the benchmark's 16 columns are two tables."""
    (page,) = write_reports([passing_run, failing_run], ["html"], tmp_path / "report")
    checked = tmp_path / "checked.html"
    checked.write_text(page.read_text(encoding="utf-8").replace("</body>", WIDTH_CHECK), encoding="utf-8")
    dom = _chromium(tmp_path, checked, "--dump-dom", f"--window-size={width},1200")
    marker = re.search(r'<div id="width-check" data-tables="(\d+)" data-right="(\d+)" data-page="(\d+)" data-midword="([^"]*)">', dom)
    assert marker, dom[-1000:]
    tables, right, page_width = (int(v) for v in marker.groups()[:3])
    assert tables >= 3 and page_width <= width
    assert right <= page_width, f"a table ends at {right} px in a {page_width} px page"
    assert marker.group(4) == "", f"cells broken inside a word: {marker.group(4)}"  # stage names break at their dots


@needs_chromium
def test_report_renders_in_headless_chromium(failing_run, passing_run, tmp_path):
    out = tmp_path / "report"
    (page,) = write_reports([passing_run, failing_run], ["html"], out)
    checked = tmp_path / "checked.html"  # the report plus a script that records what the browser decoded
    checked.write_text(page.read_text(encoding="utf-8").replace("</body>", RENDER_CHECK), encoding="utf-8")

    dom = _chromium(tmp_path, checked, "--dump-dom")
    marker = re.search(r'<div id="render-check" data-images="(\d+)" data-decoded="(\d+)" data-plots="(\d+)">', dom)
    assert marker, dom[-1000:]
    assert marker.groups() == ("7", "7", "4")  # every embedded image decoded; four PSNR plots
    assert "<h3>Worst frame</h3>" in dom and "<h3>Stages</h3>" in dom
    assert dom.count('<td class="name">frame.<wbr>output</td>') == 2

    shot = tmp_path / "shot.png"
    _chromium(tmp_path, page, f"--screenshot={shot}", "--window-size=1280,2000")
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (2000, 1280)
    assert image.std() > 20  # not a blank page
    red = (image[:, :, 2] > 150) & (image[:, :, 1] < 90) & (image[:, :, 0] < 90)
    green = (image[:, :, 1] > 120) & (image[:, :, 2] < 90) & (image[:, :, 0] < 110)
    assert red.sum() > 200 and green.sum() > 200  # the styled FAIL and PASS verdicts are drawn
