"""`lockenv init --from` over a corpus of real requirements files (tests/lock/corpus).

Each file imports into a manifest lockenv reads back, or is refused with one line that
names the file (and the line) — never a crash, never a traceback.  The expected refusals
are listed, so a file that starts failing (or a refusal that changes) is noticed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lockenv.cli import main
from lockenv.lock.manifest import load_manifest

CORPUS = Path(__file__).parent / "corpus"
FILES = sorted(
    p.relative_to(CORPUS).as_posix()
    for p in CORPUS.rglob("*")
    if p.is_file() and p.name != "README.md"
)
# Files only ever read through another one's -r / -c.
INCLUDED = {
    "pallets__flask/requirements/docs.in",
    "pallets__flask/requirements/tests.in",
    "pallets__flask/requirements/typing.in",
    "python__cpython/Doc/constraints.txt",
}
REFUSED = {
    "Lightning-AI__pytorch-lightning/requirements/pytorch/test.txt": "with other markers",
    "conda__conda/tests/requirements.txt": "'conda-forge::anaconda-client' is not a PEP 508",
    "dask__dask/continuous_integration/environment-3.10.yaml": "is a file or URL",
    "encode__httpx/requirements.txt": "editable requirement '-e .'",
    "home-assistant__core/requirements.txt": "package_constraints.txt: no such file",
    "mamba-org__mamba/dev/environment-dev.yml": "is not a MatchSpec string",
    "matplotlib__matplotlib/environment.yml": "invalid MatchSpec 'nbconvert[execute]",
    "mne-tools__mne-python/environment.yml": "is a file or URL",
    "psf__requests/requirements-dev.txt": "editable requirement '-e .[socks]'",
    "pypa__pip/docs/requirements.txt": "'.' is a file or URL",
    "pypa__pip/tests/requirements.txt": "with other markers",
    "python__cpython/Doc/requirements.txt": "'sphinxcontrib-jsmath,<2' is not a PEP 508",
    "vllm-project__vllm/requirements/cpu.txt": "common.txt: no such file",
}


def test_the_corpus_is_a_few_dozen_files() -> None:
    assert len(FILES) >= 40
    assert set(REFUSED) | INCLUDED <= set(FILES)


@pytest.mark.parametrize("name", [f for f in FILES if f not in INCLUDED])
def test_corpus_file_imports_or_is_refused_in_one_line(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "lockenv.toml"
    code = main(
        ["init", "--manifest", str(target), "--platform", "linux-64", "--from", str(CORPUS / name)]
    )
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    if name in REFUSED:
        assert code == 2, err
        assert len(errors) == 1 and errors[0] in err.splitlines()[-1:], err
        assert REFUSED[name] in errors[0]
        assert name.rpartition("/")[2] in errors[0]  # the file is named
        assert not target.exists()
        return
    assert code == 0, err
    assert errors == []
    manifest = load_manifest(target)
    assert manifest.default_feature.dependencies or manifest.default_feature.pypi_dependencies
