"""HTML pages, built in Python: every value that came from a request or a record passes ``escape``.

No inline scripts or styles (the Content-Security-Policy forbids them): behaviour lives in
/static/app.js and looks in /static/app.css.
"""

from __future__ import annotations

from html import escape
from urllib.parse import urlencode

from digitrec.records.query import RecordFilter
from digitrec.records.record import PredictionRecord

MODEL_LABELS = {"digits": "Digits (0-9)", "fashion": "Clothing (Fashion-MNIST)"}


def _layout(
    title: str,
    body: str,
    *,
    page: str,
    scripts: tuple[str, ...] = (),
    styles: tuple[str, ...] = (),
    locked: bool = False,
) -> str:
    current = ' aria-current="page"'
    nav = "".join(
        f'<a href="{href}"{current if key == page else ""}>{label}</a>'
        for key, href, label in (
            ("draw", "/", "Draw"),
            ("records", "/records", "Records"),
            ("dashboard", "/dashboard", "Dashboard"),
            ("api", "/api/v1/openapi.json", "API"),
        )
    )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{escape(title)}</title><link rel="icon" href="/favicon.ico" type="image/svg+xml">'
        '<link rel="stylesheet" href="/static/app.css">'
        + "".join(f'<link rel="stylesheet" href="{escape(href)}">' for href in styles)
        + '<script src="/static/app.js" defer></script>'
        + "".join(f'<script src="{escape(src)}" defer></script>' for src in scripts)
        + "</head>"
        f'<body data-page="{escape(page)}"{" data-locked" if locked else ""}>'
        '<header class="top"><span class="brand">digitrec</span>'
        f'<nav aria-label="main">{nav}</nav></header><main>{body}</main></body></html>\n'
    )


def index_page(models: list[str], token_required: bool) -> str:
    options = "".join(
        f'<label class="choice"><input type="radio" name="model" value="{escape(m)}"'
        f"{' checked' if i == 0 else ''}> {escape(MODEL_LABELS.get(m, m))}</label>"
        for i, m in enumerate(models)
    )
    body = f"""
<section class="intro"><h1>Draw a digit</h1>
<p>Draw with the mouse or a finger, then press <strong>predict it</strong>. Or drop photos of digits
(or, with the clothing model, pictures of clothes and shoes) on the upload area. Choose
<strong>a number</strong> to read several digits written in a row: a drawing, a house number, a meter.</p>
<div class="switches"><fieldset class="models"><legend>Model</legend>{options}</fieldset>
<fieldset class="models" id="modes"><legend>Read</legend>
 <label class="choice"><input type="radio" name="mode" value="digit" checked> one digit</label>
 <label class="choice"><input type="radio" name="mode" value="number"> a number</label></fieldset></div>
</section>
<div class="workbench">
 <section class="pad" aria-labelledby="pad-title"><h2 id="pad-title">Canvas</h2>
  <div class="pad-frame"><canvas id="pad" width="280" height="280" role="img"
   aria-label="Drawing area: draw one digit here"></canvas>
  <canvas id="overlay" width="280" height="280" aria-hidden="true"></canvas></div>
  <div class="buttons"><button type="button" id="predict" class="primary">predict it</button>
  <button type="button" id="clear">clear it</button></div>
 </section>
 <section class="result" aria-labelledby="result-title" aria-live="polite">
  <h2 id="result-title">Result</h2>
  <p id="status" class="status">Draw something and press predict it.</p>
  <div id="answer" class="answer" hidden>
   <p id="answer-refused" class="refusal" hidden></p>
   <p id="answer-big" class="big"><span id="answer-label"></span> <span id="answer-name" class="name"></span></p>
   <p class="confidence">confidence <span id="answer-confidence"></span></p>
   <figure class="preview"><img id="answer-preview" alt="The 28x28 image the model saw" width="112"
    height="112"><figcaption>what the model saw (28&times;28)</figcaption></figure>
   <ol id="bars" class="bars" aria-label="Probability per class"></ol>
   <form id="correction" class="correction"><label for="correct-label">Wrong? It was</label>
    <select id="correct-label" name="label"><option value="">choose&hellip;</option></select>
    <button type="submit">save correction</button>
    <span id="correction-status" class="status"></span></form>
  </div>
  <div id="reading" class="answer" hidden>
   <p id="reading-refused" class="refusal" hidden></p>
   <p class="big"><span id="reading-text"></span></p>
   <p class="confidence">confidence <span id="reading-confidence"></span></p>
   <ol id="reading-digits" class="digits" aria-label="Each digit read, as the model saw it"></ol>
   <form id="reading-correction" class="correction"><label for="correct-text">Wrong? It was</label>
    <input id="correct-text" name="text" inputmode="numeric" autocomplete="off" size="10"
     pattern="[0-9]*" maxlength="64">
    <button type="submit">save correction</button>
    <span id="reading-correction-status" class="status"></span></form>
  </div>
 </section>
</div>
<section class="uploads" aria-labelledby="upload-title"><h2 id="upload-title">Upload photos</h2>
 <label id="dropzone" class="dropzone" for="files">Drop image files here, or choose them
  <input id="files" type="file" name="file" accept="image/png,image/jpeg,image/webp,image/bmp,image/tiff"
   multiple></label>
 <ul id="upload-results" class="cards"></ul>
</section>
<section class="latest" aria-labelledby="latest-title"><h2 id="latest-title">Latest records</h2>
 {token_form(hidden=not token_required)}
 <ul id="latest" class="cards"></ul><p><a href="/records">All records</a></p>
</section>"""
    return _layout("digitrec: draw a digit", body, page="draw")


