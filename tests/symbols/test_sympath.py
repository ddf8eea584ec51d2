"""Symbol path parsing (WinDbg ``_NT_SYMBOL_PATH`` syntax) and the rules that pick the path."""

import os

import pytest

from pytriage.errors import SymbolError
from pytriage.symbols.sympath import (
    LocalDir,
    PathElement,
    default_cache_dir,
    parse_symbol_path,
    resolve_symbol_path,
    user_cache_dir,
)

DC = "/dc"  # the default cache handed to the parser in these tables
MS = "https://msdl.microsoft.com/download/symbols"


def flat(path):
    return LocalDir(path, flat=True)


def store(path):
    return LocalDir(path)


PARSE_TABLE = [
    ("", ()),
    ("  ;  ; ;", ()),
    ("/syms", (PathElement("/syms", (flat("/syms"),)),)),
    (" /a ;;  /b  ", (PathElement("/a", (flat("/a"),)), PathElement("/b", (flat("/b"),)))),
    ("srv*" + MS, (PathElement("srv*" + MS, (store(DC),), url=MS, cache=DC),)),
    ("SRV*/c*https://x/", (PathElement("SRV*/c*https://x/", (store("/c"),), url="https://x/", cache="/c"),)),
    (" srv * /c * https://x ", (PathElement("srv * /c * https://x", (store("/c"),), url="https://x", cache="/c"),)),
    ("srv*/a*/b*https://x", (PathElement("srv*/a*/b*https://x", (store("/a"), store("/b")), url="https://x",
                                         cache="/a"),)),
    ("srv**http://x", (PathElement("srv**http://x", (store(DC),), url="http://x", cache=DC),)),
    ("srv*c*HTTP://X", (PathElement("srv*c*HTTP://X", (store("c"),), url="HTTP://X", cache="c"),)),
    ("srv*/a*\\\\server\\share", (PathElement("srv*/a*\\\\server\\share", (store("/a"), store("\\\\server\\share")),
                                              cache="/a"),)),
    ("srv*\\\\server\\share", (PathElement("srv*\\\\server\\share", (store("\\\\server\\share"),)),)),
    ("symsrv*symsrv.dll*/c*https://x", (PathElement("symsrv*symsrv.dll*/c*https://x", (store("/c"),),
                                                    url="https://x", cache="/c"),)),
    ("SYMSRV*SymSrv.DLL*https://x", (PathElement("SYMSRV*SymSrv.DLL*https://x", (store(DC),), url="https://x",
                                                 cache=DC),)),
    ("cache*/cc;srv*https://x", (PathElement("srv*https://x", (store("/cc"),), url="https://x", cache="/cc"),)),
    ("cache*/cc;/plain", (PathElement("/plain", (store("/cc"), flat("/plain")), cache="/cc"),)),
    ("cache*;/plain", (PathElement("/plain", (store(DC), flat("/plain")), cache=DC),)),
    ("cache*/cc;srv*/d*https://x", (PathElement("srv*/d*https://x", (store("/d"),), url="https://x", cache="/d"),)),
    ("cache*/cc;srv*\\\\share", (PathElement("srv*\\\\share", (store("/cc"), store("\\\\share")), cache="/cc"),)),
    ("/before;cache*/cc;/after", (PathElement("/before", (flat("/before"),)),
                                  PathElement("/after", (store("/cc"), flat("/after")), cache="/cc"))),
    ("cache*/cc;/cc", (PathElement("/cc", (flat("/cc"),)),)),
    ("C:\\symbols;\\\\server\\share\\syms", (PathElement("C:\\symbols", (flat("C:\\symbols"),)),
                                             PathElement("\\\\server\\share\\syms",
                                                         (flat("\\\\server\\share\\syms"),)))),
]


@pytest.mark.parametrize("text,expected", PARSE_TABLE, ids=[row[0] or "empty" for row in PARSE_TABLE])
def test_parse_table(text, expected):
    path = parse_symbol_path(text, DC)
    assert path.elements == expected
    assert path.text == text.strip()
    assert path.default_cache == DC
    assert path.has_server == any(e.url for e in expected)


