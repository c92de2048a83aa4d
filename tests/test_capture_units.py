"""Import capture, case by case, through its public functions (pure and fast: no kernel)."""
from __future__ import annotations

import json
from types import SimpleNamespace

import nbformat
import pytest

from fc_magic.capture import (
    NotebookProblem,
    imported_modules,
    kernel_capture,
    kernel_sources,
    notebook_capture,
    notebook_sources,
)


def plain(*sources: str, labels=None):
    """Capture plain Python sources (no IPython syntax)."""
    return imported_modules(list(sources), transform=lambda s: s, labels=labels)


# ------------------------------------------------------------------ optional imports
@pytest.mark.parametrize("handler", [
    "except:", "except ImportError:", "except ModuleNotFoundError:", "except Exception:",
    "except BaseException:", "except (ValueError, ImportError):",
    "except (ValueError, builtins.ModuleNotFoundError):", "except ImportError as exc:",
])
def test_an_import_guarded_by_an_import_error_handler_is_optional(handler):
    report = plain(f"try:\n    import absent_mod_q\n{handler}\n    pass\n")
    assert report.optional == {"absent_mod_q"}
    assert report.skipped_optional == {"absent_mod_q"}
    assert report.modules == set()


@pytest.mark.parametrize("handler", [
    "except ValueError:", "except (ValueError, OSError):", "except errors.Mine:",
    "except make_error():",
])
def test_an_import_under_another_handler_is_required(handler):
    report = plain(f"try:\n    import absent_mod_q\n{handler}\n    pass\n")
    assert report.modules == {"absent_mod_q"}
    assert report.optional == set() and report.skipped_optional == set()


def test_an_installed_optional_import_is_kept_and_a_required_one_is_never_optional():
    report = plain("try:\n    import yaml\n    import absent_mod_q.sub\nexcept ImportError:\n"
                   "    yaml = None\n",
                   "try:\n    import json\nexcept ImportError:\n    pass\nimport json\n")
    assert report.optional == {"yaml", "absent_mod_q.sub"}
    assert report.skipped_optional == {"absent_mod_q.sub"}
    assert report.modules == {"yaml", "json"}


def test_an_optional_submodule_counts_as_installed_by_its_package():
    # `yaml.some_plugin` may be created at import time; its package is what is installed.
    report = plain("try:\n    import yaml.plugin_absent_q\nexcept ImportError:\n    pass\n")
    assert report.modules == {"yaml.plugin_absent_q"} and report.skipped_optional == set()


def test_an_optional_module_without_an_import_spec_is_not_installed(monkeypatch):
    import sys
    import types

    # A module a notebook put into sys.modules by hand: importlib cannot say where it is from.
    monkeypatch.setitem(sys.modules, "handmade_q", types.ModuleType("handmade_q"))
    report = plain("try:\n    import handmade_q\nexcept ImportError:\n    pass\n")
    assert report.skipped_optional == {"handmade_q"} and report.modules == set()


def test_only_the_try_body_is_guarded():
    report = plain(
        "try:\n    import absent_body\nexcept ImportError:\n    import absent_handler\n"
        "else:\n    import absent_else\nfinally:\n    import absent_finally\n"
        "import absent_after\n")
    assert report.skipped_optional == {"absent_body"}
    assert report.modules == {"absent_handler", "absent_else", "absent_finally", "absent_after"}


def test_nested_guards_unwind():
    report = plain(
        "try:\n    try:\n        import absent_inner\n    except ValueError:\n        pass\n"
        "    import absent_outer\nexcept ImportError:\n    pass\n"
        "try:\n    import absent_unguarded\nexcept ValueError:\n    pass\n")
    assert report.skipped_optional == {"absent_inner", "absent_outer"}
    assert report.modules == {"absent_unguarded"}


def test_try_star_guards_like_try():
    report = plain("try:\n    import absent_star\nexcept* ImportError:\n    pass\n")
    assert report.skipped_optional == {"absent_star"}


# ------------------------------------------------------------------ import forms
def test_from_imports_name_the_imported_submodule_or_the_module_for_star():
    report = plain("from a_pkg.sub import thing, other\nfrom star_pkg import *\n"
                   "from . import sibling\nfrom .. import cousin\nfrom .local import x\n")
    assert report.modules == {"a_pkg.sub.thing", "a_pkg.sub.other", "star_pkg"}


def test_import_module_and_dunder_import_with_literal_names():
    report = plain("import importlib\nfrom importlib import import_module\n"
                   "a = importlib.import_module('lit_a.sub')\nb = import_module('lit_b')\n"
                   "c = __import__('lit_c')\nd = importlib.import_module('.rel', 'pkg')\n"
                   "e = __import__('')\nf = __import__()\ng = loader.load_module('not_this')\n")
    assert report.modules == {"importlib", "importlib.import_module", "lit_a.sub", "lit_b",
                              "lit_c"}
    assert report.warnings == []


def test_a_computed_import_name_warns_with_its_line():
    report = plain("x = 1\nname = 'm'\nm = __import__(name)\n", labels=["mine"])
    assert report.warnings == ["mine line 3: a module imported by a computed name cannot be "
                               "captured; declare its package in %%fc_runtime"]
    assert report.modules == set()


