"""The browser check's DOM checks (.ci/check_html.py), on small hand-written DOMs: no Chromium.

The script is not a package module, so it is loaded by path. Each check must fail on a sample
that has the fault and pass on a clean one.
"""

from __future__ import annotations

import html
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / ".ci" / "check_html.py"


@pytest.fixture(scope="module")
def ch():
    spec = importlib.util.spec_from_file_location("check_html", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_html"] = module  # dataclasses look the module up while the class is built
    spec.loader.exec_module(module)
    return module


def page(article: str, outside: str = "") -> str:
    """A rendered page shaped like sphinx-book-theme's: navigation, then the article."""
    return (
        "<html><head><script>var s = '\\\\frac{a}{b}';</script><style>p{}</style></head><body>"
        f"<nav>{outside}</nav><main><article class=\"bd-article\">{article}</article></main>"
        "</body></html>"
    )


TYPESET = (
    '<span class="math notranslate nohighlight"><mjx-container class="MathJax" jax="CHTML">'
    '<mjx-math><mjx-mi>x</mjx-mi></mjx-math><mjx-assistive-mml><math><mi>\\log</mi></math>'
    "</mjx-assistive-mml></mjx-container></span>"
)

CLEAN = page(
    f"<h1>The ELBO</h1><p>The bound {TYPESET} holds; costs are in nats (see <code>\\frac</code>).</p>"
    "<pre>loss = a \\log b  # $\\mathrm{KL}$</pre>"
    '<div class="highlight"><pre><span>\\sum_i</span></pre></div>'
    "<p>Prices like 5 $ and 10 $ and a path C:/data are fine; so is 50% and x_1.</p>",
    outside="<a>\\mathrm{nav}</a>",
)


# --------------------------------------------------------------------------- raw LaTeX


def test_clean_page_has_no_leak(ch):
    assert ch.latex_leaks(CLEAN) == []
    assert ch.leak_problems(CLEAN) == []


def test_text_outside_code_and_math_only(ch):
    text = ch.visible_text(CLEAN)
    assert "The bound" in text and "holds" in text
    for hidden in ("\\frac", "\\log", "\\sum", "\\mathrm", "var s"):
        assert hidden not in text


@pytest.mark.parametrize(
    "leak",
    [
        "the rate $\\mathrm{KL}(q \\,\\|\\, p)",  # a $...$ that a list item broke open
        "so that \\frac{1}{2} of it",
        "with \\mathbb{E} over the data",
        "by \\operatorname{tr}(\\Sigma)",
        "where \\log(2) nats",
        "a \\sum over i",
        "left \\( z \\) in the text",
        "and \\[ a = b \\] too",
        "the code $z$ is drawn",
        "the KL of z_{d} is",
    ],
)
def test_leak_is_found_and_reported(ch, leak):
    dom = page(f"<p>Before. {TYPESET} Then {leak}, after.</p>")
    leaks = ch.latex_leaks(dom)
    assert len(leaks) == 1
    problems = ch.leak_problems(dom)
    assert len(problems) == 1 and "1 raw LaTeX leak" in problems[0]
    core = leak.split(" ", 2)[-1][:6]
    assert core in leaks[0]


def test_leak_split_by_inline_markup_is_found(ch):
    # A '*' in a formula that Markdown read as emphasis: the TeX is split over elements.
    dom = page("<p>so $a_i <em>b_j</em> \\cdot c$ holds</p>")
    assert ch.latex_leaks(dom)


def test_near_leaks_form_one_snippet_far_ones_two(ch):
    near = page("<p>$\\mathrm{KL}(q) = \\tfrac12 \\log\\det\\Sigma$</p>")
    assert len(ch.latex_leaks(near)) == 1
    far = page("<p>\\frac" + " plain words" * 20 + " \\mathbb</p>")
    assert len(ch.latex_leaks(far)) == 2


def test_leak_in_navigation_only_is_ignored_when_the_article_is_clean(ch):
    dom = page("<p>clean text</p>", outside="<span>\\frac{1}{2}</span>")
    assert ch.latex_leaks(dom) == []


def test_page_without_article_is_checked_whole(ch):
    dom = "<html><body><p>a \\frac{1}{2} leak</p></body></html>"
    assert ch.latex_leaks(dom)


def test_untypeset_math_span_is_a_leak(ch):
    dom = page('<p>draw <span class="math notranslate nohighlight">\\(z\\)</span> first</p>')
    assert ch.latex_leaks(dom)


# --------------------------------------------------------------------------- widths


def layout_dom(elements: list[dict], column=(300.0, 924.0), window=(1200, 757)) -> str:
    data = {
        "window": list(window),
        "column": {"selector": "article.bd-article", "left": column[0], "right": column[1],
                   "width": column[1] - column[0]},
        "elements": elements,
    }
    # The probe sets textContent, so the dumped DOM has the JSON HTML-escaped.
    return page("<p>text</p>") + f'<pre id="vaeas-layout" hidden="">{html.escape(json.dumps(data))}</pre>'


def element(kind: str, width: float, left: float = 300.0, **extra) -> dict:
    return {"kind": kind, "left": left, "right": left + width, "width": width, "height": 40, **extra}


FITTING = [
    element("equation", 620, eqno="(1.7)", id="equation-ch1-elbo", text="\\mathcal{L}(x)"),
    element("table", 625.5, section="results"),  # within the 2 px slack
    element("img", 624, text="a plot"),
    element("figure", 624, id="fig-vae-latent"),
]


def test_layout_is_read_back(ch):
    layout = ch.read_layout(layout_dom(FITTING))
    assert layout is not None
    assert layout.column_width == pytest.approx(624.0)
    assert layout.window == (1200, 757)
    assert [e.kind for e in layout.elements] == ["equation", "table", "img", "figure"]
    assert layout.elements[0].eqno == "(1.7)" and layout.elements[0].text == "\\mathcal{L}(x)"


def test_fitting_elements_pass(ch):
    assert ch.width_problems(ch.read_layout(layout_dom(FITTING))) == []


def test_wide_equation_and_table_fail_with_their_widths(ch):
    wide = [
        *FITTING,
        element("equation", 929, eqno="(1.7)", id="equation-ch1-elbo", section="the-elbo",
                text="\\mathcal{L}(x) = \\mathbb{E}"),
        element("table", 728, section="the-comparison-table", text="method | seeds | KL"),
    ]
    layout = ch.read_layout(layout_dom(wide))
    assert [e.width for e in ch.too_wide(layout)] == [929, 728]
    (problem,) = ch.width_problems(layout)
    assert problem.startswith("2 element(s) wider than the 624 px column")
    assert "equation (1.7) #equation-ch1-elbo in #the-elbo" in problem and "929 px" in problem
    assert "table in #the-comparison-table" in problem and "728 px" in problem


def test_element_reaching_past_the_right_edge_fails(ch):
    # Narrower than the column but indented (in a list): it still sticks out on the right.
    shifted = element("img", 600, left=340.0)
    assert ch.too_wide(ch.read_layout(layout_dom([shifted])))


def test_hidden_elements_are_not_measured(ch):
    hidden = {"kind": "table", "left": 0, "right": 0, "width": 0, "height": 0}
    assert ch.width_problems(ch.read_layout(layout_dom([hidden]))) == []


def test_missing_or_failed_probe_fails_the_page(ch):
    assert ch.read_layout(CLEAN) is None
    (problem,) = ch.width_problems(None)
    assert "layout probe did not run" in problem
    broken = layout_dom([], column=(0.0, 0.0))
    assert "layout probe failed" in ch.width_problems(ch.read_layout(broken))[0]


# --------------------------------------------------------------------------- the injected probe


def test_server_rewrite_injects_the_probe_before_body_end(ch):
    src = (
        '<html><head><script defer="defer" '
        'src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"></script></head>'
        "<body><p>x</p></body></html>"
    )
    out = ch.rewrite_html(src)
    assert 'src="/_mathjax/tex-mml-chtml.js"' in out
    assert out.count("vaeas-layout") == 1 and "startup.promise" in out
    assert out.index("vaeas-layout") < out.index("</body>")
    # The probe adds no math, images or text that the other checks would count.
    assert ch.analyze(out).math_elements == 0 and ch.analyze(out).images == []
    assert ch.latex_leaks(out) == []


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_probe_is_valid_javascript(ch, tmp_path):
    body = ch.LAYOUT_PROBE.strip().removeprefix("<script>").removesuffix("</script>")
    js = tmp_path / "probe.js"
    js.write_text(body, encoding="utf-8")
    proc = subprocess.run(["node", "--check", str(js)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