def token_form(*, hidden: bool, note: str = "") -> str:
    """The token field of the drawing and records pages; app.js exchanges the token for a session cookie."""
    return (
        f'<form id="token-form" class="token"{" hidden" if hidden else ""}>'
        '<label for="token">API token (records are protected)</label>'
        '<input id="token" type="password" autocomplete="off"> <button type="submit">use token</button>'
        f'<span id="token-status" class="status">{escape(note)}</span></form>'
    )


def error_page(status: int, message: str) -> str:
    body = (
        f'<section class="error-page"><h1>{status}</h1><p>{escape(message)}</p>'
        '<p><a href="/">Back to the drawing page</a></p></section>'
    )
    return _layout(f"digitrec: {status}", body, page="error")


def _title(label: int, name: str) -> str:
    return str(label) if name == str(label) else f"{label} {name}"


def _record_row(record: PredictionRecord, *, protected: bool) -> str:
    rid = escape(str(record.request_id))
    # The 28x28 image the model saw (never a transparent PNG on the wrong background); on a protected
    # service the browser's session cookie comes with the image request.
    source = "src"
    # A reading's thumbnail is its whole input with a box around each mark, as wide as the number.
    size = 'height="56"' if record.is_reading else 'width="56" height="56"'
    seen = "the marks read" if record.is_reading else "what the model saw"
    thumb = (
        f'<img {source}="/api/v1/records/{rid}/preview" alt="{seen} for record {rid}" {size} loading="lazy">'
        if record.has_image
        else ""
    )
    correction = record.correction
    corrected = "" if correction is None else escape(str(correction))
    when = escape(record.request_time.strftime("%Y-%m-%d %H:%M:%S"))

    def cell(label: str, content: str, css: str = "") -> str:
        klass = f' class="{css}"' if css else ""
        return f'<td data-label="{label}"{klass}>{content}</td>'

    return (
        f"<tr>{cell('Image', thumb, 'thumb')}"
        + cell("Time (UTC)", f'<time datetime="{escape(record.request_time.isoformat())}">{when}</time>', "when")
        + cell("Model", escape(record.model_name))
        + cell("Prediction", _prediction_cell(record), "label")
        + cell("Confidence", f"{record.confidence:.1%}")
        + cell("Correction", corrected)
        + cell("Source", escape(record.source))
        + cell("File name", escape(record.file_name or ""), "file")
        + cell("Record", f'<a href="/api/v1/records/{rid}">JSON</a>')
        + "</tr>"
    )


