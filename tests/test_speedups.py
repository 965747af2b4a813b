"""The grading workers' speed-ups (autograder/batch/speedups.py): each patched function
gives what the library's own gives, and a patch whose target moved is left off with one
warning while grading goes on with the same scores."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import warnings
from datetime import datetime
from pathlib import Path

import jsonschema
import nbformat
import pytest
import sqlalchemy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jupyter_client import jsonutil

from autograder.batch import speedups
from tests import batch_support as bs
from tests.conftest import Course

ROOT = Path(__file__).resolve().parents[1]


# --- the registry -----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(speedups.PATCHES))
def test_every_patch_fits_the_installed_libraries(name):
    """Does each patch find its targets, in their expected shape, in library versions it
    was checked with? (A dependency update that moves one shows here, not as a slower
    grading run.)"""
    assert speedups.check(speedups.PATCHES[name]) == []


def _version_problems(patch, monkeypatch, dist: str, version: str | None) -> list[str]:
    """What `check` says of `patch`'s libraries with `dist` at `version` (others as
    installed)."""
    real = speedups.installed_version
    monkeypatch.setattr(speedups, "installed_version", lambda d: version if d == dist else real(d))
    try:
        return [p for p in speedups.check(patch) if p.startswith(f"{dist} ")]
    finally:
        monkeypatch.setattr(speedups, "installed_version", real)


def test_every_patch_names_its_targets_and_versions(monkeypatch):
    """Does every patch name targets and a non-empty range of versions per library (its
    lowest accepted, the one it stops below refused)?"""
    for patch in speedups.PATCHES.values():
        assert patch.targets and patch.verified
        for dist, lowest, below in patch.verified:
            assert _version_problems(patch, monkeypatch, dist, lowest) == [], patch.name
            assert _version_problems(patch, monkeypatch, dist, below) != [], patch.name
        if patch.make is None:
            assert patch.name == speedups.HTML_EXPORTER  # used by name, asks `active`


def test_pyproject_allows_the_versions_the_patches_were_checked_with():
    """Are the dependency ranges the ones the patches name (so an install from them
    gets every speed-up)?"""
    import tomllib

    from packaging.requirements import Requirement

    def canonical(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    ranges = {}
    for line in pyproject["project"]["dependencies"]:
        req = Requirement(line)
        ranges[canonical(req.name)] = req.specifier
    for patch in speedups.PATCHES.values():
        for dist, lowest, below in patch.verified:
            spec = ranges.get(canonical(dist))
            assert spec is not None, f"{dist} ({patch.name}) is not in pyproject.toml"
            assert {str(s) for s in spec} == {f">={lowest}", f"<{below}"}, (patch.name, spec)


@pytest.mark.parametrize(
    ("version", "accepted"),
    [
        ("8.0", True),
        ("8.0.0rc1", True),  # a pre-release counts as its release
        ("8.10.0", True),
        ("8.10.9+local", True),  # and a local build as its release
        ("7.99", False),
        ("8.11.0a1", False),
        ("8.11", False),
        ("x", False),
    ],
)
def test_versions_count_by_their_release_numbers(monkeypatch, version, accepted):
    """fast-dates was checked with jupyter_client 8.0 to below 8.11."""
    problems = _version_problems(
        speedups.PATCHES["fast-dates"], monkeypatch, "jupyter_client", version
    )
    assert (problems == []) == accepted, problems


def test_a_library_outside_the_checked_versions_turns_its_patch_off(monkeypatch):
    patch = speedups.PATCHES["fast-dates"]
    real = speedups.installed_version
    monkeypatch.setattr(
        speedups, "installed_version", lambda d: "8.11.0" if d == "jupyter_client" else real(d)
    )
    assert speedups.check(patch) == [
        "jupyter_client 8.11.0 is not among the versions it was checked with (8.0 to below 8.11)"
    ]
    monkeypatch.setattr(speedups, "installed_version", lambda d: None)
    assert speedups.check(patch) == ["jupyter_client is not installed"]


def test_a_target_of_another_shape_turns_its_patch_off(monkeypatch):
    patch = speedups.PATCHES["fast-dates"]
    monkeypatch.setattr(jsonutil, "parse_date", lambda text, strict=True: text)
    monkeypatch.setattr(jsonutil, "ISO8601_PAT", "a pattern no more")
    assert speedups.check(patch) == [
        "jupyter_client.jsonutil.ISO8601_PAT.match is missing",
        "jupyter_client.jsonutil.parse_date takes (text, strict), expected (s, ...)",
    ]
    # nbgrader no longer calling SQLAlchemy's own create_engine
    import nbgrader.api

    monkeypatch.setattr(nbgrader.api, "create_engine", lambda url, **kw: None)
    assert speedups.check(speedups.PATCHES["cached-engines"]) == [
        "nbgrader.api.create_engine is no longer sqlalchemy.create_engine"
    ]
    monkeypatch.setattr(nbgrader.api, "create_engine", 42)
    assert speedups.check(speedups.PATCHES["cached-engines"]) == [
        "nbgrader.api.create_engine is not callable"
    ]


@pytest.fixture
def rechecked():
    """Patches checked afresh in this test, and again after it (its changes undone)."""
    speedups.forget_checks()
    yield
    speedups.forget_checks()


def test_a_patch_off_warns_once_per_process(monkeypatch, caplog, rechecked):
    real = speedups.installed_version
    monkeypatch.setattr(
        speedups, "installed_version", lambda d: "8.11.0" if d == "jupyter_client" else real(d)
    )
    with caplog.at_level(logging.WARNING, logger="autograder.batch"):
        for _ in range(3):
            assert not speedups.active("fast-dates")
        assert len(caplog.records) == 1
        message = caplog.records[0].getMessage()
        assert "'fast-dates' is off" in message and "not among the versions" in message
        assert "with jupyter_client 8.11.0:" in message
        monkeypatch.setattr(os, "getpid", lambda: -1)  # a forked worker: its own log
        assert not speedups.active("fast-dates")
        assert len(caplog.records) == 2


# A fresh interpreter (the patches are process-wide) with one target removed, the course
# package bare as in a grading worker (no torch).
MOVED = """
import importlib, json, logging, sys, types
package = types.ModuleType("autograder")
package.__path__ = [sys.argv[1]]
sys.modules["autograder"] = package
module, path = sys.argv[2], sys.argv[3]
owner_path, _, attr = path.rpartition(".")
owner = importlib.import_module(module)
for part in filter(None, owner_path.split(".")):
    owner = getattr(owner, part)
