"""The hash a registered version is checked against: every byte and every name counts, nothing else does."""

import hashlib

import pandas as pd
from mlflow.models import Model, infer_signature

from mlscale.artifacts import signature_inputs, tree_sha256


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
