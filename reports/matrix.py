"""The reports of `parity matrix`, rendered from its `MatrixResult` (what matrix.json holds):

- HTML (`report.html`): the verdict, what changed since the baseline, then the grid (avatars x backend/precision)
  whose cells show the verdict, the worst stage with its key figure, frames/s and the change from the baseline,
  each linking to the cell's full report; then every cell's facts (where it ran, attempts, time);
- Markdown (`report.md`, for a pull request): what changed since the baseline first, then the grid;
- JUnit XML (`report.junit.xml`): one test suite per cell, one test case per stage, plus its speed and the
  comparison with the baseline; a cell that did not run is one skipped case, a lost or failed-to-judge one an error.
Every text from the result is escaped.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from html import escape
from pathlib import Path

from ..atomic import write_text_atomically
from ..harness.matrix.types import CellChange, CellResult, MatrixResult, number, regression_text
from .markdown import cell as md_cell
from .markdown import table as md_table

MATRIX_REPORTS = {"html": "report.html", "md": "report.md", "junit": "report.junit.xml"}
FIGURE_NAMES = {"max_abs": "max |diff|", "mean_abs": "mean |diff|", "p99": "p99 |diff|", "identical": "identical", "psnr": "PSNR",
                "ssim": "SSIM", "cosine": "cosine", "coverage": "coverage"}


def write_matrix_reports(result: MatrixResult, out: Path) -> list[Path]:
    """report.html, report.md and report.junit.xml of `result` in `out` (atomically each)."""
    written = []
    for kind, name in MATRIX_REPORTS.items():
        text = {"html": render_html, "md": render_markdown, "junit": render_junit}[kind](result)
        write_text_atomically(Path(out) / name, text)
        written.append(Path(out) / name)
    return written


def write_cell_report(run_dir: Path) -> Path:
    """A matrix cell's own report.html in its run folder (rendered where the cell ran, beside its dump and reference)."""
    from . import write_reports

    return write_reports([run_dir], ["html"], run_dir)[0]


# ----- what every format says ---------------------------------------------------------------------------


def headline(result: MatrixResult) -> str:
    counts = result.counts
    shown = ", ".join(f"{count} {status}" for status, count in counts.items() if count)
    verdict = "PASS" if result.passed else "FAIL"
    if not result.complete:
        verdict = "INCOMPLETE"
    text = f"{verdict}: {result.name}, {len(result.cells)} cells ({shown})"
    if result.baseline is not None:
        regressions = result.baseline.regressions
        text += f"; {len(regressions)} regression{'s' if len(regressions) != 1 else ''} since {result.baseline.baseline_name}"
    return text


def worst_text(cell: CellResult) -> str:
    """"frame.unet_output max |diff| 0.0083 (83% of its gate)"; a failing cell names its first divergent stage."""
    worst = cell.worst
    if worst is None:
        return "-"
    use = "missing" if worst.metric == "coverage" else f"{_figure(worst.metric, worst.value)} ({_percent(worst.use)} of its gate)"
    return f"{worst.stage} {FIGURE_NAMES.get(worst.metric, worst.metric)} {use}"


def speed_text(cell: CellResult) -> str:
    speed = cell.speed
    if speed is None:
        return "-"
    return f"{speed.fps.median:.2f} fps ({speed.fps.min:.2f}..{speed.fps.max:.2f})"


def change_text(result: MatrixResult, cell: CellResult) -> str:
    """The change from the baseline in a few words: "regression: ...", "new", "no change", figures that moved."""
    baseline = result.baseline
    if baseline is None:
        return ""
    if cell.id in baseline.added:
        return "new cell"
    change = baseline.change(cell.id)
    if change is None:
        return ""
    if change.regression:
        return "REGRESSION: " + regression_text(change)
    parts = []
    if change.before != change.after:
        parts.append(f"{change.before} -> {change.after}")
    parts += [f"{s.stage} {s.before} -> {s.after}" for s in change.stages]
    better = [d for d in change.drifts if not d.worse]
    worse_allowed = [d for d in change.drifts if d.worse]
    parts += [f"{d.stage} {d.metric} {number(d.baseline)} -> {number(d.now)} (allowed: {d.allowed})" for d in worse_allowed]
    if better:
        parts.append(f"better: {', '.join(f'{d.stage} {d.metric}' for d in better)}")
    if change.speed is not None and (change.speed.slower or change.speed.faster):
        parts.append(f"speed x{change.speed.ratio.median:.2f}" + (f" (allowed: {change.speed.allowed})" if change.speed.allowed else ""))
    elif change.speed is not None:
        parts.append(f"speed x{change.speed.ratio.median:.2f}, within its spread")
    return "; ".join(parts) or ("not compared (did not run on one side)" if not change.compared else "no change")


