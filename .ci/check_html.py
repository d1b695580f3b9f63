#!/usr/bin/env python3
"""Check the built book in a headless browser, offline.

Usage::

    python .ci/check_html.py [HTML_DIR] [--mathjax DIR] [--toc _toc.yml]
                             [--screenshots DIR] [--chromium PATH] [--budget MS]
                             [--window WIDTHxHEIGHT]

``HTML_DIR`` defaults to ``_build/html`` (the output of ``jupyter-book build .``).

What it does, for every page listed in ``_toc.yml`` (the root and every ``file:`` entry):

1. Serves ``HTML_DIR`` on ``127.0.0.1`` (a free port) with the standard library's
   ``http.server``, run in this process so that every request and its status can be recorded.
   MathJax normally comes from the jsDelivr CDN (Sphinx's default ``mathjax_path``). To check
   offline, the server rewrites that ``<script src>`` in every HTML page it sends to
   ``/_mathjax/<file>.js`` and serves ``/_mathjax/`` from a local MathJax 3 ``es5`` folder
   (``npm install --prefix DIR mathjax@3``). The files on disk are not modified and the book is
   built only once.
2. Loads the page in headless Chromium with ``--dump-dom`` and checks the rendered DOM:

   - math is typeset: at least one ``mjx-container`` per math element of the page
     (elements with class ``math``, or ``\\(``, ``\\[``, ``$$`` in its text), no MathJax
     error (``mjx-merror``, ``data-mjx-error``) and no undefined macro (MathJax's
     ``noundefined`` extension shows it as red ``\\name`` text instead of an error);
   - figures are present: the DOM has at least as many ``<img>`` as the HTML file, and every
     image resolves (a non-empty ``data:`` URI, or a file that exists and was not answered with
     an error);
   - no error shows: no traceback output (``traceback``/``output_error``), no stderr output
     containing "Traceback" or "Error", no docutils ``system-message``;
   - no request made by the page was answered with an HTTP error (favicon excepted);
   - no raw LaTeX on the page: the visible text of the article (outside MathJax output, math
     elements, ``<script>``, ``<style>``, ``<pre>`` and ``<code>``) contains no TeX that escaped
     typesetting (``$\\``, ``\\frac``, ``\\mathrm``, ``\\log``, any ``\\command``, ``\\(``, ``\\[``,
     ``_{``/``^{``, ``$x$``); the snippet around each one is reported;
   - nothing is wider than the content column: after MathJax has typeset the page, every table,
     display equation (``mjx-container[display="true"]``), image and figure in the article fits
     the column (``WIDTH_SLACK_PX`` of slack); each one that does not is reported with its
     width and the column's. The browser window is ``WINDOW``, 1200x900 (``--window``
     changes it), as for the screenshots: the theme then shows both sidebars and a content
     column (``article.bd-article`` less its padding) of 624 px.

   Headless ``--dump-dom`` cannot measure by itself, so the server also injects a small script
   (``LAYOUT_PROBE``) into every page it sends: it waits for the page's ``load`` event, for
   ``MathJax.startup.promise`` and for the web fonts, measures with ``getBoundingClientRect`` and
   ``scrollWidth`` and writes what it found as JSON into ``<pre id="vaeas-layout">``, which the
   dumped DOM then contains. A page without it fails ("layout probe did not run": raise
   ``--budget``, the virtual time Chromium gives the page before it dumps the DOM).
3. Saves a screenshot of the page's first screen (``WINDOW``, 1200x900) to
   ``SCREENSHOTS/<page>.png`` (default ``_build/screenshots`` next to ``_build/html``).

It prints one line per page and exits with status 1 if any page fails (2 on a usage error).
Only the Python standard library is used. The checks on a dumped DOM are plain functions
(``latex_leaks``, ``read_layout``, ``width_problems``) tested without a browser in
``tests/test_check_html.py``.

MathJax is looked up in this order: ``--mathjax``, the environment variable
``VAEAS_MATHJAX_DIR``, ``./node_modules/mathjax``. Any of the npm prefix, the ``mathjax``
package folder or its ``es5`` folder is accepted. The browser is ``--chromium``, ``$CHROMIUM``,
or the first of chromium, chromium-browser, google-chrome, google-chrome-stable on ``PATH``.
"""

