"""The hash a registered version is checked against: every byte and every name counts, nothing else does."""

import hashlib
import io
import subprocess
import sys
import zipfile

import pandas as pd
import pytest
from mlflow.models import Model, infer_signature
from skops.io import dumps, loads

from mlscale.modeling.artifacts import former_module_paths, signature_inputs, tree_sha256
from mlscale.modeling.btyd import BtydFeatures


def _tree(folder, files: dict[str, bytes]):
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


def test_the_tree_hash_covers_every_byte_and_every_name(tmp_path):
    files = {"MLmodel": b"flavors: {}\n", "model.skops": b"\x00\x01weights", "sub/conda.yaml": b"deps: []\n"}
    sha, size = tree_sha256(_tree(tmp_path / "a", files))
    assert size == sum(len(d) for d in files.values()) and len(sha) == 64
    # the same files written in another order hash the same
    assert tree_sha256(_tree(tmp_path / "b", dict(reversed(list(files.items()))))) == (sha, size)
    # one changed byte, a renamed file, an added empty file: each changes the hash
    assert tree_sha256(_tree(tmp_path / "c", {**files, "model.skops": b"\x00\x02weights"}))[0] != sha
    renamed = {("sub/environment.yaml" if k == "sub/conda.yaml" else k): v for k, v in files.items()}
    assert tree_sha256(_tree(tmp_path / "d", renamed))[0] != sha
    assert tree_sha256(_tree(tmp_path / "e", {**files, "extra": b""})) != (sha, size)
    # it is the documented construction: sha256 over sorted (relative path, NUL, sha256 of content)
    expected = hashlib.sha256()
    for name in sorted(files):
        expected.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    assert sha == expected.hexdigest()


def test_signature_inputs_read_the_mlmodel_file(tmp_path):
    example = pd.DataFrame({"recency_days": [3, 40], "region": ["Europe", "unknown"]})
    Model(signature=infer_signature(example, [0.2, 0.7])).save(tmp_path / "MLmodel")
    assert signature_inputs(tmp_path) == {"recency_days": "long", "region": "string"}
    Model().save(tmp_path / "MLmodel")  # a model logged without a signature
    assert signature_inputs(tmp_path) == {}


def test_a_version_saved_before_the_package_was_grouped_by_role_still_loads(monkeypatch):
    """Its skops file names BtydFeatures by its former module path, mlscale.btyd."""
    step = BtydFeatures()
    step.params_ = [0.243, 4.414, 0.793, 2.426]
    with zipfile.ZipFile(io.BytesIO(dumps(step))) as current:
        files = {n: current.read(n) for n in current.namelist()}
    files["schema.json"] = files["schema.json"].replace(b'"mlscale.modeling.btyd"', b'"mlscale.btyd"')
    assert b'"mlscale.btyd"' in files["schema.json"]
    saved = io.BytesIO()
    with zipfile.ZipFile(saved, "w") as former:
        for name, data in files.items():
            former.writestr(name, data)
    monkeypatch.delitem(sys.modules, "mlscale.btyd", raising=False)
    with pytest.raises(ImportError):
        loads(saved.getvalue(), trusted=["mlscale.btyd.BtydFeatures"])
    try:
        former_module_paths()
        restored = loads(saved.getvalue(), trusted=["mlscale.btyd.BtydFeatures"])
    finally:
        sys.modules.pop("mlscale.btyd", None)
    rows = pd.DataFrame({"repeat_order_days": [0, 3], "first_to_last_order_days": [0, 120], "tenure_days": [30, 200]})
    assert type(restored) is BtydFeatures and restored.params_ == step.params_
    assert restored.transform(rows).equals(step.transform(rows))


PROBE = """
import airflow.models  # a task process: Airflow and its deprecated-import shims are loaded before skops
import numpy as np
from sklearn.preprocessing import FunctionTransformer


def save():  # as mlflow.sklearn.log_model does: skops is imported when the first model is saved
    import skops.io
    skops.io.dumps(FunctionTransformer(np.log1p))


if {quiet}:  # Airflow's own warning handler logs each warning, as in a task
    from mlscale.modeling.artifacts import quiet_module_probe
    with quiet_module_probe():
        save()
else:
    save()
"""


def test_saving_a_model_in_an_airflow_process_logs_no_deprecated_import_warnings():
    """Without the guard, skops' search for the modules of numpy's and scipy's ufuncs (when it is first imported)
    makes Airflow's shims warn: 1,160 warnings, as many as one train_ task log held (the control)."""
    def warnings_logged(quiet: bool) -> int:
        out = subprocess.run([sys.executable, "-c", PROBE.format(quiet=quiet)], capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, out.stderr
        return (out.stdout + out.stderr).count("DeprecatedImportWarning")
    assert warnings_logged(False) > 1000
    assert warnings_logged(True) == 0