delattr(owner, attr)
records = []
class Keep(logging.Handler):
    def emit(self, record):
        records.append(record.getMessage())
logging.getLogger("autograder.batch").addHandler(Keep())
logging.getLogger("autograder.batch").propagate = False
from autograder.batch import speedups
first, second = speedups.install(), speedups.install()
for name in speedups.PATCHES:
    speedups.active(name)
import jsonschema, nbformat
from nbconvert.exporters import HTMLExporter
nb = nbformat.v4.new_notebook()
nb.cells = [nbformat.v4.new_markdown_cell("# T"), nbformat.v4.new_code_cell("x = 1")]
ours, _ = speedups.CachedHTMLExporter().from_notebook_node(nb)
theirs, _ = HTMLExporter().from_notebook_node(nb)
print(json.dumps({
    "first": first, "second": second, "installed": speedups.installed(),
    "warnings": records, "plain_page": ours == theirs,
    "validate_patched": hasattr(getattr(jsonschema, "validate", None), "_autograder_speedup"),
}))
"""

REMOVED = {  # patch -> (module, attribute path) to delete
    "cached-validate": ("jsonschema", "validate", "jsonschema.validate is missing"),
    "cached-engines": ("nbgrader.api", "create_engine", "nbgrader.api.create_engine is missing"),
    "schema-where-missing": (
        "sqlalchemy.sql.schema",
        "MetaData.create_all",
        "nbgrader.api.Base.metadata.create_all is missing",
    ),
    "known-gradebook": (
        "nbgrader.api",
        "sessionmaker",
        "nbgrader.api.sessionmaker is missing",
    ),
    "fast-dates": (
        "jupyter_client.session",
        "extract_dates",
        "jupyter_client.session.extract_dates is missing",
    ),
    "html-exporter": (
        "nbconvert.filters.highlight",
        "Highlight2HTML",
        "nbconvert.filters.highlight.Highlight2HTML is missing",
    ),
}


@pytest.mark.parametrize("name", sorted(REMOVED))
def test_a_moved_target_leaves_its_patch_off_with_one_warning(name):
    """With one target gone, does install() leave that patch off, install the others,
    and say so once (naming the patch, the library's version and what is missing)?"""
    assert set(REMOVED) == set(speedups.PATCHES)
    module, path, missing = REMOVED[name]
    out = subprocess.run(
        [sys.executable, "-c", MOVED, str(ROOT / "autograder"), module, path],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    expected = {n: n != name for n in speedups.PATCHES}
    assert report["first"] == report["second"] == report["installed"] == expected
    assert len(report["warnings"]) == 1, report["warnings"]
    warning = report["warnings"][0]
    assert f"speed-up {name!r} is off" in warning and missing in warning
    for dist, _, _ in speedups.PATCHES[name].verified:
        assert f"{dist} {speedups.installed_version(dist)}" in warning
    assert report["validate_patched"] == (name != "cached-validate")
    if name == "html-exporter":
        assert report["plain_page"]  # nbconvert's own exporter, page for page


def _patched(name: str, original):
    """What install() binds in place of `original` for patch `name`."""
    return speedups.PATCHES[name].make(original)


# --- cached-validate --------------------------------------------------------------------


def _nbgrader_schema() -> dict:
    from nbgrader.nbgraderformat.v3 import MetadataValidatorV3

    return MetadataValidatorV3().schema


def _outcome(fn, *args, **kwargs):
    """What a call did: ("ok", result) or (exception type, message, path, validator)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            outcome = (
                type(exc),
                str(exc),
                list(getattr(exc, "absolute_path", [])),
                getattr(exc, "validator", None),
            )
        else:
            outcome = ("ok", result)
    return outcome, [(w.category, str(w.message)) for w in caught]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=6,
)

VALID = st.fixed_dictionaries(
    {
        "schema_version": st.just(3),
        "grade": st.booleans(),
        "locked": st.booleans(),
        "solution": st.booleans(),
    },
    optional={
        "task": st.booleans(),
        "grade_id": st.from_regex(r"[a-zA-Z0-9_\-]*", fullmatch=True),
        "points": st.integers(0, 10) | st.floats(0, 100),
        "checksum": st.text(alphabet="0123456789abcdef", min_size=32, max_size=32),
        "cell_type": st.sampled_from(["raw", "code", "markdown"]),
    },
)

KEYS = sorted(_nbgrader_schema()["properties"]) + ["extra"]


@st.composite
def metadata_cells(draw):
    """nbgrader cell metadata: valid, valid with one key changed or dropped, or anything."""
    kind = draw(st.sampled_from(["valid", "changed", "dropped", "anything"]))
    if kind == "anything":
        return draw(JSON)
    meta = draw(VALID)
    if kind == "changed":
        meta[draw(st.sampled_from(KEYS))] = draw(JSON)
    elif kind == "dropped":
        meta.pop(draw(st.sampled_from(sorted(meta))))
    return meta


@settings(max_examples=300, deadline=None)
@given(instances=st.lists(metadata_cells(), min_size=1, max_size=4))
def test_cached_validate_passes_and_fails_as_jsonschema(instances):
    """Does the cached validator accept what jsonschema.validate accepts and raise the
    same error (type, message, path, keyword) for what it rejects, call after call?"""
    original = jsonschema.validators.validate
    patched = _patched("cached-validate", original)
    schema = _nbgrader_schema()
    other = {"type": "object", "required": ["grade"]}  # a second schema, cached apart
    for instance in instances:
        for s in (schema, other, schema):
            assert _outcome(patched, instance, s) == _outcome(original, instance, s)


def test_cached_validate_rejects_a_bad_schema_every_time_and_passes_other_arguments():
    original = jsonschema.validators.validate
    patched = _patched("cached-validate", original)
    bad = {"type": "no such type"}
    for _ in range(2):
        assert _outcome(patched, {}, bad) == _outcome(original, {}, bad)
        assert _outcome(patched, {}, bad)[0][0] is jsonschema.SchemaError
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    draft4 = jsonschema.Draft4Validator
    for instance in ({"n": 1}, {"n": 1.0}, {"n": "1"}):
        assert _outcome(patched, instance, schema, draft4) == _outcome(
            original, instance, schema, draft4
        )
        assert _outcome(patched, instance, schema, cls=draft4) == _outcome(
            original, instance, schema, cls=draft4
        )


# --- cached-engines ---------------------------------------------------------------------


def _engine_facts(engine) -> tuple:
    return (str(engine.url), engine.dialect.name, type(engine.pool), engine.echo)


def _store(engine, value: str | None = None) -> list[str]:
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS t (v TEXT)")
        if value is not None:
            conn.exec_driver_sql("INSERT INTO t VALUES (?)", (value,))
        return [v for (v,) in conn.exec_driver_sql("SELECT v FROM t ORDER BY rowid")]


def test_cached_engines_are_the_engines_nbgrader_would_make(tmp_path):
    """Same URL: the same engine, like a new one and reading the same database; a file
    deleted or replaced since: a new engine on the new file; in-memory SQLite: a new
    engine and database each time, as without the cache."""
    original = sqlalchemy.create_engine
    cached = _patched("cached-engines", original)
    url = f"sqlite:///{tmp_path / 'gradebook.db'}"
    before = cached(url, echo=False, future=True)  # the file is made by its first use
    assert _store(before) == []
    first = cached(url, echo=False, future=True)  # made for the file as it is now
    assert first is not before and _store(first) == []
    assert _engine_facts(first) == _engine_facts(original(url, echo=False, future=True))
    assert _store(first, "a") == ["a"]
    second = cached(url, echo=False, future=True)
    assert second is first
    assert _store(second) == _store(original(url)) == ["a"]
    assert cached(url, echo=True) is not first  # other arguments, another engine

    # The file replaced (as `nbgrader db` or a restore from backup would)
    replacement = tmp_path / "other.db"
    _store(original(f"sqlite:///{replacement}"), "b")
    os.replace(replacement, tmp_path / "gradebook.db")
    third = cached(url, echo=False, future=True)
    assert third is not first
    assert _store(third) == _store(original(url)) == ["b"]
    # ... or deleted: a new file, as a new engine would make it
    (tmp_path / "gradebook.db").unlink()
    fourth = cached(url, echo=False, future=True)
    assert fourth is not third and _store(fourth) == _store(original(url)) == []

    for memory in ("sqlite://", "sqlite:///:memory:"):
        one, two = cached(memory), cached(memory)
        assert one is not two
        _store(one, "private")
        assert _store(two) == []


class _Engine:
    def __init__(self, url):
        self.url, self.disposed = url, False

    def dispose(self):
        self.disposed = True


def test_cached_engines_follow_the_database_file_of_a_url(tmp_path):
    """Other backends (and what is not a URL): one engine per URL; a SQLite file: one
    engine until the file appears or changes; in-memory SQLite: never shared."""
    cached = _patched("cached-engines", _Engine)
    for url in ("postgresql://h/db", "not a url"):
        assert cached(url) is cached(url)
    path = tmp_path / "g.db"
    url = f"sqlite:///{path}"
    before = cached(url)
    assert cached(url) is before  # not there yet, as before
    sqlite3.connect(path).close()
    after = cached(url)
    assert after is not before and before.disposed
    assert cached(url) is after and not after.disposed
    for memory in ("sqlite://", "sqlite:///:memory:", "sqlite:///file:m?mode=memory&uri=true"):
        assert cached(memory) is not cached(memory)


# --- schema-where-missing ---------------------------------------------------------------


def _schema(path: Path) -> list[tuple]:
    db = sqlite3.connect(path)
    try:
        return db.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
        ).fetchall()
    finally:
        db.close()


def test_schema_where_missing_leaves_the_gradebook_as_create_all_would(tmp_path):
    """For a new gradebook, a complete one, one that lost a table and one with a table of
    its own, is the schema afterwards what nbgrader's create_all leaves (and are explicit
    arguments passed on)?"""
    from nbgrader.api import Base

    metadata = Base.metadata
    patched = _patched("schema-where-missing", metadata.create_all)
    complete = tmp_path / "complete.db"
    metadata.create_all(bind=sqlalchemy.create_engine(f"sqlite:///{complete}"))
    cases = {"new": None, "complete": complete}
    lost = tmp_path / "lost.db"
    shutil.copy(complete, lost)
    sqlite3.connect(lost).execute("DROP TABLE grade").connection.close()
    cases["lost"] = lost
    extra = tmp_path / "extra.db"
    shutil.copy(complete, extra)
    sqlite3.connect(extra).execute("CREATE TABLE mine (x)").connection.close()
    cases["extra"] = extra
    for name, source in cases.items():
        results = []
        for which, create_all in (("theirs", metadata.create_all), ("ours", patched)):
            path = tmp_path / f"{name}-{which}.db"
            if source is not None:
                shutil.copy(source, path)
            engine = sqlalchemy.create_engine(f"sqlite:///{path}")
            create_all(bind=engine)
            engine.dispose()
            results.append(_schema(path))
        assert results[0] == results[1], name
    engine = sqlalchemy.create_engine(f"sqlite:///{complete}")
    for create_all in (metadata.create_all, patched):  # checkfirst=False: passed on
        with pytest.raises(sqlalchemy.exc.OperationalError, match="already exists"):
            create_all(bind=engine, checkfirst=False)


# --- fast-dates -------------------------------------------------------------------------

TIMESTAMPS = st.one_of(
    st.from_regex(jsonutil.ISO8601_PAT, fullmatch=True),  # the pattern's every form
    st.from_regex(jsonutil.ISO8601_PAT),  # (`$` also takes a final newline)
    st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1)).map(
        lambda d: d.isoformat() + "Z"
    ),
    st.text(max_size=30),
)
MESSAGES = st.recursive(
    st.none() | st.integers() | TIMESTAMPS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


def _dates_outcome(fn, obj):
    outcome, caught = _outcome(fn, obj)
    if outcome[0] == "ok":  # the same instants, and the same offsets
        outcome = ("ok", outcome[1], json.dumps(outcome[1], default=lambda d: d.isoformat()))
    return outcome, caught


@settings(max_examples=400, deadline=None)
@given(message=MESSAGES)
def test_fast_dates_read_messages_as_jupyter_client(message):
    """Does the faster reading give jupyter_client's datetimes (instants and offsets),
    leave other values alone, and warn or fail where it does?"""
    patched = _patched("fast-dates", jsonutil.extract_dates)
    assert _dates_outcome(patched, message) == _dates_outcome(jsonutil.extract_dates, message)


# --- html-exporter ----------------------------------------------------------------------

CELL_TEXT = st.text(
    alphabet=st.sampled_from(list("abc xyz_*#$`<>&'\"\n=()[]!:/.0123456789")), max_size=60
)


@st.composite
def notebooks(draw):
    v4 = nbformat.v4
    nb = v4.new_notebook()
    nb.metadata["language_info"] = {"name": "python", "pygments_lexer": "ipython3"}
    for _ in range(draw(st.integers(1, 4))):
        text = draw(CELL_TEXT)
        kind = draw(st.sampled_from(["markdown", "code", "code with output", "raw"]))
        if kind == "markdown":
            nb.cells.append(v4.new_markdown_cell(text))
        elif kind == "raw":
            nb.cells.append(v4.new_raw_cell(text))
        else:
            cell = v4.new_code_cell(text)
            if kind == "code with output":
                cell.outputs = [
                    v4.new_output("stream", name="stdout", text=draw(CELL_TEXT)),
                    v4.new_output(
                        "display_data",
                        data={"text/html": f"<div><img src='p.png'>{draw(CELL_TEXT)}</div>"},
                    ),
                ]
            nb.cells.append(cell)
    return nb


def _same_document(a: str, b: str) -> bool:
    from bs4 import BeautifulSoup

    return str(BeautifulSoup(a, "html.parser")) == str(BeautifulSoup(b, "html.parser"))


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(nb=notebooks())
def test_html_export_is_the_same_with_and_without_the_exporter_cache(nb):
    """Is a page rendered with cold caches the same text as one rendered with them warm,
    and the same document as nbconvert's HTMLExporter writes?"""
    from nbconvert.exporters import HTMLExporter

    assert speedups.active(speedups.HTML_EXPORTER)
    speedups.clear_caches()
    assert set(speedups.cache_sizes().values()) == {0}
    cold, _ = speedups.CachedHTMLExporter().from_notebook_node(nb)
    warm, _ = speedups.CachedHTMLExporter().from_notebook_node(nb)
    theirs, _ = HTMLExporter().from_notebook_node(nb)
    assert warm == cold
    assert _same_document(cold, theirs)


def test_html_exporter_off_is_nbconverts_own(monkeypatch, rechecked):
    """With its patch off (here: nbconvert of a version it was not checked with), is the
    exporter nbgrader is configured with the plain HTMLExporter, to the byte, and does it
    remember nothing?"""
    from nbconvert.exporters import HTMLExporter

    real = speedups.installed_version
    monkeypatch.setattr(
        speedups, "installed_version", lambda d: "7.18.0" if d == "nbconvert" else real(d)
    )
    assert not speedups.active(speedups.HTML_EXPORTER)
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Title\n\nSome *text* and $x^2$."),
        nbformat.v4.new_code_cell("y = x ** 2  # squared"),
    ]
    speedups.clear_caches()
    ours, _ = speedups.CachedHTMLExporter().from_notebook_node(nb)
    theirs, _ = HTMLExporter().from_notebook_node(nb)
    assert ours == theirs
    assert speedups.cache_sizes() == {"markdown": 0, "highlight": 0, "bytecode": 0}