from __future__ import annotations

import argparse
import functools
import html.parser
import http.server
import io
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

MATHJAX_PREFIX = "/_mathjax/"
# A <script src="..."> that loads MathJax from anywhere (CDN or another path).
MATHJAX_SRC = re.compile(
    r"""(<script\b[^>]*?\bsrc=)(["'])[^"']*mathjax[^"']*?/([\w.-]+\.js)(?:\?[^"']*)?\2""",
    re.IGNORECASE,
)
VOID_TAGS = {
    "area",
    "base",
    "br",
    "col",
    "embed",
    "hr",
    "img",
    "input",
    "link",
    "meta",
    "param",
    "source",
    "track",
    "wbr",
}
SKIP_TEXT_TAGS = {"pre", "code", "script", "style", "textarea"}
MATH_DELIMITERS = ("\\(", "\\[", "$$")

# The browser window of the screenshots and of the layout measurements (width, height);
# --window changes it.
WINDOW = (1200, 900)
# How much wider than the content column an element may be (sub-pixel rounding, borders).
WIDTH_SLACK_PX = 2.0
LAYOUT_ID = "vaeas-layout"

# Text that is TeX which escaped typesetting, in the visible text of a page. A backslash
# command of two or more letters (\frac, \mathrm, \log, \sum, ...) not followed by a letter,
# math delimiters \( \) \[ \] and $\..., TeX sub/superscripts with braces, and a $...$ pair
# around a single letter or around something with TeX characters in it.
LATEX_LEAK = re.compile(
    r"\$\\"
    r"|\\[A-Za-z]{2,}(?![A-Za-z])"
    r"|\\[()\[\]]"
    r"|[_^]\{"
    r"|\$(?:[A-Za-z]|[^$\n]{0,80}[\\_^{][^$\n]{0,80})\$"
)
# Elements whose text is not checked: code, scripts, MathJax output and MathML.
LEAK_SKIP_TAGS = SKIP_TEXT_TAGS | {"noscript", "template", "svg", "math", "kbd", "samp"}
# Block-level elements: their text is not run together with the text around them.
BLOCK_TAGS = {
    "p", "div", "section", "article", "li", "ul", "ol", "dl", "dt", "dd", "td", "th", "tr",
    "table", "caption", "figcaption", "figure", "blockquote", "details", "summary", "br",
    "h1", "h2", "h3", "h4", "h5", "h6", "header", "footer", "nav", "aside", "main", "hr",
}