def cell_lines(result: MatrixResult, cell: CellResult) -> list[str]:
    """The grid cell's text, line by line: verdict, worst stage, speed, change."""
    lines = [cell.verdict + (" (reused)" if cell.reused else "")]
    if cell.ran:
        lines += [worst_text(cell), speed_text(cell)]
    else:
        lines.append(cell.reason or "")
    change = change_text(result, cell)
    if change:
        lines.append(change)
    return lines


def change_lines(result: MatrixResult) -> list[str]:
    """What changed since the baseline, most important first: regressions, stage verdicts, other drifts, speed, cells
    added or removed, and the environment changes beside the cells they can explain."""
    baseline = result.baseline
    if baseline is None:
        return []
    lines = []
    for change in baseline.cells:
        if change.regression:
            lines.append(f"REGRESSION {change.cell}: {regression_text(change)}" + _environment_note(change))
    for change in baseline.cells:
        if change.regression or not change.changed:
            continue
        lines.append(f"{change.cell}: {_non_regression_text(change)}" + _environment_note(change))
    lines += [f"added {cell_id}" for cell_id in baseline.added] + [f"removed {cell_id}" for cell_id in baseline.removed]
    return lines


def _non_regression_text(change: CellChange) -> str:
    parts = [f"{change.before} -> {change.after}"] if change.before != change.after else []
    parts += [f"{s.stage} {s.before} -> {s.after}" + (f" (allowed: {s.allowed})" if s.allowed else "") for s in change.stages]
    parts += [f"{d.stage} {d.metric} {number(d.baseline)} -> {number(d.now)} ({'worse, allowed: ' + str(d.allowed) if d.worse else 'better'})"
              for d in change.drifts]
    if change.speed is not None and (change.speed.slower or change.speed.faster):
        ratio = change.speed.ratio
        parts.append(f"speed x{ratio.median:.2f} ({ratio.min:.2f}..{ratio.max:.2f})" + (f", allowed: {change.speed.allowed}" if change.speed.allowed else ""))
    return "; ".join(parts)


def _environment_note(change: CellChange) -> str:
    return f" [environment: {'; '.join(change.environment)}]" if change.environment else ""


def _figure(metric: str, value: float) -> str:
    """A figure as the grid shows it: a share near 1 with the digits that tell it from 1 (identical 99.965%, SSIM
    0.999871), the rest in 3 significant digits."""
    if metric == "identical" and math.isfinite(value):
        return f"{value:.3%}"
    if metric in ("ssim", "cosine") and math.isfinite(value):
        return f"{value:.6f}"
    return number(value)


def _percent(share: float) -> str:
    return "inf" if not math.isfinite(share) else f"{share:.0%}"


def _grid(result: MatrixResult) -> tuple[list[str], list[tuple[str, list[CellResult | None]]]]:
    """(columns, rows): one row per avatar, one column per backend/precision."""
    by_id = {cell.id: cell for cell in result.cells}
    rows = [(avatar.name, [by_id.get(f"{avatar.name}/{column}") for column in result.columns]) for avatar in result.avatars]
    return result.columns, rows


# ----- Markdown ------------------------------------------------------------------------------------------


MARK = {"PASS": "✅ PASS", "FAIL": "❌ FAIL", "NOT RUN": "⚪ NOT RUN", "LOST": "⚠️ LOST", "ERROR": "❌ ERROR"}


def render_markdown(result: MatrixResult) -> str:
    lines = [f"# Release matrix: {md_cell(result.name)}", "", f"**{md_cell(headline(result))}**", ""]
    if result.baseline is not None:
        changes = change_lines(result)
        lines += [f"## Since {md_cell(result.baseline.baseline_name)} ({md_cell(result.baseline.baseline_created)})", ""]
        lines += [f"- {md_cell(line)}" for line in changes] if changes else ["Nothing changed beyond its noise band."]
        lines.append("")
    failures = result.failures
    if failures:
        lines += ["## Why it fails", "", *(f"- {md_cell(line)}" for line in failures), ""]
    columns, rows = _grid(result)
    grid_rows = []
    for avatar, cells in rows:
        grid_rows.append([avatar] + [_md_grid_cell(result, cell) for cell in cells])
    lines += ["## Grid", "", *md_table(["avatar", *columns], grid_rows), ""]
    lines += ["## Cells", "", *md_table(["cell", "verdict", "where", "attempts", "seconds"], [_facts_row(cell) for cell in result.cells]), ""]
    lines.append(f"{_executor_text(result)}; matrix file `{md_cell(result.matrix_file)}`, {result.created}.")
    return "\n".join(lines) + "\n"


