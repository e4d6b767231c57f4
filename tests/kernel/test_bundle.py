"""Export / import bundles: identical history, verified content, nothing written on a bad bundle."""

import zipfile

import pytest

from memos.errors import CorruptPayload, CubeExists


def test_roundtrip_preserves_history(mos, cube, tmp_path):
    a = cube.add("Alice moved to Lisbon", metadata={"k": 1}, event_time="2023-01-01")
    b = cube.add("Alice likes jazz")
    cube.update(a.id, "Alice moved to Porto")
    cube.delete(b.id, purge=True)
    path = tmp_path / "alice.memos"
    info = mos.export_cube("alice", path)
    assert info["head"] == cube.head and info["memories"] == 1
    copy = mos.import_cube(path, name="alice2")
    assert copy.head == cube.head
    assert [(v.version, v.text, v.commit) for v in copy.history(a.id)] == \
        [(v.version, v.text, v.commit) for v in cube.history(a.id)]
    assert [e.op for e in copy.log()] == [e.op for e in cube.log()]
    assert copy.search("Porto", top_k=1)[0].memory.id == a.id
    assert copy.at(1).get(a.id).text == "Alice moved to Lisbon"
    with pytest.raises(CubeExists):
        mos.import_cube(path)


def test_corrupt_bundle_writes_nothing(mos, cube, tmp_path):
    cube.add("some memory")
    good = tmp_path / "good.memos"
    mos.export_cube("alice", good)
    bad = tmp_path / "bad.memos"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "versions.jsonl":
                data = data.replace(b"some memory", b"evil memory")
            dst.writestr(item, data)
    with pytest.raises(CorruptPayload):
        mos.import_cube(bad, name="other")
    (tmp_path / "junk.memos").write_bytes(b"not a zip")
    with pytest.raises(CorruptPayload):
        mos.import_cube(tmp_path / "junk.memos", name="other")
    assert [c.name for c in mos.list_cubes()] == ["alice"]


def test_import_re_embeds_vectors_of_another_embedder_model(mos, cube, tmp_path):
    """A bundle whose vectors come from another model of the same embedder plugin is re-embedded on import
    (its vectors are meaningless here); one from this model keeps its stored vectors."""
    import hashlib
    import json

    import numpy as np
    from safetensors.numpy import load, save

    m = cube.add("The spare key is under the blue flower pot. The car key is in the drawer.")
    good = tmp_path / "good.memos"
    mos.export_cube("alice", good)

    def rewritten(model: str) -> str:
        out = tmp_path / f"{model}.memos"
        with zipfile.ZipFile(good) as src, zipfile.ZipFile(out, "w") as dst:
            files = {i.filename: src.read(i.filename) for i in src.infolist()}
            tensors = load(files["vectors.safetensors"])
            files["vectors.safetensors"] = save({k: (np.zeros_like(v) if v.dtype == np.float32 else v)
                                                 for k, v in tensors.items()})
            manifest = json.loads(files["manifest.json"])
            manifest["embedder_model"] = model
            manifest["files"]["vectors.safetensors"] = hashlib.sha256(files["vectors.safetensors"]).hexdigest()
            files["manifest.json"] = json.dumps(manifest).encode()
            for name, data in files.items():
                dst.writestr(name, data)
        return str(out)

    def stored(name: str) -> np.ndarray:
        rows = mos._kernel.backend.scan(name, ids=(m.id,))
        return np.frombuffer(rows[0][1], dtype=np.float32)

    mos.import_cube(rewritten("some-other-model"), name="other")
    assert np.abs(stored("other")).sum() > 0  # re-embedded
    assert np.array_equal(stored("other"), stored("alice"))
    mos.import_cube(rewritten("all-MiniLM-L6-v2"), name="same")
    assert np.abs(stored("same")).sum() == 0  # this model's (here zeroed) vectors are kept as they are
