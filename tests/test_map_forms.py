"""Call forms of %fc_map (--star, --kwargs, --const) and MapResult.to_pandas(), in a real shell."""
from __future__ import annotations

import sys

import pytest
from IPython.core.error import UsageError

from fc_magic.backends import localhost


def test_star_spreads_each_tuple_over_the_parameters(ip, cell):
    cell("def power(base, exp):\n    return base ** exp")
    result = ip.run_line_magic("fc_map", "power [(2, 10), (3, 4), [5, 2]] --star --quiet")
    assert result.values == [1024, 81, 25]


def test_kwargs_takes_each_dict_as_keywords_and_const_adds_to_every_call(ip, cell):
    cell("def fit(alpha, beta=0, *, scale):\n    return (alpha + beta) * scale")
    cell("items = [{'alpha': 1}, {'alpha': 2, 'beta': 3}]")
    result = ip.run_line_magic("fc_map", "fit items --kwargs --const scale=10 --quiet")
    assert result.values == [10, 50]
    cell("def tag(x, *, prefix, table):\n    return prefix + table[x]")
    cell("lookup = {1: 'one', 2: 'two'}")
    result = ip.run_line_magic("fc_map", "tag [1, 2] --const prefix='n:' --const table=lookup "
                                         "--quiet")
    assert result.values == ["n:one", "n:two"]


def test_retry_keeps_the_maps_call_form_and_constants(ip, cell):
    cell("import os\nflag = os.path.join(os.getcwd(), 'fc_forms_flag')\n"
         "def div(a, b, *, k, flag):\n"
         "    if b == 0 and not os.path.exists(flag):\n        raise ZeroDivisionError(a)\n"
         "    return k * a / (b or 1)")
    cell("import pathlib; pathlib.Path(flag).unlink(missing_ok=True)")
    ip.run_line_magic("fc_map", "div [(4, 2), (1, 0)] --star --const k=3 --const flag=flag "
                                "--quiet --out r")
    r = ip.user_ns["r"]
    assert r.values[0] == 6.0 and r.failures[0].exc_type == "ZeroDivisionError"
    cell("pathlib.Path(flag).touch()")
    ip.run_line_magic("fc_map", "--retry r --quiet")
    assert r.values == [6.0, 3.0] and r.ok
    cell("pathlib.Path(flag).unlink()")


@pytest.mark.parametrize("line, expected", [
    ("power [1, 2] --star", "--star: item 0 is a int, not a tuple or list to spread"),
    ("power ['ab'] --star", "--star: item 0 is a str"),
    ("power [(1, 2), (1, 2, 3)] --star", "cannot be called as FUNC(*item) for item 1"),
    ("power [(1,)] --star --kwargs", "--star and --kwargs exclude each other"),
    ("power [(1, 2)] --kwargs", "--kwargs: item 0 is a tuple, not a dict with str keys"),
    ("power [{'base': 1, 'exp': 2}] --kwargs --const exp=3", "both give 'exp'"),
    ("power [{'exp': 1}] --kwargs", "cannot be called as FUNC(**item) for item 0"),
    ("power [1] --const exp", "--const 'exp' has no value; write --const NAME=EXPR"),
    ("power [1] --const 2x=1", "--const '2x' is not a valid Python name"),
    ("power [1] --const exp=1 --const exp=2", "--const exp is given twice"),
    ("power [1] --const exp=undefined_thing", "name 'undefined_thing' is not defined"),
    ("power [1] --const exp=lock", "--const exp (lock) cannot be sent to the workers"),
    ("power [1] --const nope=1", "cannot be called as FUNC(item) with --const nope for item 0"),
])
def test_bad_call_forms_are_one_line_usage_errors_and_nothing_runs(ip, cell, line, expected):
    cell("import threading\nlock = threading.Lock()\n"
         "def power(base, exp=2):\n    return base ** exp")
    with pytest.raises(UsageError) as info:
        ip.run_line_magic("fc_map", line)
    message = str(info.value)
    assert message.startswith("%fc_map: ") and "\n" not in message
    assert expected in message
    assert ip.magics_manager.registry["FCMagic"].last_map is None  # nothing ran


def test_preflight_still_checks_func_and_the_constants(ip, cell, fc, tmp_path):
    """A constant whose type lives in a package the runtime lacks is refused before any task."""
    from fc_magic.runtime import RuntimeEntry

    fc.current_runtime = RuntimeEntry(
        name="slim", key="0" * 64, target="local", deploy_name="slim-00000000",
        path=str(tmp_path), interpreter=None, package=None, requirements=("cloudpickle",),
        python="3.12", manifest={})
    cell("import sklearn.preprocessing\nscaler = sklearn.preprocessing.StandardScaler()\n"
         "import yaml\ndef use(x, *, model):\n    return x\n"
         "def use_yaml(x, *, model):\n    return yaml.safe_load(x)")
    with pytest.raises(UsageError) as info:
        ip.run_line_magic("fc_map", "use [1] --const model=scaler")
    assert "scikit-learn" in str(info.value) and "%%fc_runtime slim" in str(info.value)
    with pytest.raises(UsageError) as info:
        ip.run_line_magic("fc_map", "use_yaml ['1'] --const model=2")
    assert "pyyaml" in str(info.value) and "\n" not in str(info.value)
    assert fc.last_map is None


