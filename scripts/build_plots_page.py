"""Write scripts/plots_page.html: the page `dvc plots show` and `dvc plots diff` fill (`.dvc/config`'s
plots.html_template), with Vega, Vega-Lite and Vega-Embed inside it, so the charts draw with no network.

DVC's own page loads the three libraries from a CDN, so on a machine offline (a compute node) every chart is
blank. The libraries are the versions DVC's page names (dvc_render.vega.VegaRenderer.SCRIPTS), from their npm
packages:

    npm pack vega@5.20.2 vega-lite@5.2.0 vega-embed@6.18.2
    python scripts/build_plots_page.py vega-5.20.2.tgz vega-lite-5.2.0.tgz vega-embed-6.18.2.tgz

Each library's licence (BSD-3-Clause) is kept in a comment above it.
"""

from __future__ import annotations

import re
import sys
import tarfile
from pathlib import Path

OUT = Path(__file__).resolve().parent / "plots_page.html"
# package -> its minified browser build inside the npm tarball
BUILDS = {"vega": "package/build/vega.min.js", "vega-lite": "package/build/vega-lite.min.js",
          "vega-embed": "package/build/vega-embed.min.js"}


def read_package(tarball: Path) -> tuple[str, str, str]:
    """(name, licence text, minified build) of one npm tarball."""
    name = tarball.name.rsplit("-", 1)[0]
    if name not in BUILDS:
        raise SystemExit(f"{tarball}: not one of the packages {list(BUILDS)}")
    with tarfile.open(tarball) as archive:
        licence = archive.extractfile("package/LICENSE").read().decode("utf-8")
        build = archive.extractfile(BUILDS[name]).read().decode("utf-8")
    return name, licence, build


def page(packages: list[tuple[str, str, str]]) -> str:
    blocks = []
    for tarball, licence, build in packages:
        # Nothing inside may end the comment or the script element early.
        licence, build = re.sub(r"-(?=-)", "- ", licence), build.replace("</script", "<\\/script")
        blocks.append(f"<!-- {tarball}:\n{licence}\n-->\n<script>\n{build}\n</script>")
    scripts = "\n".join(blocks)
    return f"""<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    <title>DVC Plot</title>
{scripts}
    <style>
        table {{
            border-spacing: 15px;
        }}
    </style>
</head>
<body>
    {{plot_divs}}
</body>
</html>
"""


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    packages = [read_package(Path(path)) for path in argv]
    order = [name for name, _, _ in packages]
    if order != list(BUILDS):
        print(f"give the tarballs in the order {list(BUILDS)}, got {order}", file=sys.stderr)
        return 2
    named = [(Path(path).name, licence, build) for path, (_, licence, build) in zip(argv, packages)]
    OUT.write_text(page(named), encoding="utf-8")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