# Injected before </body> of every page the server sends (see the module docstring). It waits
# for the load event, MathJax and the fonts, then measures the article's column and every
# table, display equation, image and figure in it, and writes the result as JSON into
# <pre id="vaeas-layout">. Python decides what is too wide (width_problems).
LAYOUT_PROBE = """<script>
(function () {
  "use strict";
  function tex(el) {
    try {
      var items = MathJax.startup.document.math.toArray ? MathJax.startup.document.math.toArray()
        : Array.from(MathJax.startup.document.math);
      for (var i = 0; i < items.length; i++) {
        if (items[i].typesetRoot === el) { return String(items[i].math); }
      }
    } catch (e) { /* no MathJax */ }
    return "";
  }
  function label(el) {
    var math = el.closest("div.math");
    var eqno = math ? math.querySelector(".eqno") : null;
    var fig = el.closest("figure, table");
    var sec = el.closest("section[id]");
    var text = "";
    if (el.tagName === "MJX-CONTAINER") { text = tex(el); }
    else if (el.tagName === "IMG") {
      var src = el.getAttribute("src") || "";
      text = el.getAttribute("alt") || (src.startsWith("data:") ? "data: image" : src.split("/").pop());
    } else {
      var cap = el.querySelector("caption, figcaption");
      var row = el.tagName === "TABLE" && el.rows.length ? el.rows[0] : null;
      text = cap ? cap.textContent : row ? Array.from(row.cells).map(function (c) {
        return c.textContent.trim();
      }).join(" | ") : el.textContent;
    }
    return {
      kind: el.tagName === "MJX-CONTAINER" ? "equation" : el.tagName.toLowerCase(),
      id: el.id || (math && math.id) || (fig && fig.id) || "",
      eqno: eqno ? eqno.textContent.replace(/[^\\w.()]/g, "") : "",
      section: sec ? sec.id : "",
      text: text.replace(/\\s+/g, " ").trim().slice(0, 80)
    };
  }
  function measure() {
    var out = {window: [window.innerWidth, window.innerHeight], column: null, elements: []};
    try {
      var col = document.querySelector("article.bd-article") || document.querySelector("main")
        || document.body;
      var cr = col.getBoundingClientRect(), cs = getComputedStyle(col);
      var left = cr.left + parseFloat(cs.paddingLeft || "0");
      var right = cr.right - parseFloat(cs.paddingRight || "0");
      out.column = {selector: col.tagName.toLowerCase() + (col.className ? "." + col.className.split(" ")[0] : ""),
                    left: left, right: right, width: right - left};
      var sel = "table, mjx-container[display='true'], img, figure";
      col.querySelectorAll(sel).forEach(function (el) {
        var r = el.getBoundingClientRect();
        var w = Math.max(r.width, el.scrollWidth || 0);
        var inner = el.tagName === "MJX-CONTAINER" ? el.querySelector("mjx-math") : null;
        if (inner) { w = Math.max(w, inner.getBoundingClientRect().width); }
        var item = label(el);
        item.left = r.left; item.right = Math.max(r.right, r.left + w);
        item.width = w; item.height = r.height;
        out.elements.push(item);
      });
    } catch (e) { out.error = String(e); }
    var pre = document.createElement("pre");
    pre.id = "__LAYOUT_ID__";
    pre.hidden = true;
    pre.textContent = JSON.stringify(out);
    document.body.appendChild(pre);
  }
  function afterMathJax(tries) {
    var mj = window.MathJax;
    if (mj && mj.startup && mj.startup.promise) {
      mj.startup.promise.then(measure, measure);
    } else if (tries > 0 && document.querySelector("script[src*='mathjax']")) {
      setTimeout(function () { afterMathJax(tries - 1); }, 50);
    } else {
      measure();
    }
  }
  window.addEventListener("load", function () {
    var fonts = document.fonts ? document.fonts.ready : Promise.resolve();
    fonts.then(function () { afterMathJax(200); });
  });
})();
</script>
""".replace("__LAYOUT_ID__", LAYOUT_ID)


# --------------------------------------------------------------------------- locating tools


def find_mathjax(explicit: str | None) -> Path | None:
    """Return the MathJax 3 ``es5`` folder, or None."""
    candidates = [explicit, os.environ.get("VAEAS_MATHJAX_DIR"), "node_modules/mathjax"]
    for cand in candidates:
        if not cand:
            continue
        base = Path(cand)
        for sub in ("", "es5", "mathjax/es5", "node_modules/mathjax/es5"):
            es5 = base / sub if sub else base
            if (es5 / "tex-mml-chtml.js").is_file():
                return es5.resolve()
    return None


def find_chromium(explicit: str | None) -> str | None:
    for cand in (explicit, os.environ.get("CHROMIUM")):
        if cand:
            return shutil.which(cand) or (cand if Path(cand).is_file() else None)
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def toc_pages(toc: Path) -> list[str]:
    """The documents named in a jb-book ``_toc.yml`` (``root:`` and ``file:`` entries), in order."""
    pages: list[str] = []
    pattern = re.compile(r"^\s*(?:-\s*)?(root|file)\s*:\s*(['\"]?)([^'\"#\s]+)\2\s*(?:#.*)?$")
    for line in toc.read_text(encoding="utf-8").splitlines():
        m = pattern.match(line)
        if m:
            doc = re.sub(r"\.(md|ipynb|rst)$", "", m.group(3))
            if doc not in pages:
                pages.append(doc)
    return pages


# --------------------------------------------------------------------------- the server


@dataclass
class RequestLog:
    lock: threading.Lock = field(default_factory=threading.Lock)
    entries: list[tuple[float, str, int]] = field(default_factory=list)

    def add(self, path: str, status: int) -> None:
        with self.lock:
            self.entries.append((time.monotonic(), path, status))

    def since(self, t0: float) -> list[tuple[str, int]]:
        with self.lock:
            return [(p, s) for t, p, s in self.entries if t >= t0]


