"""Work a long-lived grading worker need not repeat for every submission.

nbgrader's pipeline is written for one command per run: per submission it re-validates
the nbgrader metadata schema itself, opens a fresh SQLAlchemy engine (whose compiled
statement cache dies with it) about ten times, and builds a fresh Jinja environment that
recompiles the feedback templates. Profiled, these are about half of a worker's CPU time
per submission. The shims below keep the results identical and only remember what does
not change between submissions:

- ``jsonschema.validate`` checks each distinct schema once, then validates with a cached
  validator (same errors, same exceptions);
- ``nbgrader.api.create_engine`` returns one engine per database URL (each Gradebook
  still opens and closes its own session and connections);
- :class:`CachedHTMLExporter` (the feedback exporter) shares compiled template bytecode
  across exporters; jinja2 checks each template's source checksum before reusing it.

They are installed by :func:`install` in grading workers only.
"""

from __future__ import annotations

import json
import threading

import jinja2
from nbconvert.exporters import HTMLExporter

_installed = False
_lock = threading.Lock()


def _cached_validate():
    import jsonschema
    from jsonschema.exceptions import best_match
    from jsonschema.validators import validator_for

    original = jsonschema.validate
    validators: dict[str, object] = {}

    def validate(instance, schema, cls=None, *args, **kwargs):
        if cls is not None or args or kwargs:
            return original(instance, schema, cls, *args, **kwargs)
        key = json.dumps(schema, sort_keys=True, default=str)
        validator = validators.get(key)
        if validator is None:
            klass = validator_for(schema)
            klass.check_schema(schema)
            validator = validators[key] = klass(schema)
        error = best_match(validator.iter_errors(instance))
        if error is not None:
            raise error

    validate.__wrapped__ = original
    jsonschema.validate = validate


def _cached_engines():
    import nbgrader.api as nbapi

    original = nbapi.create_engine
    engines: dict[tuple, object] = {}

    def create_engine(url, *args, **kwargs):
        key = (str(url), args, tuple(sorted(kwargs.items())))
        with _lock:
            engine = engines.get(key)
            if engine is None:
                engine = engines[key] = original(url, *args, **kwargs)
        return engine

    create_engine.__wrapped__ = original
    nbapi.create_engine = create_engine


class _MemoryBytecodeCache(jinja2.BytecodeCache):
    def __init__(self):
        self.store: dict[str, bytes] = {}

    def load_bytecode(self, bucket):
        data = self.store.get(bucket.key)
        if data is not None:
            bucket.bytecode_from_string(data)

    def dump_bytecode(self, bucket):
        self.store[bucket.key] = bucket.bytecode_to_string()


_BYTECODE = _MemoryBytecodeCache()


class CachedHTMLExporter(HTMLExporter):
    """nbconvert's HTMLExporter; compiled templates are shared across instances."""

    def _create_environment(self):
        environment = super()._create_environment()
        environment.bytecode_cache = _BYTECODE
        return environment


def warm_feedback_templates() -> None:
    """Compile nbgrader's feedback templates (and the ones they extend) into the shared
    bytecode cache by rendering a tiny notebook, before the worker processes fork, so
    that none of them compiles them."""
    import contextlib

    with contextlib.suppress(Exception):
        import nbformat
        from nbgrader.converters import GenerateFeedback
        from nbgrader.coursedir import CourseDirectory
        from traitlets.config import Config

        cfg = Config()
        converter = GenerateFeedback(coursedir=CourseDirectory(config=cfg), config=cfg)
        exporter = CachedHTMLExporter(parent=converter, config=converter.config)
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_markdown_cell("# warm-up"), nbformat.v4.new_code_cell("1")]
        resources = {"nbgrader": {"notebook": "warm", "score": 0, "max_score": 0}}
        resources["nbgrader"]["late_penalty"] = 0
        exporter.from_notebook_node(nb, resources=resources)


def install() -> None:
    """Install the shims in this process (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    _cached_validate()
    _cached_engines()