def test_calls_of_computed_callables_do_not_stop_capture():
    report = plain("handlers = {}\nhandlers['x'](1)\n(lambda: 1)()\nf()()\nimport after_q\n")
    assert report.modules == {"after_q"} and report.warnings == []


def test_imports_inside_calls_and_their_arguments_are_seen():
    report = plain("print(__import__('outer_arg').x, [__import__('inner_arg')])\n")
    assert report.modules == {"outer_arg", "inner_arg"}


# ------------------------------------------------------------------ IPython cells
def test_time_magics_are_python_and_other_magics_are_not():
    report = imported_modules([
        "%time import line_timed\n",
        "%%timeit -n1\nimport cell_timed\n",
        "%%capture out\nimport captured_mod\n",
        "%%bash\nimport not_python\n",
        "%ls import_nothing\n",
        "%%time\n%time import twice_nested\n",
    ])
    assert report.modules == {"line_timed", "cell_timed", "captured_mod", "twice_nested"}
    assert report.warnings == []


def test_magic_calls_written_out_in_python_are_followed():
    report = plain("get_ipython().run_cell_magic('time', '', 'import by_cell')\n"
                   "get_ipython().run_line_magic('time', 'import by_line')\n"
                   "get_ipython().run_cell_magic('bash', '', 'import by_bash')\n"
                   "get_ipython().run_line_magic('time', '')\n"
                   "get_ipython().run_line_magic('time')\n"
                   "get_ipython().run_line_magic('time', 'import with_depth', 2)\n")
    assert report.modules == {"by_cell", "by_line", "with_depth"}


def test_nested_magics_are_followed_three_levels_deep():
    level3 = "import deep3"
    level2 = f"import deep2\nget_ipython().run_line_magic('time', {level3!r})"
    level1 = f"import deep1\nget_ipython().run_line_magic('time', {level2!r})"
    level0 = f"get_ipython().run_line_magic('time', {level1!r})\n"
    assert plain(level0).modules == {"deep1", "deep2", "deep3"}
    level4 = f"get_ipython().run_line_magic('time', {level0!r})\n"
    assert plain(level4).modules == {"deep1", "deep2"}


def test_a_nested_magic_with_bad_syntax_is_named_by_its_cell():
    report = plain("get_ipython().run_line_magic('time', 'def (')\n", labels=["In [7]"])
    [warning] = report.warnings
    assert warning.startswith("In [7] skipped: invalid syntax at line 1 (")
    assert warning.endswith("); its imports are not captured")


def test_a_cell_the_transformer_rejects_is_skipped_with_its_reason():
    def transform(source):
        if "bad" in source:
            raise ValueError("unbalanced magic")
        return source

    report = imported_modules(["import bad_cell\n", "import good_cell\n"], transform=transform)
    assert report.modules == {"good_cell"}
    assert report.warnings == ["cell 1 skipped: IPython could not read it (unbalanced magic)"]


def test_empty_cells_count_and_default_labels_number_every_cell():
    report = imported_modules(["", "   \n", "import fine\n", "def (\n"], transform=lambda s: s)
    assert report.cells == 4
    assert report.modules == {"fine"}
    [warning] = report.warnings
    assert warning.startswith("cell 4 skipped: invalid syntax at line 1")


def test_default_transform_is_ipythons():
    report = imported_modules(["!ls\nx = !pwd\nlen?\nimport after_shell_lines\n"])
    assert report.modules == {"after_shell_lines"}
    assert report.warnings == []


def test_the_users_invalid_escapes_are_not_warned_about_again():
    import warnings

    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        report = plain('import re\nDIGITS = re.compile("\\d+")\n')
    assert report.modules == {"re"}
    assert [w.category.__name__ for w in shown] == []


def test_top_level_names():
    assert plain("import a.b.c\nfrom d.e import f\nimport g\n").top_level == {"a", "d", "g"}


# ------------------------------------------------------------------ saved notebooks
def write(path, payload):
    path.write_text(json.dumps(payload) if not isinstance(payload, str) else payload,
                    encoding="utf-8")
    return path


def test_notebook_sources_read_code_cells_in_order(tmp_path):
    path = write(tmp_path / "n.ipynb", {"nbformat": 4, "nbformat_minor": 5, "metadata": {},
                                        "cells": [
        {"cell_type": "code", "source": ["import a\n", "import b\n"]},
        {"cell_type": "markdown", "source": "import not_code"},
        {"cell_type": "raw", "source": "import not_code_either"},
        {"cell_type": "code", "source": "import c\n"},
        {"cell_type": "code"},
        "not a cell",
        {"cell_type": "code", "source": 5},
    ]})
    assert notebook_sources(path) == ["import a\nimport b\n", "import c\n", "", "5"]
    assert notebook_sources(str(path)) == notebook_sources(path)


