"""``lockenv init --from``: bring requirements.txt and environment.yml into a manifest."""

from __future__ import annotations

from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from lockenv.errors import UsageError


def import_requirements(manifest_text: str, source: Path) -> str:
    """``manifest_text`` with the dependencies of ``source`` added."""
    from lockenv.lock import manifest_edit

    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {str(source)!r}: {exc.strerror or exc}") from None
    if source.suffix in (".yml", ".yaml"):
        conda, pypi = _environment_yml(text, source)
    else:
        conda, pypi = [], _requirements_txt(text, source)
    if conda:
        manifest_text = manifest_edit.add_conda_dependencies(
            manifest_text, conda, feature=None, in_pyproject=False
        )
    if pypi:
        manifest_text = manifest_edit.add_pypi_dependencies(
            manifest_text, pypi, feature=None, in_pyproject=False
        )
    return manifest_text


def _requirement(line: str, source: Path, where: str) -> Requirement:
    try:
        return Requirement(line)
    except InvalidRequirement as exc:
        reason = str(exc).splitlines()[0]
        raise UsageError(
            f"{source.name}: {where}: {line!r} is not a PEP 508 requirement "
            f"({reason}); fix or remove it, then run `lockenv init --from` again"
        ) from None


def _requirements_txt(text: str, source: Path) -> list[Requirement]:
    requirements = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            raise UsageError(
                f"{source.name}: line {number}: options such as {line.split()[0]!r} are not "
                "imported; put indexes in [project] indexes and list requirements only"
            )
        requirements.append(_requirement(line, source, f"line {number}"))
    return requirements


def _conda_entry(text: str, source: Path, where: str) -> tuple[str, str]:
    """``name`` and the manifest's spec text for one environment.yml MatchSpec."""
    from lockenv.lock.conda.matchspec import InvalidMatchSpec, MatchSpec

    try:
        spec = MatchSpec.parse(text.strip())
    except InvalidMatchSpec as exc:
        raise UsageError(f"{source.name}: {where}: {exc}") from None
    version = str(spec.version) if spec.version is not None else "*"
    return spec.name, f"{version} {spec.build}" if spec.build else version


def _environment_yml(text: str, source: Path) -> tuple[list[tuple[str, str]], list[Requirement]]:
    import yaml

    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise UsageError(f"{source.name} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{source.name}: expected a mapping with 'dependencies'")
    conda: list[tuple[str, str]] = []
    pypi: list[Requirement] = []
    for i, dep in enumerate(data.get("dependencies") or []):
        if isinstance(dep, dict) and "pip" in dep:
            pypi.extend(
                _requirement(str(r), source, f"dependencies[{i}].pip") for r in dep["pip"] or []
            )
        elif isinstance(dep, str):
            conda.append(_conda_entry(dep, source, f"dependencies[{i}]"))
        else:
            raise UsageError(
                f"{source.name}: dependencies[{i}]: {dep!r} is not a MatchSpec string or a pip list"
            )
    return conda, pypi