# --- grading with a target gone ---------------------------------------------------------

# Removes a target of the html-exporter patch in every Python process of a grading run
# (fork server, workers), after nbconvert bound it where it uses it itself: the library
# works as before, and only the speed-up can no longer find what it relies on.
SITECUSTOMIZE = """
import contextlib
with contextlib.suppress(Exception):
    import nbconvert.exporters
    import nbconvert.filters.highlight
    del nbconvert.filters.highlight.Highlight2HTML
"""


FRESH = re.compile(r"\([^<]*\bfresh\b[^<]*\)")


def _graded_class(base: Path) -> tuple[Course, dict]:
    course = Course.create(base, [bs.A])
    course.submit("correct", bs.A, course.solved(bs.A))
    course.submit("wrong", bs.A, bs.wrong(course))
    course.submit("blank", bs.A, course.release_nb(bs.A))
    outcomes = course.grade(bs.A, jobs=1, timeout=10.0, wall_timeout=60.0, progress=False)
    return course, outcomes


def _warnings_in_worker_logs(course: Course) -> list[str]:
    logs = course.root / ".autograder" / "logs" / "latest"  # the last run's folder
    return [
        line
        for path in sorted(logs.glob("worker-*.log"))
        for line in path.read_text().splitlines()
        if "speed-up" in line
    ]


