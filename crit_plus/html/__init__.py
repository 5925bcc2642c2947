"""Self-contained HTML pages of a checkpoint and of a diff (``--format html``).

The pages are drawn from the analysis dataclasses the text and JSON outputs use
(:mod:`crit_plus.analysis.summary`, ``size``, ``diff``, validate's findings):
this package lays them out (:mod:`.layout`: memory maps, stacked bars, page
strips as SVG geometry) and fills Jinja2 templates (:mod:`.environment`), with
every string from a checkpoint escaped for HTML and its control characters shown
as ``\\x1b`` (:func:`crit_plus.render.safe_text`).  One file, no network: the
style sheet is inlined, there is no script, the process tree folds with
``<details>``.

:mod:`.pages` holds the three entry points: :func:`~.pages.summary_page`,
:func:`~.pages.size_page` and :func:`~.pages.diff_page`.
"""