def _md_grid_cell(result: MatrixResult, cell: CellResult | None) -> str:
    if cell is None:
        return "-"
    lines = cell_lines(result, cell)
    first = MARK.get(cell.verdict, cell.verdict) + (" (reused)" if cell.reused else "")
    if cell.report:
        first = f"[{first}]({cell.report})"
    return "<br>".join([first, *(md_cell(line) for line in lines[1:])])


def _facts_row(cell: CellResult) -> list[str]:
    where = "-" if cell.node is None else cell.node.hostname + (f" (Ray node {cell.node.node_id[:8]})" if cell.node.node_id else "")
    attempts = "; ".join(attempt.error for attempt in cell.attempts) or "-"
    seconds = f"{cell.seconds['total']:.1f}" if "total" in cell.seconds else "-"
    return [cell.id, cell.verdict + (" (reused)" if cell.reused else ""), where, attempts, seconds]


def _executor_text(result: MatrixResult) -> str:
    executor = result.executor
    cell_seconds = sum(cell.seconds.get("total", 0.0) for cell in result.cells if not cell.reused)
    text = f"Ran {'on Ray at ' + executor.address if executor.kind == 'ray' and executor.address else 'locally'} " \
           f"({executor.workers} {'nodes' if executor.kind == 'ray' else 'workers'}) in {result.wall_s:.0f} s"
    if cell_seconds:
        text += f"; the cells' own times add up to {cell_seconds:.0f} s"
    return text


# ----- HTML ----------------------------------------------------------------------------------------------


def render_html(result: MatrixResult) -> str:
    from .html import CSS, PAGE

    verdict = "pass" if result.passed else "fail"
    body = [f"<h1>Release matrix: {escape(result.name)}</h1>", f'<div class="verdict {verdict}">{escape(headline(result))}</div>']
    if result.baseline is not None:
        changes = change_lines(result)
        items = "".join(f'<li class="{"fail-text" if line.startswith("REGRESSION") else ""}">{escape(line)}</li>' for line in changes)
        body.append(f"<h2>Since {escape(result.baseline.baseline_name)} <span class=\"muted\">({escape(result.baseline.baseline_created)}, "
                    f"{escape(result.baseline.baseline)})</span></h2>" + (f"<ul>{items}</ul>" if changes else "<p>Nothing changed beyond its noise band.</p>"))
    if result.failures:
        body.append("<h2>Why it fails</h2><ul>" + "".join(f"<li>{escape(line)}</li>" for line in result.failures) + "</ul>")
    columns, rows = _grid(result)
    head = "".join(f"<th>{escape(column)}</th>" for column in columns)
    trs = [f"<tr><th class=\"avatar\">{escape(avatar)}</th>{''.join(_html_grid_cell(result, cell) for cell in cells)}</tr>" for avatar, cells in rows]
    body.append(f'<h2>Grid</h2><table class="grid"><thead><tr><th>avatar</th>{head}</tr></thead><tbody>{"".join(trs)}</tbody></table>'
                '<p class="muted">Each cell: its verdict, the stage that used the most of its gate with that figure, model-only frames/s '
                "(median, min..max over the repeats) and the change from the baseline; the verdict links to the cell's full report.</p>")
    facts = "".join("<tr>" + "".join(f"<td>{escape(value)}</td>" for value in _facts_row(cell)) + "</tr>" for cell in result.cells)
    body.append("<h2>Cells</h2><table><thead><tr><th>cell</th><th>verdict</th><th>where</th><th>attempts that died</th><th>seconds</th></tr></thead>"
                f"<tbody>{facts}</tbody></table>")
    body.append(f'<p class="muted">{escape(_executor_text(result))}; {escape(result.executor.note)}; matrix file {escape(result.matrix_file)}, '
                f"{escape(result.created)}.</p>")
    return PAGE.format(title=escape(f"Release matrix — {headline(result)}"), css=CSS + GRID_CSS, body="\n".join(body))