def make_handler(root: Path, mathjax: Path, log: RequestLog):
    class Handler(http.server.SimpleHTTPRequestHandler):
        def translate_path(self, path: str) -> str:
            clean = urllib.parse.unquote(urllib.parse.urlsplit(path).path)
            if clean.startswith(MATHJAX_PREFIX):
                rel = posixpath.normpath(clean[len(MATHJAX_PREFIX) :]).lstrip("/")
                if rel.startswith(".."):
                    return str(mathjax / "__outside__")
                return str(mathjax / rel)
            return super().translate_path(path)

        def send_head(self):
            local = Path(self.translate_path(self.path))
            if local.is_dir():
                if not urllib.parse.urlsplit(self.path).path.endswith("/"):
                    return super().send_head()  # the base class redirects to ".../"
                local = local / "index.html"
            if local.suffix == ".html" and local.is_file():
                text = local.read_text(encoding="utf-8", errors="replace")
                body = rewrite_html(text).encode("utf-8")
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                return io.BytesIO(body)
            return super().send_head()

        def log_request(self, code="-", size="-"):
            try:
                status = int(code)
            except (TypeError, ValueError):
                status = 0
            log.add(urllib.parse.urlsplit(self.path).path, status)

        def log_message(self, format, *args):  # noqa: A002 - keep the console quiet
            pass

    return functools.partial(Handler, directory=str(root))


def rewrite_mathjax(text: str) -> str:
    return MATHJAX_SRC.sub(
        lambda m: f"{m.group(1)}{m.group(2)}{MATHJAX_PREFIX}{m.group(3)}{m.group(2)}", text
    )


def inject_probe(text: str) -> str:
    """Insert ``LAYOUT_PROBE`` before the last ``</body>`` (at the end if there is none)."""
    i = text.lower().rfind("</body>")
    return text + LAYOUT_PROBE if i < 0 else text[:i] + LAYOUT_PROBE + text[i:]


def rewrite_html(text: str) -> str:
    """What the server sends for an HTML file: local MathJax, and the layout probe."""
    return inject_probe(rewrite_mathjax(text))


# --------------------------------------------------------------------------- HTML analysis


@dataclass
class PageFacts:
    math_elements: int = 0
    math_text: bool = False
    mjx_containers: int = 0
    mjx_errors: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    tracebacks: int = 0
    stderr_errors: list[str] = field(default_factory=list)
    system_messages: int = 0
    mathjax_scripts: list[str] = field(default_factory=list)