def _prediction_cell(record: PredictionRecord) -> str:
    """A one-digit record's label, or a reading's text with each digit's box and confidence as a tooltip;
    what was refused is said in words."""
    if not record.is_reading:
        shown = escape(_title(record.label, record.class_name))
        if record.is_refused:
            shown += ' <span class="refused" title="not like any of the model\'s classes">refused</span>'
        return shown
    boxes = "; ".join(
        f"{m.label} at x={m.box[0]} y={m.box[1]} {m.box[2]}x{m.box[3]} ({m.confidence:.0%})" for m in record.digits
    )
    text = escape(record.text) if record.text else "<em>no digits</em>"
    shown = f'<span class="reading" title="{escape(boxes)}">{text}</span>'
    if record.refused:
        count = len(record.refused)
        marks = "; ".join(f"x={m.box[0]} y={m.box[1]} {m.box[2]}x{m.box[3]}" for m in record.refused)
        shown += f' <span class="refused" title="{escape(marks)}">{count} mark{"s" if count > 1 else ""} refused</span>'
    return shown


def _filter_form(where: RecordFilter, models: list[str]) -> str:
    """The /records filters: a GET form whose field names are the API's query parameters."""
    model_options = "".join(
        f'<option value="{escape(m)}"{" selected" if m == where.model else ""}>{escape(m)}</option>'
        for m in dict.fromkeys([*models, *([where.model] if where.model else [])])
    )
    label_options = "".join(
        f'<option value="{i}"{" selected" if i == where.label else ""}>{i}</option>' for i in range(10)
    )
    below = "" if where.confidence_below is None else f"{where.confidence_below:g}"
    day = "" if where.day is None else where.day.isoformat()
    return f"""
<form class="filters" method="get" action="/records" aria-label="Filter records">
 <label>Model <select name="model"><option value="">any</option>{model_options}</select></label>
 <label>Version <input name="version" value="{escape(where.version or "")}" size="12" placeholder="any"></label>
 <label>Predicted <select name="label"><option value="">any</option>{label_options}</select></label>
 <label>Confidence below <input name="confidence_below" type="number" min="0.01" max="1" step="0.01"
  value="{escape(below)}" placeholder="e.g. 0.6"></label>
 <label>Day (UTC) <input name="day" type="date" value="{escape(day)}"></label>
 <label class="check"><input type="checkbox" name="corrected" value="1"{" checked" if where.corrected else ""}>
  corrected only</label>
 <label class="check"><input type="checkbox" name="refused" value="1"{" checked" if where.refused else ""}>
  refused only</label>
 <span class="filter-buttons"><button type="submit" class="primary">filter</button>
 <a href="/records">clear</a></span>
</form>"""


def records_page(
    records: list[PredictionRecord],
    next_cursor: str | None,
    limit: int,
    where: RecordFilter | None = None,
    models: list[str] | None = None,
    *,
    protected: bool = False,
    locked: bool = False,
) -> str:
    """The records table. ``locked``: a token is needed and the request had none (or a wrong one); the
    page then shows the token field, and app.js loads the table with the token the person enters."""
    intro = "<h1>Records</h1><p>Every prediction the service made, newest first.</p>"
    styles = ("/static/dashboard.css",)
    if locked:
        body = intro + token_form(hidden=False, note="Enter the API token to see the records.")
        body += '<div id="records-content"></div>'
        return _layout("digitrec: records", body, page="records", styles=styles, locked=True)
    where = where or RecordFilter()
    empty = "No records yet." if where.is_empty else "No records match these filters."
    rows = "".join(_record_row(r, protected=protected) for r in records)
    rows = rows or f'<tr><td colspan="9">{empty}</td></tr>'
    newest = f"/records?{escape(urlencode(where.to_params()))}" if not where.is_empty else "/records"
    query = urlencode({**where.to_params(), "cursor": next_cursor or "", "limit": limit})
    older = f'<a class="next" href="/records?{escape(query)}">Older records &rarr;</a>' if next_cursor else ""
    token = token_form(hidden=True) if protected else ""
    body = f"""{intro}{token}
<div id="records-content">{_filter_form(where, models or [])}
<div class="table-wrap"><table class="records"><thead><tr><th>Image</th><th>Time (UTC)</th><th>Model</th>
<th>Prediction</th><th>Confidence</th><th>Correction</th><th>Source</th><th>File name</th><th></th></tr>
</thead><tbody>{rows}</tbody></table></div>
<nav class="pager" aria-label="pages"><a href="{newest}">Newest</a> {older}</nav></div>"""
    return _layout("digitrec: records", body, page="records", styles=styles)


