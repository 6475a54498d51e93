"""`dvc plots show` / `dvc plots diff` draw with no network: the page they fill holds Vega, Vega-Lite and
Vega-Embed itself (scripts/plots_page.html, named by .dvc/config), where DVC's own page loads them from a CDN."""

from __future__ import annotations

import configparser
import importlib.util
import os
import re
import subprocess
import sys

from tests.conftest import PROJECT_ROOT

PAGE = PROJECT_ROOT / "scripts" / "plots_page.html"


def load_builder():
    spec = importlib.util.spec_from_file_location("build_plots_page", PROJECT_ROOT / "scripts/build_plots_page.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_project_points_dvc_at_the_page_and_the_page_holds_its_libraries():
    config = configparser.ConfigParser()
    config.read(PROJECT_ROOT / ".dvc" / "config")
    assert (PROJECT_ROOT / ".dvc" / config["plots"]["html_template"]).resolve() == PAGE
    page = PAGE.read_text(encoding="utf-8")
    assert page.count("{plot_divs}") == 1 and "{scripts}" not in page  # DVC's CDN tags have nowhere to go
    assert not re.search(r"<script[^>]*\bsrc=", page)
    assert page.count("<script>") == page.count("</script>") == 3
    for name in ("vega-5.20.2.tgz", "vega-lite-5.2.0.tgz", "vega-embed-6.18.2.tgz"):
        assert f"<!-- {name}:" in page and "Redistribution and use in source and binary forms" in page


def test_dvc_plots_show_writes_a_page_that_loads_nothing_from_the_network(tmp_path):
    """The committed metrics of the default run, drawn as a user draws them (`dvc plots show`)."""
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["dvc", "plots", "show", "-o", str(tmp_path / "plots")], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    html = (tmp_path / "plots" / "index.html").read_text(encoding="utf-8")
    assert "cdn.jsdelivr" not in html and not re.search(r"<script[^>]*\bsrc=", html)
    assert "vegaEmbed" in html and 'var e="5.20.2"' in html  # the library itself, and a chart that calls it
    assert "metrics_confusion_test_track_json" in html and "metrics_train_plots_metrics_val_macro_f1_tsv" in html


def test_nothing_in_a_library_or_a_licence_can_end_the_page_s_elements_early():
    builder = load_builder()
    page = builder.page([("x-1.0.0.tgz", "Copyright -- someone ---> ----", 'document.write("</script>")')])
    assert page.count("</script>") == 1 and "<\\/script>" in page
    comment = page[page.index("<!--") + 4:page.index("-->")]
    assert "--" not in comment and "someone" in comment and page.count("-->") == 1