ERROR_TABLE = [
    ("foo*bar", "symbol path element 'foo*bar': unknown form 'foo*' (expected srv*, symsrv*, cache* or a directory)"),
    ("/ok;Sym*x", "symbol path element 'Sym*x': unknown form 'sym*' (expected srv*, symsrv*, cache* or a directory)"),
    ("https://x", "symbol path element 'https://x' is a URL without srv*: write srv*CACHE*https://x or srv*https://x"),
    ("srv*", "symbol path element 'srv*' names no store or server (write e.g. "
             "srv*https://msdl.microsoft.com/download/symbols)"),
    ("srv**", "symbol path element 'srv**' names no store or server (write e.g. "
              "srv*https://msdl.microsoft.com/download/symbols)"),
    ("srv*/c*", "symbol path element 'srv*/c*' ends with '*': the last store or server is missing"),
    ("srv*http://a*http://b", "symbol path element 'srv*http://a*http://b': only the last store of srv* may be a "
                              "server (http://a)"),
    ("symsrv*other.dll*/c*https://x", "symbol path element 'symsrv*other.dll*/c*https://x': only "
                                      "symsrv*symsrv.dll*... is supported, not 'other.dll'"),
    ("cache*/a*/b", "symbol path element 'cache*/a*/b': cache* takes one directory"),
    ("cache*https://x", "symbol path element 'cache*https://x': cache* needs a local directory, not a URL"),
]


@pytest.mark.parametrize("text,message", ERROR_TABLE, ids=[row[0] for row in ERROR_TABLE])
def test_parse_errors_name_the_element(text, message):
    with pytest.raises(SymbolError) as info:
        parse_symbol_path(text, DC)
    assert str(info.value) == message


def test_tilde_is_expanded_because_shells_do_not_expand_it_inside_env_values(monkeypatch):
    monkeypatch.setenv("HOME", "/home/tester")
    path = parse_symbol_path("~/syms;srv*~/cache*https://x", DC)
    assert path.elements[0].dirs == (flat("/home/tester/syms"),)
    assert path.elements[1].dirs == (store("/home/tester/cache"),)
    assert path.elements[1].cache == "/home/tester/cache"


# -- where the path comes from --------------------------------------------------------------------

def test_cli_value_wins_over_environment(tmp_path):
    env = {"_NT_SYMBOL_PATH": "/from-env", "_NT_ALT_SYMBOL_PATH": "/alt", "HOME": str(tmp_path)}
    path = resolve_symbol_path("/from-cli", env=env, cwd=str(tmp_path), windows=False)
    assert path.source == "--symbols"
    assert path.elements == (PathElement("/from-cli", (flat("/from-cli"),)),)


def test_empty_cli_value_means_no_stores_at_all(tmp_path):
    env = {"_NT_SYMBOL_PATH": "/from-env", "HOME": str(tmp_path)}
    path = resolve_symbol_path("", env=env, cwd=str(tmp_path), windows=False)
    assert path.source == "--symbols"
    assert path.elements == ()
    assert path.has_server is False


def test_environment_used_when_no_cli_value(tmp_path):
    env = {"_NT_SYMBOL_PATH": " srv*/c*https://x ", "HOME": str(tmp_path)}
    path = resolve_symbol_path(None, env=env, cwd=str(tmp_path), windows=False)
    assert path.source == "_NT_SYMBOL_PATH"
    assert path.text == "srv*/c*https://x"
    assert path.elements == (PathElement("srv*/c*https://x", (store("/c"),), url="https://x", cache="/c"),)


def test_alt_symbol_path_is_searched_before_symbol_path(tmp_path):
    env = {"_NT_SYMBOL_PATH": "/main", "_NT_ALT_SYMBOL_PATH": "/alt", "HOME": str(tmp_path)}
    path = resolve_symbol_path(None, env=env, cwd=str(tmp_path), windows=False)
    assert path.source == "_NT_ALT_SYMBOL_PATH+_NT_SYMBOL_PATH"
    assert path.text == "/alt;/main"
    assert [e.text for e in path.elements] == ["/alt", "/main"]


def test_alt_symbol_path_alone(tmp_path):
    env = {"_NT_ALT_SYMBOL_PATH": "/alt", "HOME": str(tmp_path)}
    path = resolve_symbol_path(None, env=env, cwd=str(tmp_path), windows=False)
    assert path.source == "_NT_ALT_SYMBOL_PATH"
    assert [e.text for e in path.elements] == ["/alt"]