def test_an_old_format_notebook_is_converted(tmp_path):
    v3 = nbformat.v3.new_notebook(worksheets=[nbformat.v3.new_worksheet(cells=[
        nbformat.v3.new_code_cell(input="import old_style\n"),
        nbformat.v3.new_text_cell("markdown", source="import nope"),
    ])])
    path = tmp_path / "old.ipynb"
    path.write_text(nbformat.v3.writes_json(v3) if hasattr(nbformat.v3, "writes_json")
                    else nbformat.writes(v3, version=3), encoding="utf-8")
    assert json.loads(path.read_text())["nbformat"] == 3
    assert notebook_sources(path) == ["import old_style\n"]


@pytest.mark.parametrize("payload, says", [
    ([1, 2], "is not a notebook (no nbformat version in it)"),
    ({"cells": []}, "is not a notebook (no nbformat version in it)"),
    ({"nbformat": 4, "cells": {"a": 1}}, "is not a notebook (it has no list of cells)"),
    ({"nbformat": 4}, "is not a notebook (it has no list of cells)"),
    ({"nbformat": 99, "cells": []},
     "is not a readable notebook (Unsupported nbformat version 99)"),
    ({"nbformat": 3, "worksheets": 7}, "is not a readable notebook ("),
    # nbformat fails an assert without a message: the reason is the exception's name.
    ({"nbformat": 3, "nbformat_minor": "x", "worksheets": []},
     "is not a readable notebook (AssertionError)"),
    ({"nbformat": "v" * 300}, "is not a readable notebook ("
     + ("Unsupported nbformat version " + "v" * 300)[:120] + ")"),
])
def test_files_that_are_not_notebooks_say_so_in_one_line(tmp_path, payload, says):
    path = write(tmp_path / "x.ipynb", payload)
    with pytest.raises(NotebookProblem) as err:
        notebook_sources(path)
    message = str(err.value)
    assert message.startswith(f"{path} {says}") and "\n" not in message
    assert len(message) <= len(f"{path} is not a readable notebook ()") + 120


def test_an_unreadable_file_names_the_reason_in_one_short_line(tmp_path):
    path = tmp_path / "bad.ipynb"
    path.write_bytes(b"\xff\xfe not utf-8")
    with pytest.raises(NotebookProblem) as err:
        notebook_sources(path)
    assert str(err.value).startswith(f"{path} is not a readable notebook (")
    assert "codec can't decode" in str(err.value)
    long = write(tmp_path / "long.ipynb", "{" + "x" * 500)
    with pytest.raises(NotebookProblem) as err:
        notebook_sources(long)
    reason = str(err.value).split(" (", 1)[1]
    assert reason.startswith("Expecting property name") and len(reason) <= 121
    folder = tmp_path / "folder.ipynb"
    folder.mkdir()
    with pytest.raises(NotebookProblem, match="no such notebook"):
        notebook_sources(folder)


def test_notebook_capture_labels_name_the_file_and_code_cell(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# title"), nbformat.v4.new_code_cell("import ok\n"),
                nbformat.v4.new_code_cell("def (\n")]
    nbformat.write(nb, str(tmp_path / "study.ipynb"))
    report = notebook_capture(tmp_path / "study.ipynb")
    assert report.modules == {"ok"} and report.cells == 2
    [warning] = report.warnings
    assert warning.startswith("study.ipynb code cell 2 skipped: invalid syntax at line 1")


# ------------------------------------------------------------------ the live kernel
class FakeShell(SimpleNamespace):
    """What kernel_capture uses of a shell: its history and its transformer, here with
    an extension's input transformer (`use NAME` means `import NAME`)."""

    def transform_cell(self, source):
        return "\n".join("import " + line[4:] if line.startswith("use ") else line
                         for line in source.replace("%time ", "").splitlines())


def test_kernel_sources_come_from_the_history_without_entry_zero():
    shell = FakeShell(history_manager=SimpleNamespace(input_hist_raw=["", "import a", "b = 1"]),
                      user_ns={"In": ["", "ignored"]})
    assert kernel_sources(shell) == ["import a", "b = 1"]
    assert kernel_sources(FakeShell(history_manager=SimpleNamespace(input_hist_raw=["import z"]),
                                    user_ns={})) == ["import z"]


def test_kernel_sources_fall_back_to_In_without_a_history():
    assert kernel_sources(FakeShell(user_ns={"In": ["", "import a"]})) == ["import a"]
    empty = FakeShell(history_manager=SimpleNamespace(input_hist_raw=[]),
                      user_ns={"In": ["", "import b"]})
    assert kernel_sources(empty) == ["import b"]
    assert kernel_sources(FakeShell(user_ns={})) == []


def test_kernel_capture_uses_the_shells_transformer_and_numbers_cells_as_In():
    shell = FakeShell(history_manager=SimpleNamespace(
        input_hist_raw=["", "%time import timed_here", "x = (", "import plain_here",
                        "use extension_syntax_here"]), user_ns={})
    report = kernel_capture(shell)
    assert report.modules == {"timed_here", "plain_here", "extension_syntax_here"}
    [warning] = report.warnings
    assert warning.startswith("In [2] skipped: invalid syntax")