def dashboard_page(models: list[str], token_required: bool) -> str:
    """The shell of the dashboard; /static/dashboard.js fills it from /api/v1/dashboard."""
    options = "".join(f'<option value="{escape(m)}">{escape(MODEL_LABELS.get(m, m))}</option>' for m in models)
    days = "".join(
        f'<option value="{d}"{" selected" if d == 7 else ""}>{label}</option>'
        for d, label in ((1, "today"), (2, "2 days"), (7, "7 days"), (30, "30 days"), (90, "90 days"))
    )
    body = f"""
<h1>How the model is doing</h1>
<form id="dash-form" class="filters dash-form" aria-label="Dashboard settings">
 <label>Model <select id="dash-model" name="model">{options}</select></label>
 <label>Version <select id="dash-version" name="version"><option value="">all versions</option></select></label>
 <label>Period <select id="dash-days" name="days">{days}</select></label>
 <span class="filter-buttons"><button type="submit" class="primary">show</button></span>
</form>
<form id="token-form" class="token"{"" if token_required else " hidden"}>
 <label for="token">API token (records are protected)</label>
 <input id="token" type="password" autocomplete="off"> <button type="submit">use token</button></form>
<p id="dash-status" class="status" aria-live="polite">Loading&hellip;</p>
<div id="dash" hidden>
<section aria-labelledby="tiles-title"><h2 id="tiles-title">Summary</h2><dl id="tiles" class="tiles"></dl>
 <p class="detail">Implied accuracy counts every uncorrected prediction as right (an upper bound);
 accuracy of reviewed counts only corrected records, which users pick because they look wrong (a lower
 bound).</p></section>
<section aria-labelledby="volume-title"><h2 id="volume-title">Predictions</h2>
 <div id="chart-volume" class="chart"></div></section>
<section aria-labelledby="versions-title"><h2 id="versions-title">Which version served when</h2>
 <div id="chart-versions" class="chart"></div><div class="table-wrap"><table id="versions" class="records">
 <thead><tr><th>Version</th><th>First</th><th>Last</th><th>Predictions</th><th>Corrected</th>
 <th>Implied accuracy</th></tr></thead><tbody></tbody></table></div></section>
<section aria-labelledby="confidence-title"><h2 id="confidence-title">Confidence</h2>
 <div id="chart-confidence" class="chart"></div></section>
<section aria-labelledby="confusion-title"><h2 id="confusion-title">Corrections: predicted vs. corrected</h2>
 <div class="table-wrap"><table id="confusion" class="confusion"></table></div>
 <p class="detail">Rows: what the model said. Columns: what the user said it was. The diagonal counts
 corrections that confirmed the prediction.</p></section>
<section aria-labelledby="who-title"><h2 id="who-title">Who corrected</h2>
 <dl id="by-role" class="tiles"></dl>
 <p class="detail">Submitters corrected their own answer with its key; reviewers and admins used a token;
 local means the service was open on this machine. Fine-tuning uses reviewers' and admins' corrections
 all, one anonymous client's up to a share, and skips rejected ones.</p>
 <ul id="corrections" class="cards review"></ul></section>
<section aria-labelledby="review-title"><h2 id="review-title">Least confident, not yet reviewed</h2>
 <ul id="review" class="cards review"></ul><p><a id="review-all" href="/records">All low-confidence records</a></p>
</section>
</div>"""
    return _layout(
        "digitrec: dashboard",
        body,
        page="dashboard",
        scripts=("/static/dashboard.js",),
        styles=("/static/dashboard.css",),
    )