class Analyzer(html.parser.HTMLParser):
    """Collects the facts checked above from one HTML document (file or rendered DOM)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.facts = PageFacts()
        self.stack: list[str] = []
        self.skip_depth = 0  # inside <pre>, <code>, <script>, ...
        self.stderr_depth: int | None = None  # stack depth of an open stderr block
        self.stderr_text: list[str] = []
        self.in_red_mtext = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        f = self.facts
        if "math" in classes:
            f.math_elements += 1
        if tag == "mjx-container":
            f.mjx_containers += 1
        if tag.startswith("mjx-") and (tag == "mjx-merror" or "data-mjx-error" in a):
            f.mjx_errors.append(a.get("data-mjx-error") or "merror")
        if tag == "mtext" and (a.get("mathcolor") or "").lower() == "red":
            self.in_red_mtext = True  # how MathJax's noundefined shows an unknown macro
        if tag == "img":
            f.images.append(a.get("src") or "")
        if tag == "script" and "mathjax" in (a.get("src") or "").lower():
            f.mathjax_scripts.append(a["src"])
        if "traceback" in classes or "output_error" in classes:
            f.tracebacks += 1
        if "system-message" in classes:
            f.system_messages += 1
        if tag in VOID_TAGS:
            return
        self.stack.append(tag)
        if tag in SKIP_TEXT_TAGS:
            self.skip_depth += 1
        if self.stderr_depth is None and "stderr" in classes:
            self.stderr_depth = len(self.stack)
            self.stderr_text = []

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID_TAGS and self.stack and self.stack[-1] == tag:
            self.handle_endtag(tag)

    def handle_endtag(self, tag):
        if tag == "mtext":
            self.in_red_mtext = False
        if tag in VOID_TAGS or tag not in self.stack:
            return
        while self.stack:
            top = self.stack.pop()
            if top in SKIP_TEXT_TAGS:
                self.skip_depth -= 1
            if self.stderr_depth is not None and len(self.stack) < self.stderr_depth:
                text = "".join(self.stderr_text)
                if "Traceback" in text or "Error" in text:
                    first = next(
                        (ln for ln in text.splitlines() if "Error" in ln or "Traceback" in ln), text
                    )
                    self.facts.stderr_errors.append(first.strip()[:120])
                self.stderr_depth = None
            if top == tag:
                break

    def handle_data(self, data):
        if self.in_red_mtext and data.startswith("\\"):
            self.facts.mjx_errors.append(f"undefined control sequence {data.strip()[:40]}")
        if self.stderr_depth is not None:
            self.stderr_text.append(data)
        if self.skip_depth == 0 and any(d in data for d in MATH_DELIMITERS):
            self.facts.math_text = True


def analyze(text: str) -> PageFacts:
    parser = Analyzer()
    parser.feed(text)
    parser.close()
    return parser.facts


class TextExtractor(html.parser.HTMLParser):
    """The visible text of a rendered page, without code, scripts and math.

    Text inside ``LEAK_SKIP_TAGS`` and MathJax's elements (``mjx-*``) is left out (replaced by a
    space); block elements end a line. The text of the article (``<article class="bd-article">``,
    the page's content column) is kept apart from the rest of the page: ``article`` is that
    text, or the whole page's if it has no such article.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.skip_depth = 0
        self.article_depth: int | None = None  # stack depth of the open article
        self.page: list[str] = []
        self.article_parts: list[str] = []
        self.seen_article = False

    @staticmethod
    def _skipped(tag: str) -> bool:
        return tag in LEAK_SKIP_TAGS or tag.startswith("mjx-")

    def _emit(self, text: str) -> None:
        self.page.append(text)
        if self.article_depth is not None:
            self.article_parts.append(text)

    def handle_starttag(self, tag, attrs):
        if tag in BLOCK_TAGS and self.skip_depth == 0:
            self._emit("\n")
        if tag in VOID_TAGS:
            return
        self.stack.append(tag)
        if self._skipped(tag):
            self.skip_depth += 1
            if self.skip_depth == 1:
                self._emit(" ")
        classes = (dict(attrs).get("class") or "").split()
        if tag == "article" and "bd-article" in classes and self.article_depth is None:
            self.article_depth = len(self.stack)
            self.seen_article = True

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID_TAGS and self.stack and self.stack[-1] == tag:
            self.handle_endtag(tag)

    def handle_endtag(self, tag):
        if tag in VOID_TAGS or tag not in self.stack:
            return
        while self.stack:
            if self.article_depth is not None and len(self.stack) == self.article_depth:
                self.article_depth = None
            top = self.stack.pop()
            if self._skipped(top):
                self.skip_depth -= 1
            if top == tag:
                break
        if tag in BLOCK_TAGS and self.skip_depth == 0:
            self._emit("\n")

    def handle_data(self, data):
        if self.skip_depth == 0:
            self._emit(data)

    @property
    def article(self) -> str:
        return "".join(self.article_parts if self.seen_article else self.page)


def visible_text(dom: str) -> str:
    """The visible text of the page's article (see ``TextExtractor``)."""
    parser = TextExtractor()
    parser.feed(dom)
    parser.close()
    return parser.article


def latex_leaks(dom: str, context: int = 30, max_chars: int = 160) -> list[str]:
    """Snippets of raw TeX in the visible text of a rendered page (empty list: none).

    Matches less than ``2 * context`` characters apart form one leak (a formula that escaped
    typesetting has many); its snippet runs from ``context`` characters before the first
    match to ``context`` after the last, whitespace collapsed, cut to ``max_chars``.
    """
    text = visible_text(dom)
    spans: list[list[int]] = []
    for m in LATEX_LEAK.finditer(text):
        if spans and m.start() - spans[-1][1] < 2 * context:
            spans[-1][1] = m.end()
        else:
            spans.append([m.start(), m.end()])
    snippets = []
    for start, end in spans:
        snippet = " ".join(text[max(0, start - context) : end + context].split())
        snippets.append(snippet if len(snippet) <= max_chars else snippet[: max_chars - 1] + "…")
    return snippets


@dataclass
class LayoutElement:
    kind: str  # "table", "equation", "img" or "figure"
    width: float
    right: float
    height: float = 0.0
    id: str = ""
    eqno: str = ""
    section: str = ""
    text: str = ""

    def describe(self) -> str:
        what = self.kind
        if self.eqno:
            what += f" {self.eqno}"
        if self.id:
            what += f" #{self.id}"
        if self.section and self.section != self.id:
            what += f" in #{self.section}"
        return what + (f' "{self.text[:60]}"' if self.text else "")


@dataclass
class Layout:
    window: tuple[int, int]
    column_left: float
    column_right: float
    elements: list[LayoutElement]
    error: str = ""

    @property
    def column_width(self) -> float:
        return self.column_right - self.column_left


LAYOUT_PRE = re.compile(
    r"<pre\b[^>]*\bid=([\"'])" + re.escape(LAYOUT_ID) + r"\1[^>]*>(.*?)</pre>", re.S | re.I
)


def read_layout(dom: str) -> Layout | None:
    """The probe's findings in a dumped DOM (``<pre id="vaeas-layout">``), or None if absent."""
    m = LAYOUT_PRE.search(dom)
    if not m:
        return None
    data = json.loads(html.unescape(m.group(2)))
    col = data.get("column") or {}
    elements = [
        LayoutElement(
            kind=str(e.get("kind", "?")),
            width=float(e.get("width") or 0),
            right=float(e.get("right") or 0),
            height=float(e.get("height") or 0),
            id=str(e.get("id") or ""),
            eqno=str(e.get("eqno") or ""),
            section=str(e.get("section") or ""),
            text=str(e.get("text") or ""),
        )
        for e in data.get("elements", [])
    ]
    window = tuple(data.get("window") or (0, 0))
    return Layout(
        window=(int(window[0]), int(window[1])),
        column_left=float(col.get("left") or 0),
        column_right=float(col.get("right") or 0),
        elements=elements,
        error=str(data.get("error") or ""),
    )


def too_wide(layout: Layout, slack: float = WIDTH_SLACK_PX) -> list[LayoutElement]:
    """The elements wider than the column, or reaching past its right edge, by more than slack.

    Elements not laid out (zero width and height: in a collapsed or hidden block) are skipped.
    """
    out = []
    for e in layout.elements:
        if e.width == 0 and e.height == 0:
            continue
        if e.width > layout.column_width + slack or e.right > layout.column_right + slack:
            out.append(e)
    return out


def width_problems(layout: Layout | None, slack: float = WIDTH_SLACK_PX) -> list[str]:
    """The width check's problems for one page (empty list: everything fits)."""
    if layout is None:
        return ["layout probe did not run (no <pre id=vaeas-layout> in the DOM: raise --budget)"]
    if layout.error or layout.column_width <= 0:
        return [f"layout probe failed: {layout.error or 'no content column'}"]
    wide = too_wide(layout, slack)
    if not wide:
        return []
    items = " | ".join(f"{e.describe()} {e.width:.0f} px" for e in wide)
    return [
        f"{len(wide)} element(s) wider than the {layout.column_width:.0f} px column "
        f"(viewport {layout.window[0]} px wide): {items}"
    ]


def leak_problems(dom: str) -> list[str]:
    """The raw-LaTeX check's problems for one page (empty list: no TeX leaks)."""
    leaks = latex_leaks(dom)
    if not leaks:
        return []
    return [f"{len(leaks)} raw LaTeX leak(s): " + " | ".join(f"«{s}»" for s in leaks)]


# --------------------------------------------------------------------------- the browser


def chromium_run(
    chromium: str, url: str, extra: list[str], budget_ms: int, timeout: float = 120.0
) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="check-html-profile-") as profile:
        cmd = [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--mute-audio",
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={budget_ms}",
            *extra,
            url,
        ]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


