"""Shared fixtures: paths to the read-only corpus (../shared/corpus, beside the repo) and scenario dumps."""

import json
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(os.path.dirname(REPO), "shared", "corpus")
TRIAGE_DUMP = os.path.join(CORPUS, "dumps", "triage_x64.dmp")
TRIAGE_FACTS = os.path.join(CORPUS, "reference", "triage_x64.facts.json")


def file_offset_of_va(dump_path, va):
    """File offset holding virtual address ``va`` of a full/bitmap dump (to patch a structure in place)."""
    from pytriage.dump import open_dump
    with open_dump(dump_path) as dump:
        pa = dump.translate(va)
        return dump.physical.page_offset(pa >> 12) + (pa & 0xFFF)


@pytest.fixture(scope="session")
def triage_facts():
    with open(TRIAGE_FACTS, encoding="utf-8") as fh:
        return json.load(fh)


@pytest.fixture(scope="session")
def triage_dump_path():
    assert os.path.exists(TRIAGE_DUMP), "the corpus must sit at ../shared/corpus beside the repo"
    return TRIAGE_DUMP


@pytest.fixture(scope="session")
def basic_doc():
    """The built-in ``basic`` spec as parsed JSON (tests deep-copy it before changing it)."""
    from pytriage.scenarios import builtin_path
    with open(builtin_path("basic"), encoding="utf-8") as fh:
        return json.load(fh)


@pytest.fixture(scope="session")
def basic_full(tmp_path_factory):
    from pytriage.scenarios import build_builtin
    return build_builtin("basic", str(tmp_path_factory.mktemp("basic-full")), "full")


@pytest.fixture(scope="session")
def basic_bitmap(tmp_path_factory):
    from pytriage.scenarios import build_builtin
    return build_builtin("basic", str(tmp_path_factory.mktemp("basic-bitmap")), "bitmap")