def _html_grid_cell(result: MatrixResult, cell: CellResult | None) -> str:
    if cell is None:
        return "<td>-</td>"
    lines = cell_lines(result, cell)
    verdict = escape(lines[0])
    if cell.report:
        verdict = f'<a href="{escape(cell.report, quote=True)}">{verdict}</a>'
    change = result.baseline.change(cell.id) if result.baseline is not None else None
    css = {"PASS": "pass", "FAIL": "fail", "ERROR": "fail", "LOST": "lost"}.get(cell.verdict, "notrun")
    if change is not None and change.regression:
        css += " regression"
    rest = "".join(f'<div class="line">{escape(line)}</div>' for line in lines[1:])
    return f'<td class="gridcell {css}"><div class="v">{verdict}</div>{rest}</td>'


GRID_CSS = """
table.grid td.gridcell { white-space: normal; vertical-align: top; min-width: 170px; max-width: 300px; border: 1px solid #e3e6ec; font-size: 12.5px; }
table.grid th.avatar { text-align: left; font-family: ui-monospace, Menlo, Consolas, monospace; }
td.gridcell .v { font-weight: 700; font-size: 14px; margin-bottom: 2px; }
td.gridcell.pass { background: #f1faf3; } td.gridcell.pass .v, td.gridcell.pass .v a { color: #11652c; }
td.gridcell.fail { background: #fdeeee; } td.gridcell.fail .v, td.gridcell.fail .v a { color: #8c1515; }
td.gridcell.lost { background: #fff6e5; } td.gridcell.notrun { background: #f4f6f9; color: #5d6880; }
td.gridcell.regression { outline: 3px solid #d32f2f; outline-offset: -3px; }
li.fail-text { color: #8c1515; font-weight: 600; }
"""


# ----- JUnit ---------------------------------------------------------------------------------------------


def render_junit(result: MatrixResult) -> str:
    """One `<testsuite>` per cell: a case per stage, one for its speed, one for the comparison with the baseline."""
    from .junit import xml_safe

    root = ET.Element("testsuites", name=f"parity matrix {result.name}")
    for cell in result.cells:
        suite = ET.SubElement(root, "testsuite", name=cell.id)
        classname = "parity.matrix." + cell.id.replace("/", ".")
        if cell.status == "not run":
            case = ET.SubElement(suite, "testcase", classname=classname, name="cell")
            ET.SubElement(case, "skipped", message=f"not run: {cell.reason}")
        elif cell.status in ("lost", "error"):
            case = ET.SubElement(suite, "testcase", classname=classname, name="cell")
            ET.SubElement(case, "error", message=f"{cell.status}: {cell.reason}", type=f"Matrix{cell.status.title()}").text = \
                "\n".join([f"{cell.status}: {cell.reason}", *(f"attempt died: {a.error}" for a in cell.attempts)])
        for stage in cell.stages:
            case = ET.SubElement(suite, "testcase", classname=classname, name=stage.stage)
            if stage.status == "not provided":
                ET.SubElement(case, "skipped", message=f"{stage.stage}: not provided (the gate allows it)")
            elif not stage.passed:
                ET.SubElement(case, "failure", message=stage.failure or f"{stage.stage} failed", type="ParityGate").text = stage.failure or ""
        if cell.speed is not None:
            case = ET.SubElement(suite, "testcase", classname=classname, name="speed")
            ET.SubElement(case, "system-out").text = speed_text(cell)
        change = result.baseline.change(cell.id) if result.baseline is not None else None
        if change is not None:
            case = ET.SubElement(suite, "testcase", classname=classname, name="baseline")
            if change.regression:
                ET.SubElement(case, "failure", message=f"regression: {regression_text(change)}", type="ParityRegression").text = \
                    regression_text(change) + _environment_note(change)
            else:
                ET.SubElement(case, "system-out").text = change_text(result, cell)
        cases = suite.findall("testcase")
        suite.set("tests", str(len(cases)))
        suite.set("failures", str(sum(case.find("failure") is not None for case in cases)))
        suite.set("errors", str(sum(case.find("error") is not None for case in cases)))
        suite.set("skipped", str(sum(case.find("skipped") is not None for case in cases)))
        suite.set("time", f"{cell.seconds.get('total', 0.0):.3f}")
    for key in ("tests", "failures", "errors", "skipped"):
        root.set(key, str(sum(int(suite.get(key, "0")) for suite in root)))
    if not result.complete:
        root.set("incomplete", "true")
    for element in root.iter():
        element.text = xml_safe(element.text) if element.text else element.text
        for key, value in element.attrib.items():
            element.set(key, xml_safe(value))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