# --------------------------------------------------------------------------- checks


def resolve_image(src: str, page_url_path: str, root: Path, served: dict[str, int]) -> str | None:
    """Return None if the image resolves, else a short reason."""
    if not src:
        return "img without src"
    if src.startswith("data:"):
        payload = src.split(",", 1)[1] if "," in src else ""
        return None if len(payload) > 20 else "empty data: URI"
    parts = urllib.parse.urlsplit(src)
    if parts.scheme in ("http", "https") and parts.hostname not in ("127.0.0.1", "localhost"):
        return f"external image {src[:80]}"
    path = urllib.parse.unquote(urllib.parse.urljoin(page_url_path, parts.path))
    status = served.get(path)
    if status is not None and status >= 400:
        return f"{path} answered {status}"
    if not (root / path.lstrip("/")).is_file():
        return f"{path} missing"
    return None


def check_page(
    doc: str,
    root: Path,
    base_url: str,
    chromium: str,
    log: RequestLog,
    shot_path: Path,
    budget_ms: int,
    window: tuple[int, int] = WINDOW,
) -> list[str]:
    problems: list[str] = []
    html_file = root / f"{doc}.html"
    if not html_file.is_file():
        return [f"{doc}.html not built"]
    source = analyze(rewrite_mathjax(html_file.read_text(encoding="utf-8", errors="replace")))
    url_path = "/" + urllib.parse.quote(f"{doc}.html")
    url = base_url + url_path

    t0 = time.monotonic()
    window_arg = f"--window-size={window[0]},{window[1]}"
    proc = chromium_run(chromium, url, ["--dump-dom", window_arg], budget_ms)
    if proc.returncode != 0 or "<html" not in proc.stdout.lower():
        tail = (proc.stderr or "").strip().splitlines()[-1:] or ["no output"]
        return [f"chromium --dump-dom failed (rc={proc.returncode}): {tail[0][:160]}"]
    dom = analyze(proc.stdout)
    served: dict[str, int] = {}
    for path, status in log.since(t0):
        served[path] = status if status >= 400 else served.get(path, status)

    # math
    expected_math = max(source.math_elements, 1 if source.math_text else 0)
    if expected_math:
        if not any(s.startswith(MATHJAX_PREFIX) for s in source.mathjax_scripts):
            problems.append("page has math but loads no MathJax script")
        if dom.mjx_containers < expected_math:
            problems.append(
                f"math not typeset ({dom.mjx_containers} mjx-container for "
                f"{expected_math} math elements)"
            )
    if dom.mjx_errors:
        problems.append(f"{len(dom.mjx_errors)} MathJax error(s): {dom.mjx_errors[0][:100]}")

    # figures
    if len(dom.images) < len(source.images):
        problems.append(f"{len(dom.images)} <img> rendered, {len(source.images)} in the HTML")
    bad_images = [r for r in (resolve_image(s, url_path, root, served) for s in dom.images) if r]
    if bad_images:
        problems.append(f"{len(bad_images)} image(s) do not resolve: {bad_images[0]}")

    # errors shown on the page
    if dom.tracebacks:
        problems.append(f"{dom.tracebacks} traceback output(s)")
    if dom.stderr_errors:
        problems.append(
            f"{len(dom.stderr_errors)} stderr output(s) with an error: {dom.stderr_errors[0]}"
        )
    if dom.system_messages:
        problems.append(f"{dom.system_messages} docutils system message(s)")

    # raw TeX in the text, elements wider than the column
    problems += leak_problems(proc.stdout)
    layout = read_layout(proc.stdout)
    problems += width_problems(layout)
    failed = sorted(p for p, s in served.items() if s >= 400 and not p.endswith("favicon.ico"))
    if failed:
        problems.append(f"{len(failed)} request(s) failed: {failed[0]} ({served[failed[0]]})")

    # screenshot of the first screen
    shot_path.parent.mkdir(parents=True, exist_ok=True)
    if shot_path.exists():
        shot_path.unlink()
    proc = chromium_run(chromium, url, [f"--screenshot={shot_path}", window_arg], budget_ms)
    if not shot_path.is_file() or shot_path.stat().st_size == 0:
        problems.append(f"no screenshot (chromium rc={proc.returncode})")

    facts = f"math {dom.mjx_containers}/{expected_math}, img {len(dom.images)}/{len(source.images)}"
    if layout is not None:
        facts += f", column {layout.column_width:.0f} px, {len(layout.elements)} measured"
    return problems or [f"ok: {facts}"]