def test_a_50_mb_constant_is_stored_once_per_map(ip, cell, monkeypatch, record_property):
    """Measured: the bytes a map writes to localhost storage with a 50 MB constant over 8 tasks."""
    stored: list[int] = []
    original = localhost.LocalhostBackend.clean

    def measuring_clean(self, executor, futures):
        internal = executor.internal_storage
        prefixes = {f"lithops.jobs/{executor.executor_id}/"}
        prefixes |= {f"lithops.jobs/{f.job_key}/" for f in futures}
        for prefix in prefixes:
            for obj in internal.storage.list_objects(internal.bucket, prefix):
                stored.append(int(obj["Size"]))
        return original(self, executor, futures)

    monkeypatch.setattr(localhost.LocalhostBackend, "clean", measuring_clean)
    cell("import numpy as np\nbig = np.arange(50 * 2**20, dtype=np.uint8)\n"
         "def probe(i, *, table):\n    return int(table[i * 1000]) + table.nbytes")
    result = ip.run_line_magic("fc_map", "probe range(8) --const table=big --quiet")
    assert result.ok
    assert result.values == [(i * 1000) % 256 + 50 * 2**20 for i in range(8)]
    total = sum(stored)
    record_property("bytes_stored_for_50mb_constant_8_tasks", total)
    sys.stderr.write(f"\n50 MB constant, 8 tasks: {total:,} bytes stored\n")
    assert 50 * 2**20 <= total < 52 * 2**20  # once (plus the function), not 8 times


def test_to_pandas_has_one_row_per_task_with_status_and_figures(ip, cell):
    pd = pytest.importorskip("pandas")  # a test dependency; the missing case is tested below
    cell("def inv(x):\n    print('inverting', x)\n    return 1 / x")
    result = ip.run_line_magic("fc_map", "inv [1, 0, 4] --quiet")
    frame = result.to_pandas()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == ["input", "value", "status", "exception", "duration_s",
                                   "peak_memory_mb", "output"]
    assert frame["output"].tolist() == ["inverting 1\n", "inverting 0\n", "inverting 4\n"]
    assert frame["input"].tolist() == [1, 0, 4]
    assert frame["status"].tolist() == ["ok", "failed", "ok"]
    assert frame.loc[0, "value"] == 1.0 and frame.loc[2, "value"] == 0.25
    assert frame.loc[1, "exception"] == "ZeroDivisionError: division by zero"
    ok = frame[frame["status"] == "ok"]  # Lithops reports no figures for a task that raised
    assert ok["duration_s"].notna().all() and (ok["peak_memory_mb"] > 1).all()
    assert isinstance(result.values, list)


def test_to_pandas_without_pandas_says_how_to_get_it(ip, cell, monkeypatch):
    cell("def ident(x):\n    return x")
    result = ip.run_line_magic("fc_map", "ident [1] --quiet")
    monkeypatch.setitem(sys.modules, "pandas", None)  # as if it were not installed
    with pytest.raises(ImportError, match=r"needs pandas.*pip install pandas"):
        result.to_pandas()


def test_help_documents_the_call_forms_background_and_dataframe(ip):
    doc = ip.find_line_magic("fc_map").__doc__
    for text in ("--star", "FUNC(*item)", "--kwargs", "FUNC(**item)", "--const NAME=EXPR",
                 "--background", "-b", "%fc_wait", "r.to_pandas()", "--star          #",
                 "In [10]: r = %fc_map slow range(5000) --background", "--reduce",
                 "--reduce-partial", "t.reduced"):
        assert text in doc, text
    wait_doc = ip.find_line_magic("fc_wait").__doc__
    assert "Examples" in wait_doc and "--timeout" in wait_doc


def test_futures_an_interrupted_wait_marked_failed_read_as_cancelled():
    """Lithops' wait(), interrupted, sets each future's exception to a bare Exception()."""
    from lithops.future import ResponseFuture

    from fc_magic.backends.job import _failure_from_future

    future = ResponseFuture.__new__(ResponseFuture)
    future._exception = Exception()  # what ResponseFuture._set_exception() leaves
    failure = _failure_from_future(3, "item", future)
    assert failure.cancelled and failure.index == 3 and failure.input_repr == "'item'"