def test_srv_without_cache_in_env_uses_the_local_symbols_cache(tmp_path):
    (tmp_path / "symbols_cache").mkdir()
    env = {"_NT_SYMBOL_PATH": "srv*https://x", "HOME": "/nonexistent-home"}
    path = resolve_symbol_path(None, env=env, cwd=str(tmp_path), windows=False)
    cache = str(tmp_path / "symbols_cache")
    assert path.elements == (PathElement("srv*https://x", (store(cache),), url="https://x", cache=cache),)


def test_default_is_local_symbols_cache_when_it_exists_and_never_a_server(tmp_path):
    (tmp_path / "symbols_cache").mkdir()
    env = {"_NT_SYMBOL_PATH": "   ", "HOME": "/nonexistent-home", "XDG_CACHE_HOME": "/xdg"}
    path = resolve_symbol_path(None, env=env, cwd=str(tmp_path), windows=False)
    cache = str(tmp_path / "symbols_cache")
    assert path.source == "default"
    assert path.default_cache == cache
    assert path.elements == (PathElement(cache, (flat(cache),)),)
    assert path.has_server is False
    # The text parses back to the same lookups.
    assert parse_symbol_path(str(path), cache).elements == path.elements


def test_default_falls_back_to_xdg_cache_home(tmp_path):
    env = {"HOME": "/home/u", "XDG_CACHE_HOME": "/xdg"}
    path = resolve_symbol_path(None, env=env, cwd=str(tmp_path), windows=False)
    assert path.default_cache == "/xdg/pytriage/symbols"
    assert path.elements == (PathElement("/xdg/pytriage/symbols", (flat("/xdg/pytriage/symbols"),)),)
    assert path.has_server is False


def test_relative_xdg_cache_home_is_ignored_as_the_spec_says(tmp_path):
    env = {"HOME": "/home/u", "XDG_CACHE_HOME": "relative/cache"}
    assert default_cache_dir(env, cwd=str(tmp_path), windows=False) == "/home/u/.cache/pytriage/symbols"


def test_default_without_xdg_is_dot_cache_in_home(tmp_path):
    assert default_cache_dir({"HOME": "/home/u"}, cwd=str(tmp_path), windows=False) == "/home/u/.cache/pytriage/symbols"


def test_symbols_cache_that_is_a_file_is_not_used(tmp_path):
    (tmp_path / "symbols_cache").write_text("not a directory")
    assert default_cache_dir({"HOME": "/h"}, cwd=str(tmp_path), windows=False) == "/h/.cache/pytriage/symbols"


def test_default_uses_current_directory_when_cwd_not_given(tmp_path, monkeypatch):
    (tmp_path / "symbols_cache").mkdir()
    monkeypatch.chdir(tmp_path)
    assert default_cache_dir({"HOME": "/h"}, windows=False) == os.path.join(str(tmp_path), "symbols_cache")


def test_windows_per_user_cache_is_under_localappdata():
    env = {"LOCALAPPDATA": "C:\\Users\\u\\AppData\\Local", "USERPROFILE": "C:\\Users\\other"}
    assert user_cache_dir(env, windows=True) == "C:\\Users\\u\\AppData\\Local\\pytriage\\symbols"


def test_windows_per_user_cache_without_localappdata_uses_userprofile():
    env = {"USERPROFILE": "C:\\Users\\u"}
    assert user_cache_dir(env, windows=True) == "C:\\Users\\u\\AppData\\Local\\pytriage\\symbols"


def test_resolve_reads_os_environ_by_default(tmp_path, monkeypatch):
    monkeypatch.setenv("_NT_SYMBOL_PATH", "/env-dir")
    monkeypatch.delenv("_NT_ALT_SYMBOL_PATH", raising=False)
    path = resolve_symbol_path(None, cwd=str(tmp_path))
    assert path.source == "_NT_SYMBOL_PATH"
    assert path.elements == (PathElement("/env-dir", (flat("/env-dir"),)),)


def test_describe_lists_every_element():
    path = parse_symbol_path("/a;srv*/c*https://x", DC)
    assert path.describe() == [
        "symbol path (--symbols): /a;srv*/c*https://x",
        "  /a -> /a (flat+store)",
        "  srv*/c*https://x -> /c, then https://x; cache /c",
    ]