@pytest.mark.slow
def test_grading_without_a_speedups_target_gives_the_same_scores(tmp_path, monkeypatch):
    """Graded end to end with the exporter speed-up's target gone from nbconvert, does a
    class get the same scores and gradebook, with one warning in the worker's log?"""
    reference, expected = _graded_class(tmp_path / "reference")
    assert _warnings_in_worker_logs(reference) == []

    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    paths = [str(site), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
    course, outcomes = _graded_class(tmp_path / "moved")

    def scores(outcomes):
        return {
            s: (o.status, o.code, o.score, o.max_score, o.needs_manual, o.cells)
            for s, o in outcomes.items()
        }

    assert scores(outcomes) == scores(expected)
    assert outcomes["correct"].score == sum(bs.auto_points(course).values())
    assert outcomes["wrong"].score < outcomes["correct"].score
    snapshot = bs.gradebook_snapshot(course.root)
    assert snapshot == bs.gradebook_snapshot(reference.root)
    for student in outcomes:  # (the checks draw fresh random inputs on every run)
        pages = [c.feedback_html(student, bs.A) for c in (course, reference)]
        assert _same_document(*(FRESH.sub("(fresh)", page) for page in pages)), student
    found = _warnings_in_worker_logs(course)
    assert len(found) == 1, found
    assert "'html-exporter' is off" in found[0]
    assert "nbconvert.filters.highlight.Highlight2HTML is missing" in found[0]


# --- known-gradebook --------------------------------------------------------------------


def _open(init, url: str, course: str):
    """A Gradebook made by `init` (nbgrader's __init__ or the patch's), and the SQL
    statements it ran."""
    from nbgrader.api import Gradebook

    statements: list[str] = []

    def note(conn, cursor, statement, *args):
        statements.append(statement)

    sqlalchemy.event.listen(sqlalchemy.engine.Engine, "before_cursor_execute", note)
    try:
        gb = Gradebook.__new__(Gradebook)
        init(gb, url, course)
    finally:
        sqlalchemy.event.remove(sqlalchemy.engine.Engine, "before_cursor_execute", note)
    return gb, statements


def _courses(path: Path) -> list[tuple]:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT id FROM course ORDER BY id").fetchall()
    finally:
        db.close()


def test_known_gradebook_sets_a_file_up_once_and_anew_when_replaced(tmp_path, monkeypatch):
    """Does the patched Gradebook set up a new file as nbgrader does (schema, alembic
    version, course), open the same file again for the same course without a statement,
    and set up again a file replaced since, or for another course?"""
    from nbgrader.api import Gradebook

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent), prepend=os.pathsep)
    original = Gradebook.__init__
    original = getattr(original, "__wrapped__", original)
    patched = _patched("known-gradebook", original)
    theirs, ours = tmp_path / "theirs.db", tmp_path / "ours.db"
    for init, path in ((original, theirs), (patched, ours)):
        gb, statements = _open(init, f"sqlite:///{path.name}", "autograd")
        assert statements  # set up
        gb.add_student("ada")
        gb.close()
    assert _schema(theirs) == _schema(ours) and _courses(theirs) == _courses(ours)

    gb, statements = _open(patched, f"sqlite:///{ours.name}", "autograd")
    assert statements == []  # known: a session only
    assert [s.id for s in gb.students] == ["ada"] and gb.course_id == "autograd"
    gb.close()

    gb, statements = _open(patched, f"sqlite:///{ours.name}", "another")
    assert statements and ("another",) in _courses(ours)  # another course: set up
    gb.close()

    ours.unlink()  # replaced by a new, empty file
    ours.touch()
    gb, statements = _open(patched, f"sqlite:///{ours.name}", "autograd")
    assert statements and _schema(ours) == _schema(theirs)
    assert [s.id for s in gb.students] == []
    gb.close()


def test_a_process_that_only_opens_gradebooks_installs_only_their_patches():
    """A cluster's Dask worker process opens gradebooks, never notebooks or feedback: it
    installs the gradebook patches alone."""
    code = (
        "import json\n"
        "from autograder.batch import speedups\n"
        "on = speedups.install(speedups.GRADEBOOK_PATCHES)\n"
        "print(json.dumps([on, speedups.install()]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr
    on, again = json.loads(proc.stdout)
    assert {name for name, yes in on.items() if yes} == set(speedups.GRADEBOOK_PATCHES)
    assert set(on) == set(speedups.PATCHES) and again == on  # the first call decides
