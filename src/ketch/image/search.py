"""Searching registries for images (``ketch search``, the Docker API's ``/images/search``), as
podman searches them through containers/image: a registry's repository list (``/v2/_catalog``)
filtered by the term, else the old ``/v1/search`` endpoint that Docker Hub serves; or, with
``list_tags``, one repository's tags."""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

from ketch.errors import InvalidInputError, KetchError, NotFoundError, RegistryError, RegistryUnreachableError
from ketch.image.context import SystemContext
from ketch.records import Record

DEFAULT_LIMIT = 25  # (podman's, for each registry searched)


class SearchResult(Record, frozen=True):
    """One image found, in podman's fields (``--format`` names them)."""
    Index: str  # the registry
    Name: str  # registry/repository
    Description: str = ""
    Stars: int = 0
    Official: str = ""  # "[OK]" for an official image
    Automated: str = ""  # "[OK]" for an automated build
    Tag: str = ""  # with list_tags

    def as_dict(self) -> dict[str, Any]:
        """podman's JSON of a result (its fields, in their order)."""
        return {name: getattr(self, name) for name in ("Index", "Name", "Description", "Stars", "Official",
                                                         "Automated", "Tag")}


def shortened(result: SearchResult, width: int = 44) -> SearchResult:
    """The result with its description cut at ``width`` characters, as podman's table shows it."""
    if len(result.Description) <= width:
        return result
    return SearchResult(**{**result.as_dict(), "Description": result.Description[:width] + "..."})


def split_term(term: str) -> tuple[str | None, str]:
    """(registry, the rest) of a search term: its first component names a registry when it has a
    dot or a port, or is localhost (as in an image name); None for an unqualified term."""
    first, slash, rest = term.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    return None, term


def search(term: str, ctx: SystemContext | None = None, *, limit: int = DEFAULT_LIMIT, list_tags: bool = False,
           filters: dict[str, str] | None = None) -> list[SearchResult]:
    """Images matching ``term`` in its registry, or in each unqualified-search registry of
    registries.conf; at most ``limit`` from each. ``filters``: podman's ``stars`` (at least so
    many), ``is-official`` and ``is-automated`` (true or false)."""
    ctx = ctx or SystemContext()
    if limit < 1:
        raise InvalidInputError(f"invalid --limit {limit}: a positive number")
    registry, rest = split_term(term.strip())
    if registry is not None:
        registries = [registry]
    else:
        registries = list(ctx.registries().unqualified_search)
        if not registries:
            raise InvalidInputError(f"no registry to search for {term!r}: name one (REGISTRY/NAME) or list "
                                    "unqualified-search-registries in registries.conf")
    check = _filter(filters or {})
    if list_tags:
        if filters:
            raise InvalidInputError("filters are not applicable to list tags result")
        if registry is None or not rest or ":" in rest.rsplit("/", 1)[-1] or "@" in rest:
            raise InvalidInputError(f"--list-tags needs a repository with its registry and without a tag: {term!r}")
        return _tags(registry, rest, ctx, limit)
    results: list[SearchResult] = []
    errors = []
    for host in registries:
        try:
            found = _search_registry(host, rest, ctx, limit)
        except KetchError as exc:
            errors.append(f"{host}: {exc}")
            continue
        results += [result for result in found if check(result)]
    if errors and not results:
        raise RegistryError(f"searching for {term!r}: {'; '.join(errors)}")
    return results


def _client(host: str, ctx: SystemContext, repository: str | None = None):
    from ketch.image.docker.client import RegistryClient
    from ketch.image.docker.transport import api_host

    entry = ctx.registries().find(host)
    return RegistryClient(api_host(host), ctx, repository=repository, registry_name=host,
                          insecure=bool(entry and entry.insecure))


def _search_registry(host: str, name: str, ctx: SystemContext, limit: int) -> list[SearchResult]:
    client = _client(host, ctx)
    try:
        try:
            repositories = client.list_catalog()
        except (RegistryError, NotFoundError) as catalog_error:  # (no catalog: v1 search, as Docker Hub's)
            if isinstance(catalog_error, RegistryUnreachableError):
                raise
            try:
                return _search_v1(client, host, name, limit)
            except (RegistryError, NotFoundError):
                raise catalog_error from None
    finally:
        client.close()
    return [SearchResult(Index=host, Name=f"{host}/{repository}")
            for repository in repositories if name in repository][:limit]


def _search_v1(client, host: str, name: str, limit: int) -> list[SearchResult]:
    client.ping()
    query = urllib.parse.urlencode({"q": name, "n": limit})
    response = client.request("GET", f"/v1/search?{query}", preload=True)
    if response.status != 200:
        raise RegistryError(f"{host} has neither /v2/_catalog nor /v1/search (HTTP {response.status})")
    try:
        found = json.loads(response.data).get("results") or []
    except (ValueError, AttributeError) as exc:
        raise RegistryError(f"{host}: the search answer is not JSON") from exc
    out = []
    for item in found[:limit]:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            continue
        repository = item["name"] if "/" in item["name"] or host != "docker.io" else f"library/{item['name']}"
        out.append(SearchResult(Index=host, Name=f"{host}/{repository}", Description=str(item.get("description") or ""),
                                Stars=int(item.get("star_count") or 0),
                                Official="[OK]" if item.get("is_official") else "",
                                Automated="[OK]" if item.get("is_automated") else ""))
    return out


def _tags(host: str, repository: str, ctx: SystemContext, limit: int) -> list[SearchResult]:
    client = _client(host, ctx, repository)
    try:
        tags = client.list_tags()
    finally:
        client.close()
    return [SearchResult(Index=host, Name=f"{host}/{repository}", Tag=tag) for tag in tags[:limit]]


def _filter(filters: dict[str, str]):
    wanted: dict[str, Any] = {}
    for key, value in filters.items():
        if key == "stars":
            if not value.isdigit():
                raise InvalidInputError(f"invalid filter stars={value!r}: a number")
            wanted[key] = int(value)
        elif key in ("is-official", "is-automated"):
            if value not in ("true", "false"):
                raise InvalidInputError(f"invalid filter {key}={value!r}: true or false")
            wanted[key] = value == "true"
        else:
            raise InvalidInputError(f"invalid filter {key!r}: stars, is-official or is-automated")

    def check(result: SearchResult) -> bool:
        if result.Stars < wanted.get("stars", 0):
            return False
        if "is-official" in wanted and bool(result.Official) != wanted["is-official"]:
            return False
        return not ("is-automated" in wanted and bool(result.Automated) != wanted["is-automated"])

    return check