def screenshot_names(pages: list[str]) -> dict[str, str]:
    names = {p: posixpath.basename(p) for p in pages}
    if len(set(names.values())) != len(names):
        names = {p: p.replace("/", "__") for p in pages}
    return names


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "html_dir",
        nargs="?",
        default="_build/html",
        help="built HTML folder (default: _build/html)",
    )
    ap.add_argument("--mathjax", help="MathJax 3 folder (npm prefix, package or es5 folder)")
    ap.add_argument("--toc", default="_toc.yml", help="the book's _toc.yml (default: _toc.yml)")
    ap.add_argument("--screenshots", help="where to save PNGs (default: HTML_DIR/../screenshots)")
    ap.add_argument("--chromium", help="browser executable")
    ap.add_argument(
        "--budget", type=int, default=8000, help="virtual time budget per page, ms (default: 8000)"
    )
    ap.add_argument(
        "--window",
        default=f"{WINDOW[0]}x{WINDOW[1]}",
        help=f"browser window WIDTHxHEIGHT for the width check and screenshots "
        f"(default: {WINDOW[0]}x{WINDOW[1]})",
    )
    args = ap.parse_args(argv)
    m = re.fullmatch(r"(\d+)x(\d+)", args.window)
    if not m:
        ap.error(f"--window must be WIDTHxHEIGHT, not {args.window!r}")
    window = (int(m.group(1)), int(m.group(2)))

    root = Path(args.html_dir).resolve()
    toc = Path(args.toc)
    mathjax = find_mathjax(args.mathjax)
    chromium = find_chromium(args.chromium)
    errors = []
    if not root.is_dir():
        errors.append(f"no HTML folder {args.html_dir}: build the book first")
    if not toc.is_file():
        errors.append(f"no table of contents {args.toc}")
    if mathjax is None:
        errors.append(
            "no MathJax 3: run `npm install --prefix DIR mathjax@3` and pass "
            "--mathjax DIR (or set VAEAS_MATHJAX_DIR)"
        )
    if chromium is None:
        errors.append("no chromium: `apt-get install chromium` or pass --chromium")
    if errors:
        for e in errors:
            print(f"check_html: {e}", file=sys.stderr)
        return 2
    shots = Path(args.screenshots) if args.screenshots else root.parent / "screenshots"
    pages = toc_pages(toc)
    if not pages:
        print(f"check_html: no pages found in {toc}", file=sys.stderr)
        return 2

    log = RequestLog()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make_handler(root, mathjax, log))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{server.server_address[1]}"
    print(
        f"check_html: {len(pages)} pages from {toc}, served at {base_url}, MathJax from {mathjax}",
        flush=True,
    )

    n_failed = 0
    names = screenshot_names(pages)
    start = time.monotonic()
    try:
        for doc in pages:
            t = time.monotonic()
            try:
                result = check_page(
                    doc, root, base_url, chromium, log, shots / f"{names[doc]}.png", args.budget,
                    window,
                )
            except subprocess.TimeoutExpired:
                result = ["chromium timed out"]
            ok = len(result) == 1 and result[0].startswith("ok")
            n_failed += not ok
            status = "PASS" if ok else "FAIL"
            detail = result[0][4:] if ok else "; ".join(result)
            print(f"{status} {doc:<32} {detail} ({time.monotonic() - t:.1f} s)", flush=True)
    finally:
        server.shutdown()
        server.server_close()
    print(
        f"check_html: {len(pages) - n_failed}/{len(pages)} pages pass "
        f"({time.monotonic() - start:.0f} s); screenshots in {shots}"
    )
    return 1 if n_failed else 0


if __name__ == "__main__":
    sys.exit(main())
